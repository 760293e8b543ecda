//! Event and delivery history, and the write operations on it (SPEC §8):
//! `GET /v1/events`, `GET /v1/events/{id}`, `GET /v1/deliveries`,
//! `GET /v1/deliveries/{id}` (scope `deliveries:read`);
//! `POST /v1/deliveries/{id}/retry`, `POST /v1/events/{id}/replay[?target=]`,
//! `POST /v1/dead-letter/redrive[?target=]` (scope `deliveries:write`).
//!
//! Lists are newest first with cursor pagination: pass the `next_cursor` of
//! one page as `cursor` to get the next; it is absent on the last page.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{ApiError, authorize};
use crate::config::Scope;
use crate::queue::{DeliveryState, HistoryQuery};
use crate::runtime::App;

/// Page size when `limit` is not given, and the largest accepted.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/events/{id}/replay", post(replay))
        .route("/v1/deliveries", get(list_deliveries))
        .route("/v1/deliveries/{id}", get(get_delivery))
        .route("/v1/deliveries/{id}/retry", post(retry))
        .route("/v1/dead-letter/redrive", post(redrive))
}

/// Query string of the list routes (unknown parameters are refused, so a
/// typo does not silently return everything).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub source: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub state: Option<String>,
    pub target: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// Turn list parameters into a queue query; `now` resolves relative `since`.
pub fn history_query(p: ListParams, now: Timestamp) -> Result<HistoryQuery, ApiError> {
    let limit = match p.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "limit {n} is out of range; use 1 to {MAX_LIMIT}"
            )));
        }
    };
    let since = match p.since.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_since(s, now)?),
    };
    let until = match p.until.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_since(s, now)?),
    };
    let state = match p.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_state(s)?),
    };
    Ok(HistoryQuery {
        event_type: p.event_type.filter(|s| !s.is_empty()),
        source: p.source.filter(|s| !s.is_empty()),
        since,
        until,
        state,
        target: p.target.filter(|s| !s.is_empty()),
        limit,
        cursor: p.cursor.filter(|s| !s.is_empty()),
    })
}

/// `since` (and `until`) is an RFC 3339 time (`2026-05-01T10:00:00Z`) or a
/// duration back from now (`15m`, `2h`, `7d`).
pub fn parse_since(s: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let bad = || {
        ApiError::invalid(format!(
            "since={s:?} is neither an RFC 3339 time (2026-05-01T10:00:00Z) nor a duration (15m, 2h, 7d)"
        ))
    };
    let d = crate::config::units::parse_duration(s).map_err(|_| bad())?;
    let span = jiff::SignedDuration::try_from(d).map_err(|_| bad())?;
    now.checked_sub(span).map_err(|_| bad())
}

pub fn parse_state(s: &str) -> Result<DeliveryState, ApiError> {
    match s {
        "pending" => Ok(DeliveryState::Pending),
        "succeeded" => Ok(DeliveryState::Succeeded),
        "dead_letter" => Ok(DeliveryState::DeadLetter),
        "test" => Ok(DeliveryState::Test),
        other => Err(ApiError::invalid(format!(
            "state={other:?} is not a delivery state; use pending, succeeded, dead_letter or test"
        ))),
    }
}

/// The query of a history list, once the caller may read history.
fn list_query(
    app: &App,
    headers: &HeaderMap,
    q: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<HistoryQuery, ApiError> {
    authorize(&app.config(), headers, Scope::DeliveriesRead)?;
    let params = q
        .map(|Query(p)| p)
        .map_err(|e| ApiError::invalid(format!("bad query string: {}", e.body_text())))?;
    history_query(params, Timestamp::now())
}

async fn list_events(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = list_query(&app, &headers, q)?;
    let page = app.queue().events(&query).await.map_err(ApiError::queue)?;
    Ok(Json(
        json!({"events": page.items, "next_cursor": page.next_cursor}),
    ))
}

async fn get_event(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app.config(), &headers, Scope::DeliveriesRead)?;
    match app.queue().event(&id).await.map_err(ApiError::queue)? {
        Some((event, deliveries)) => Ok(Json(json!({"event": event, "deliveries": deliveries}))),
        None => Err(ApiError::not_found(format!("event {id:?}"))),
    }
}

async fn list_deliveries(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = list_query(&app, &headers, q)?;
    let page = app
        .queue()
        .deliveries(&query)
        .await
        .map_err(ApiError::queue)?;
    Ok(Json(
        json!({"deliveries": page.items, "next_cursor": page.next_cursor}),
    ))
}

async fn get_delivery(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app.config(), &headers, Scope::DeliveriesRead)?;
    match app.queue().delivery(&id).await.map_err(ApiError::queue)? {
        Some(d) => Ok(Json(json!({ "delivery": d }))),
        None => Err(ApiError::not_found(format!("delivery {id:?}"))),
    }
}

