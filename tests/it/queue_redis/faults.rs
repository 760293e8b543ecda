//! Fault tests with a private `redis-server` on a free port: a SIGKILL with
//! AOF (`appendfsync always`) loses no acknowledged event or job, and a
//! restart without persistence is recovered by the queue itself (stream and
//! group recreated, counted in `resets()`). The server is killed by a Drop
//! guard even when a test fails.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookyard::queue::redis::RedisQueue;
use hookyard::queue::{DeliveryState, Ingested};

use super::support::*;
use crate::support::free_port;

/// A redis-server child on 127.0.0.1:<port> in its own temp dir.
struct Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    aof: bool,
}

impl Server {
    fn start(aof: bool) -> Option<Server> {
        if !crate::support::redis_server_installed() {
            return None;
        }
        let mut s = Server {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            aof,
        };
        s.spawn();
        Some(s)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--save")
            .arg("");
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..100 {
            if let Ok(mut c) = client.get_connection() {
                // Loading the AOF answers LOADING until done.
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not come up", self.port);
    }

    /// SIGKILL, then start again on the same port and directory.
    fn kill_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first calls after a restart may fail while the connection manager
/// reconnects; the daemon retries the same way (503 then success).
async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, hookyard::queue::QueueError>>,
{
    for _ in 0..50 {
        match f().await {
            Ok(v) => return v,
            Err(hookyard::queue::QueueError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    panic!("queue did not recover");
}

#[tokio::test]
async fn acknowledged_events_survive_sigkill_with_aof() {
    let Some(mut server) = Server::start(true) else {
        return;
    };
    let q = RedisQueue::open(&server.url(), "hy", settings("w1", Duration::from_secs(30)))
        .await
        .unwrap();
    let n = 50;
    for i in 0..n {
        let id = format!("E{i}");
        let got = q
            .ingest(
                &event(&id, "t"),
                Some(("event", &id)),
                vec![job(&format!("D{i}"), &id, "a")],
            )
            .await
            .unwrap();
        assert_eq!(got, Ingested::Accepted { event_id: id });
    }
    server.kill_and_restart();

    let stats = eventually(|| q.stats()).await;
    assert_eq!(stats.ready, n);
    assert_eq!(q.resets(), 0);
    let mut leased = Vec::new();
    while leased.len() < n as usize {
        let got = eventually(|| q.lease(100, SHORT)).await;
        assert!(!got.is_empty(), "every job is still queued");
        leased.extend(got);
    }
    for i in 0..n {
        assert!(q.event(&format!("E{i}")).await.unwrap().is_some());
    }
    for l in &leased {
        q.complete(l, None, DeliveryState::Succeeded, None)
            .await
            .unwrap();
    }
    // Idempotency keys survived too.
    let dup = q
        .ingest(&event("E0", "t"), Some(("event", "E0")), vec![])
        .await
        .unwrap();
    assert_eq!(
        dup,
        Ingested::Duplicate {
            event_id: "E0".into()
        }
    );
}

#[tokio::test]
async fn empty_restart_recreates_stream_and_group() {
    let Some(mut server) = Server::start(false) else {
        return;
    };
    let q = RedisQueue::open(&server.url(), "hy", settings("w1", Duration::from_secs(30)))
        .await
        .unwrap();
    q.ingest(&event("E0", "t"), None, vec![job("D0", "E0", "a")])
        .await
        .unwrap();
    server.kill_and_restart();

    // Lease first: NOGROUP is recovered within the call.
    let got = eventually(|| q.lease(10, SHORT)).await;
    assert!(got.is_empty(), "the queued work was lost with Redis' data");
    assert_eq!(q.resets(), 1);
    q.ingest(&event("E1", "t"), None, vec![job("D1", "E1", "a")])
        .await
        .unwrap();
    let got = q.lease(10, SHORT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(q.resets(), 1, "one reset counted once");
    q.complete(&got[0], None, DeliveryState::Succeeded, None)
        .await
        .unwrap();

    // Ingest first: the missing stream is noticed by the ingest script.
    server.kill_and_restart();
    let e2 = event("E2", "t");
    let got = eventually(|| q.ingest(&e2, None, vec![job("D2", "E2", "a")])).await;
    assert_eq!(
        got,
        Ingested::Accepted {
            event_id: "E2".into()
        }
    );
    assert_eq!(q.resets(), 2);
    let got = q.lease(10, SHORT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job.delivery_id, "D2");
}

/// Redis forgetting its scripts (SCRIPT FLUSH, a failover to a replica
/// that never loaded them) costs nothing: the batched ingest and complete
/// calls load their script again and succeed on the first try.
#[tokio::test]
async fn a_flushed_script_cache_is_reloaded() {
    let Some(server) = Server::start(false) else {
        return;
    };
    let q = RedisQueue::open(&server.url(), "hy", settings("w1", Duration::from_secs(30)))
        .await
        .unwrap();
    let flush = || {
        let mut c = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    };
    q.ingest(&event("E0", "t"), None, vec![job("D0", "E0", "a")])
        .await
        .unwrap();
    flush();
    let got = q
        .ingest(&event("E1", "t"), None, vec![job("D1", "E1", "a")])
        .await
        .unwrap();
    assert!(matches!(got, Ingested::Accepted { .. }));
    let leased = q.lease(10, SHORT).await.unwrap();
    assert_eq!(leased.len(), 2);
    flush();
    for job in &leased {
        q.complete(job, None, DeliveryState::Succeeded, None)
            .await
            .unwrap();
    }
    assert_eq!(
        q.delivery("D1").await.unwrap().unwrap().state,
        DeliveryState::Succeeded
    );
}

#[tokio::test]
async fn unreachable_redis_is_unavailable() {
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let got = RedisQueue::open(&url, "hy", settings("w1", Duration::from_secs(30))).await;
    assert!(matches!(
        got,
        Err(hookyard::queue::QueueError::Unavailable(_))
    ));
}

/// The daemon itself on a private Redis: while Redis is down `/readyz` is 503
/// and ingestion answers 503 (the sender retries); when Redis comes back
/// EMPTY the daemon recreates its stream and group by itself, counts the
/// reset, accepts and delivers again, with no restart of hookyard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_rides_out_redis_down_and_restarted_empty() {
    use crate::support::{Receiver, http, start_daemon};
    let Some(mut server) = Server::start(false) else {
        return;
    };
    let receiver = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "fault-token").unwrap();
    let d = start_daemon(&format!(
        "queue: {{ backend: redis, url: \"{}\", prefix: \"hyt-daemon\", lease: 2s }}\n\
         defaults: {{ timeout: 1500ms }}\n\
         secrets: {{ tok: {{ file: \"{}\" }} }}\n\
         tokens: [ {{ name: app, secret: tok, scopes: [events:write] }} ]\n\
         subscriptions:\n  - {{ id: r, url: \"{}\", events: [\"*\"] }}\n",
        server.url(),
        token_file.display(),
        receiver.url("/hook")
    ))
    .await;
    let client = http();
    let publish = || {
        client
            .post(d.url("/v1/events"))
            .header("Authorization", "Bearer fault-token")
            .header("Content-Type", "application/json")
            .body(r#"{"type":"fault.test","data":{}}"#)
            .send()
    };
    assert_eq!(publish().await.unwrap().status(), 202);
    receiver.wait_for(1, Duration::from_secs(10)).await;

    server.kill();
    let ready = client.get(d.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "readiness while Redis is down");
    let refused = publish().await.unwrap();
    assert_eq!(refused.status(), 503, "ingestion while Redis is down");
    assert!(refused.headers().get("retry-after").is_some());

    server.spawn(); // no persistence: Redis comes back empty
    let mut accepted = false;
    for _ in 0..100 {
        if publish().await.unwrap().status() == 202 {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        accepted,
        "the daemon did not accept events again after Redis returned"
    );
    receiver.wait_for(2, Duration::from_secs(20)).await;
    let ready = client.get(d.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // Housekeeping refreshes the queue metrics every 5s (a scrape queries
    // nothing, SPEC §11): wait for a refresh.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = client
            .get(d.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let resets = metrics
            .lines()
            .find(|l| l.starts_with("hookyard_queue_resets_total"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok());
        if resets >= Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "resets not counted: {resets:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    d.stop().await;
}
