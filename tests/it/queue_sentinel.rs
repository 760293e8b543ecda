//! Redis Sentinel and `queue.replicas_ack` (SPEC §16), on real servers:
//! the real `hookyard` binary, `redis-server`s and sentinels on free
//! loopback ports (`sentinel_support.rs`), and a recording receiver.
//!
//! - A failover: 1 master, 1 replica, 3 sentinels; events trickle in
//!   (one every 50 ms) with `replicas_ack: 1`; the master is killed with
//!   SIGKILL; the sentinels promote the replica; hookyard must follow it
//!   within 10 s, and every event it acknowledged (202) must be delivered.
//!   The killed master's port comes back as a replica of the new master
//!   (as an operator's restart would), so acknowledgements can resume.
//! - `replicas_ack` not met (a master without replicas): the trigger
//!   answers 503 (429 with `on_unavailable: 429`) with `Retry-After`, the
//!   event is kept and delivered, and once a replica is there the sender's
//!   retry is a duplicate of it, not a second event.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster_support::Daemon;
use crate::cluster_support::daemon::TOKEN;
use crate::sentinel_support::{RedisProc, SentinelSet};
use crate::support::{Receiver, http, received_event_ids};

/// A daemon (the real binary, `cluster_support::Daemon`) on the Redis at
/// `url` with more `queue` keys in `queue`, delivering every event to `rx`.
fn spawn(url: &str, queue: &str, rx: &Receiver) -> Daemon {
    Daemon::spawn(&format!(
        r#"
queue: {{ backend: redis, url: "{url}", prefix: "sent-{prefix}", lease: 2s{queue} }}
defaults: {{ timeout: 1500ms }}
triggers:
  - {{ id: t, event: ping, verify: none, idempotency_key: "header:Idempotency-Key" }}
  - {{ id: t429, event: ping, verify: none, on_unavailable: 429, idempotency_key: "header:Idempotency-Key" }}
subscriptions:
  - id: rx
    url: "{rx}"
    events: ["*"]
    retry: {{ schedule: [200ms, 200ms, 500ms, 1s, 1s, 2s, 2s, 5s] }}
"#,
        prefix = ulid::Ulid::new(),
        rx = rx.url("/hook"),
    ))
}

/// One answer: status, `Retry-After`, JSON body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    /// A 503/429 saying the event was stored but not replicated in time.
    fn kept(&self) -> bool {
        self.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("stored but not yet copied"))
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    match req.timeout(Duration::from_secs(8)).send().await {
        Ok(resp) => Answer {
            status: resp.status().as_u16(),
            retry_after: resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: serde_json::from_slice(&resp.bytes().await.unwrap_or_default())
                .unwrap_or_default(),
        },
        // No answer at all counts as "not acknowledged".
        Err(_) => Answer {
            status: 0,
            retry_after: None,
            body: Value::Null,
        },
    }
}