/// Enqueue a finished delivery again under the same delivery id (its
/// attempts so far stay in history). A pending one is already queued: 409.
async fn retry(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = authorize(&app.config(), &headers, Scope::DeliveriesWrite)?;
    let answer = retry_delivery(&app, &id, &caller.token).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// Retry delivery `id` (see `POST /v1/deliveries/{id}/retry`); `by` names
/// the token for the log. Shared by the API and the console.
pub async fn retry_delivery(app: &App, id: &str, by: &str) -> Result<Value, ApiError> {
    let queue = app.queue();
    let Some(record) = queue.delivery(id).await.map_err(ApiError::queue)? else {
        return Err(ApiError::not_found(format!("delivery {id:?}")));
    };
    if record.state == DeliveryState::Pending {
        return Err(ApiError::conflict(format!(
            "delivery {id:?} is still pending (queued for its next attempt); nothing to retry"
        )));
    }
    let Some(mut job) = queue.job_of(id).await.map_err(ApiError::queue)? else {
        return Err(ApiError::not_found(format!("the job of delivery {id:?}")));
    };
    job.not_before = None;
    queue.enqueue(vec![job]).await.map_err(ApiError::queue)?;
    tracing::info!(delivery = %id, token = %by, "delivery retried");
    Ok(json!({"delivery_id": id, "target": record.target, "state": "pending"}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetParam {
    target: Option<String>,
}

fn target_param(
    q: Result<Query<TargetParam>, axum::extract::rejection::QueryRejection>,
) -> Result<Option<String>, ApiError> {
    q.map(|Query(p)| p.target.filter(|t| !t.is_empty()))
        .map_err(|e| ApiError::invalid(format!("bad query string: {}", e.body_text())))
}

/// New deliveries (new ids) of the same event to every target it matches
/// under the current config, or only to `target` (a `Target::label()`).
async fn replay(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<TargetParam>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&app.config(), &headers, Scope::DeliveriesWrite)?;
    let target = target_param(q)?;
    let answer = replay_event(&app, &id, target.as_deref(), &caller.token).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// Replay event `id` (see `POST /v1/events/{id}/replay`); `by` names the
/// token for the log. Shared by the API and the console.
pub async fn replay_event(
    app: &App,
    id: &str,
    target: Option<&str>,
    by: &str,
) -> Result<Value, ApiError> {
    let snapshot = app.snapshot();
    let config = &snapshot.config;
    let Some((event, _)) = app.queue().event(id).await.map_err(ApiError::queue)? else {
        return Err(ApiError::not_found(format!("event {id:?}")));
    };
    let trigger = event.source.strip_prefix("trigger:");
    let mut jobs = crate::route::jobs_for(config, snapshot.api_routes(), &event, trigger);
    if let Some(t) = target {
        jobs.retain(|j| j.target.label() == t);
        if jobs.is_empty() {
            return Err(ApiError::invalid(format!(
                "target {t:?} does not match event {id:?} under the current config; \
                 use a label from the event's deliveries (subscription/<id> or workflow/<id>/<action>)"
            )));
        }
    }
    let deliveries: Vec<Value> = jobs
        .iter()
        .map(|j| json!({"id": j.delivery_id, "target": j.target.label()}))
        .collect();
    if !jobs.is_empty() {
        app.queue().enqueue(jobs).await.map_err(ApiError::queue)?;
    }
    tracing::info!(event = %id, token = %by, count = deliveries.len(), "event replayed");
    Ok(json!({"event_id": id, "deliveries": deliveries}))
}

/// Dead letters (of one target, or all) back to the queue, attempts reset.
async fn redrive(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<TargetParam>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize(&app.config(), &headers, Scope::DeliveriesWrite)?;
    let target = target_param(q)?;
    Ok(Json(
        redrive_dead_letters(&app, target.as_deref(), &caller.token).await?,
    ))
}

/// Redrive the dead letters of `target`, or all (see
/// `POST /v1/dead-letter/redrive`). Shared by the API and the console.
pub async fn redrive_dead_letters(
    app: &App,
    target: Option<&str>,
    by: &str,
) -> Result<Value, ApiError> {
    let n = app.queue().redrive(target).await.map_err(ApiError::queue)?;
    tracing::info!(target = ?target, token = %by, redriven = n, "dead letters redriven");
    Ok(json!({"redriven": n, "target": target}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn since_takes_a_time_or_a_duration_back() {
        assert_eq!(
            parse_since("2026-05-01T10:00:00Z", now()).unwrap(),
            "2026-05-01T10:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            parse_since("2h", now()).unwrap(),
            "2026-05-01T10:00:00Z".parse::<Timestamp>().unwrap()
        );
        let e = parse_since("yesterday", now()).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn limits_and_states_are_checked() {
        let q = history_query(ListParams::default(), now()).unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        for bad in [0, MAX_LIMIT + 1] {
            let p = ListParams {
                limit: Some(bad),
                ..Default::default()
            };
            assert!(history_query(p, now()).is_err());
        }
        assert_eq!(
            parse_state("dead_letter").unwrap(),
            DeliveryState::DeadLetter
        );
        assert!(parse_state("failed").is_err());
        let p = ListParams {
            state: Some("succeeded".into()),
            target: Some(String::new()),
            ..Default::default()
        };
        let q = history_query(p, now()).unwrap();
        assert_eq!(q.state, Some(DeliveryState::Succeeded));
        assert_eq!(q.target, None);
    }
}
