//! The console's trigger pages (SPEC §13): each trigger's URL, verification
//! and mapping, its captured samples (`runtime::captures`), and **try a
//! mapping**: a mapping edited in the page, run against a captured sample
//! through the same code as `hookyard render` (the trigger's own event type
//! and catalog checks, then the router and every request it would send),
//! with the YAML to copy into the config. Nothing is sent or stored.

use std::path::Path as FilePath;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::actions::{Form, change_guard};
use super::pages::guard;
use super::{Console, Visitor};
use crate::config::{self, Config, Mapping, Scope, Source, Trigger};
use crate::preview::{Signatures, TriggerOutcome, event_from_request, preview};
use crate::runtime::captures::Sample;

/// `/ui/triggers`: every trigger with its URL path, checks and mapping.
pub async fn list(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let snapshot = console.app.snapshot();
    let who = match guard(&console, &snapshot.config, &headers, Scope::DeliveriesRead) {
        Ok(w) => w,
        Err(answer) => return *answer,
    };
    let triggers: Vec<Value> = snapshot
        .config
        .triggers
        .iter()
        .map(|t| summary(t))
        .collect();
    let ctx = minijinja::context! { page => "triggers", triggers => triggers, ..who.context() };
    console.html(StatusCode::OK, "triggers.html", ctx)
}

fn summary(t: &Trigger) -> Value {
    json!({
        "id": t.id,
        "path": t.shown_path(),
        "verify": super::pages::verify_summary(&t.verify),
        "mapping": t.mapping.as_ref().map(mapping_yaml),
        "typed_mappings": t.mappings.len(),
        "capture": t.capture,
    })
}

/// `/ui/triggers/{id}`: the trigger, its samples and the mapping form.
pub async fn show(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    page(&console, &headers, &id, None).await
}

/// `POST /ui/triggers/{id}/try`: run an edited mapping against a sample.
/// It changes nothing, but is a form post like every other, with the
/// session's CSRF token.
pub async fn try_mapping(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let snapshot = console.app.snapshot();
    // A change like any other: a session, its CSRF token, and the scope
    // the trigger pages need.
    if let Err(answer) = change_guard(
        &console,
        &snapshot.config,
        &headers,
        &form,
        Scope::DeliveriesRead,
    ) {
        return *answer;
    }
    let field = |name: &str| form.get(name).unwrap_or("");
    let attempt = Attempt {
        mapping: field("mapping").to_owned(),
        sample: field("sample").parse().unwrap_or(0),
    };
    page(&console, &headers, &id, Some(attempt)).await
}

/// What the visitor asked to try.
struct Attempt {
    mapping: String,
    sample: usize,
}

async fn page(
    console: &Console,
    headers: &HeaderMap,
    id: &str,
    attempt: Option<Attempt>,
) -> Response {
    let snapshot = console.app.snapshot();
    let config = &snapshot.config;
    let who = match guard(console, config, headers, Scope::DeliveriesRead) {
        Ok(w) => w,
        Err(answer) => return *answer,
    };
    let Some(trigger) = config.trigger(id) else {
        return not_found(console, &who, id);
    };
    let samples = match console
        .app
        .captures()
        .samples(
            console.app.queue(),
            id,
            trigger.capture,
            config.history.retention,
        )
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("trigger samples not read: {e}");
            Vec::new()
        }
    };
    let result = attempt
        .as_ref()
        .map(|a| run(config, trigger, &a.mapping, samples.get(a.sample)));
    let mapping_text = match &attempt {
        Some(a) => a.mapping.clone(),
        None => trigger
            .mapping
            .as_ref()
            .map(mapping_yaml)
            .unwrap_or_default(),
    };
    let ctx = minijinja::context! {
        page => "triggers",
        trigger => summary(trigger),
        samples => samples,
        mapping_text => mapping_text,
        chosen => attempt.as_ref().map_or(0, |a| a.sample),
        result => result,
        ..who.context()
    };
    console.html(StatusCode::OK, "trigger.html", ctx)
}

fn not_found(console: &Console, who: &Visitor<'_>, id: &str) -> Response {
    console.message(
        StatusCode::NOT_FOUND,
        Some(who),
        "Not found",
        &format!("There is no trigger {id:?} in the config."),
    )
}

/// Try `mapping_text` as trigger's mapping on `sample`: the mapped event,
/// the report of what it would send, and the YAML, or what is wrong.
fn run(config: &Config, trigger: &Trigger, mapping_text: &str, sample: Option<&Sample>) -> Value {
    let Some(sample) = sample else {
        return json!({"error": "This trigger has no captured sample yet: send it a request first."});
    };
    let mapping = match compile_mapping(mapping_text) {
        Ok(m) => m,
        Err(errors) => return json!({"error": "The mapping does not compile.", "errors": errors}),
    };
    let mut edited = (*trigger).clone();
    edited.mapping = mapping;
    // The edited mapping is the trigger's one mapping here.
    edited.mappings.clear();
    let mut trial = config.clone();
    if let Some(slot) = trial.triggers.iter_mut().find(|t| t.id == trigger.id) {
        *slot = Arc::new(edited);
    }
    let headers = sample_headers(sample);
    let yaml = format!("mapping:\n{}", indent(mapping_text.trim_end(), "  "));
    match event_from_request(&trial, &trigger.id, &headers, sample.body.as_bytes()) {
        Ok(TriggerOutcome::Event(event)) => json!({
            "event": serde_json::to_string_pretty(&event).unwrap_or_default(),
            "report": preview(&trial, &event, Some(&trigger.id), Signatures::Withheld),
            "yaml": yaml,
        }),
        Ok(TriggerOutcome::Ignored) => {
            json!({"error": "The trigger would ignore this request (204): its event type source said `otherwise: ignore`.", "yaml": yaml})
        }
        Ok(TriggerOutcome::Handshake) => {
            json!({"error": "This request is a provider handshake, answered by the trigger and never enqueued.", "yaml": yaml})
        }
        Err(e) => json!({"error": e.to_string(), "yaml": yaml}),
    }
}

