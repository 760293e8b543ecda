//! `hookyard render`: what an event would do, without sending anything —
//! which workflows and YAML subscriptions it matches and the HTTP request
//! each would send first (rendered, signed, secrets redacted).
//!
//! Matching here is local (`Workflow::matches` / `Subscription::matches`
//! plus the `if` condition) until the router's `route::jobs_for` is
//! available to share. API-created subscriptions live in the queue
//! backend and are not shown. Only a workflow's first step is rendered:
//! later steps depend on the earlier steps' responses.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use jiff::Timestamp;

use crate::config::{Config, Expr, WorkflowMode};
use crate::deliver::render::{self, Envs, Rendered};
use crate::deliver::send::redact_headers;
use crate::deliver::sign;
use crate::deliver::target::signing;
use crate::queue::Event;

/// An event file for `--event`: `{type, data, id?, timestamp?, source?}`.
#[derive(Debug, serde::Deserialize)]
pub struct EventFile {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub data: serde_json::Value,
    pub id: Option<String>,
    pub timestamp: Option<Timestamp>,
    pub source: Option<String>,
}

impl EventFile {
    pub fn into_event(self) -> Event {
        Event {
            id: self.id.unwrap_or_else(|| ulid::Ulid::new().to_string()),
            event_type: self.event_type,
            timestamp: self.timestamp.unwrap_or_else(Timestamp::now),
            source: self.source.unwrap_or_else(|| "api:render".to_owned()),
            data: self.data,
        }
    }
}

fn condition(config: &Config, cond: Option<&Expr>, ctx: &minijinja::Value) -> Result<bool, String> {
    match cond {
        None => Ok(true),
        Some(e) => e
            .is_true(&config.templates, ctx)
            .map_err(|err| format!("condition `{}` failed: {err}", e.source)),
    }
}

fn print_request(
    out: &mut String,
    title: &str,
    r: &Rendered,
    event: &Event,
    config: &Config,
    sig: Option<&crate::config::Signing>,
) {
    let secrets: Vec<&[u8]> = config.secrets.values().map(|s| s.expose()).collect();
    let mut headers = r.headers.clone();
    for (k, v) in sign::delivery_headers(&event.id, &event.event_type, "(new delivery id)", 1) {
        headers.push((k.to_owned(), v));
    }
    if let Some(s) = sig {
        match sign::sign(&signing(s), &event.id, Timestamp::now(), &r.body) {
            Ok(h) => headers.extend(h.into_iter().map(|(k, v)| (k.to_owned(), v))),
            Err(e) => headers.push(("X-Signing-Error".to_owned(), e.to_string())),
        }
    }
    let _ = writeln!(out, "\n--- {title}");
    let _ = writeln!(
        out,
        "{} {}",
        r.method,
        render::redact_text(&r.url_display, &secrets)
    );
    for (k, v) in redact_headers(&headers, &secrets) {
        let _ = writeln!(out, "{k}: {v}");
    }
    let _ = writeln!(out);
    let body = String::from_utf8_lossy(&r.body);
    let _ = writeln!(out, "{}", render::redact_text(&body, &secrets));
}

/// The report printed by `hookyard render`. `trigger` is the trigger id
/// when the event came through one (workflows may match on it).
pub fn preview(config: &Config, event: &Event, trigger: Option<&str>) -> String {
    let mut out = String::new();
    let pretty = serde_json::to_string_pretty(event).unwrap_or_default();
    let _ = writeln!(out, "event:\n{pretty}");
    let envs = Envs::new(&config.templates);
    let cond_ctx = render::context(event, &BTreeMap::new(), &HashMap::new());
    let ctx = render::context(event, &BTreeMap::new(), &config.secrets);
    let mut requests = String::new();
    let mut matched = Vec::new();
    for wf in &config.workflows {
        if !wf.matches(&event.event_type, trigger) {
            continue;
        }
        match condition(config, wf.condition.as_ref(), &cond_ctx) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                matched.push(format!("workflow {} (not matched: {e})", wf.id));
                continue;
            }
        }
        let mode = match wf.mode {
            WorkflowMode::Test => " [mode: test, records only]",
            _ => "",
        };
        matched.push(format!("workflow {}{mode}", wf.id));
        let Some(first) = wf.steps.first() else {
            continue;
        };
        let title = format!(
            "workflow/{}/{} (step 1 of {}){mode}",
            wf.id,
            first.action.id,
            wf.steps.len()
        );
        match render::action(&envs, &first.action, &ctx) {
            Ok(r) => print_request(
                &mut requests,
                &title,
                &r,
                event,
                config,
                first.action.delivery.signing.as_ref(),
            ),
            Err(e) => {
                let _ = writeln!(requests, "\n--- {title}\nnot sendable: {e}");
            }
        }
    }
    for s in &config.subscriptions {
        if !s.matches(&event.event_type) {
            continue;
        }
        match condition(config, s.condition.as_ref(), &cond_ctx) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                matched.push(format!("subscription {} (not matched: {e})", s.id));
                continue;
            }
        }
        matched.push(format!("subscription {}", s.id));
        let title = format!("subscription/{}", s.id);
        match render::subscription(&envs, s, event, &ctx) {
            Ok(r) => print_request(
                &mut requests,
                &title,
                &r,
                event,
                config,
                s.delivery.signing.as_ref(),
            ),
            Err(e) => {
                let _ = writeln!(requests, "\n--- {title}\nnot sendable: {e}");
            }
        }
    }
    if matched.is_empty() {
        let _ = writeln!(out, "\nmatches: nothing (no workflow or YAML subscription)");
    } else {
        let _ = writeln!(out, "\nmatches:");
        for m in &matched {
            let _ = writeln!(out, "  {m}");
        }
    }
    out.push_str(&requests);
    out.push_str("\n(nothing was sent)\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn preview_lists_matches_and_requests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            r#"
secrets: { tok: { env: TOK } }
workflows:
  - id: big
    when: { event: order.created, if: "order.total > 100" }
    steps:
      - request: { url: "https://h.example/o/{{ order.id }}", headers: { Authorization: "Bearer {{ secrets.tok }}" }, body: { json: { t: "{{ order.total }}" } } }
  - id: other
    when: { event: user.created }
    steps: [ { request: { url: "https://h.example/" } } ]
subscriptions:
  - id: s
    url: https://s.example/hook
    events: ["order.*"]
    signing: { scheme: hmac-sha256, secret: tok }
"#,
        )
        .unwrap();
        let env = HashMap::from([("TOK".to_owned(), "sekrit-1".to_owned())]);
        let config = crate::config::load(
            &path,
            crate::config::LoadOptions {
                no_env: false,
                env: Some(env),
            },
        )
        .unwrap();
        let file: EventFile = serde_json::from_value(serde_json::json!({
            "type": "order.created", "data": {"order": {"id": "a/b", "total": 150}}
        }))
        .unwrap();
        let out = preview(&config, &file.into_event(), None);
        assert!(out.contains("workflow big\n"), "{out}");
        assert!(!out.contains("workflow other"), "{out}");
        assert!(out.contains("subscription s\n"), "{out}");
        assert!(out.contains("POST https://h.example/o/a%2Fb"), "{out}");
        assert!(out.contains("Authorization: [redacted]"), "{out}");
        assert!(out.contains(r#"{"t":150}"#), "{out}");
        assert!(out.contains("X-Hmac-Signature: sha256="), "{out}");
        assert!(!out.contains("sekrit-1"), "{out}");
    }
}
