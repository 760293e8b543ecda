//! Inbound HTTP: triggers (`POST /hooks/{trigger}`: verify → map) and the
//! event API (`POST /v1/events`), both ending in one durable enqueue.
//!
//! Files, in the order a request meets them:
//! - [`server`]: the `/hooks/*` handler (stages listed there);
//! - [`verify`]: signature presets, IP allow lists, bearer/basic
//!   (`Unverified` → `Verified`); [`trigger`] adapts the config to it and
//!   finds the event type and idempotency key;
//! - per-trigger rate limits: [`crate::model::rate_limits`]; [`handshake`]: Slack, Meta,
//!   Zoom handshakes;
//! - [`map`]: body parsing and mappings; [`api`]: `/v1/events`;
//! - [`errors`]: the error enum and its JSON answer.
//!
//! Both paths share the tail here: catalog and schema checks, then
//! [`crate::route::jobs_for`] and ONE `queue.ingest` with the event and all
//! its jobs; 2xx only after it returned Ok.
//!
//! With traces on (SPEC §15) each request has a server span
//! ([`crate::telemetry`]), and its `traceparent` is stored with every job.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{any, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use crate::config::Config;
use crate::queue::NewJob;
use crate::queue::{Event, Ingested};
use crate::runtime::{App, Snapshot};
use crate::telemetry::InboundSpan;

pub mod api;
pub mod capture;
pub mod errors;
pub mod handshake;
pub mod map;
pub mod server;
pub mod trigger;
pub mod verify;

use crate::model::rate_limits::RateLimits;
use errors::InboundError;

/// State of the inbound handlers.
pub struct Inbound {
    app: App,
    /// Per-trigger rate limits (process-local).
    limits: RateLimits,
}

/// `/hooks/*` routes: one handler for every trigger path.
pub fn routes(app: &App) -> Router {
    let state = Arc::new(Inbound {
        app: app.clone(),
        limits: RateLimits::new(),
    });
    Router::new()
        .route("/hooks/{*path}", any(server::hook))
        .with_state(state)
}

/// The event API: `POST /v1/events`.
pub fn api_routes(app: &App) -> Router {
    Router::new()
        .route("/v1/events", post(api::post_events))
        .with_state(app.clone())
}

/// Read a body of at most `limit` bytes (413 beyond). The limit comes from
/// the current config, so it is applied here rather than as a layer.
pub async fn read_body(body: Body, limit: u64) -> Result<Bytes, InboundError> {
    let max = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(InboundError::BodyTooLarge { limit })
        }
        Err(err) => match body_timed_out(&*err) {
            Some(t) => Err(InboundError::BodyTimeout { after: t.after }),
            None => Err(InboundError::BadBody(format!(
                "the request body could not be read: {err}"
            ))),
        },
    }
}

/// The listener's body deadline, found under axum's and `Limited`'s
/// wrappers of the body error.
fn body_timed_out<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a crate::serve::answer::BodyTimedOut> {
    std::iter::successors(Some(err), |e| e.source())
        .find_map(|e| e.downcast_ref::<crate::serve::answer::BodyTimedOut>())
}

/// Whether `event_type` may be accepted (`event_catalog: strict` → 422 when
/// undeclared). Ok(true) when the type is declared (the metric's label).
pub fn check_catalog(config: &Config, event_type: &str) -> Result<bool, InboundError> {
    if !config.accepts_event_type(event_type) {
        return Err(InboundError::UndeclaredType(event_type.to_owned()));
    }
    Ok(config.event_types.contains_key(event_type))
}

/// Validate `data` against the event type's JSON Schema, if it has one.
pub fn check_schema(config: &Config, event_type: &str, data: &Value) -> Result<(), InboundError> {
    let Some(schema) = config
        .event_types
        .get(event_type)
        .and_then(|t| t.schema.as_ref())
    else {
        return Ok(());
    };
    schema.validate(data).map_err(|err| {
        let location = err.instance_path().to_string();
        let at = if location.is_empty() {
            String::new()
        } else {
            format!(" at `{location}`")
        };
        InboundError::Schema {
            event_type: event_type.to_owned(),
            message: format!("{err}{at}"),
        }
    })
}

/// Route `event` and write it with its jobs in one `queue.ingest`; count it
/// when accepted. Queue errors become 503 (nothing was stored); a trigger
/// answers them with its `on_unavailable` status instead.
pub async fn ingest_one(
    app: &App,
    snapshot: &Snapshot,
    event: &Event,
    idempotency: Option<(&str, &str)>,
    trigger: Option<&str>,
    declared: bool,
    span: Option<&InboundSpan>,
) -> Result<Ingested, InboundError> {
    let mut jobs = crate::route::jobs_for(&snapshot.config, snapshot.api_routes(), event, trigger);
    traced(&mut jobs, span);
    let outcome = app
        .queue()
        .ingest(event, idempotency, jobs)
        .await
        .map_err(InboundError::from_queue)?;
    if matches!(outcome, Ingested::Accepted { .. }) {
        app.metrics()
            .event_ingested(&event.source, &event.event_type, declared);
    }
    Ok(outcome)
}

/// Store the inbound span's `traceparent` with each job (traces on only),
/// so every attempt's span is its child.
pub fn traced(jobs: &mut [NewJob], span: Option<&InboundSpan>) {
    let Some(traceparent) = span.and_then(InboundSpan::traceparent) else {
        return;
    };
    for job in jobs {
        job.traceparent = Some(traceparent.clone());
    }
}
