//! `GET /v1/stats` (scope `deliveries:read`): the numbers of the console's
//! Overview (SPEC §13), from the one function both serve, [`overview`].
//!
//! Per target: pending, in flight and dead-lettered now (the queue's
//! counters, `Queue::stats`), attempts, success rate and p95 attempt
//! latency over the last hour (the per-minute counters every replica
//! writes, [`crate::model::tally`], read with one `Queue::counts`), the
//! circuit breaker as this process's workers see it (circuits are per
//! replica, SPEC §5), and whether the config pauses it. Per trigger:
//! requests and rejections by error code over the last hour. Nothing here
//! reads history.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::auth::{ApiError, authorize};
use crate::config::Scope;
use crate::model::Target;
use crate::model::tally::{TargetWindow, TriggerWindow, WINDOW_MINUTES, summarize};
use crate::queue::{QueueError, QueueStats};
use crate::runtime::counters::now_minute;
use crate::runtime::{App, Snapshot};

pub fn routes() -> Router<App> {
    Router::new().route("/v1/stats", get(stats))
}

/// The Overview's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// Minutes the per-hour numbers cover (the current one included).
    pub window_minutes: i64,
    pub queue: QueueView,
    pub targets: Vec<TargetView>,
    pub triggers: Vec<TriggerView>,
}

/// The whole queue now.
#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    pub ready: u64,
    pub delayed: u64,
    pub in_flight: u64,
    pub dead_letter: u64,
    pub oldest_age_seconds: f64,
}

/// One target (a `Target::label()`).
#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub target: String,
    /// False for a target no longer configured that still has jobs or
    /// counts.
    pub configured: bool,
    pub pending: u64,
    pub in_flight: u64,
    pub dead_letter: u64,
    /// Attempts sent over the window, and how many delivered or failed.
    pub attempts: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// `succeeded / attempts`; null without attempts.
    pub success_rate: Option<f64>,
    /// At least 95% of the window's attempts took at most this long (the
    /// bound of a latency bucket); null without attempts, or when more
    /// than 5% took over 60 s.
    pub p95_ms: Option<u64>,
    /// `open` or `closed`: this process's circuit breaker.
    pub circuit: &'static str,
    pub paused: bool,
}

/// One trigger.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerView {
    pub trigger: String,
    pub configured: bool,
    /// Its URL path (a URL token shown as `…`); empty when not configured.
    pub path: String,
    /// Requests answered over the window, refused ones included.
    pub requests: u64,
    pub rejected: u64,
    /// Refused requests by the JSON error `code` they were answered with.
    pub rejections: BTreeMap<String, u64>,
}

async fn stats(State(app): State<App>, headers: HeaderMap) -> Result<Json<Overview>, ApiError> {
    let snapshot = app.snapshot();
    authorize(&snapshot.config, &headers, Scope::DeliveriesRead)?;
    overview(&app, &snapshot)
        .await
        .map(Json)
        .map_err(ApiError::queue)
}

/// The Overview under `snapshot`'s config: two queue reads (the queue's
/// counters and the last hour's per-minute counters), side by side.
pub async fn overview(app: &App, snapshot: &Snapshot) -> Result<Overview, QueueError> {
    let now = now_minute();
    let since = now - (WINDOW_MINUTES - 1);
    let queue = app.queue();
    let (stats, rows) = tokio::join!(queue.stats(), queue.counts(since));
    let (stats, rows) = (stats?, rows?);
    let window = summarize(&rows, since, now);

    // Configured targets in config order, then any other label that has
    // jobs or counts (a target removed from the config).
    let config = &snapshot.config;
    let mut configured: Vec<(String, bool)> = Vec::new();
    for s in &config.subscriptions {
        let label = Target::Subscription { id: s.id.clone() }.label();
        configured.push((label, s.delivery.paused));
    }
    for w in &config.workflows {
        for (i, step) in w.steps.iter().enumerate() {
            let label = Target::WorkflowStep {
                workflow: w.id.clone(),
                step: i,
                action: step.action.id.clone(),
            }
            .label();
            configured.push((label, step.action.delivery.paused));
        }
    }
    for s in snapshot.api_subscriptions() {
        configured.push((Target::Subscription { id: s.id.clone() }.label(), false));
    }
    let known: BTreeSet<&str> = configured.iter().map(|(l, _)| l.as_str()).collect();
    let others: BTreeSet<String> = stats
        .pending_by_target
        .keys()
        .chain(stats.in_flight_by_target.keys())
        .chain(stats.dead_by_target.keys())
        .chain(window.targets.keys())
        .filter(|l| !known.contains(l.as_str()))
        .cloned()
        .collect();
    let mut targets: Vec<TargetView> = configured
        .iter()
        .map(|(label, paused)| {
            target_view(app, &stats, window.targets.get(label), label, true, *paused)
        })
        .collect();
    targets.extend(
        others
            .iter()
            .map(|label| target_view(app, &stats, window.targets.get(label), label, false, false)),
    );

    let mut triggers: Vec<TriggerView> = config
        .triggers
        .iter()
        .map(|t| trigger_view(&t.id, true, t.shown_path(), window.triggers.get(&t.id)))
        .collect();
    for (id, w) in &window.triggers {
        if config.triggers.iter().all(|t| t.id != *id) {
            triggers.push(trigger_view(id, false, String::new(), Some(w)));
        }
    }
    Ok(Overview {
        window_minutes: WINDOW_MINUTES,
        queue: QueueView {
            ready: stats.ready,
            delayed: stats.delayed,
            in_flight: stats.in_flight,
            dead_letter: stats.dead_letter,
            oldest_age_seconds: stats.oldest_age_seconds,
        },
        targets,
        triggers,
    })
}

fn target_view(
    app: &App,
    stats: &QueueStats,
    window: Option<&TargetWindow>,
    label: &str,
    configured: bool,
    paused: bool,
) -> TargetView {
    let now = |map: &BTreeMap<String, u64>| map.get(label).copied().unwrap_or(0);
    let empty = TargetWindow::default();
    let w = window.unwrap_or(&empty);
    TargetView {
        target: label.to_owned(),
        configured,
        pending: now(&stats.pending_by_target),
        in_flight: now(&stats.in_flight_by_target),
        dead_letter: now(&stats.dead_by_target),
        attempts: w.attempts(),
        succeeded: w.ok,
        failed: w.failed,
        success_rate: w.success_rate(),
        p95_ms: w.p95_ms(),
        circuit: if app.metrics().circuit_open(label) {
            "open"
        } else {
            "closed"
        },
        paused,
    }
}

fn trigger_view(
    id: &str,
    configured: bool,
    path: String,
    window: Option<&TriggerWindow>,
) -> TriggerView {
    let (requests, rejections) = match window {
        Some(w) => (w.requests, w.rejections.clone()),
        None => (0, BTreeMap::new()),
    };
    TriggerView {
        trigger: id.to_owned(),
        configured,
        path,
        requests,
        rejected: rejections.values().sum(),
        rejections,
    }
}
