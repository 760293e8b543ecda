//! `hookyard render`: what an event would do, without sending anything —
//! the mapped event (from a trigger request or an event file), which
//! workflows and YAML subscriptions it matches and the HTTP request each
//! would send first (rendered, signed, secrets redacted).
//!
//! A trigger request goes through the daemon's own inbound code (body
//! parsing, event type, catalog, mapping, schema) but NOT its `verify:`
//! checks: render is for trying a payload, so signatures, IP lists and
//! credentials are not required, and the output says so. Matching is the
//! router's [`crate::route::jobs_for`], so render shows exactly the jobs the
//! daemon would enqueue. API-created subscriptions live in the queue
//! backend, which render does not open: they are not shown (the output
//! says so). Only a workflow's first step is rendered: later steps depend on
//! the earlier steps' responses.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{Config, WorkflowMode};
use crate::deliver::render::{self, Envs, Rendered};
use crate::deliver::sign;
use crate::inbound::errors::InboundError;
use crate::inbound::handshake::answer_post;
use crate::inbound::map::{self, ParsedRequest};
use crate::inbound::trigger::{self as inbound_trigger, EventTypeOutcome};
use crate::inbound::{check_catalog, check_schema};
use crate::queue::{Event, Target};
use crate::send::redact_headers;

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

/// Whether a preview computes signatures: the CLI (run by whoever holds
/// the config and its secrets) does; the console, whose users must not be
/// handed valid signatures over bodies they choose, does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signatures {
    Computed,
    Withheld,
}

fn print_request(
    out: &mut String,
    title: &str,
    r: &Rendered,
    event: &Event,
    config: &Config,
    delivery: &crate::config::DeliveryOptions,
    signatures: Signatures,
) {
    let sig = delivery.signing.as_ref();
    let secrets: Vec<&[u8]> = config.secrets.values().map(|s| s.expose()).collect();
    let mut headers = r.headers.clone();
    for (k, v) in sign::delivery_headers(&event.id, &event.event_type, "(new delivery id)", 1) {
        headers.push((k.to_owned(), v));
    }
    if let (Some(s), Signatures::Withheld) = (sig, signatures) {
        headers.push((
            "X-Signature".to_owned(),
            format!(
                "[{} signature, computed when the request is sent]",
                s.keys.scheme.name()
            ),
        ));
    } else if let Some(s) = sig {
        match sign::sign(&s.keys, &event.id, Timestamp::now(), &r.body) {
            Ok(h) => headers.extend(h.into_iter().map(|(k, v)| (k.to_owned(), v))),
            Err(e) => headers.push(("X-Signing-Error".to_owned(), e.to_string())),
        }
    }
    let _ = writeln!(out, "\n--- {title}");
    let _ = writeln!(
        out,
        "{} {}",
        r.method,
        crate::send::redact::text(&r.url_display, &secrets)
    );
    for (k, v) in redact_headers(&headers, &secrets) {
        let _ = writeln!(out, "{k}: {v}");
    }
    // The token exists only at send time; say where it will come from
    // (the token URL holds no credentials: the config refuses them).
    if let Some(crate::config::OutboundAuth::OAuth2(grant)) = &delivery.auth {
        let _ = writeln!(
            out,
            "Authorization: Bearer [OAuth2 token from {}, fetched when the request is sent]",
            grant.token_url
        );
    }
    let _ = writeln!(out);
    let body = String::from_utf8_lossy(&r.body);
    let _ = writeln!(out, "{}", crate::send::redact::text(&body, &secrets));
}

/// What a trigger makes of a request, for `render --trigger`.
#[derive(Debug)]
pub enum TriggerOutcome {
    /// The mapped event the trigger would enqueue.
    Event(Event),
    /// The event type source said `otherwise: ignore`: 204, nothing enqueued.
    Ignored,
    /// A provider handshake, answered by the trigger and never enqueued.
    Handshake,
}

/// Why `render --trigger` has no event to show.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no trigger `{0}` in the config: use one of the `triggers:` ids ({1})")]
    UnknownTrigger(String, String),
    #[error("--header `{0}` is not `Name: value` with a valid HTTP name and value")]
    BadHeader(String),
    #[error("the trigger would refuse this request with HTTP {status} ({code}): {source}")]
    Refused {
        status: u16,
        code: &'static str,
        source: InboundError,
    },
}

impl From<InboundError> for RenderError {
    fn from(source: InboundError) -> Self {
        RenderError::Refused {
            status: source.status().as_u16(),
            code: source.code(),
            source,
        }
    }
}

