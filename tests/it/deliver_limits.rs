//! Per-target gates observed at a real receiver: rate limit, max_in_flight,
//! circuit breaker, paused, verification handshake, and the egress policy
//! for API-created subscriptions.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use hookyard::model::ApiSubscription;
use hookyard::queue::DeliveryState;
use serde_json::{Value, json};

use crate::deliver_support::{event, harness, harness_with_store_lease, load, step, sub};
use crate::support::{Answer, Receiver};

const T: Duration = Duration::from_secs(15);

fn sub_yaml(url: &str, extra: &str) -> String {
    format!("subscriptions:\n  - id: s\n    url: \"{url}\"\n    events: [\"*\"]\n{extra}")
}

#[tokio::test]
async fn rate_limit_spaces_deliveries() {
    let rx = Receiver::start().await;
    let h = harness(&sub_yaml(&rx.url("/"), "    rate_limit: 5/s\n")).await;
    for _ in 0..12 {
        h.ingest(&event("a", json!({})), vec![sub("s")]).await;
    }
    let got = rx.wait_for(12, T).await;
    let span = got[11].at - got[0].at;
    // A burst of 5, then one every 200ms: 7 more take >= 1.4s.
    assert!(span >= Duration::from_millis(1250), "{span:?}");
    // In any 1s window at most 5 + 5 (burst plus refill) arrive.
    for (i, r) in got.iter().enumerate() {
        let in_window = got[i..]
            .iter()
            .filter(|x| x.at - r.at < Duration::from_secs(1))
            .count();
        assert!(in_window <= 10, "{in_window}");
    }
    assert!(
        !h.metrics().contains(r#"outcome="retry""#),
        "waiting uses no attempt"
    );
}

#[tokio::test]
async fn max_in_flight_bounds_concurrency() {
    let rx = Receiver::start().await;
    let slow = Answer {
        delay: Duration::from_millis(200),
        ..Answer::status(200)
    };
    rx.script(std::iter::repeat_n(slow, 6));
    let h = harness(&sub_yaml(&rx.url("/"), "    max_in_flight: 2\n")).await;
    let start = Instant::now();
    let mut ids = vec![];
    for _ in 0..6 {
        ids.extend(h.ingest(&event("a", json!({})), vec![sub("s")]).await);
    }
    let got = rx.wait_for(6, T).await;
    // 6 requests of 200ms, 2 at a time: at least 3 rounds.
    assert!(start.elapsed() >= Duration::from_millis(580));
    // Each request was in flight during [at - 200ms, at]; at most 2 overlap.
    for r in &got {
        let overlapping = got
            .iter()
            .filter(|x| x.at > r.at - Duration::from_millis(190) && x.at <= r.at)
            .count();
        assert!(overlapping <= 2, "{overlapping} in flight at once");
    }
    for id in &ids {
        let rec = h.wait_state(id, DeliveryState::Succeeded, T).await;
        assert_eq!(rec.attempts.len(), 1);
    }
}

#[tokio::test]
async fn circuit_opens_then_probe_recovers() {
    let rx = Receiver::start().await;
    rx.script([
        Answer::status(500),
        Answer::status(500),
        Answer::status(500),
    ]);
    // Harness circuit: opens after 3 consecutive failures, for 500ms.
    let h = harness(&sub_yaml(
        &rx.url("/"),
        "    retry: { schedule: [10ms, 10ms, 10ms, 10ms] }\n",
    ))
    .await;
    let ids = h.ingest(&event("a", json!({})), vec![sub("s")]).await;
    rx.wait_for(3, T).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = h.metrics();
    assert!(
        m.contains(r#"hookyard_circuit_open{target="subscription/s"} 1"#),
        "{m}"
    );
    let rec = h.wait_state(&ids[0], DeliveryState::Succeeded, T).await;
    let got = rx.received();
    assert_eq!(got.len(), 4);
    assert!(
        got[3].at - got[2].at >= Duration::from_millis(400),
        "held while open"
    );
    // Waiting on the open circuit used no attempt: 3 failures + the probe.
    assert_eq!(rec.attempts.len(), 4);
    let m = h.metrics();
    assert!(
        m.contains(r#"hookyard_circuit_open{target="subscription/s"} 0"#),
        "{m}"
    );
}

#[tokio::test]
async fn paused_holds_until_unpaused() {
    let rx = Receiver::start().await;
    let h = harness(&sub_yaml(&rx.url("/"), "    paused: true\n")).await;
    let ids = h.ingest(&event("a", json!({})), vec![sub("s")]).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(rx.received().is_empty());
    let rec = h.app.queue().delivery(&ids[0]).await.unwrap().unwrap();
    assert_eq!(rec.state, DeliveryState::Pending);
    assert!(rec.attempts.is_empty());
    // Reload without `paused`: the held job goes out.
    load(
        h.dir.path(),
        &sub_yaml(&rx.url("/"), ""),
        &Default::default(),
    );
    hookyard::runtime::reload::reload_async(&h.app)
        .await
        .unwrap();
    h.wait_state(&ids[0], DeliveryState::Succeeded, T).await;
    assert_eq!(rx.received().len(), 1);
}

#[derive(Default)]
struct Echo {
    confirm: AtomicBool,
    seen: Mutex<Vec<Value>>,
}

/// A receiver that echoes the confirmation token once `confirm` is set.
async fn echo_receiver() -> (String, Arc<Echo>) {
    async fn handle(State(s): State<Arc<Echo>>, body: Bytes) -> String {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        s.seen.lock().unwrap().push(v.clone());
        if v["type"] == "webhook.verification" && s.confirm.load(Ordering::SeqCst) {
            json!({"confirmation_token": v["data"]["confirmation_token"]}).to_string()
        } else {
            "nope".into()
        }
    }
    let state = Arc::new(Echo::default());
    let app = Router::new().fallback(handle).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v"), state)
}

#[tokio::test]
async fn verification_handshake_gates_delivery() {
    let (url, echo) = echo_receiver().await;
    let h = harness(&sub_yaml(
        &url,
        "    verify: true\n    retry: { schedule: [200ms] }\n",
    ))
    .await;
    let ids = h.ingest(&event("a", json!({"k": 1})), vec![sub("s")]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    {
        let seen = echo.seen.lock().unwrap();
        assert!(seen.len() >= 2, "handshake retried: {seen:?}");
        assert!(
            seen.iter().all(|v| v["type"] == "webhook.verification"),
            "{seen:?}"
        );
    }
    let state = h.app.queue().state("verify:s").await.unwrap().unwrap();
    assert_eq!(state["state"], "pending_verification");
    let rec = h.app.queue().delivery(&ids[0]).await.unwrap().unwrap();
    assert_eq!(rec.state, DeliveryState::Pending);
    assert!(rec.attempts.is_empty(), "waiting used no attempt");
    echo.confirm.store(true, Ordering::SeqCst);
    h.wait_state(&ids[0], DeliveryState::Succeeded, T).await;
    let state = h.app.queue().state("verify:s").await.unwrap().unwrap();
    assert_eq!(state["state"], "verified");
    let seen = echo.seen.lock().unwrap();
    assert_eq!(seen.last().unwrap()["data"], json!({"k": 1}));
}

#[tokio::test]
async fn api_subscription_to_loopback_is_refused_by_egress() {
    let rx = Receiver::start().await;
    let h = harness("reload: { watch: false }\n").await;
    let api = ApiSubscription {
        id: "api1".into(),
        url: url::Url::parse(&rx.url("/steal")).unwrap(),
        events: vec!["*".into()],
        secrets: vec![],
        headers: vec![],
        created_by: "t".into(),
        created_at: jiff::Timestamp::now(),
    };
    let doc = serde_json::to_value(&api).unwrap();
    h.app.queue().put_subscription("api1", &doc).await.unwrap();
    hookyard::runtime::subscriptions::load_into(&h.app)
        .await
        .unwrap();
    let ids = h.ingest(&event("a", json!({})), vec![sub("api1")]).await;
    let rec = h.wait_state(&ids[0], DeliveryState::DeadLetter, T).await;
    assert_eq!(rec.reason.as_deref(), Some("egress_denied"));
    assert!(rx.received().is_empty());
}

#[tokio::test]
async fn lease_is_renewed_while_a_slow_request_is_in_flight() {
    let rx = Receiver::start().await;
    rx.script([Answer {
        delay: Duration::from_millis(2500),
        ..Answer::status(200)
    }]);
    // Workers renew every 1s (a third of the configured 3s lease) while
    // the store's lease is 1.5s: without renewal the job would be
    // reclaimed and sent again while the first request still waits for
    // its answer. (Config keeps timeouts below `queue.lease`, so a request
    // cannot outlast the configured lease by itself.)
    let h = harness_with_store_lease(
        &format!(
            "queue: {{ backend: embedded, path: ./unused, lease: 3s }}\n\
             defaults: {{ timeout: 2900ms }}\n{}",
            sub_yaml(&rx.url("/"), "")
        ),
        Duration::from_millis(1500),
    )
    .await;
    let ids = h.ingest(&event("a", json!({})), vec![sub("s")]).await;
    h.wait_state(&ids[0], DeliveryState::Succeeded, T).await;
    // Past the slow answer (the receiver records a request when it answers).
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(rx.received().len(), 1, "delivered once");
    let rec = h.app.queue().delivery(&ids[0]).await.unwrap().unwrap();
    assert_eq!(rec.attempts.len(), 1);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_deliveries() {
    let rx = Receiver::start().await;
    rx.script([Answer {
        delay: Duration::from_millis(700),
        ..Answer::status(200)
    }]);
    let h = harness(&sub_yaml(&rx.url("/"), "")).await;
    let ids = h.ingest(&event("a", json!({})), vec![sub("s")]).await;
    // Wait until the request is in flight, then stop the workers.
    let deadline = Instant::now() + T;
    while h.app.queue().stats().await.unwrap().in_flight == 0 {
        assert!(Instant::now() < deadline, "never leased");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.stop.cancel();
    h.tracker.close();
    tokio::time::timeout(Duration::from_secs(5), h.tracker.wait())
        .await
        .expect("workers stop after finishing what they hold");
    let rec = h.app.queue().delivery(&ids[0]).await.unwrap().unwrap();
    assert_eq!(rec.state, DeliveryState::Succeeded);
    // Stopped: a new job is not leased.
    let later = h.ingest(&event("a", json!({})), vec![sub("s")]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rec = h.app.queue().delivery(&later[0]).await.unwrap().unwrap();
    assert_eq!(rec.state, DeliveryState::Pending);
    assert_eq!(rx.received().len(), 1);
}

#[tokio::test]
async fn circuit_probe_that_sends_nothing_does_not_wedge_the_target() {
    let rx = Receiver::start().await;
    rx.script([
        Answer::status(500),
        Answer::status(500),
        Answer::status(500),
    ]);
    // Harness circuit: opens after 3 consecutive failures, for 500ms. The
    // good job's 4th attempt comes ~1.5s later, after the circuit's probe.
    let h = harness(&format!(
        r#"
actions:
  - id: a
    strict: true
    url: "{0}/a"
    body: {{ json: {{ e: "{{{{ contact.email }}}}" }} }}
    retry: {{ schedule: [10ms, 10ms, 1500ms, 10ms] }}
workflows:
  - id: w
    when: {{ event: "*" }}
    steps: [ {{ action: a }} ]
"#,
        rx.url("")
    ))
    .await;
    let good = h
        .ingest(
            &event("a", json!({"contact": {"email": "a@b.c"}})),
            vec![step("w", "a")],
        )
        .await;
    rx.wait_for(3, T).await;
    // While the circuit is open, a job that cannot render: it waits for the
    // circuit, becomes the probe, and is dead-lettered without a request.
    let bad = h.ingest(&event("a", json!({})), vec![step("w", "a")]).await;
    let rec = h.wait_state(&bad[0], DeliveryState::DeadLetter, T).await;
    assert_eq!(rec.reason.as_deref(), Some("template_error"));
    // A probe that sent nothing proved nothing: the next job must be let
    // through as the probe, not held forever behind it.
    let rec = h
        .wait_state(&good[0], DeliveryState::Succeeded, Duration::from_secs(6))
        .await;
    assert_eq!(rec.attempts.len(), 4);
    assert_eq!(rx.received().len(), 4);
}
