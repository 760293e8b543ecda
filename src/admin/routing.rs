//! Stand-in for `crate::route::jobs_for` (owned by the inbound work, landing
//! in parallel) so replay compiles and works before it is merged. Same
//! signature and behaviour: the first step of every published or test
//! workflow whose `when` matches and whose `if` holds, and every YAML or API
//! subscription matching the type whose `if` holds. When `src/route.rs` is
//! on main, delete this file and call `crate::route::jobs_for` instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{Config, Expr, Ordering};
use crate::queue::{Event, NewJob, Target};
use crate::webhooks::ApiSubscription;

/// Delivery jobs (new delivery ids) for `event`.
pub fn jobs_for(
    config: &Config,
    api_subs: &[Arc<ApiSubscription>],
    event: &Event,
    trigger: Option<&str>,
) -> Vec<NewJob> {
    let ctx = event_context(event);
    let holds = |cond: &Option<Expr>, what: &str| match cond {
        None => true,
        Some(e) => match e.is_true(&config.templates, &ctx) {
            Ok(b) => b,
            Err(err) => {
                tracing::warn!("the `if` of {what} failed for event {}: {err}", event.id);
                false
            }
        },
    };
    let job = |target: Target, ordering: Ordering| {
        let ordering_key = (ordering == Ordering::Fifo).then(|| target.label());
        NewJob {
            delivery_id: ulid::Ulid::new().to_string(),
            event_id: event.id.clone(),
            target,
            steps: BTreeMap::new(),
            ordering_key,
            not_before: None,
        }
    };
    let mut jobs = Vec::new();
    for wf in &config.workflows {
        if !wf.matches(&event.event_type, trigger) || !holds(&wf.condition, &wf.id) {
            continue;
        }
        if let Some(first) = wf.steps.first() {
            let target = Target::WorkflowStep {
                workflow: wf.id.clone(),
                step: 0,
                action: first.action.id.clone(),
            };
            jobs.push(job(target, first.action.delivery.ordering));
        }
    }
    for sub in &config.subscriptions {
        if sub.matches(&event.event_type) && holds(&sub.condition, &sub.id) {
            let target = Target::Subscription { id: sub.id.clone() };
            jobs.push(job(target, sub.delivery.ordering));
        }
    }
    for sub in api_subs {
        if sub.matches(&event.event_type) {
            let target = Target::Subscription { id: sub.id.clone() };
            jobs.push(job(target, Ordering::Parallel));
        }
    }
    jobs
}

/// The template context of SPEC §4: `data` fields at top level, plus `event`.
pub fn event_context(event: &Event) -> serde_json::Map<String, Value> {
    let mut ctx = match &event.data {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    ctx.insert(
        "event".to_owned(),
        serde_json::json!({
            "id": event.id,
            "type": event.event_type,
            "timestamp": event.timestamp.to_string(),
            "source": event.source,
        }),
    );
    ctx
}
