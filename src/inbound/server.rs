//! `/hooks/{*path}`: one handler for every trigger. It looks the trigger up
//! in the CURRENT config snapshot on each request, so a reload never
//! rebuilds the router, and walks the stages in order:
//!
//! 1. find the trigger (404), accept POST (GET only for a Meta handshake,
//!    which counts against the rate limit);
//! 2. read the body up to `server.max_body` (413);
//! 3. verify on the raw bytes: `Unverified` → `Verified` (401/403);
//! 4. rate limit (429): after verification, so forged requests cannot use up
//!    the real sender's budget;
//! 5. parse (422), answer a provider handshake, find the event type
//!    (204 ignore / 422 reject), check the catalog, map, validate the schema;
//! 6. route and enqueue in one `queue.ingest` (503 when it fails), then
//!    answer 202 (or the trigger's `respond`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use super::capture::Seen;
use super::errors::{InboundError, retry_after_secs};
use super::map::{self, ParsedRequest};
use super::trigger::{self, EventTypeOutcome};
use super::verify::Unverified;
use super::{Inbound, check_catalog, check_schema, ingest_one, read_body};
use crate::config::{Config, Handshake, Respond, TokenCheck, Trigger};
use crate::queue::Event;
use crate::runtime::Snapshot;
use crate::telemetry::InboundSpan;

/// Longest request path echoed back in a 404 message.
const MAX_ECHOED_PATH: usize = 200;

/// The `/hooks/*` handler.
pub async fn hook(State(state): State<Arc<Inbound>>, req: Request) -> Response {
    // Traces on: this request's span, the child of its `traceparent`.
    let mut span = state.app.telemetry().map(|t| {
        let method = req.method().as_str();
        let name = format!("{method} /hooks/{{trigger}}");
        t.inbound(name, method, "/hooks/{trigger}", req.headers())
    });
    // One snapshot for the whole request (SPEC §12).
    let snapshot = state.app.snapshot();
    let config = &snapshot.config;
    let path = req.uri().path();
    // A `url_token` trigger at another token (or none) is answered exactly
    // like an unknown trigger: same status, body and metric label (SPEC
    // §3), so the answer does not tell a prober that the id exists.
    let found = config
        .trigger_by_path(path)
        .filter(|m| m.token != TokenCheck::Wrong);
    let Some(trigger) = found.map(|m| m.trigger.clone()) else {
        let shown: String = path.chars().take(MAX_ECHOED_PATH).collect();
        state.app.metrics().inbound_request(None, 404);
        let err = InboundError::UnknownTrigger(shown);
        if let Some(span) = span {
            span.end(404, Some(err.code()));
        }
        return err.into_response();
    };
    if let Some(span) = span.as_mut() {
        span.trigger(&trigger.id);
    }
    // A request sampled for the console (`trigger.capture`) is noted as it
    // goes; others note nothing.
    let mut seen = state
        .app
        .captures()
        .wants(&trigger.id, trigger.capture, Instant::now())
        .then(|| Seen::new(req.method()));
    let mut refusal = None;
    let mut rejected = None;
    let handled = handle(
        &state,
        &snapshot,
        &trigger,
        req,
        seen.as_mut(),
        span.as_mut(),
    );
    let response = match handled.await {
        Ok(response) => response,
        Err(err) => {
            rejected = Some(err.code());
            if seen.is_some() {
                refusal = Some(format!("{}: {err}", err.code()));
            }
            // The path as shown never holds a URL token.
            let path = trigger.shown_path();
            if err.status().is_server_error() {
                tracing::warn!(trigger = %trigger.id, %path, error = %err, "inbound request failed");
            } else {
                tracing::debug!(trigger = %trigger.id, %path, error = %err, "inbound request refused");
            }
            err.into_response()
        }
    };
    let status = response.status().as_u16();
    state
        .app
        .metrics()
        .inbound_request(Some(&trigger.id), status);
    if let Some(span) = span {
        span.end(status, rejected);
    }
    // The console's Overview: requests and rejections by reason (a map
    // update; housekeeping writes them).
    state.app.counters().trigger_request(&trigger.id, rejected);
    if let Some(seen) = seen {
        let sample = seen.sample(config, &trigger, status, refusal);
        state
            .app
            .captures()
            .add(&trigger.id, sample, trigger.capture);
    }
    response
}

