//! Fault tests with a receiver that misbehaves at the transport level
//! (`faulty_receiver.rs`), against a real daemon on loopback: it resets
//! connections, flaps (listener closed, then open again), or hangs past the
//! subscription's `timeout`. Each test posts a batch through
//! `POST /v1/events` and checks SPEC §5/§6 end to end:
//! - every event answered 202 is delivered (acknowledged by the receiver);
//! - duplicates only where at-least-once allows them: a request the
//!   receiver never read (reset before reading, refused) must not show up
//!   twice; one it read but did not answer in time may;
//! - the history (`GET /v1/events/{id}`) holds every failed attempt with
//!   its error and no response, then the successful one, attempts 1..n;
//! - afterwards the daemon still serves: `/readyz` 200 and a fresh event
//!   is delivered in one attempt.
//!
//! The per-replica circuit breaker opens after 5 consecutive failures and
//! holds the target for 30s (SPEC §5; not configurable), which would stall
//! a test for 30s. So each test keeps fewer than 5 failures in a row, and
//! checks at the end that the circuit never opened: the reset test
//! serializes deliveries (`max_in_flight: 1`, one connection per attempt)
//! and resets two connections of every three; the flap test refuses one
//! wave of 4 events per cycle; the hang test hangs 4 requests.
//!
//! The reset and flap tests also run on Redis (unique key prefix, skipped
//! visibly without Redis unless `CI=true`).

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::admin_support::{authed, body_json, get_json, metric, start, token};
use crate::faulty_receiver::{Arrival, Behaviour, FaultyReceiver};
use crate::support::{TestDaemon, http, redis_available};

/// Longest wait for the whole batch to be delivered.
const WITHIN: Duration = Duration::from_secs(20);
const TARGET: &str = "subscription/rx";

fn config(url: &str, options: &str, queue: &str) -> String {
    format!("{queue}subscriptions:\n  - id: rx\n    url: \"{url}\"\n    events: [\"*\"]\n{options}")
}

async fn daemon(rx: &FaultyReceiver, options: &str, queue: &str) -> TestDaemon {
    start(
        &config(&rx.url("/hook"), options, queue),
        "reload: { watch: false }",
    )
    .await
}