/// A sample's headers as a header map (redacted values stay redacted).
fn sample_headers(sample: &Sample) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in &sample.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            map.append(k, v);
        }
    }
    map
}

/// Longest mapping text tried.
const MAX_MAPPING: usize = 16 * 1024;

/// The lines of the synthetic config before the mapping's first line.
const PREAMBLE_LINES: u32 = 5;

/// Compile `text` (the body of a `mapping:` block) with the config's own
/// compiler; errors name lines of `text`.
fn compile_mapping(text: &str) -> Result<Option<Mapping>, Vec<String>> {
    // The text is placed inside a config document: only `\n` may break its
    // lines (a lone `\r` or a Unicode line break would let it write keys
    // outside the mapping, such as a secret read from a file).
    let text = text.replace("\r\n", "\n");
    if text.contains(['\r', '\u{85}', '\u{2028}', '\u{2029}']) {
        return Err(vec![
            "the mapping holds a line break other than a newline; retype it".to_owned(),
        ]);
    }
    if text.len() > MAX_MAPPING {
        return Err(vec![format!(
            "the mapping is longer than {MAX_MAPPING} bytes; a mapping is a few lines"
        )]);
    }
    let text = text.as_str();
    let yaml = format!(
        "triggers:\n  - id: mapping-under-test\n    verify: none\n    event: tried\n    mapping:\n{}\n",
        indent(text, "      ")
    );
    let opts = config::LoadOptions {
        no_env: false,
        env: Some(Default::default()),
    };
    match config::load_str(&yaml, FilePath::new("mapping"), opts) {
        Ok(c) => Ok(c.triggers.first().and_then(|t| t.mapping.clone())),
        Err(errs) => Err(errs
            .errors
            .iter()
            .map(|e| match e.pos.line.checked_sub(PREAMBLE_LINES) {
                Some(line) if line > 0 => format!("line {line}: {}", e.message),
                _ => e.message.clone(),
            })
            .collect()),
    }
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A compiled mapping written back as YAML (one line per field).
pub fn mapping_yaml(m: &Mapping) -> String {
    let mut out = String::new();
    for f in &m.fields {
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut long = Vec::new();
        let short = match &f.source {
            Source::Path(p) => {
                let p = quote(&p.to_string());
                long.push(format!("path: {p}"));
                Some(p)
            }
            Source::Header(h) => {
                long.push(format!("header: {}", quote(h)));
                None
            }
            Source::Query(q) => {
                long.push(format!("query: {}", quote(q)));
                None
            }
            Source::Template(t) => {
                long.push(format!("template: {}", quote(&t.source)));
                None
            }
            Source::Value(v) => {
                long.push(format!("value: {v}"));
                None
            }
        };
        if let Some(t) = f.value_type {
            long.push(format!("type: {}", format!("{t:?}").to_lowercase()));
        }
        if f.required {
            long.push("required: true".to_owned());
        }
        if let Some(d) = &f.default {
            long.push(format!("default: {d}"));
        }
        let key = quote(&f.key);
        match short {
            Some(p) if long.len() == 1 => out.push_str(&format!("{key}: {p}\n")),
            _ => out.push_str(&format!("{key}: {{ {} }}\n", long.join(", "))),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_compiles_from_its_yaml_and_back() {
        let text =
            "contact.email: $.email\ntotal: { path: $.amount, type: number, required: true }\n";
        let m = compile_mapping(text).unwrap().unwrap();
        assert_eq!(m.fields.len(), 2);
        let written = mapping_yaml(&m);
        let again = compile_mapping(&written).unwrap().unwrap();
        assert_eq!(mapping_yaml(&again), written, "{written}");
    }

    #[test]
    fn a_mapping_cannot_write_outside_itself() {
        for sneaky in [
            "a: $.x\rsecrets:\r  s: { file: /dev/zero }",
            "a: $.x\u{2028}secrets: {}",
            "a: $.x\u{85}tokens: []",
        ] {
            let errors = compile_mapping(sneaky).unwrap_err();
            assert!(errors[0].contains("line break"), "{errors:?}");
        }
        // A Windows newline is just a newline.
        assert!(compile_mapping("a: $.x\r\nb: $.y\r\n").unwrap().is_some());
        assert!(compile_mapping(&"a: $.x\n".repeat(5000)).is_err());
    }

    #[test]
    fn mapping_errors_name_the_line_of_the_mapping() {
        let errors = compile_mapping("a: $.ok\nb: { path: \"$[\" }\n").unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with("line 2:")),
            "{errors:?}"
        );
    }
}
