//! `rate_limit` across replicas (SPEC §5): two daemons on one Redis queue
//! deliver to one receiver, and together they stay within the target's
//! rate. With a per-process limiter they would send twice as fast.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use crate::support::get_text;
use std::collections::HashMap;
use std::time::Duration;

use hookyard::queue::Queue;
use serde_json::json;

use crate::queue_conformance::settings;

use crate::support::{Receiver, TestDaemon, http, redis_available, start_daemon_with_env};

const TOKEN: &str = "rate-redis-token-value";
const EVENTS: usize = 30;
const RATE: f64 = 5.0;
const BURST: f64 = 5.0;

/// Successful deliveries this daemon made, from its `/metrics`.
async fn successes(d: &TestDaemon) -> u64 {
    let text = get_text(d.url("/metrics")).await;
    text.lines()
        .filter(|l| {
            l.starts_with("hookyard_deliveries_total") && l.contains(r#"outcome="success""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_holds_across_two_replicas() {
    if !redis_available() {
        return;
    }
    let rx = Receiver::start().await;
    let prefix = format!("rate-redis-{}", ulid::Ulid::new());
    let _keys = crate::support::RedisKeys::shared(&prefix);
    let yaml = format!(
        r#"
queue: {{ backend: redis, url: "redis://127.0.0.1:6379", prefix: "{prefix}" }}
secrets: {{ app_token: {{ env: RL_TOKEN }} }}
tokens:
  - {{ name: app, secret: app_token, scopes: [events:write] }}
subscriptions:
  - id: s
    url: "{url}"
    events: ["*"]
    rate_limit: 5/s
"#,
        url = rx.url("/hook"),
    );
    let env = HashMap::from([("RL_TOKEN".to_owned(), TOKEN.to_owned())]);
    let a = start_daemon_with_env(&yaml, env.clone()).await;
    let b = start_daemon_with_env(&yaml, env).await;

    let client = http();
    for i in 0..EVENTS {
        let r = client
            .post(a.url("/v1/events"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(json!({"type": "rate.tick", "data": {"i": i}}).to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let got = rx.wait_for(EVENTS, Duration::from_secs(30)).await;
    assert_eq!(got.len(), EVENTS);

    // By any arrival, at most burst + rate * elapsed (+1 for the time the
    // first grant took to reach the receiver) have arrived in total.
    let t0 = got[0].at;
    let mut worst = 0.0f64;
    for (i, r) in got.iter().enumerate() {
        let elapsed = (r.at - t0).as_secs_f64();
        let allowed = BURST + RATE * elapsed + 1.0;
        let seen = (i + 1) as f64;
        worst = worst.max(seen - (BURST + RATE * elapsed));
        assert!(
            seen <= allowed,
            "{seen} deliveries within {elapsed:.2}s of the first: more than {allowed:.1} (5/s shared by both replicas)"
        );
    }
    // 30 at 5/s after a burst of 5 take about 5s; per replica it would be 2s.
    let span = got[EVENTS - 1].at - t0;
    assert!(span >= Duration::from_millis(4500), "{span:?}");

    // Both replicas delivered, so the limit really was shared. A worker
    // counts its success after the receiver answered, so the last count
    // may land just after the receiver saw the request: poll.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (sa, sb) = loop {
        let (sa, sb) = (successes(&a).await, successes(&b).await);
        if sa + sb >= EVENTS as u64 || tokio::time::Instant::now() > deadline {
            break (sa, sb);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "rate across replicas: {EVENTS} in {span:?}; replica a {sa}, b {sb}; worst excess over burst+rate*t {worst:.2}"
    );
    assert!(
        sa > 0 && sb > 0,
        "one replica did all the work: a {sa}, b {sb}"
    );
    assert_eq!(sa + sb, EVENTS as u64);
    a.stop().await;
    b.stop().await;
}

/// Five at once (the burst), then a wait of about one interval (200 ms).
async fn burst_then_wait(q: &Queue, key: &str) {
    for i in 0..5 {
        assert_eq!(q.rate_limit(key, RATE, 5).await.unwrap(), None, "call {i}");
    }
    let wait = q.rate_limit(key, RATE, 5).await.unwrap().expect("a wait");
    assert!(
        wait > Duration::from_millis(100) && wait <= Duration::from_millis(200),
        "{wait:?}"
    );
    // Another target has its own budget.
    assert_eq!(q.rate_limit("other", RATE, 5).await.unwrap(), None);
}

#[tokio::test]
async fn queue_rate_limit_gcra_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Queue::open_embedded(dir.path(), settings()).await.unwrap();
    burst_then_wait(&embedded, "subscription/s").await;

    if !redis_available() {
        return;
    }
    let prefix = format!("rate-gcra-{}", ulid::Ulid::new());
    let _keys = crate::support::RedisKeys::shared(&prefix);
    let q = Queue::open_redis("redis://127.0.0.1:6379", &prefix, settings())
        .await
        .unwrap();
    burst_then_wait(&q, "subscription/s").await;
    // One key per target, expiring once the budget is back (~1 s).
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}:rl:subscription/s"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 1000, "{ttl}");
}
