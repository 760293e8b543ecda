//! Fault tests on the real `hookyard` binary: SIGKILL under load and SIGTERM
//! during deliveries must lose no accepted event (SPEC §6: a 2xx survives
//! `kill -9`; every job is delivered at least once). Each test runs the
//! binary on a temp-dir config, kills it mid-work, restarts it on the same
//! config and checks at the receiver, by `X-Hookyard-Event-Id`, that every
//! event answered 202 arrived (duplicates allowed) within 60 s.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Answer, Receiver, free_port, http, received_event_ids, redis_available};

const TOKEN: &str = "fault-token-value";
pub(crate) const EVENTS: usize = 300;
pub(crate) const SENDERS: usize = 16;
pub(crate) const DELIVERED_WITHIN: Duration = Duration::from_secs(60);

/// One config in a temp dir, started and restarted as the real binary.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    runs: usize,
}

impl Setup {
    /// `queue` is the queue section (embedded in the temp dir when empty).
    fn new(rx: &Receiver, queue: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let queue = if queue.is_empty() {
            format!(
                "queue: {{ backend: embedded, path: \"{}\" }}",
                dir.path().join("data").display()
            )
        } else {
            queue.to_owned()
        };
        // A slow receiver with few deliveries at a time keeps work in flight
        // for seconds, so the kill lands mid-delivery.
        let yaml = format!(
            r#"
server: {{ listen: "127.0.0.1:{port}", shutdown_grace: 10s }}
{queue}
defaults: {{ timeout: 1500ms }}
reload: {{ watch: false }}
secrets: {{ app_token: {{ env: FAULT_TOKEN }} }}
tokens:
  - {{ name: app, secret: app_token, scopes: [events:write, deliveries:read] }}
subscriptions:
  - id: slow
    url: "{url}"
    events: ["*"]
    max_in_flight: 8
    retry: {{ schedule: [200ms, 200ms, 500ms, 1s, 1s, 2s, 2s, 5s] }}
"#,
            url = rx.url("/hook"),
        );
        let config = dir.path().join("hookyard.yaml");
        std::fs::write(&config, yaml).unwrap();
        Setup {
            dir,
            config,
            port,
            runs: 0,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Start `hookyard run -c <config>`, logs into the temp dir, and wait
    /// until `/readyz` answers 200.
    async fn start(&mut self) -> Child {
        self.runs += 1;
        let log = std::fs::File::create(self.log(self.runs)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .arg("run")
            .arg("-c")
            .arg(&self.config)
            .env("FAULT_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let client = http();
        for _ in 0..400 {
            if let Ok(r) = client.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return child;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("hookyard not ready within 10s:\n{}", self.logs());
    }

    fn log(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("run{run}.log"))
    }

    /// Every run's log, for failure messages.
    fn logs(&self) -> String {
        (1..=self.runs)
            .map(|i| {
                let text = std::fs::read_to_string(self.log(i)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- run {i} (last 40 lines)\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Post `EVENTS` events from `SENDERS` concurrent clients; `on_accepted` is
/// called with the running count after each 202 (it may kill the daemon:
/// later posts then fail and are simply not counted). Returns the accepted
/// event ids.
async fn send_events(
    base: String,
    on_accepted: Arc<dyn Fn(usize) + Send + Sync>,
) -> HashSet<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (next, accepted, base, on_accepted) = (
            next.clone(),
            accepted.clone(),
            base.clone(),
            on_accepted.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = http();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= EVENTS {
                    return;
                }
                let ev = json!({"type": "load.tick", "data": {"i": i}});
                let Ok(r) = client
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&ev).unwrap())
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                else {
                    continue;
                };
                if r.status() != 202 {
                    continue;
                }
                let Ok(Ok(v)) = r.bytes().await.map(|b| serde_json::from_slice::<Value>(&b)) else {
                    // The 202 status line came but the body was cut: the
                    // event is durable, but we cannot name it; skip.
                    continue;
                };
                let id = v["event_id"].as_str().unwrap().to_owned();
                let n = {
                    let mut set = accepted.lock().unwrap();
                    set.insert(id);
                    set.len()
                };
                on_accepted(n);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    accepted.lock().unwrap().clone()
}

/// Wait until the receiver saw every accepted id (≤ 60 s).
async fn wait_all_delivered(rx: &Receiver, accepted: &HashSet<String>, setup: &Setup) {
    let deadline = tokio::time::Instant::now() + DELIVERED_WITHIN;
    loop {
        let got = received_event_ids(rx);
        let missing: Vec<&String> = accepted.iter().filter(|id| !got.contains(*id)).collect();
        if missing.is_empty() {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{} of {} accepted events never delivered within {DELIVERED_WITHIN:?} \
                 (e.g. {:?}); receiver got {} requests\n{}",
                missing.len(),
                accepted.len(),
                missing.iter().take(5).collect::<Vec<_>>(),
                rx.received().len(),
                setup.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn slow_receiver_script(rx: &Receiver) {
    let slow = Answer {
        delay: Duration::from_millis(100),
        ..Answer::status(200)
    };
    rx.script(std::iter::repeat_n(slow, EVENTS * 3));
}

/// SIGKILL once half the events were accepted and deliveries have begun
/// (or, when ingestion finished first, once deliveries have begun), restart, and check every accepted event arrives.
async fn sigkill_under_load(queue: &str) {
    let rx = Receiver::start().await;
    slow_receiver_script(&rx);
    let mut setup = Setup::new(&rx, queue);
    let child = Arc::new(Mutex::new(Some(setup.start().await)));
    let killed_at = Arc::new(AtomicUsize::new(0));
    let on_accepted: Arc<dyn Fn(usize) + Send + Sync> = {
        let (child, killed_at, rx) = (child.clone(), killed_at.clone(), rx.clone());
        Arc::new(move |n| {
            // Mid-ingestion and mid-delivery: half accepted, deliveries begun.
            if n >= EVENTS / 2 && !rx.received().is_empty() {
                if let Some(mut c) = child.lock().unwrap().take() {
                    c.kill().unwrap(); // SIGKILL
                    c.wait().unwrap();
                    killed_at.store(n, Ordering::SeqCst);
                }
            }
        })
    };
    let accepted = send_events(setup.url(""), on_accepted).await;
    let pending_kill = child.lock().unwrap().take();
    if let Some(mut c) = pending_kill {
        // Ingestion outran the first delivery: kill once deliveries have
        // begun, still mid-delivery (the slow receiver keeps most queued).
        rx.wait_for(5, Duration::from_secs(20)).await;
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let before = received_event_ids(&rx);
    assert!(
        accepted.len() >= EVENTS / 2,
        "only {} events accepted before the kill\n{}",
        accepted.len(),
        setup.logs()
    );
    assert!(
        before.len() < accepted.len(),
        "everything was delivered before the kill: the test proves nothing"
    );
    eprintln!(
        "sigkill: {} accepted (kill at {}), {} delivered before the kill",
        accepted.len(),
        killed_at.load(Ordering::SeqCst),
        before.len()
    );
    let mut restarted = setup.start().await;
    wait_all_delivered(&rx, &accepted, &setup).await;
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_accepted_event() {
    sigkill_under_load("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigkill_under_load_loses_no_accepted_event() {
    if !redis_available() {
        return;
    }
    // A short lease: the killed process's leased jobs are reclaimed after it.
    let keys = crate::support::RedisKeys::fresh("faults");
    sigkill_under_load(&keys.queue_yaml(", lease: 2s")).await;
}

/// SIGTERM while deliveries are in flight: exit code 0, and after a restart
/// every accepted event has arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_deliveries_loses_nothing() {
    let rx = Receiver::start().await;
    slow_receiver_script(&rx);
    let mut setup = Setup::new(&rx, "");
    let mut child = setup.start().await;
    let accepted = send_events(setup.url(""), Arc::new(|_| {})).await;
    assert_eq!(accepted.len(), EVENTS, "{}", setup.logs());
    // Let deliveries start, then ask the daemon to stop.
    rx.wait_for(10, Duration::from_secs(20)).await;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_exit(&mut child, Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "{}", setup.logs());
    let before = received_event_ids(&rx);
    eprintln!(
        "sigterm: {} accepted, {} delivered before the stop",
        accepted.len(),
        before.len()
    );
    assert!(
        before.len() < accepted.len(),
        "everything was delivered before SIGTERM: the test proves nothing"
    );
    let mut restarted = setup.start().await;
    wait_all_delivered(&rx, &accepted, &setup).await;
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}

async fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if tokio::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("hookyard did not exit within {limit:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
