//! Routing: a new event → its delivery jobs (SPEC §4).
//!
//! Pure functions of the config snapshot, the cached API subscriptions and
//! the event. A workflow contributes a job for its FIRST step when its
//! `when` matches (`Workflow::matches`: event patterns, triggers, not
//! `disabled`; `test` workflows are routed, the worker records instead of
//! sending) and its `if` holds; a YAML subscription when its patterns match
//! and its `if` holds; an API subscription when its patterns match. An `if`
//! that fails to evaluate counts as false and is logged: one broken
//! condition must not refuse the event for every other target.
//!
//! Targets with `ordering: fifo` get `ordering_key = Some(target label)`, so
//! the queue releases their jobs one at a time in order.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{Config, Expr, Ordering};
use crate::queue::{Event, NewJob, Target};
use crate::webhooks::ApiSubscription;

/// Delivery jobs for a new event: the first step of every published or
/// test workflow whose `when` matches and whose `if` holds, and every YAML
/// or API subscription matching the type whose `if` holds. `trigger` is the
/// trigger id the event came through (`None` for the event API).
pub fn jobs_for(
    config: &Config,
    api_subs: &[Arc<ApiSubscription>],
    event: &Event,
    trigger: Option<&str>,
) -> Vec<NewJob> {
    // The context is built at most once, and only if some `if` needs it.
    let mut ctx: Option<minijinja::Value> = None;
    let mut holds = |expr: &Option<Expr>, target: &str| -> bool {
        let Some(expr) = expr else { return true };
        let ctx = ctx.get_or_insert_with(|| minijinja::Value::from_serialize(event_context(event)));
        match expr.is_true(&config.templates, &*ctx) {
            Ok(b) => b,
            Err(err) => {
                tracing::warn!(event_id = %event.id, target, condition = %expr.source, error = %err,
                    "condition failed to evaluate; treated as false");
                false
            }
        }
    };
    let mut jobs = Vec::new();
    for wf in &config.workflows {
        let Some(first) = wf.steps.first() else {
            continue;
        };
        if !wf.matches(&event.event_type, trigger) || !holds(&wf.condition, &wf.id) {
            continue;
        }
        let target = Target::WorkflowStep {
            workflow: wf.id.clone(),
            step: 0,
            action: first.action.id.clone(),
        };
        jobs.push(new_job(event, target, first.action.delivery.ordering));
    }
    for sub in &config.subscriptions {
        if sub.matches(&event.event_type) && holds(&sub.condition, &sub.id) {
            let target = Target::Subscription { id: sub.id.clone() };
            jobs.push(new_job(event, target, sub.delivery.ordering));
        }
    }
    for sub in api_subs {
        if sub.matches(&event.event_type) {
            let target = Target::Subscription { id: sub.id.clone() };
            jobs.push(new_job(event, target, Ordering::Parallel));
        }
    }
    jobs
}

fn new_job(event: &Event, target: Target, ordering: Ordering) -> NewJob {
    NewJob {
        delivery_id: ulid::Ulid::new().to_string(),
        event_id: event.id.clone(),
        ordering_key: (ordering == Ordering::Fifo).then(|| target.label()),
        target,
        steps: BTreeMap::new(),
        not_before: None,
    }
}

/// The template context of SPEC §4: the event's `data` fields at top level
/// (when `data` is an object), plus `event` {id, type, timestamp, source}.
/// `event` wins over a data field of the same name.
pub fn event_context(event: &Event) -> Map<String, Value> {
    let mut ctx = match &event.data {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let mut meta = Map::new();
    meta.insert("id".into(), Value::String(event.id.clone()));
    meta.insert("type".into(), Value::String(event.event_type.clone()));
    meta.insert(
        "timestamp".into(),
        Value::String(event.timestamp.to_string()),
    );
    meta.insert("source".into(), Value::String(event.source.clone()));
    ctx.insert("event".into(), Value::Object(meta));
    ctx
}
