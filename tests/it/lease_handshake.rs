//! Leases outlive their work (SPEC §11): target timeouts must be below
//! `queue.lease`, and the subscription verification handshake runs under
//! lease renewal like a delivery request.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use hookyard::config::{self, LoadOptions};
use tokio::net::TcpListener;

use crate::support::{http, start_daemon};

fn errors(text: &str) -> Vec<(u32, u32, String)> {
    let opts = LoadOptions {
        no_env: false,
        env: Some(Default::default()),
    };
    match config::load_str(text, Path::new("c.yaml"), opts) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .errors
            .iter()
            .map(|e| (e.pos.line, e.pos.col, e.message.clone()))
            .collect(),
    }
}

#[test]
fn every_timeout_must_be_below_the_lease() {
    let text = "queue: { lease: 10s }\n\
        defaults: { timeout: 10s }\n\
        actions:\n  - { id: a, url: \"http://127.0.0.1:1/a\", timeout: 20s }\n\
        workflows:\n  - id: w\n    when: { event: e }\n    steps:\n      \
        - request: { url: \"http://127.0.0.1:1/r\", timeout: 11s }\n\
        subscriptions:\n  - { id: s, url: \"http://127.0.0.1:1/s\", events: [\"*\"], timeout: 1m }\n";
    let got = errors(text);
    let at: Vec<(u32, u32)> = got.iter().map(|(l, c, _)| (*l, *c)).collect();
    // defaults.timeout, the action, the inline request, the subscription.
    assert_eq!(at, [(2, 22), (4, 52), (9, 58), (11, 67)], "{got:?}");
    assert!(
        got[0]
            .2
            .contains("timeout 10s is not below queue.lease 10s"),
        "{got:?}"
    );
    assert!(got[1].2.contains("raise `queue.lease`"), "{got:?}");
}

#[test]
fn a_short_lease_needs_a_shorter_default_timeout() {
    // The default timeout (30s) is checked against a lease shortened below
    // it, at the lease's position.
    let got = errors("queue: { lease: 20s }\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0, got[0].1), (1, 17), "{got:?}");
    assert!(
        got[0]
            .2
            .contains("timeout 30s is not below queue.lease 20s"),
        "{got:?}"
    );
    // Below the lease everywhere: fine, also the defaults.
    assert!(errors("queue: { lease: 20s }\ndefaults: { timeout: 19s }\n").is_empty());
    assert!(errors("defaults: { timeout: 59s }\n").is_empty());
    assert_eq!(errors("defaults: { timeout: 60s }\n").len(), 1);
}

/// What the slow endpoint saw: delivery ids of real deliveries.
#[derive(Default)]
struct Seen {
    deliveries: Mutex<Vec<String>>,
}

/// Answers a handshake after 2.5s (echoing its token) and a delivery
/// after 2s: each below the 2.9s timeout, together past the 3s lease.
async fn slow(
    State(seen): State<Arc<Seen>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> String {
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if json["type"] == "webhook.verification" {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        return json["data"]["confirmation_token"]
            .as_str()
            .unwrap_or("")
            .to_owned();
    }
    let id = headers
        .get("x-hookyard-delivery-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    seen.deliveries.lock().unwrap().push(id);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    "ok".to_owned()
}

/// Without renewal during the handshake, the job's 3s lease lapses while
/// its delivery is in flight (the handshake took 2.5s of it, and the first
/// renewal of the request comes a third of a lease after it started), so
/// the queue hands the job out again and the endpoint gets the same
/// delivery twice. Renewed during the handshake, it gets it once.
#[tokio::test]
async fn a_slow_handshake_keeps_its_lease() {
    let seen = Arc::new(Seen::default());
    let app = Router::new().fallback(slow).with_state(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let d = start_daemon(&format!(
        "queue: {{ backend: embedded, path: \"{{{{DATA}}}}\", lease: 3s }}\n\
         defaults: {{ timeout: 2900ms }}\n\
         triggers:\n  - {{ id: in, event: order.created, verify: none }}\n\
         subscriptions:\n  - {{ id: slow, url: \"http://{addr}/in\", events: [\"*\"], verify: true }}\n"
    ))
    .await;
    let r = http()
        .post(d.url("/hooks/in"))
        .header("content-type", "application/json")
        .body("{\"n\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The delivery arrives after the 2.5s handshake; then leave time for
    // a lapsed lease to be reclaimed and the job sent again.
    for _ in 0..100 {
        if !seen.deliveries.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let deliveries = seen.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 1, "sent more than once: {deliveries:?}");
    d.stop().await;
}
