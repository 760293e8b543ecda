//! History, retry, replay and redrive over HTTP against a real daemon on the
//! Redis backend. The history is written first through our own
//! `Queue::open_redis` handle on the same key prefix (an event API may not
//! exist yet, and dead letters need a worker's verdict): events, a
//! dead-lettered delivery and pending ones, all for paused subscriptions so
//! a running delivery worker leaves them where they are.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::time::Duration;

use hookyard::queue::{Attempt, Event, NewJob, Queue, StoreSettings, Target};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::admin_support::*;
use crate::support::{TestDaemon, http, redis_available};

fn settings() -> StoreSettings {
    StoreSettings {
        lease: Duration::from_secs(30),
        history_retention: Duration::from_secs(365 * 24 * 3600 * 20),
        history_max_events: 100_000,
        idempotency_window: Duration::from_secs(3600),
        consumer_name: format!("admin-test-{}", ulid::Ulid::new()),
    }
}

fn event(id: &str, ty: &str, at: Timestamp) -> Event {
    Event {
        id: id.to_owned(),
        event_type: ty.to_owned(),
        timestamp: at,
        source: "api:test".to_owned(),
        data: json!({"n": 1}),
    }
}

fn job(delivery: &str, event: &str, sub: &str) -> NewJob {
    NewJob {
        delivery_id: delivery.to_owned(),
        event_id: event.to_owned(),
        target: Target::Subscription { id: sub.to_owned() },
        steps: BTreeMap::new(),
        ordering_key: None,
        not_before: None,
        traceparent: None,
        fifo_later: false,
    }
}

/// Seed: e_old (order.created, 2020), e_order (order.created, now) with
/// d_dead and d_dead2 (dead-lettered, http_410) and d_wait (pending) for
/// `held`,
/// e_contact (contact.created, now) with d_contact (pending) for `other`.
async fn seed(prefix: &str) {
    let q = Queue::open_redis("redis://127.0.0.1:6379", prefix, settings())
        .await
        .unwrap();
    let now = Timestamp::now();
    let old: Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
    q.ingest(&event("e_old", "order.created", old), None, vec![])
        .await
        .unwrap();
    q.ingest(
        &event("e_order", "order.created", now),
        None,
        vec![
            job("d_dead", "e_order", "held"),
            job("d_dead2", "e_order", "held"),
            job("d_wait", "e_order", "held"),
        ],
    )
    .await
    .unwrap();
    q.ingest(
        &event("e_contact", "contact.created", now),
        None,
        vec![job("d_contact", "e_contact", "other")],
    )
    .await
    .unwrap();
    let leased = q.lease(10, Duration::from_millis(500)).await.unwrap();
    assert_eq!(leased.len(), 4, "{leased:?}");
    for l in leased {
        if l.job.delivery_id.starts_with("d_dead") {
            let attempt = Attempt {
                attempt: 1,
                at: Timestamp::now(),
                request: json!({"method": "POST", "url": "http://127.0.0.1:9/held", "headers": {}}),
                response: Some(json!({"status": 410, "headers": {}, "body": "gone"})),
                duration_ms: 3,
                error: None,
            };
            q.dead_letter(&l, Some(attempt), "http_410").await.unwrap();
        } else {
            q.defer(&l, Timestamp::now(), None).await.unwrap();
        }
    }
}

async fn start_on(prefix: &str) -> TestDaemon {
    let body = format!(
        "queue: {{ backend: redis, url: \"redis://127.0.0.1:6379\", prefix: \"{prefix}\" }}\nsubscriptions:\n{}{}",
        paused_sub("held", "order.*"),
        paused_sub("other", "contact.*"),
    );
    start(&body, "reload: { watch: false }").await
}

