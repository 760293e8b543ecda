//! `POST /v1/events`: apps beside the daemon publish events (SPEC §3).
//!
//! `Authorization: Bearer <token>` with scope `events:write` (missing or
//! unknown token 401, scope lacking 403). The body is one event
//! `{type, data, id?, timestamp?}` or a JSON array of up to [`MAX_BATCH`];
//! a longer array is a 413 (`batch_too_large`: split it). A batch is checked
//! whole before anything is written: one bad item is a 422 naming its index
//! and nothing is enqueued. A client `id` is the event id and its
//! idempotency key (scope `event`, global across tokens). Answers: 202
//! `{"event_id", "duplicate"}` for one event, 202 with a JSON array of those,
//! in input order, for a batch.
//!
//! Per request this reads the config snapshot (an `Arc` load), scans the
//! token list, and parses the body once; nothing else is rebuilt.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::InboundError;
use super::{check_catalog, check_schema, ingest_one, read_body};
use crate::config::{Config, Scope, Token};
use crate::queue::{Event, IngestItem, Ingested};
use crate::runtime::{App, Snapshot};
use crate::telemetry::InboundSpan;

/// Most events in one batch.
pub const MAX_BATCH: usize = 500;

/// Longest accepted event type and client id.
const MAX_ID_LEN: usize = 256;

/// The idempotency scope of client-supplied event ids (global).
pub const CLIENT_ID_SCOPE: &str = crate::queue::EVENT_ID_SCOPE;

/// One event as posted. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct PostedEvent {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
}

/// An event ready to ingest, with its idempotency key.
struct Prepared {
    event: Event,
    client_id: bool,
    declared: bool,
}

/// The `POST /v1/events` handler.
pub async fn post_events(State(app): State<App>, req: Request) -> Response {
    // Traces on: this request's span, the child of its `traceparent`.
    let mut span = app
        .telemetry()
        .map(|t| t.inbound(format!("POST {ROUTE}"), "POST", ROUTE, req.headers()));
    let (response, error) = match handle(&app, req, span.as_mut()).await {
        Ok(response) => (response, None),
        Err(err) => {
            if err.status().is_server_error() {
                tracing::warn!(error = %err, "event API request failed");
            }
            let code = err.code();
            (err.into_response(), Some(code))
        }
    };
    if let Some(span) = span {
        span.end(response.status().as_u16(), error);
    }
    response
}

/// The event API's route, as its spans name it.
const ROUTE: &str = "/v1/events";

async fn handle(
    app: &App,
    req: Request,
    span: Option<&mut InboundSpan>,
) -> Result<Response, InboundError> {
    // One snapshot for the whole request (SPEC §12).
    let snapshot = app.snapshot();
    let config = &snapshot.config;
    let (parts, body) = req.into_parts();
    let token = authorize(config, &parts.headers)?;
    let bytes = read_body(body, config.server.max_body).await?;
    let source = format!("api:{}", token.name);
    // One event (the common case) is read straight into its struct; an
    // array is read as values first, so each item's error names its index.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {
            let posted: PostedEvent = serde_json::from_slice(&bytes).map_err(|e| {
                if e.is_data() {
                    InboundError::BadBody(format!("not an event: {e}"))
                } else {
                    not_json(e)
                }
            })?;
            let p = prepare(config, posted, &source)?;
            let idempotency = p
                .client_id
                .then_some((CLIENT_ID_SCOPE, p.event.id.as_str()));
            let outcome = ingest_one(
                app,
                &snapshot,
                &p.event,
                idempotency,
                None,
                p.declared,
                span.as_deref(),
            )
            .await?;
            let (event_id, duplicate) = outcome.parts();
            if let Some(span) = span {
                span.events([(event_id, duplicate)]);
            }
            Ok(super::server::accepted(event_id, duplicate))
        }
        Some(b'[') => {
            let items: Vec<Value> = serde_json::from_slice(&bytes).map_err(not_json)?;
            if items.len() > MAX_BATCH {
                return Err(InboundError::BatchTooLarge {
                    max: MAX_BATCH,
                    got: items.len(),
                });
            }
            let mut prepared = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let p = serde_json::from_value(item)
                    .map_err(|e| InboundError::BadBody(format!("not an event: {e}")))
                    .and_then(|posted| prepare(config, posted, &source))
                    .map_err(|e| at_index(i, e))?;
                prepared.push(p);
            }
            ingest_batch(app, &snapshot, prepared, span).await
        }
        _ => {
            // Tell invalid JSON from JSON of the wrong shape.
            serde_json::from_slice::<Value>(&bytes).map_err(not_json)?;
            Err(InboundError::BadBody(
                "body must be an event object or an array of event objects".into(),
            ))
        }
    }
}