/// `POST /v1/events` of one event with the client id `id`.
async fn post_event(d: &Daemon, id: &str) -> Answer {
    send(
        http()
            .post(d.url("/v1/events"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(json!({"type": "ping", "id": id, "data": {"id": id}}).to_string()),
    )
    .await
}

/// `POST /hooks/{trigger}` with an idempotency key.
async fn post_hook(d: &Daemon, trigger: &str, key: &str) -> (Answer, Duration) {
    let start = Instant::now();
    let answer = send(
        http()
            .post(d.url(&format!("/hooks/{trigger}")))
            .header("content-type", "application/json")
            .header("Idempotency-Key", key)
            .body(json!({"key": key}).to_string()),
    )
    .await;
    (answer, start.elapsed())
}

/// Wait until the receiver has seen every id in `ids`.
async fn wait_delivered(rx: &Receiver, ids: &HashSet<String>, within: Duration, d: &Daemon) {
    let start = Instant::now();
    loop {
        let seen = received_event_ids(rx);
        let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains(*id)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{} acknowledged events never delivered within {within:?}: {missing:?}; stderr:\n{}",
            missing.len(),
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One event of the trickle: when it was sent, and its answer.
struct Sent {
    id: String,
    at: Instant,
    answer: Answer,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed_and_loses_no_acknowledged_event() {
    let Some(mut set) = tokio::task::spawn_blocking(|| SentinelSet::start(1))
        .await
        .unwrap()
    else {
        return;
    };
    let rx = Receiver::start().await;
    let daemon = spawn(&set.url(), ", replicas_ack: 1", &rx);
    daemon.wait_ready(Duration::from_secs(15)).await;
    let daemon = Arc::new(daemon);

    // The trickle: an event every 50 ms, each posted on its own so a slow
    // answer never holds up the next one.
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let trickle = {
        let (sent, stop, daemon) = (sent.clone(), stop.clone(), daemon.clone());
        tokio::spawn(async move {
            let mut posts = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            for n in 0.. {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let (sent, daemon) = (sent.clone(), daemon.clone());
                posts.push(tokio::spawn(async move {
                    let id = format!("ev-{n:05}");
                    let at = Instant::now();
                    let answer = post_event(&daemon, &id).await;
                    sent.lock().unwrap().push(Sent { id, at, answer });
                }));
            }
            for p in posts {
                p.await.unwrap();
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let old_port = set.master.port;
    set.master.kill();
    let killed = Instant::now();

    // The sentinels promote the replica.
    let new_port = loop {
        let named = set.master_port();
        if let Some(p) = named.filter(|p| *p != old_port) {
            break p;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the sentinels did not fail over within 20s; a sentinel's log:\n{}",
            set.sentinels[0].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let failed_over = killed.elapsed();
    // The old master's place comes back as a replica of the new master,
    // so `replicas_ack: 1` can be met again.
    let back = tokio::task::spawn_blocking(move || {
        RedisProc::server_on(
            old_port,
            &["--replicaof", "127.0.0.1", &new_port.to_string()],
        )
    })
    .await
    .unwrap();

    // Keep trickling until acknowledgements have resumed for a second.
    let resumed = loop {
        let first_ack_after_kill = sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at > killed && s.answer.status == 202)
            .map(|s| s.at)
            .min();
        if let Some(at) = first_ack_after_kill {
            if at.elapsed() > Duration::from_secs(1) {
                break at;
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no event was acknowledged within 30s of the kill; stderr:\n{}",
            daemon.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.cancel();
    trickle.await.unwrap();

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    // Followed: the first event stored on the new master (acknowledged,
    // or kept while no replica had it yet) was sent within 10 s of the
    // kill.
    let first_stored = sent
        .iter()
        .filter(|s| s.at > killed && (s.answer.status == 202 || s.answer.kept()))
        .map(|s| s.at)
        .min()
        .unwrap();
    let followed = first_stored.duration_since(killed);
    assert!(
        followed < Duration::from_secs(10),
        "hookyard followed the new master only {followed:?} after the kill; stderr:\n{}",
        daemon.stderr()
    );
    let acked: HashSet<String> = sent
        .iter()
        .filter(|s| s.answer.status == 202)
        .map(|s| s.id.clone())
        .collect();
    let kept: HashSet<String> = sent
        .iter()
        .filter(|s| s.answer.kept())
        .map(|s| s.id.clone())
        .collect();
    let refused = sent.iter().filter(|s| s.answer.status != 202).count();
    let acked_before = sent
        .iter()
        .filter(|s| s.at < killed && s.answer.status == 202)
        .count();
    assert!(acked_before > 5, "too few events before the kill");
    eprintln!(
        "sentinel failover: {} events sent, {} acknowledged ({acked_before} before the kill), \
         {refused} refused ({} of them kept); sentinels failed over {failed_over:?} after the \
         kill, hookyard stored again {followed:?} after it and acknowledged again {:?} after it",
        sent.len(),
        acked.len(),
        kept.len(),
        resumed.duration_since(killed),
    );
    // Every acknowledged event is delivered, and so is every kept one.
    let all: HashSet<String> = acked.union(&kept).cloned().collect();
    wait_delivered(&rx, &all, Duration::from_secs(30), &daemon).await;
    // Deliveries carry the event id the sender gave: nothing else arrives.
    let seen = received_event_ids(&rx);
    let posted: HashSet<String> = sent.iter().map(|s| s.id.clone()).collect();
    assert!(seen.is_subset(&posted), "unknown event ids delivered");
    drop(back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_ack_not_met_answers_unavailable_and_keeps_the_event() {
    if !crate::support::redis_server_installed() {
        return;
    }
    let master = tokio::task::spawn_blocking(|| RedisProc::server(&[]))
        .await
        .unwrap();
    let rx = Receiver::start().await;
    let url = format!("redis://127.0.0.1:{}/0", master.port);
    let daemon = spawn(&url, ", replicas_ack: 1, replicas_ack_timeout: 200ms", &rx);
    daemon.wait_ready(Duration::from_secs(15)).await;

    // No replica: WAIT runs out. 503 by default, 429 where the trigger
    // says so, both with Retry-After and the "queue unavailable" code.
    let (first, took) = post_hook(&daemon, "t", "key-1").await;
    assert_eq!(first.status, 503, "{}", first.body);
    assert!(
        took >= Duration::from_millis(200),
        "answered after {took:?}"
    );
    let (other, _) = post_hook(&daemon, "t429", "key-2").await;
    assert_eq!(other.status, 429, "{}", other.body);
    for a in [&first, &other] {
        assert_eq!(a.retry_after.as_deref(), Some("1"));
        assert_eq!(a.body["error"]["code"], "queue_unavailable", "{}", a.body);
        assert!(a.kept(), "{}", a.body);
    }

    // Kept: both events are queued and delivered all the same.
    let got = rx.wait_for(2, Duration::from_secs(15)).await;
    let keys: HashSet<String> = got
        .iter()
        .map(|r| {
            r.json()["data"]["key"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        keys,
        HashSet::from(["key-1".to_owned(), "key-2".to_owned()])
    );
    let first_id = got
        .iter()
        .find(|r| r.json()["data"]["key"] == "key-1")
        .and_then(|r| r.header("x-hookyard-event-id").map(str::to_owned))
        .unwrap();

    // With a replica in sync, the sender's retry is acknowledged as the
    // duplicate of the kept event, and a new event is acknowledged.
    let replica = tokio::task::spawn_blocking({
        let port = master.port.to_string();
        move || RedisProc::server(&["--replicaof", "127.0.0.1", &port])
    })
    .await
    .unwrap();
    let start = Instant::now();
    while !master
        .query::<String>(redis::cmd("INFO").arg("replication"))
        .is_ok_and(|i| i.contains("state=online"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "replica never synced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The replica's first acknowledgements can miss a 200 ms WAIT on a
    // loaded machine: a sender retries on 503, and so does this test, for
    // a bounded time. Every answer names the one kept event.
    let until_acknowledged = async |key: &str| {
        let start = Instant::now();
        loop {
            let (answer, _) = post_hook(&daemon, "t", key).await;
            if answer.status == 202 {
                return answer;
            }
            assert_eq!(answer.status, 503, "{}", answer.body);
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "never acknowledged: {}",
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let retry = until_acknowledged("key-1").await;
    assert_eq!(retry.body["duplicate"], true);
    assert_eq!(retry.body["event_id"], first_id.as_str());
    let new = until_acknowledged("key-3").await;
    assert_ne!(new.body["event_id"], first_id.as_str());
    rx.wait_for(3, Duration::from_secs(15)).await;
    drop(replica);
}
