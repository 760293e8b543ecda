//! Two replicas on one Redis queue agree about API-created subscriptions
//! (SPEC §12, "replicas converge"), real daemons both:
//! - one made on replica A is listed and routed to by replica B within 1 s;
//! - events published alternately on A and B are all delivered, none left
//!   pending;
//! - a delete on A stops B's deliveries within 1 s, without a restart;
//! - a change whose announcement was missed is caught by the change counter,
//!   and an announcement alone is acted on at once.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::inbound::{JsonReq, JsonResp};
use crate::support::{
    Receiver, TestDaemon, http, received_event_ids, redis_available, start_daemon_with_env,
};

const TOKEN: &str = "replicas-token-value";

async fn call(
    d: &TestDaemon,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http().request(method, d.url(path)).bearer_auth(TOKEN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The ids replica `d` lists under `/v1/webhooks`.
async fn listed(d: &TestDaemon) -> Vec<String> {
    let (_, list) = call(d, reqwest::Method::GET, "/v1/webhooks", None).await;
    list["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Poll until `done` holds, failing after `within`.
async fn within<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < within, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two replicas of one config on Redis under a fresh prefix.
async fn replicas() -> (TestDaemon, TestDaemon, String) {
    let prefix = format!("replicas-{}", ulid::Ulid::new());
    let yaml = format!(
        r#"
queue: {{ backend: redis, url: "redis://127.0.0.1:6379", prefix: "{prefix}" }}
egress: {{ allow: ["127.0.0.0/8"] }}
secrets: {{ token: {{ env: REPLICAS_TOKEN }} }}
tokens: [ {{ name: app, secret: token, scopes: [events:write, deliveries:read, webhooks:read, webhooks:write] }} ]
"#
    );
    let env = HashMap::from([("REPLICAS_TOKEN".to_owned(), TOKEN.to_owned())]);
    let a = start_daemon_with_env(&yaml, env.clone()).await;
    let b = start_daemon_with_env(&yaml, env).await;
    (a, b, prefix)
}

async fn publish(d: &TestDaemon, i: usize) -> String {
    let (status, body) = call(
        d,
        reqwest::Method::POST,
        "/v1/events",
        Some(json!({"type": "order.created", "data": {"i": i}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

/// The states of event `id`'s deliveries, as replica `d` reports them.
async fn delivery_states(d: &TestDaemon, id: &str) -> Vec<String> {
    let (status, body) = call(d, reqwest::Method::GET, &format!("/v1/events/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_made_on_one_replica_is_served_by_the_other() {
    if !redis_available() {
        return;
    }
    let rx = Receiver::start().await;
    let (a, b, _) = replicas().await;

    let (status, created) = call(
        &a,
        reqwest::Method::POST,
        "/v1/webhooks",
        Some(json!({"id": "shared", "url": rx.url("/in"), "events": ["*"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    within(
        Duration::from_secs(1),
        "B lists A's subscription",
        || async { listed(&b).await == ["shared"] },
    )
    .await;

    // Published alternately on A and B, delivered to the subscription A
    // made: all of them, whichever replica's worker leases the job.
    let mut ids = Vec::new();
    for i in 0..10 {
        let replica = if i % 2 == 0 { &a } else { &b };
        ids.push(publish(replica, i).await);
    }
    rx.wait_for(10, Duration::from_secs(10)).await;
    for id in &ids {
        within(
            Duration::from_secs(5),
            "every delivery succeeded",
            || async { delivery_states(&b, id).await == ["succeeded"] },
        )
        .await;
    }
    assert_eq!(received_event_ids(&rx).len(), 10);

    let (status, body) = call(&a, reqwest::Method::DELETE, "/v1/webhooks/shared", None).await;
    assert!((200..300).contains(&status), "{status} {body}");
    within(
        Duration::from_secs(1),
        "B drops the deleted subscription",
        || async { listed(&b).await.is_empty() },
    )
    .await;
    publish(&b, 99).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rx.received().len(),
        10,
        "B delivered to a deleted subscription"
    );
}

/// Write a subscription straight into the store, as another replica would,
/// moving the change counter (`count`) and announcing it (`announce`) or not.
async fn store_directly(prefix: &str, id: &str, url: &str, count: bool, announce: bool) {
    let sub = hookyard::model::ApiSubscription {
        id: id.to_owned(),
        url: url.parse().unwrap(),
        events: vec!["*".to_owned()],
        secrets: vec![],
        headers: vec![],
        created_by: "another replica".to_owned(),
        created_at: jiff::Timestamp::now(),
    };
    let doc = serde_json::to_string(&sub).unwrap();
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    pipe.cmd("HSET")
        .arg(format!("{prefix}:subs"))
        .arg(id)
        .arg(doc);
    if count {
        pipe.cmd("INCR").arg(format!("{prefix}:subsver"));
    }
    if announce {
        pipe.cmd("PUBLISH")
            .arg(format!("{prefix}:subs-changed"))
            .arg(id);
    }
    let _: redis::Value = pipe.query_async(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_announcement_is_caught_by_the_change_counter() {
    if !redis_available() {
        return;
    }
    let (a, _b, prefix) = replicas().await;
    // Counted but never announced (the announcement was lost): the check
    // each second still finds it.
    store_directly(&prefix, "quiet", "http://127.0.0.1:9/in", true, false).await;
    within(
        Duration::from_millis(2500),
        "A finds the unannounced subscription",
        || async { listed(&a).await == ["quiet"] },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_is_acted_on_without_waiting_for_the_counter() {
    if !redis_available() {
        return;
    }
    let (a, _b, prefix) = replicas().await;
    // Let A's follower settle on the counter (unchanged from here on).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Announced but not counted: only the announcement can tell A. The
    // counter never moves, so without announcements A would never see it.
    store_directly(&prefix, "loud", "http://127.0.0.1:9/in", false, true).await;
    within(
        Duration::from_secs(1),
        "A hears the announced subscription",
        || async { listed(&a).await == ["loud"] },
    )
    .await;
    // And it stays (no counter check takes it away).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(listed(&a).await, ["loud"]);
}