fn not_json(e: serde_json::Error) -> InboundError {
    InboundError::BadBody(format!(
        "body is not valid JSON ({e}): send an event object or an array of them"
    ))
}

/// The token presenting `Authorization: Bearer …`, if it may write events.
fn authorize<'c>(config: &'c Config, headers: &HeaderMap) -> Result<&'c Token, InboundError> {
    let authorization = headers.get(header::AUTHORIZATION);
    Ok(config.authorize_bearer(authorization, Scope::EventsWrite)?)
}

/// SPEC §3: an event's `type` and a client `id` are 1 to 256 printable
/// characters. A control character would end up in logs, metric labels and
/// header values (`X-Hookyard-Event-Type`), where it does harm.
pub fn printable(field: &str, text: &str) -> Result<(), InboundError> {
    let count = text.chars().count();
    if count == 0 || count > MAX_ID_LEN || text.chars().any(char::is_control) {
        return Err(InboundError::BadBody(format!(
            "`{field}` must be 1 to {MAX_ID_LEN} printable characters"
        )));
    }
    Ok(())
}

/// Check one posted event and build it.
fn prepare(config: &Config, posted: PostedEvent, source: &str) -> Result<Prepared, InboundError> {
    printable("type", &posted.event_type)?;
    if let Some(id) = &posted.id {
        printable("id", id)?;
    }
    let timestamp = match &posted.timestamp {
        None => Timestamp::now(),
        Some(text) => text.parse::<Timestamp>().map_err(|_| {
            InboundError::BadBody(format!(
                "`timestamp` `{text}` is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z)"
            ))
        })?,
    };
    let declared = check_catalog(config, &posted.event_type)?;
    let data = posted.data.unwrap_or_else(|| json!({}));
    check_schema(config, &posted.event_type, &data)?;
    let client_id = posted.id.is_some();
    Ok(Prepared {
        event: Event {
            id: posted.id.unwrap_or_else(|| ulid::Ulid::new().to_string()),
            event_type: posted.event_type,
            timestamp,
            source: source.to_owned(),
            data,
        },
        client_id,
        declared,
    })
}

/// Prefix a batch item's error with its index.
fn at_index(i: usize, err: InboundError) -> InboundError {
    match err {
        InboundError::BadBody(m) => InboundError::BadBody(format!("event [{i}]: {m}")),
        InboundError::Schema {
            event_type,
            message,
        } => InboundError::Schema {
            event_type,
            message: format!("event [{i}]: {message}"),
        },
        other => other,
    }
}

async fn ingest_batch(
    app: &App,
    snapshot: &Snapshot,
    prepared: Vec<Prepared>,
    span: Option<&mut InboundSpan>,
) -> Result<Response, InboundError> {
    let mut meta = Vec::with_capacity(prepared.len());
    let mut items: Vec<IngestItem> = Vec::with_capacity(prepared.len());
    for p in prepared {
        let mut jobs =
            crate::route::jobs_for(&snapshot.config, snapshot.api_routes(), &p.event, None);
        super::traced(&mut jobs, span.as_deref());
        let key = p
            .client_id
            .then(|| (CLIENT_ID_SCOPE.to_owned(), p.event.id.clone()));
        meta.push((
            p.event.source.clone(),
            p.event.event_type.clone(),
            p.declared,
        ));
        items.push((p.event, key, jobs));
    }
    let outcomes = app
        .queue()
        .ingest_many(items)
        .await
        .map_err(InboundError::from_queue)?;
    for (outcome, (source, event_type, declared)) in outcomes.iter().zip(&meta) {
        if matches!(outcome, Ingested::Accepted { .. }) {
            app.metrics().event_ingested(source, event_type, *declared);
        }
    }
    if let Some(span) = span {
        span.events(outcomes.iter().map(Ingested::parts));
    }
    // The single-event answers, in input order, as one JSON array.
    let mut body = String::from("[");
    for (n, outcome) in outcomes.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        let (event_id, duplicate) = outcome.parts();
        body.push_str(&super::server::accepted_body(event_id, duplicate));
    }
    body.push(']');
    Ok(super::server::accepted_json(body))
}
