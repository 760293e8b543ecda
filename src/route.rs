//! Routing: a new event → its delivery jobs (SPEC §4).
//!
//! Pure functions of the snapshot (the config and the API subscriptions
//! with their patterns) and the event. A workflow contributes a job for its FIRST step when its
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

use serde_json::{Map, Value};

use crate::config::{Config, Expr, Ordering};
use crate::model::{Event, EventPattern, NewJob, Target};

/// Delivery jobs for a new event: the first step of every published or
/// test workflow whose `when` matches and whose `if` holds, and every YAML
/// or API subscription matching the type whose `if` holds. `trigger` is the
/// trigger id the event came through (`None` for the event API).
pub fn jobs_for<'a>(
    config: &Config,
    api_subs: impl IntoIterator<Item = (&'a str, &'a [EventPattern])>,
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
        let mut job = new_job(event, target, first.action.delivery.ordering);
        job.fifo_later = wf.steps[1..]
            .iter()
            .any(|s| s.action.delivery.ordering == Ordering::Fifo);
        jobs.push(job);
    }
    for sub in &config.subscriptions {
        if sub.matches(&event.event_type) && holds(&sub.condition, &sub.id) {
            let target = Target::Subscription { id: sub.id.clone() };
            jobs.push(new_job(event, target, sub.delivery.ordering));
        }
    }
    for (id, patterns) in api_subs {
        if patterns.iter().any(|p| p.matches(&event.event_type)) {
            let target = Target::Subscription { id: id.to_owned() };
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
        traceparent: None,
        fifo_later: false,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;
    use crate::config::{self, LoadOptions};
    use jiff::Timestamp;
    use serde_json::json;

    fn config(yaml: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        config::load(
            &path,
            LoadOptions {
                no_env: false,
                env: Some(Default::default()),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    const YAML: &str = r#"
triggers:
  - { id: shop, verify: none, event: order.created }
actions:
  - { id: a1, url: "http://127.0.0.1:9/a1" }
  - { id: a2, url: "http://127.0.0.1:9/a2", ordering: fifo }
workflows:
  - id: big
    when: { event: order.created, if: "order.total > 100" }
    steps: [ { action: a1 }, { action: a2 } ]
  - id: fifo-first
    mode: test
    when: { event: "order.*" }
    steps: [ { action: a2 } ]
  - id: off
    mode: disabled
    when: { event: "*" }
    steps: [ { action: a1 } ]
  - id: from-shop
    when: { trigger: shop }
    steps: [ { action: a1 } ]
  - id: broken-if
    when: { event: order.created, if: "order.total + 'x' > 1" }
    steps: [ { action: a1 } ]
subscriptions:
  - { id: all-orders, url: "http://127.0.0.1:9/s", events: ["order.*"] }
  - { id: paid, url: "http://127.0.0.1:9/p", events: ["*"], if: "event.source == 'api:app'", ordering: fifo }
"#;

    fn event(ty: &str, data: Value, source: &str) -> Event {
        Event {
            id: "01HZZZZZZZZZZZZZZZZZZZZZZZ".into(),
            event_type: ty.into(),
            timestamp: Timestamp::from_second(1_700_000_000).unwrap(),
            source: source.into(),
            data,
        }
    }

    fn labels(jobs: &[NewJob]) -> Vec<String> {
        jobs.iter().map(|j| j.target.label()).collect()
    }

    #[test]
    fn workflows_and_subscriptions_match_with_conditions() {
        let c = config(YAML);
        let e = event(
            "order.created",
            json!({"order": {"total": 150}}),
            "trigger:shop",
        );
        let jobs = jobs_for(&c, [], &e, Some("shop"));
        assert_eq!(
            labels(&jobs),
            [
                "workflow/big/a1",
                "workflow/fifo-first/a2",
                "workflow/from-shop/a1",
                "subscription/all-orders"
            ]
        );
        // First step only, index 0, event id carried, fresh delivery ids.
        assert!(matches!(
            &jobs[0].target,
            Target::WorkflowStep { step: 0, .. }
        ));
        assert!(
            jobs.iter()
                .all(|j| j.event_id == e.id && j.steps.is_empty())
        );
        assert_ne!(jobs[0].delivery_id, jobs[1].delivery_id);

        // `broken-if` really fails to evaluate, and was left out (not fatal).
        let broken = c.workflow("broken-if").unwrap().condition.as_ref().unwrap();
        let ctx = minijinja::Value::from_serialize(event_context(&e));
        assert!(broken.is_true(&c.templates, &ctx).is_err());

        // `if` false, other trigger, API source.
        let e = event("order.created", json!({"order": {"total": 5}}), "api:app");
        let jobs = jobs_for(&c, [], &e, None);
        assert_eq!(
            labels(&jobs),
            [
                "workflow/fifo-first/a2",
                "subscription/all-orders",
                "subscription/paid"
            ]
        );
    }

    #[test]
    fn fifo_targets_get_their_label_as_ordering_key() {
        let c = config(YAML);
        let e = event("order.created", json!({}), "api:app");
        let jobs = jobs_for(&c, [], &e, None);
        for j in &jobs {
            let fifo = matches!(
                j.target.label().as_str(),
                "workflow/fifo-first/a2" | "subscription/paid"
            );
            assert_eq!(j.ordering_key.is_some(), fifo, "{}", j.target.label());
            if fifo {
                assert_eq!(j.ordering_key.as_deref(), Some(j.target.label().as_str()));
            }
        }
    }

    #[test]
    fn api_subscriptions_match_by_pattern() {
        let c = config("subscriptions: []\n");
        let p = [EventPattern::parse("pay.*")];
        let x = [EventPattern::parse("other")];
        let subs = [("p", &p[..]), ("x", &x[..])];
        let jobs = jobs_for(&c, subs, &event("pay.done", json!({}), "api:a"), None);
        assert_eq!(labels(&jobs), ["subscription/p"]);
        assert_eq!(jobs[0].ordering_key, None);
    }

    #[test]
    fn event_context_puts_data_on_top_and_event_beside() {
        let e = event("t", json!({"a": 1, "event": "shadowed"}), "trigger:x");
        let ctx = event_context(&e);
        assert_eq!(ctx["a"], json!(1));
        assert_eq!(
            ctx["event"],
            json!({"id": e.id, "type": "t", "timestamp": "2023-11-14T22:13:20Z", "source": "trigger:x"})
        );
        let ctx = event_context(&event("t", json!([1]), "s"));
        assert_eq!(ctx.len(), 1);
    }
}
