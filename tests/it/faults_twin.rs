//! Fault test with two replicas of the real `hookyard` binary on one Redis
//! queue: SIGKILL replica A under load and never restart it; replica B alone
//! must deliver every event either replica answered 202 (SPEC §6: a 2xx
//! survives `kill -9`, at-least-once delivery). A short `lease: 2s` lets B
//! reclaim the jobs A held leased when it died. The kill is taken only while
//! A holds leases (its consumer's pending list in the Redis group is not
//! empty), and at the end that pending list must be empty: A's leased jobs
//! left it by reclaim, since a dead process acknowledges nothing.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::faults::{DELIVERED_WITHIN, EVENTS, SENDERS};
use crate::support::{Answer, Receiver, free_port, http, received_event_ids, redis_available};

const TOKEN: &str = "twin-fault-token-value";

/// One replica: its own config (own port, shared Redis prefix) and log.
struct Replica {
    name: &'static str,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Replica {
    fn new(dir: &Path, name: &'static str, rx: &Receiver, prefix: &str) -> Replica {
        let port = free_port();
        // A slow receiver and few deliveries at a time keep leases held for
        // a while, so the kill lands while A owns in-flight jobs.
        let yaml = format!(
            r#"
server: {{ listen: "127.0.0.1:{port}", shutdown_grace: 10s }}
queue: {{ backend: redis, url: "redis://127.0.0.1:6379", prefix: "{prefix}", lease: 2s }}
defaults: {{ timeout: 1500ms }}
reload: {{ watch: false }}
secrets: {{ app_token: {{ env: TWIN_TOKEN }} }}
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
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(&config, yaml).unwrap();
        Replica {
            name,
            port,
            config,
            log: dir.join(format!("{name}.log")),
            child: Mutex::new(None),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Start `hookyard run -c <config>` and wait until `/readyz` is 200.
    async fn start(&self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .arg("run")
            .arg("-c")
            .arg(&self.config)
            .env("TWIN_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        *self.child.lock().unwrap() = Some(child);
        let client = http();
        for _ in 0..400 {
            if let Ok(r) = client.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.kill();
        panic!("{} not ready within 10s:\n{}", self.name, self.logs());
    }

    fn pid(&self) -> u32 {
        self.child.lock().unwrap().as_ref().unwrap().id()
    }

    /// SIGKILL and reap; a no-op when already gone.
    fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("--- {} (last 40 lines)\n{}", self.name, tail.join("\n"))
    }
}

/// Kills both replicas on every exit path, panics included.
struct Twins {
    a: Arc<Replica>,
    b: Arc<Replica>,
    _dir: tempfile::TempDir,
}

impl Twins {
    fn logs(&self) -> String {
        format!("{}\n{}", self.a.logs(), self.b.logs())
    }
}

impl Drop for Twins {
    fn drop(&mut self) {
        self.a.kill();
        self.b.kill();
    }
}

/// Pending (leased, unacknowledged) entries per consumer of the queue's
/// group `<prefix>:workers` on stream `<prefix>:ready`, for the consumer
/// whose name carries `pid` (the daemon names it `<host>-<pid>-<ulid>`).
fn pending_of(prefix: &str, pid: u32) -> usize {
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut con = client.get_connection().unwrap();
    type Summary = (
        i64,
        Option<String>,
        Option<String>,
        Option<Vec<(String, String)>>,
    );
    let (_, _, _, consumers): Summary = redis::cmd("XPENDING")
        .arg(format!("{prefix}:ready"))
        .arg(format!("{prefix}:workers"))
        .query(&mut con)
        .unwrap();
    let tag = format!("-{pid}-");
    consumers
        .unwrap_or_default()
        .iter()
        .filter(|(name, _)| name.contains(&tag))
        .map(|(_, n)| n.parse::<usize>().unwrap())
        .sum()
}

/// What the senders saw: accepted ids per replica, and how many B accepted
/// after the kill.
#[derive(Default)]
struct Accepted {
    by_a: HashSet<String>,
    by_b: HashSet<String>,
    b_after_kill: usize,
}

/// The state when A was killed: its leases, the ids delivered, the time.
struct AtKill {
    leased: usize,
    before: HashSet<String>,
    at: Instant,
}

/// POST one event; `Some(id)` on a 202 with a readable body.
async fn post(client: &reqwest::Client, base: &str, i: usize) -> Result<Option<String>, ()> {
    let ev = json!({"type": "load.tick", "data": {"i": i}});
    let r = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&ev).unwrap())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|_| ())?;
    if r.status() != 202 {
        return Ok(None);
    }
    // A 202 whose body was cut is durable but unnamed: not counted.
    let Ok(Ok(v)) = r.bytes().await.map(|b| serde_json::from_slice::<Value>(&b)) else {
        return Ok(None);
    };
    Ok(Some(v["event_id"].as_str().unwrap().to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_replicas_survive_sigkill_of_one() {
    if !redis_available() {
        return;
    }
    let prefix = format!("twin-{}", ulid::Ulid::new());
    let _keys = crate::support::RedisKeys::shared(&prefix);
    let rx = Receiver::start().await;
    let slow = Answer {
        delay: Duration::from_millis(100),
        ..Answer::status(200)
    };
    rx.script(std::iter::repeat_n(slow, EVENTS * 3));
    let dir = tempfile::tempdir().unwrap();
    let twins = Twins {
        a: Arc::new(Replica::new(dir.path(), "A", &rx, &prefix)),
        b: Arc::new(Replica::new(dir.path(), "B", &rx, &prefix)),
        _dir: dir,
    };
    twins.a.start().await;
    twins.b.start().await;
    let pid_a = twins.a.pid();

    let next = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Accepted::default()));
    let at_kill: Arc<Mutex<Option<AtKill>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (next, killed, accepted, at_kill, rx, prefix) = (
            next.clone(),
            killed.clone(),
            accepted.clone(),
            at_kill.clone(),
            rx.clone(),
            prefix.clone(),
        );
        let (a, b) = (twins.a.clone(), twins.b.clone());
        tasks.push(tokio::spawn(async move {
            let client = http();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= EVENTS {
                    return;
                }
                // Split between both replicas until A is dead, then B only;
                // a post lost to the kill is sent again to B.
                let to_a = i % 2 == 0 && !killed.load(Ordering::SeqCst);
                let mut res = post(&client, &if to_a { a.url("") } else { b.url("") }, i).await;
                let mut on_a = to_a;
                if to_a && res.is_err() && killed.load(Ordering::SeqCst) {
                    res = post(&client, &b.url(""), i).await;
                    on_a = false;
                }
                let Ok(Some(id)) = res else { continue };
                let n = {
                    let mut acc = accepted.lock().unwrap();
                    if on_a {
                        acc.by_a.insert(id);
                    } else {
                        acc.by_b.insert(id);
                        if killed.load(Ordering::SeqCst) {
                            acc.b_after_kill += 1;
                        }
                    }
                    acc.by_a.len() + acc.by_b.len()
                };
                // Half accepted and A holds leases: SIGKILL A, once.
                if n >= EVENTS / 2 && !killed.load(Ordering::SeqCst) {
                    let mut slot = at_kill.lock().unwrap();
                    if slot.is_none() {
                        let leased = pending_of(&prefix, pid_a);
                        if leased > 0 {
                            let before = received_event_ids(&rx);
                            a.kill();
                            killed.store(true, Ordering::SeqCst);
                            *slot = Some(AtKill {
                                leased,
                                before,
                                at: Instant::now(),
                            });
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    if !killed.load(Ordering::SeqCst) {
        panic!(
            "A never held a lease after half the events were accepted; no kill\n{}",
            twins.logs()
        );
    }
    let AtKill {
        leased: leased_at_kill,
        before,
        at: killed_at,
    } = at_kill.lock().unwrap().take().unwrap();
    let acc = std::mem::take(&mut *accepted.lock().unwrap());
    let all: HashSet<String> = acc.by_a.union(&acc.by_b).cloned().collect();
    eprintln!(
        "twin: {} accepted by A, {} by B ({} after the kill); A held {leased_at_kill} leases \
         and {} events were delivered at the kill",
        acc.by_a.len(),
        acc.by_b.len(),
        acc.b_after_kill,
        before.len()
    );
    assert!(
        acc.by_a.len() >= EVENTS / 5 && acc.b_after_kill > 0,
        "both replicas must take load, B also after the kill\n{}",
        twins.logs()
    );
    // Not vacuous: work was in flight, some of it A's own.
    let a_undelivered = acc.by_a.iter().filter(|id| !before.contains(*id)).count();
    assert!(
        a_undelivered > 0 && before.len() < all.len(),
        "everything A accepted was delivered before the kill: the test proves nothing"
    );

    // Every accepted event arrives, A being dead: B delivers them all.
    let deadline = Instant::now() + DELIVERED_WITHIN;
    loop {
        let got = received_event_ids(&rx);
        let missing: Vec<&String> = all.iter().filter(|id| !got.contains(*id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted events never delivered within {DELIVERED_WITHIN:?} \
             (e.g. {:?})\n{}",
            missing.len(),
            all.len(),
            missing.iter().take(5).collect::<Vec<_>>(),
            twins.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A's leased jobs left its pending list: only a reclaim can do that.
    assert_eq!(
        pending_of(&prefix, pid_a),
        0,
        "A's leases were never reclaimed\n{}",
        twins.logs()
    );
    eprintln!(
        "twin: all {} delivered {:?} after the kill",
        all.len(),
        killed_at.elapsed()
    );
}