/// `Name: value` lines from `--header` as a header map.
pub fn parse_headers(lines: &[String]) -> Result<HeaderMap, RenderError> {
    let mut map = HeaderMap::new();
    for line in lines {
        let bad = || RenderError::BadHeader(line.clone());
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::try_from(name.trim()).map_err(|_| bad())?;
        let value = HeaderValue::try_from(value.trim()).map_err(|_| bad())?;
        map.append(name, value);
    }
    Ok(map)
}

/// The event trigger `trigger_id` would make of a request with `headers`
/// and `body`, as the daemon's inbound path does it minus `verify:` (no
/// signature, IP or credential check) and minus rate limits.
pub fn event_from_request(
    config: &Config,
    trigger_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TriggerOutcome, RenderError> {
    let trigger = config.trigger(trigger_id).ok_or_else(|| {
        let ids: Vec<&str> = config.triggers.iter().map(|t| t.id.as_str()).collect();
        RenderError::UnknownTrigger(trigger_id.to_owned(), ids.join(", "))
    })?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let request = ParsedRequest {
        body: map::parse_body(body, content_type)?,
        headers,
        query: serde_json::Map::new(),
    };
    if answer_post(trigger, &request.body).is_some() {
        return Ok(TriggerOutcome::Handshake);
    }
    let event_type = match inbound_trigger::event_type(trigger, &request)? {
        EventTypeOutcome::Type(t) => t,
        EventTypeOutcome::Ignore => return Ok(TriggerOutcome::Ignored),
    };
    check_catalog(config, &event_type)?;
    let mapped = map::apply(trigger.mapping_for(&event_type), request, &config.templates)?;
    check_schema(config, &event_type, &mapped.data)?;
    Ok(TriggerOutcome::Event(Event {
        id: ulid::Ulid::new().to_string(),
        event_type,
        timestamp: mapped.timestamp.unwrap_or_else(Timestamp::now),
        source: format!("trigger:{}", trigger.id),
        data: mapped.data,
    }))
}

/// The report printed by `hookyard render`. `trigger` is the trigger id
/// when the event came through one (workflows may match on it).
pub fn preview(
    config: &Config,
    event: &Event,
    trigger: Option<&str>,
    signatures: Signatures,
) -> String {
    let mut out = String::new();
    let pretty = serde_json::to_string_pretty(event).unwrap_or_default();
    let _ = writeln!(out, "event:\n{pretty}");
    let envs = Envs::new(&config.templates);
    let build = || render::context(event, &BTreeMap::new(), &config.secrets);
    let ctx = render::LazyContext::new(&build);
    let mut requests = String::new();
    let mut matched = Vec::new();
    // The router's own decision; API subscriptions are not loaded here.
    let jobs = crate::route::jobs_for(config, [], event, trigger);
    for job in &jobs {
        match &job.target {
            Target::WorkflowStep { workflow, .. } => {
                let Some(wf) = config.workflow(workflow) else {
                    continue;
                };
                let Some(first) = wf.steps.first() else {
                    continue;
                };
                let mode = match wf.mode {
                    WorkflowMode::Test => " [mode: test, records only]",
                    _ => "",
                };
                matched.push(format!("workflow {}{mode}", wf.id));
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
                        &first.action.delivery,
                        signatures,
                    ),
                    Err(e) => {
                        let _ = writeln!(requests, "\n--- {title}\nnot sendable: {e}");
                    }
                }
            }
            Target::Subscription { id } => {
                let Some(s) = config.subscription(id) else {
                    continue;
                };
                matched.push(format!("subscription {}", s.id));
                let title = format!("subscription/{}", s.id);
                match render::subscription(&envs, s, event, &ctx) {
                    Ok(r) => print_request(
                        &mut requests,
                        &title,
                        &r,
                        event,
                        config,
                        &s.delivery,
                        signatures,
                    ),
                    Err(e) => {
                        let _ = writeln!(requests, "\n--- {title}\nnot sendable: {e}");
                    }
                }
            }
        }
    }
    let routed = |label: String| jobs.iter().any(|j| j.target.label() == label);
    let mut held_back = Vec::new();
    for wf in &config.workflows {
        if let Some(first) = wf.steps.first() {
            let label = format!("workflow/{}/{}", wf.id, first.action.id);
            if wf.matches(&event.event_type, trigger) && !routed(label) {
                held_back.push(format!("workflow {}", wf.id));
            }
        }
    }
    for s in &config.subscriptions {
        if s.matches(&event.event_type) && !routed(format!("subscription/{}", s.id)) {
            held_back.push(format!("subscription {}", s.id));
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
    if !held_back.is_empty() {
        let _ = writeln!(
            out,
            "\nmatch the type, but their `if` is false (or fails to evaluate):"
        );
        for m in &held_back {
            let _ = writeln!(out, "  {m}");
        }
    }
    let _ = writeln!(
        out,
        "\n(API-created subscriptions live in the queue backend and are not shown)"
    );
    out.push_str(&requests);
    out.push_str("\n(nothing was sent)\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn preview_lists_matches_and_requests() {
        let config = load(
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
            ("TOK", "sekrit-1"),
        );
        let file: EventFile = serde_json::from_value(serde_json::json!({
            "type": "order.created", "data": {"order": {"id": "a/b", "total": 150}}
        }))
        .unwrap();
        let event = file.into_event();
        let out = preview(&config, &event, None, Signatures::Computed);
        assert!(out.contains("workflow big\n"), "{out}");
        assert!(!out.contains("workflow other"), "{out}");
        assert!(out.contains("subscription s\n"), "{out}");
        assert!(out.contains("POST https://h.example/o/a%2Fb"), "{out}");
        assert!(out.contains("Authorization: [redacted]"), "{out}");
        assert!(out.contains(r#"{"t":150}"#), "{out}");
        assert!(out.contains("X-Hmac-Signature: sha256="), "{out}");
        // The console's preview never computes one (a reader must not get
        // valid signatures over bodies they chose).
        let withheld = preview(&config, &event, None, Signatures::Withheld);
        assert!(!withheld.contains("sha256="), "{withheld}");
        assert!(
            withheld.contains("computed when the request is sent"),
            "{withheld}"
        );
        assert!(!out.contains("sekrit-1"), "{out}");
    }

    /// The config `yaml` with one secret taken from the environment.
    fn load(yaml: &str, (var, value): (&str, &str)) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        let env = HashMap::from([(var.to_owned(), value.to_owned())]);
        crate::config::load(
            &path,
            crate::config::LoadOptions {
                no_env: false,
                env: Some(env),
            },
        )
        .unwrap()
    }

    fn trigger_config() -> Config {
        load(
            r#"
secrets: { k: { env: K } }
triggers:
  - id: gh
    event: { header: X-GitHub-Event, map: { push: github.push }, otherwise: ignore }
    verify: { signature: { preset: github, secret: k } }
    mapping:
      repo: "$.repository.name"
      n: { path: "$.n", type: integer }
  - id: slack
    verify: none
    event: slack.event
    handshake: slack
workflows:
  - id: on-push
    when: { trigger: gh }
    steps: [ { request: { url: "https://h.example/{{ repo }}" } } ]
"#,
            ("K", "gh-hook-secret"),
        )
    }

    #[test]
    fn trigger_request_is_mapped_without_verifying_and_routed() {
        let config = trigger_config();
        // No X-Hub-Signature-256: render does not verify.
        let headers = parse_headers(&["X-GitHub-Event: push".to_owned()]).unwrap();
        let body = br#"{"repository": {"name": "hy"}, "n": "3"}"#;
        let TriggerOutcome::Event(event) =
            event_from_request(&config, "gh", &headers, body).unwrap()
        else {
            panic!("expected an event");
        };
        assert_eq!(event.event_type, "github.push");
        assert_eq!(event.source, "trigger:gh");
        assert_eq!(event.data, serde_json::json!({"repo": "hy", "n": 3}));
        // The workflow matches on the trigger, so it is passed through.
        let out = preview(&config, &event, Some("gh"), Signatures::Computed);
        assert!(out.contains("workflow on-push\n"), "{out}");
        assert!(out.contains("POST https://h.example/hy"), "{out}");
        let out = preview(&config, &event, None, Signatures::Computed);
        assert!(out.contains("matches: nothing"), "{out}");
    }

    #[test]
    fn ignored_handshake_refused_and_bad_input() {
        let config = trigger_config();
        let ping = parse_headers(&["X-GitHub-Event: ping".to_owned()]).unwrap();
        assert!(matches!(
            event_from_request(&config, "gh", &ping, b"{}").unwrap(),
            TriggerOutcome::Ignored
        ));
        let challenge = br#"{"type": "url_verification", "challenge": "c"}"#;
        assert!(matches!(
            event_from_request(&config, "slack", &HeaderMap::new(), challenge).unwrap(),
            TriggerOutcome::Handshake
        ));
        let push = parse_headers(&["X-GitHub-Event: push".to_owned()]).unwrap();
        let err = event_from_request(&config, "gh", &push, b"{not json").unwrap_err();
        assert!(err.to_string().contains("HTTP 422"), "{err}");
        let err = event_from_request(&config, "gh", &push, br#"{"n": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("HTTP 422"), "{err}");
        let err = event_from_request(&config, "nope", &push, b"{}").unwrap_err();
        assert!(err.to_string().contains("(gh, slack)"), "{err}");
        assert!(parse_headers(&["no colon".to_owned()]).is_err());
        assert!(parse_headers(&["Bad Name: v".to_owned()]).is_err());
    }
}
