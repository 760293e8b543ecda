//! Two replicas on one Redis queue agree about API-created subscriptions
//! (SPEC §12, "replicas converge"): one made on replica A is listed and
//! delivered to by replica B within about a second, and a delete on A stops
//! B's deliveries as fast, without a restart.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::inbound::{JsonReq, JsonResp};
use crate::support::{Receiver, TestDaemon, http, redis_available, start_daemon_with_env};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_made_on_one_replica_is_served_by_the_other() {
    if !redis_available() {
        return;
    }
    let rx = Receiver::start().await;
    let prefix = format!("replicas-{}", ulid::Ulid::new());
    let yaml = format!(
        r#"
queue: {{ backend: redis, url: "redis://127.0.0.1:6379", prefix: "{prefix}" }}
egress: {{ allow: ["127.0.0.0/8"] }}
secrets: {{ token: {{ env: REPLICAS_TOKEN }} }}
tokens: [ {{ name: app, secret: token, scopes: [events:write, webhooks:read, webhooks:write] }} ]
"#
    );
    let env = HashMap::from([("REPLICAS_TOKEN".to_owned(), TOKEN.to_owned())]);
    let a = start_daemon_with_env(&yaml, env.clone()).await;
    let b = start_daemon_with_env(&yaml, env).await;

    let (status, created) = call(
        &a,
        reqwest::Method::POST,
        "/v1/webhooks",
        Some(json!({"id": "shared", "url": rx.url("/in"), "events": ["*"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    within(
        Duration::from_secs(2),
        "B lists A's subscription",
        || async { listed(&b).await == ["shared"] },
    )
    .await;

    // Published on B, delivered to the subscription A made: all of them,
    // whichever replica's worker leases the job.
    for i in 0..5 {
        let (status, body) = call(
            &b,
            reqwest::Method::POST,
            "/v1/events",
            Some(json!({"type": "order.created", "data": {"i": i}})),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    rx.wait_for(5, Duration::from_secs(10)).await;

    let (status, body) = call(&a, reqwest::Method::DELETE, "/v1/webhooks/shared", None).await;
    assert!((200..300).contains(&status), "{status} {body}");
    within(
        Duration::from_secs(2),
        "B drops the deleted subscription",
        || async { listed(&b).await.is_empty() },
    )
    .await;
    let (status, _) = call(
        &b,
        reqwest::Method::POST,
        "/v1/events",
        Some(json!({"type": "order.created", "data": {"i": 99}})),
    )
    .await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rx.received().len(),
        5,
        "B delivered to a deleted subscription"
    );
}
