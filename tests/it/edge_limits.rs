//! SPEC §11 "Connections" and "Scrapes are cheap", on a daemon in this
//! process: the body timeout (408 with the JSON error body), the keep-alive
//! idle timeout, `server.max_connections`, and `/metrics` serving the
//! gauges housekeeping refreshed instead of querying the queue.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use crate::support::get_text;
use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::{Answer, Receiver, TestDaemon, http, start_daemon_with_env};

const TOKEN: &str = "edge-limits-token";

async fn daemon(server: &str, rest: &str) -> TestDaemon {
    let yaml = format!(
        r#"
server: {{ listen: "127.0.0.1:0", {server} }}
secrets: {{ app: {{ env: EDGE_TOKEN }} }}
tokens: [ {{ name: app, secret: app, scopes: [events:write, webhooks:write] }} ]
{rest}
"#
    );
    let env = HashMap::from([("EDGE_TOKEN".to_owned(), TOKEN.to_owned())]);
    start_daemon_with_env(&yaml, env).await
}

/// Read until the server closes the connection (or `deadline`: None).
async fn read_to_close(s: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// Read one response to a `GET /healthz` (its body ends the answer).
async fn read_health(s: &mut TcpStream, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&out).contains("{\"status\":\"ok\"}") {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: hookyard\r\n\r\n";

/// A body announced as 100 bytes of which 10 come, then nothing: 408 with
/// the JSON error body, then the connection closes; on the event API
/// (`read_body`) and on the webhook API (axum's `Json`) alike.
#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_closes() {
    let body_timeout = Duration::from_secs(1);
    let d = daemon("body_timeout: 1s, header_timeout: 30s", "").await;
    for path in ["/v1/events", "/v1/webhooks"] {
        let mut s = TcpStream::connect(d.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: hookyard\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"type\":\"a"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let sent = Instant::now();
        let answer = read_to_close(&mut s, sent + body_timeout + Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{path}: no answer and still open"));
        assert!(
            sent.elapsed() >= body_timeout,
            "{path}: answered before body_timeout"
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let json: Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "body_timeout", "{path}: {json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("server.body_timeout"),
            "{json}"
        );
    }
    d.stop().await;
}

/// A kept-alive connection with no next request is closed after
/// idle_timeout, not earlier at header_timeout.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let (header_timeout, idle_timeout) = (Duration::from_secs(1), Duration::from_secs(3));
    let d = daemon("header_timeout: 1s, idle_timeout: 3s", "").await;
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    s.write_all(HEALTH).await.unwrap();
    read_health(&mut s, Duration::from_secs(5)).await.unwrap();
    let idle_since = Instant::now();
    let closed = read_to_close(&mut s, idle_since + idle_timeout + Duration::from_secs(3)).await;
    assert_eq!(closed, Some(vec![]), "idle connection still open");
    let after = idle_since.elapsed();
    assert!(
        after > header_timeout + Duration::from_millis(500) && after >= idle_timeout,
        "closed after {after:?}: idle_timeout is {idle_timeout:?}"
    );
    d.stop().await;
}

/// With `max_connections: 3`, a 4th connection waits unaccepted (its
/// request unanswered) until one of the 3 closes.
#[tokio::test]
async fn the_connection_past_max_connections_waits_until_one_closes() {
    let d = daemon(
        "max_connections: 3, header_timeout: 60s, idle_timeout: 60s",
        "",
    )
    .await;
    // The readiness probe's keep-alive connection holds a slot: the pool
    // closing it frees it, but not in any set time, so fill all 3 here
    // once it has gone.
    let mut held = Vec::new();
    while held.len() < 3 {
        let mut s = TcpStream::connect(d.addr).await.unwrap();
        s.write_all(HEALTH).await.unwrap();
        match read_health(&mut s, Duration::from_secs(15)).await {
            Some(_) => held.push(s),
            None => panic!("connection {} of 3 not served", held.len() + 1),
        }
    }
    let mut fourth = TcpStream::connect(d.addr).await.unwrap();
    fourth.write_all(HEALTH).await.unwrap();
    assert_eq!(
        read_health(&mut fourth, Duration::from_secs(2)).await,
        None,
        "a 4th connection was served while 3 were open"
    );
    drop(held.pop());
    assert!(
        read_health(&mut fourth, Duration::from_secs(10))
            .await
            .is_some(),
        "the 4th connection was not served after one of the 3 closed"
    );
    d.stop().await;
}

async fn scrape(d: &TestDaemon) -> String {
    get_text(d.url("/metrics")).await
}

/// Jobs waiting per target, summed over `hookyard_target_pending`.
fn pending(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("hookyard_target_pending{"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

async fn post_event(d: &TestDaemon) {
    let r = http()
        .post(d.url("/v1/events"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/json")
        .body(r#"{"type":"edge.test","data":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

async fn wait_pending(d: &TestDaemon, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = scrape(d).await;
        if pending(&m) == want {
            return;
        }
        assert!(Instant::now() < deadline, "pending never {want}:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/metrics` serves what housekeeping last measured (every 5s): right
/// after a refresh was seen, a new job is not in the next scrape, because
/// a scrape queries nothing; the next refresh shows it. The first scrape
/// already has the queue gauges.
#[tokio::test]
async fn a_scrape_serves_the_housekeeping_gauges_and_queries_nothing() {
    let rx = Receiver::start().await;
    rx.script((0..10).map(|_| Answer::status(500)));
    let subs = format!(
        r#"subscriptions:
  - {{ id: stuck, url: "{}", events: ["*"], retry: {{ schedule: [1h] }} }}"#,
        rx.url("/hook")
    );
    let d = daemon("header_timeout: 10s", &subs).await;
    let first = scrape(&d).await;
    assert!(
        first.contains("hookyard_queue_depth{state=\"ready\"}"),
        "first scrape without queue gauges:\n{first}"
    );

    post_event(&d).await;
    // Seeing the job means housekeeping just refreshed: the next refresh
    // is ~5s away.
    wait_pending(&d, 1).await;
    post_event(&d).await;
    let stale = scrape(&d).await;
    assert_eq!(
        pending(&stale),
        1,
        "the scrape saw the new job at once: it queried the queue\n{stale}"
    );
    wait_pending(&d, 2).await;
    d.stop().await;
}

/// HTTP/2 with prior knowledge (h2c) is still served, bodies included.
#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let d = daemon("body_timeout: 5s", "").await;
    let _ = http(); // installs the TLS provider reqwest needs
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let health = h2.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    let posted = h2
        .post(d.url("/v1/events"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/json")
        .body(r#"{"type":"edge.test","data":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    d.stop().await;
}

/// The `server:` connection keys: defaults, values, and 0 refused with
/// its position and what to write instead.
#[test]
fn connection_settings_have_defaults_and_refuse_zero() {
    use hookyard::config::{self, LoadOptions};
    let dir = tempfile::tempdir().unwrap();
    let load = |yaml: &str| {
        let path = dir.path().join("hookyard.yaml");
        std::fs::write(&path, yaml).unwrap();
        let opts = LoadOptions {
            no_env: false,
            env: Some(HashMap::new()),
        };
        config::load(&path, opts)
    };
    let Ok(c) = load("server: { listen: \"127.0.0.1:0\" }\n") else {
        panic!("defaults do not load")
    };
    assert_eq!(
        limits(&c),
        (
            Duration::from_secs(10),
            Duration::from_secs(30),
            Duration::from_secs(60),
            10_000
        )
    );
    let Ok(c) = load(
        "server: { header_timeout: 2s, body_timeout: 1m, idle_timeout: 500ms, max_connections: 3 }\n",
    ) else {
        panic!("values do not load")
    };
    assert_eq!(
        limits(&c),
        (
            Duration::from_secs(2),
            Duration::from_secs(60),
            Duration::from_millis(500),
            3
        )
    );
    let Err(errs) = load("server:\n  header_timeout: 0s\n  max_connections: 0\n") else {
        panic!("zero limits loaded")
    };
    let found: Vec<(u32, String)> = errs
        .errors
        .iter()
        .map(|e| (e.pos.line, e.message.clone()))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, 2, "{found:?}");
    assert!(
        found[0]
            .1
            .contains("server.header_timeout must be longer than 0s"),
        "{found:?}"
    );
    assert_eq!(found[1].0, 3, "{found:?}");
    assert!(
        found[1]
            .1
            .contains("server.max_connections must be at least 1"),
        "{found:?}"
    );
}

/// The four connection settings of a loaded config, in SPEC order.
fn limits(c: &hookyard::config::Config) -> (Duration, Duration, Duration, u32) {
    let s = &c.server;
    (
        s.header_timeout,
        s.body_timeout,
        s.idle_timeout,
        s.max_connections,
    )
}