async fn post(d: &TestDaemon, path: &str) -> (u16, Value) {
    let r = authed(http().post(d.url(path)), &token("history_writer"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), body_json(r).await)
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn events_and_deliveries_are_listed_filtered_and_paged() {
    if !redis_available() {
        return;
    }
    let prefix = format!("hy-admin-hist-{}", ulid::Ulid::new());
    let _keys = crate::support::RedisKeys::shared(&prefix);
    seed(&prefix).await;
    let d = start_on(&prefix).await;

    let (s, all) = get_json(&d, "/v1/events").await;
    assert_eq!(s, 200, "{all}");
    let mut every = ids(&all, "events");
    every.sort();
    assert_eq!(every, ["e_contact", "e_old", "e_order"]);

    let (_, orders) = get_json(&d, "/v1/events?type=order.created").await;
    let mut o = ids(&orders, "events");
    o.sort();
    assert_eq!(o, ["e_old", "e_order"]);
    let (_, recent) = get_json(&d, "/v1/events?since=1h").await;
    let mut r = ids(&recent, "events");
    r.sort();
    assert_eq!(r, ["e_contact", "e_order"]);
    assert_eq!(get_json(&d, "/v1/events?since=soon").await.0, 422);
    assert_eq!(get_json(&d, "/v1/events?limit=0").await.0, 422);

    // Pages of one, following next_cursor, visit every event once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/v1/events?limit=1&cursor={c}"),
            None => "/v1/events?limit=1".to_owned(),
        };
        let (s, page) = get_json(&d, &path).await;
        assert_eq!(s, 200, "{page}");
        seen.extend(ids(&page, "events"));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["e_contact", "e_old", "e_order"]);

    let (s, one) = get_json(&d, "/v1/events/e_order").await;
    assert_eq!(s, 200);
    assert_eq!(one["event"]["type"], "order.created");
    assert_eq!(one["event"]["data"], json!({"n": 1}));
    let dead = one["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "d_dead")
        .unwrap();
    assert_eq!(dead["target"], "subscription/held");
    assert_eq!(dead["state"], "dead_letter");
    assert_eq!(dead["reason"], "http_410");
    assert_eq!(dead["attempts"][0]["response"]["status"], 410);
    assert_eq!(get_json(&d, "/v1/events/nope").await.0, 404);

    let (_, dl) = get_json(&d, "/v1/deliveries?state=dead_letter").await;
    let mut dead = ids(&dl, "deliveries");
    dead.sort();
    assert_eq!(dead, ["d_dead", "d_dead2"]);
    let (_, other) = get_json(&d, "/v1/deliveries?target=subscription/other").await;
    assert_eq!(ids(&other, "deliveries"), ["d_contact"]);
    let (s, one) = get_json(&d, "/v1/deliveries/d_wait").await;
    assert_eq!(s, 200);
    assert_eq!(one["delivery"]["state"], "pending");
    assert_eq!(get_json(&d, "/v1/deliveries?state=failed").await.0, 422);
    d.stop().await;
}

#[tokio::test]
async fn retry_replay_and_redrive_enqueue_again() {
    if !redis_available() {
        return;
    }
    let prefix = format!("hy-admin-ops-{}", ulid::Ulid::new());
    let _keys = crate::support::RedisKeys::shared(&prefix);
    seed(&prefix).await;
    let d = start_on(&prefix).await;

    // Retry: a dead letter goes back to pending under the same id; a
    // pending delivery is already queued.
    let (s, body) = post(&d, "/v1/deliveries/d_dead/retry").await;
    assert_eq!(s, 202, "{body}");
    let (_, one) = get_json(&d, "/v1/deliveries/d_dead").await;
    assert_eq!(one["delivery"]["state"], "pending", "{one}");
    assert_eq!(one["delivery"]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(post(&d, "/v1/deliveries/d_wait/retry").await.0, 409);
    assert_eq!(post(&d, "/v1/deliveries/nope/retry").await.0, 404);

    // Replay: new delivery ids for every matching target, or one target.
    let (s, replay) = post(&d, "/v1/events/e_order/replay").await;
    assert_eq!(s, 202, "{replay}");
    let new = ids(&replay, "deliveries");
    assert_eq!(new.len(), 1, "{replay}");
    assert_eq!(replay["deliveries"][0]["target"], "subscription/held");
    assert!(!["d_dead", "d_wait"].contains(&new[0].as_str()));
    let (_, ev) = get_json(&d, "/v1/events/e_order").await;
    assert!(ids(&ev, "deliveries").contains(&new[0]), "{ev}");
    let (s, one) = post(&d, "/v1/events/e_contact/replay?target=subscription/other").await;
    assert_eq!(s, 202, "{one}");
    assert_eq!(ids(&one, "deliveries").len(), 1);
    let (s, e) = post(&d, "/v1/events/e_contact/replay?target=subscription/held").await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(post(&d, "/v1/events/nope/replay").await.0, 404);

    // Redrive: dead letters of a target back to the queue.
    let (s, body) = post(&d, "/v1/dead-letter/redrive?target=subscription/other").await;
    assert_eq!((s, &body["redriven"]), (200, &json!(0)), "{body}");
    let (s, body) = post(&d, "/v1/dead-letter/redrive?target=subscription/held").await;
    assert_eq!((s, &body["redriven"]), (200, &json!(1)), "{body}");
    let (_, one) = get_json(&d, "/v1/deliveries/d_dead2").await;
    assert_eq!(one["delivery"]["state"], "pending", "{one}");
    d.stop().await;
}