/// POST `n` events one by one (or, with `batch`, as one JSON array);
/// every one must be answered 202. Returns their ids.
async fn post_events(d: &TestDaemon, n: usize, batch: bool) -> Vec<String> {
    let client = http();
    let post = |body: Value| {
        authed(client.post(d.url("/v1/events")), &token("root"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let event = |i: usize| json!({"type": "fault.tick", "data": {"i": i}});
    if batch {
        let r = post(Value::Array((0..n).map(event).collect()))
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let v = body_json(r).await;
        let answers = v.as_array().unwrap();
        return answers
            .iter()
            .map(|a| a["event_id"].as_str().unwrap().to_owned())
            .collect();
    }
    let mut ids = Vec::new();
    for i in 0..n {
        let r = post(event(i)).await.unwrap();
        assert_eq!(r.status(), 202);
        ids.push(body_json(r).await["event_id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Wait until the receiver acknowledged every id.
async fn wait_acked(rx: &FaultyReceiver, ids: &[String]) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let acked = rx.acked();
        let missing = ids.iter().filter(|id| !acked.contains(*id)).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} accepted events not delivered within {WITHIN:?}; \
             receiver: {} connections, {} resets, {} requests read",
            ids.len(),
            rx.accepted(),
            rx.resets(),
            rx.arrivals().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The delivery of each event (one subscription: one each), once its
/// history says `succeeded`.
async fn succeeded(d: &TestDaemon, ids: &[String]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out = Vec::new();
    for id in ids {
        loop {
            let (status, v) = get_json(d, &format!("/v1/events/{id}")).await;
            assert_eq!(status, 200, "{v}");
            let ds = v["deliveries"].as_array().unwrap();
            assert_eq!(ds.len(), 1, "{v}");
            if ds[0]["state"] == "succeeded" {
                out.push(ds[0].clone());
                break;
            }
            assert!(Instant::now() < deadline, "not succeeded in history: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    out
}

/// Check one succeeded delivery's attempts: 1..n in order, every one but
/// the last failed with an error containing one of `errors` and no
/// response, the last answered 200 without error. Returns how many failed.
fn check_attempts(delivery: &Value, errors: &[&str]) -> usize {
    let attempts = delivery["attempts"].as_array().unwrap();
    let n = attempts.len();
    assert!(n >= 1, "{delivery}");
    for (k, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], k + 1, "{delivery}");
        if k + 1 < n {
            assert!(a["response"].is_null(), "{delivery}");
            let e = a["error"].as_str().unwrap_or_default();
            assert!(
                errors.iter().any(|x| e.contains(x)),
                "attempt {} error {e:?}",
                k + 1
            );
        } else {
            assert_eq!(a["response"]["status"], 200, "{delivery}");
            assert!(a["error"].is_null(), "{delivery}");
        }
    }
    n - 1
}

/// The arrivals of each event id, in order.
fn by_event(arrivals: &[Arrival]) -> HashMap<String, Vec<Arrival>> {
    let mut m: HashMap<String, Vec<Arrival>> = HashMap::new();
    for a in arrivals {
        m.entry(a.event_id.clone()).or_default().push(a.clone());
    }
    m
}

/// No request the receiver never read may be seen twice: each event
/// arrived exactly once, as its last (successful) attempt of `delivery`.
fn check_exactly_once(rx: &FaultyReceiver, ids: &[String], deliveries: &[Value]) {
    let seen = by_event(&rx.arrivals());
    assert_eq!(seen.len(), ids.len(), "requests for unknown events");
    for (id, d) in ids.iter().zip(deliveries) {
        let got = &seen[id];
        assert_eq!(got.len(), 1, "event {id} arrived {} times", got.len());
        assert_eq!(got[0].delivery_id, d["id"].as_str().unwrap());
        assert_eq!(
            got[0].attempt as usize,
            d["attempts"].as_array().unwrap().len()
        );
    }
}

/// The circuit breaker never opened: its gauge series is only created
/// when the circuit opens (and set to 0 when it closes again).
async fn circuit_never_opened(d: &TestDaemon) {
    let open = metric(d, &format!("hookyard_circuit_open{{target=\"{TARGET}\"}}")).await;
    assert_eq!(open, None, "the circuit opened");
}

/// After the faults: ready, and a fresh event is delivered in one attempt.
async fn still_serves(d: &TestDaemon, rx: &FaultyReceiver) {
    let r = http().get(d.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = post_events(d, 1, false).await;
    wait_acked(rx, &id).await;
    let fresh = succeeded(d, &id).await;
    assert_eq!(fresh[0]["attempts"].as_array().unwrap().len(), 1);
    circuit_never_opened(d).await;
}

/// Resets two of every three of the first 45 connections (30 resets), then
/// behaves; 30 events. Deliveries go one at a time and every answer closes
/// its connection, so each attempt is one new connection: the history's
/// failed attempts must match the receiver's resets one to one, and no
/// event may arrive twice (a reset came before the request was read).
async fn resets(queue: &str) {
    const EVENTS: usize = 30;
    let started = Instant::now();
    let rx = FaultyReceiver::start(Behaviour {
        reset: Box::new(|i| i < 45 && i % 3 != 2),
        close_each: true,
        ..Behaviour::default()
    })
    .await;
    let d = daemon(
        &rx,
        "    max_in_flight: 1\n    timeout: 2s\n    retry: { schedule: [100ms, 200ms, 300ms, 500ms, 1s, 1s, 2s, 2s] }\n",
        queue,
    )
    .await;
    let ids = post_events(&d, EVENTS, false).await;
    wait_acked(&rx, &ids).await;
    let deliveries = succeeded(&d, &ids).await;
    check_exactly_once(&rx, &ids, &deliveries);
    // Depending on when the RST lands (during connect, while writing, while
    // reading, or before hyper handed the request to the connection), the
    // error is one of the two transport kinds.
    let failed: usize = deliveries
        .iter()
        .map(|x| check_attempts(x, &["could not connect: ", "request failed: "]))
        .sum();
    assert_eq!(rx.resets(), 30);
    assert_eq!(failed, rx.resets(), "one failed attempt per reset");
    still_serves(&d, &rx).await;
    eprintln!(
        "resets: {EVENTS} events, {} resets, {} connections, {:?}",
        rx.resets(),
        rx.accepted(),
        started.elapsed()
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_resetting_connections_loses_and_duplicates_nothing() {
    resets("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_receiver_resetting_connections_loses_and_duplicates_nothing() {
    if !redis_available() {
        return;
    }
    let keys = crate::support::RedisKeys::fresh("hy-faults-rx");
    resets(&keys.queue_yaml("")).await;
}

/// Five cycles of: listener closed, a wave of 4 events (one batch) is
/// refused (the test waits until the daemon has counted 4 retries), the
/// listener opens again, 4 more events, all delivered. Each wave event has
/// exactly one refused attempt ("could not connect") then a success; the
/// others one attempt; nothing arrives twice (a refused request was never
/// sent). The first retry waits 500ms ±20%, so the listener is open again
/// well before any wave event is tried a second time. Run on both backends.
async fn flaps(queue: &str) {
    const CYCLES: usize = 5;
    const WAVE: usize = 4;
    let started = Instant::now();
    let rx = FaultyReceiver::start(Behaviour {
        close_each: true,
        ..Behaviour::default()
    })
    .await;
    let d = daemon(
        &rx,
        "    timeout: 2s\n    retry: { schedule: [500ms, 300ms, 500ms, 1s, 1s, 2s] }\n",
        queue,
    )
    .await;
    let retries = format!("hookyard_deliveries_total{{target=\"{TARGET}\",outcome=\"retry\"}}");
    let (mut refused, mut all) = (Vec::new(), Vec::new());
    for cycle in 1..=CYCLES {
        rx.set_open(false).await;
        let wave = post_events(&d, WAVE, true).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(&d, &retries).await.unwrap_or(0.0) < (cycle * WAVE) as f64 {
            assert!(Instant::now() < deadline, "cycle {cycle}: wave not refused");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        rx.set_open(true).await;
        let calm = post_events(&d, WAVE, false).await;
        refused.extend(wave.iter().cloned());
        all.extend(wave.into_iter().chain(calm));
        wait_acked(&rx, &all).await;
    }
    let deliveries = succeeded(&d, &all).await;
    check_exactly_once(&rx, &all, &deliveries);
    for (id, x) in all.iter().zip(&deliveries) {
        let failed = check_attempts(x, &["could not connect: "]);
        let expected = usize::from(refused.contains(id));
        assert_eq!(failed, expected, "event {id}: {x}");
    }
    assert_eq!(
        metric(&d, &retries).await,
        Some((CYCLES * WAVE) as f64),
        "refused attempts"
    );
    still_serves(&d, &rx).await;
    eprintln!(
        "flap: {} events, {} refused attempts, {:?}",
        all.len(),
        refused.len(),
        started.elapsed()
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_receiver_loses_and_duplicates_nothing() {
    flaps("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flapping_receiver_loses_and_duplicates_nothing() {
    if !redis_available() {
        return;
    }
    let keys = crate::support::RedisKeys::fresh("hy-faults-rx");
    flaps(&keys.queue_yaml("")).await;
}

/// The first 4 requests hang for 5s, past `timeout: 300ms`; 40 events.
/// The receiver read those requests, so at-least-once allows them to
/// arrive again: each event arrives as zero or more hung attempts then one
/// answered one, in order, same delivery id, `X-Hookyard-Attempt` 1..n,
/// and never again after it was answered. The history has one timeout
/// ("no complete response within 300ms", no response, ~300ms) per hung
/// request. (`deliver::timeout_then_exhausted` covers one timed-out
/// delivery being dead-lettered; this one covers a batch recovering.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_receiver_times_out_and_retries_without_loss() {
    const EVENTS: usize = 40;
    const HUNG: usize = 4;
    let started = Instant::now();
    let rx = FaultyReceiver::start(Behaviour {
        hang: Box::new(|i| i < HUNG),
        ..Behaviour::default()
    })
    .await;
    let d = daemon(
        &rx,
        "    timeout: 300ms\n    retry: { schedule: [100ms, 200ms, 300ms, 500ms, 1s, 1s] }\n",
        "",
    )
    .await;
    let ids = post_events(&d, EVENTS, false).await;
    wait_acked(&rx, &ids).await;
    let deliveries = succeeded(&d, &ids).await;
    let seen = by_event(&rx.arrivals());
    assert_eq!(seen.len(), ids.len(), "requests for unknown events");
    let mut timeouts = 0;
    for (id, x) in ids.iter().zip(&deliveries) {
        let got = &seen[id];
        let (last, earlier) = got.split_last().unwrap();
        assert!(!last.hung, "event {id}: answered arrival must be last");
        assert!(earlier.iter().all(|a| a.hung), "event {id}: {got:?}");
        for (k, a) in got.iter().enumerate() {
            assert_eq!(a.delivery_id, x["id"].as_str().unwrap(), "{got:?}");
            assert_eq!(a.attempt as usize, k + 1, "{got:?}");
        }
        let failed = check_attempts(x, &["no complete response within 300ms"]);
        assert_eq!(failed, earlier.len(), "one timeout per hung request: {x}");
        for a in &x["attempts"].as_array().unwrap()[..failed] {
            let ms = a["duration_ms"].as_u64().unwrap();
            assert!((250..2000).contains(&ms), "timed out after {ms}ms");
        }
        timeouts += failed;
    }
    assert_eq!(timeouts, HUNG);
    let hung = rx.arrivals().iter().filter(|a| a.hung).count();
    assert_eq!(hung, HUNG);
    still_serves(&d, &rx).await;
    eprintln!(
        "hang: {EVENTS} events, {timeouts} timeouts, {} requests read, {:?}",
        rx.arrivals().len(),
        started.elapsed()
    );
    d.stop().await;
}