async fn handle(
    state: &Inbound,
    snapshot: &Snapshot,
    trigger: &Trigger,
    req: Request,
    mut seen: Option<&mut Seen>,
    span: Option<&mut InboundSpan>,
) -> Result<Response, InboundError> {
    let config = &snapshot.config;
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET && trigger.handshake == Some(Handshake::Meta) {
        // Unsigned by design, so the rate limit is all that stands between
        // the verify token and someone guessing it.
        rate_limit(state, trigger)?;
        return super::handshake::meta_get(trigger, parts.uri.query());
    }
    if parts.method != Method::POST {
        return Err(InboundError::MethodNotAllowed(parts.method.to_string()));
    }
    // Without connect info (only in tests driving the router directly) the
    // peer is unknown: 0.0.0.0, which no sensible ip_allow list contains.
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let bytes = read_body(body, config.server.max_body).await?;
    if let Some(seen) = seen.as_deref_mut() {
        seen.headers = Some(parts.headers.clone());
        seen.body = Some(bytes.clone());
        seen.query = parts.uri.query().map(str::to_owned);
    }

    let unverified = Unverified::new(&parts.headers, &bytes, peer);
    if let Some(seen) = seen.as_deref_mut() {
        seen.client_ip = Some(unverified.client_ip(&config.server.trusted_proxies));
    }
    let verified = unverified.verify(
        &trigger.rules,
        &config.server.trusted_proxies,
        Timestamp::now(),
    );
    if let Some(seen) = seen.as_deref_mut() {
        seen.verification = Some(match &verified {
            Ok(_) => "passed".to_owned(),
            Err(e) => format!("refused: {e}"),
        });
    }
    let verified = verified?;

    rate_limit(state, trigger)?;

    let request = ParsedRequest::parse(verified, parts.uri.query())?;
    if let Some(answer) = super::handshake::answer_post(trigger, &request.body) {
        return Ok(answer);
    }
    let event_type = match trigger::event_type(trigger, &request)? {
        EventTypeOutcome::Type(t) => t,
        EventTypeOutcome::Ignore => return Ok(StatusCode::NO_CONTENT.into_response()),
    };
    let declared = check_catalog(config, &event_type)?;
    let key = trigger::idempotency_key(trigger, &request);
    let mapped = map::apply(trigger.mapping_for(&event_type), request, &config.templates)?;
    check_schema(config, &event_type, &mapped.data)?;

    let source = format!("trigger:{}", trigger.id);
    let event = Event {
        // With an idempotency key the event lives where the key does (a
        // Redis Cluster partition), and so does its id.
        id: match &key {
            Some(k) => state.app.queue().new_event_id(&source, k),
            None => ulid::Ulid::new().to_string(),
        },
        event_type,
        timestamp: mapped.timestamp.unwrap_or_else(Timestamp::now),
        source,
        data: mapped.data,
    };
    if let Some(seen) = seen {
        seen.event = serde_json::to_value(&event).ok();
    }
    let idempotency = key.as_deref().map(|k| (event.source.as_str(), k));
    let outcome = ingest_one(
        &state.app,
        snapshot,
        &event,
        idempotency,
        Some(&trigger.id),
        declared,
        span.as_deref(),
    )
    .await
    .map_err(|e| e.answered_as(trigger.on_unavailable))?;
    let (event_id, duplicate) = outcome.parts();
    if let Some(span) = span {
        span.events([(event_id, duplicate)]);
    }
    Ok(match &trigger.respond {
        Some(respond) => custom_answer(config, respond, event_id, duplicate),
        None => accepted(event_id, duplicate),
    })
}

/// The trigger's `rate_limit` (429 with `Retry-After` past it).
fn rate_limit(state: &Inbound, trigger: &Trigger) -> Result<(), InboundError> {
    let Some(rate) = &trigger.rate_limit else {
        return Ok(());
    };
    state
        .limits
        .check(&trigger.id, rate, Instant::now())
        .map_err(|wait| InboundError::RateLimited {
            retry_after_secs: retry_after_secs(wait),
        })
}

/// The standard answer: `202 {"event_id", "duplicate"}`.
pub fn accepted(event_id: &str, duplicate: bool) -> Response {
    accepted_json(accepted_body(event_id, duplicate))
}

/// A 202 with a JSON body written by hand.
pub fn accepted_json(body: String) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The body of a 202: the event id and whether it was a duplicate, in the
/// bytes `serde_json` gives (written directly: every ingestion answers one).
pub fn accepted_body(event_id: &str, duplicate: bool) -> String {
    let mut out = String::with_capacity(event_id.len() + 40);
    out.push_str(if duplicate {
        "{\"duplicate\":true,\"event_id\":"
    } else {
        "{\"duplicate\":false,\"event_id\":"
    });
    crate::model::envelope::string(&mut out, event_id);
    out.push('}');
    out
}

/// The trigger's `respond:` answer. The event is already stored, so a
/// template that fails to render falls back to the standard answer (a 5xx
/// would only make the sender retry an accepted event).
fn custom_answer(config: &Config, respond: &Respond, event_id: &str, duplicate: bool) -> Response {
    // A 1xx is not a final answer; anything outside 200..=599 falls back.
    let status = StatusCode::from_u16(respond.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .unwrap_or(StatusCode::ACCEPTED);
    let body = match &respond.body {
        None => String::new(),
        Some(template) => {
            let ctx = minijinja::context! { event_id => event_id, duplicate => duplicate };
            match template.render(&config.templates, ctx) {
                Ok(text) => text,
                Err(err) => {
                    tracing::warn!(template = %template.name, error = %err,
                        "respond body failed to render; answering the standard 202");
                    return accepted(event_id, duplicate);
                }
            }
        }
    };
    let mut response = (status, body.clone()).into_response();
    let headers = response.headers_mut();
    let content_type = if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in &respond.headers {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(n), Ok(v)) => {
                headers.insert(n, v);
            }
            _ => tracing::warn!(header = %name, "respond header is not valid HTTP; left out"),
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::accepted_body;

    #[test]
    fn the_202_body_is_what_serde_json_writes() {
        for (id, dup) in [("01JEVENT", false), ("client \"id\"", true)] {
            let serde = serde_json::json!({"event_id": id, "duplicate": dup}).to_string();
            assert_eq!(accepted_body(id, dup), serde);
        }
    }
}
