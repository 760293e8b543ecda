//! Unsafe Redis is refused (SPEC §11): the real binary against a private
//! `redis-server` on a free port. An eviction policy other than
//! `noeviction` at start makes `hookyard run` exit 1 naming it, unless
//! `queue.allow_eviction: true` (then it runs and says so in
//! `hookyard_queue_unsafe`); turned on while the daemon runs, it stops
//! ingestion (503, readiness 503) until it is put back.

#![allow(clippy::unwrap_used)]

use crate::support::get_text;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{free_port, http};

const TOKEN: &str = "redis-safety-token-value";

/// A redis-server child on a free loopback port, killed on drop.
struct PrivateRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// A server with `maxmemory-policy` `policy`, and `extra` arguments.
    fn start(policy: &str, extra: &[&str]) -> Option<PrivateRedis> {
        if !crate::support::redis_server_installed() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", policy])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = PrivateRedis {
            child,
            port,
            _dir: dir,
        };
        let mut c = server.connection();
        let _: () = redis::cmd("PING").query(&mut c).unwrap();
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A plain connection, retried while the server starts.
    fn connection(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..100 {
            if let Ok(c) = client.get_connection() {
                return c;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not come up", self.port);
    }

    fn config_set_policy(&self, policy: &str) {
        let mut c = self.connection();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .query(&mut c)
            .unwrap();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hookyard run -c <dir>` with its stderr in `<dir>/../stderr.log`,
/// killed on drop.
struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    fn spawn(dir: &Path, redis: &PrivateRedis, queue_extra: &str) -> Daemon {
        let port = free_port();
        let config = dir.join("config");
        std::fs::create_dir_all(&config).unwrap();
        let yaml = format!(
            r#"
server: {{ listen: "127.0.0.1:{port}" }}
queue: {{ backend: redis, url: "{url}", prefix: "safety"{queue_extra} }}
reload: {{ watch: false }}
secrets: {{ app_token: {{ env: SAFETY_TOKEN }} }}
tokens: [ {{ name: app, secret: app_token, scopes: [events:write] }} ]
"#,
            url = redis.url(),
        );
        std::fs::write(config.join("hookyard.yaml"), yaml).unwrap();
        let log = dir.join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .arg("run")
            .arg("-c")
            .arg(&config)
            .env("SAFETY_TOKEN", TOKEN)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        Daemon { child, port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers `status` with `text` in its body.
    async fn wait_ready(&self, status: u16, text: &str, within: Duration) {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(r) = http().get(self.url("/readyz")).send().await {
                if r.status() == status && r.text().await.unwrap_or_default().contains(text) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "/readyz did not answer {status} with {text:?} within {within:?}; stderr:\n{}",
            self.stderr()
        );
    }

    /// `POST /v1/events` of one event: (status, body).
    async fn post_event(&self, n: u32) -> (u16, serde_json::Value) {
        let resp = http()
            .post(self.url("/v1/events"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(json!({"type": "order.created", "data": {"n": n}}).to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or_default();
        (status, body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_policy_at_start_exits_1_naming_it() {
    let Some(redis) = PrivateRedis::start("allkeys-lru", &[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(dir.path(), &redis, "");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "hookyard kept running on an allkeys-lru Redis; stderr:\n{}",
            daemon.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stderr = daemon.stderr();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    for part in [
        "maxmemory-policy is allkeys-lru",
        "noeviction",
        "queue.allow_eviction",
    ] {
        assert!(stderr.contains(part), "{part:?} missing from:\n{stderr}");
    }
    assert!(!stderr.contains("hookyard ready"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_eviction_runs_with_a_warning_and_the_gauge() {
    let Some(redis) = PrivateRedis::start("allkeys-lru", &[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(dir.path(), &redis, ", allow_eviction: true");
    daemon
        .wait_ready(200, "ready", Duration::from_secs(10))
        .await;
    assert_eq!(daemon.post_event(1).await.0, 202);
    let metrics = get_text(daemon.url("/metrics")).await;
    assert!(
        metrics.contains("# HELP hookyard_queue_unsafe "),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookyard_queue_unsafe{reason=\"eviction_policy\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookyard_queue_unsafe{reason=\"redis_version\"} 0"),
        "{metrics}"
    );
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("WARN") && stderr.contains("maxmemory-policy is allkeys-lru"),
        "{stderr}"
    );
}

/// Someone runs `CONFIG SET maxmemory-policy allkeys-lru` while the daemon
/// runs and its connection drops: as at open (SPEC §11), the daemon exits 1
/// naming the setting, after refusing new events while it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_turned_on_while_running_exits_1_naming_it() {
    let Some(redis) = PrivateRedis::start("noeviction", &[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(dir.path(), &redis, "");
    daemon
        .wait_ready(200, "ready", Duration::from_secs(10))
        .await;
    assert_eq!(daemon.post_event(1).await.0, 202);

    redis.config_set_policy("allkeys-lru");
    let mut c = redis.connection();
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut c)
        .unwrap();
    // Housekeeping looks every 5 s; then the daemon stops as at open. New
    // events that arrive meanwhile are refused, never written.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon still runs on an evicting Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(1));
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("maxmemory-policy is allkeys-lru") && stderr.contains("allow_eviction"),
        "{stderr}"
    );
}

/// Managed Redis often forbids CONFIG: the policy cannot be known, so the
/// daemon says so once (not on every recheck) and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_config_get_is_one_warning() {
    let Some(redis) = PrivateRedis::start("noeviction", &["--rename-command", "CONFIG", ""]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(dir.path(), &redis, "");
    daemon
        .wait_ready(200, "ready", Duration::from_secs(10))
        .await;
    assert_eq!(daemon.post_event(1).await.0, 202);
    // Housekeeping has rechecked by now (its first tick is at start).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stderr = daemon.stderr();
    let warning = "cannot check its maxmemory-policy";
    assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
}
