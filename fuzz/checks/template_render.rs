//! Fuzz check: an arbitrary template, an arbitrary expression and an
//! arbitrary JSON event through the real template code: compiled by the
//! config loader into the config's ONE shared minijinja environment
//! (`config::templates`, with the error positions `config::leaf` computes
//! for syntax errors), evaluated there (`Template::render`,
//! `JsonTemplate::render`, `Expr::is_true`), then routed and rendered by
//! the delivery renderer (`deliver::render` via `deliver::preview`: strict
//! and lenient environments, URL value encoding and origin check, JSON,
//! form and raw bodies, headers, signing, redaction).
//!
//! Input: `template \0 expression \0 event data (JSON)`. The template is
//! placed in header, query, JSON, form and raw body templates (one config),
//! and after a URL's literal origin (a second config); the expression is a
//! workflow's and a subscription's `if` (a third). Never a panic.
//!
//! Shared by the fuzz target `fuzz/fuzz_targets/template_render.rs` and by
//! `cargo test` (`tests/it/fuzz_corpus.rs`), which replays the committed
//! corpus so an input that once crashed stays fixed.

use std::collections::HashMap;
use std::path::Path;

use hookyard::config::{Body, Config, LoadOptions, load_str};
use hookyard::deliver::render;
use hookyard::preview::{Signatures, preview};
use hookyard::queue::Event;

const BODIES: &str = r#"
secrets: { tok: { env: TOK }, hook: { env: HOOK } }
actions:
  - id: json
    url: "https://h.example/e/{{ event.id }}"
    headers: { X-F: @T@ }
    query: { q: @T@ }
    body: { json: { a: @T@, b: [1, @T@], c: { d: @T@ } } }
  - { id: form, url: { secret: hook }, strict: true, body: { form: { f: @T@ } } }
  - id: raw
    method: PUT
    url: "https://h.example/raw"
    signing: { scheme: hmac-sha256, secret: tok }
    body: { raw: { template: @T@ } }
workflows:
  - { id: wj, when: { event: "*" }, steps: [{ action: json }] }
  - { id: wf, when: { event: "*" }, steps: [{ action: form }] }
  - { id: wr, when: { event: "*" }, steps: [{ action: raw }] }
"#;

const URLS: &str = r#"
secrets: { tok: { env: TOK } }
workflows:
  - id: w
    when: { event: "*" }
    steps: [{ request: { url: @U@, headers: { Authorization: "Bearer {{ secrets.tok }}" } } }]
subscriptions:
  - { id: s, url: @U@, events: "*", signing: { scheme: standard-webhooks, secret: tok } }
"#;

const CONDITIONS: &str = r#"
workflows:
  - id: w
    when: { event: "*", if: @E@ }
    steps: [{ request: { url: "https://h.example/w", body: { json: { v: "{{ order }}" } } } }]
subscriptions:
  - { id: s, url: "https://h.example/s", events: "*", if: @E@ }
"#;

/// `s` as a YAML double-quoted scalar that parses back to exactly `s`:
/// escapes for `"`, `\` and non-printable characters, and `$` escaped so
/// the loader's `${VAR}` interpolation (which runs first) leaves it alone.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\x24"),
            // YAML 1.1 line breaks (NEL, LS, PS) and the BOM are escaped too.
            '\u{2028}' | '\u{2029}' | '\u{feff}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)))
            }
            ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' => out.push(c),
            '\u{10000}'..='\u{10ffff}' => out.push(c),
            // What is left is in the BMP: controls, DEL, C1 controls, U+FFFE/F.
            c => out.push_str(&format!("\\u{:04x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

fn load(yaml: &str) -> Option<Config> {
    let env: HashMap<String, String> = [("TOK", "t0k/+"), ("HOOK", "https://hooks.example/x")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let opts = LoadOptions {
        no_env: false,
        env: Some(env),
    };
    match load_str(yaml, Path::new("template_render.yaml"), opts) {
        Ok(config) => Some(config),
        Err(errors) => {
            drop(errors.to_string());
            None
        }
    }
}

/// Run one input; any input must return, never panic.
pub fn check(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == 0);
    let (Some(template), Some(expr), Some(json)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (Ok(template), Ok(expr)) = (std::str::from_utf8(template), std::str::from_utf8(expr))
    else {
        return;
    };
    let data = serde_json::from_slice(json)
        .unwrap_or_else(|_| serde_json::json!({ "text": String::from_utf8_lossy(json) }));
    let event = Event {
        id: "01FUZZ".into(),
        event_type: "order.created".into(),
        timestamp: jiff::Timestamp::UNIX_EPOCH,
        source: "trigger:fuzz".into(),
        data,
    };
    let t = quoted(template);
    let url = quoted(&format!("https://h.example/{template}"));
    let configs = [
        BODIES.replace("@T@", &t),
        URLS.replace("@U@", &url),
        CONDITIONS.replace("@E@", &quoted(expr)),
    ];
    for yaml in &configs {
        let Some(config) = load(yaml) else {
            continue;
        };
        // The shared environment, as the router and inbound mapping use it.
        let ctx = render::context(&event, &Default::default(), &config.secrets);
        for action in &config.actions {
            for (_, header) in &action.delivery.headers {
                drop(header.render(&config.templates, &ctx));
            }
            if let Some(Body::Json(json)) = &action.body {
                drop(json.render(&config.templates, &ctx));
            }
        }
        // Routing (`if`) and the delivery renderer, as `hookyard render`.
        drop(preview(&config, &event, Some("fuzz"), Signatures::Computed));
    }
}
