//! Real Redis servers and sentinels for the Sentinel tests (SPEC §16): each
//! process is a `redis-server` child (a sentinel is `redis-server
//! <conf> --sentinel`, what Debian's `redis-sentinel` package runs) on a
//! free loopback port with its own temp dir, killed when dropped, so also
//! when a test panics.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// One `redis-server` (a data server or a sentinel), killed on drop.
pub struct RedisProc {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl RedisProc {
    /// A data server; `extra` are more `redis-server` arguments (e.g.
    /// `--replicaof 127.0.0.1 <port>`).
    pub fn server(extra: &[&str]) -> RedisProc {
        Self::server_on(free_port(), extra)
    }

    /// A data server on `port` (to start a killed one again where it was).
    pub fn server_on(port: u16, extra: &[&str]) -> RedisProc {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--save", "", "--appendonly", "no"])
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = RedisProc { port, child, dir };
        server.wait_up();
        server
    }

    /// A sentinel watching `master_port` on 127.0.0.1 as `name`, with a
    /// `quorum` and a short failure detection (1 s), so a failover takes a
    /// few seconds.
    pub fn sentinel(name: &str, master_port: u16, quorum: u32) -> RedisProc {
        Self::sentinel_with(name, master_port, quorum, 1000)
    }

    /// As [`RedisProc::sentinel`], judging the master down after
    /// `down_after_ms` without an answer.
    pub fn sentinel_with(
        name: &str,
        master_port: u16,
        quorum: u32,
        down_after_ms: u32,
    ) -> RedisProc {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        // The sentinel rewrites its config file, so it lives in its dir.
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
                 sentinel down-after-milliseconds {name} {down_after_ms}\n\
                 sentinel failover-timeout {name} 4000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sentinel = RedisProc { port, child, dir };
        sentinel.wait_up();
        sentinel
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap()
    }

    fn wait_up(&self) {
        let client = self.client();
        for _ in 0..100 {
            if let Ok(mut c) = client.get_connection() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "redis-server on port {} did not come up; its log:\n{}",
            self.port,
            self.log()
        );
    }

    /// Its log file (for a failing test's message).
    pub fn log(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        read(&self.dir.path().join("redis.log")) + &read(&self.dir.path().join("sentinel.log"))
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A command's answer, on a fresh connection.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        cmd.query(&mut self.client().get_connection()?)
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A master, its replicas and three sentinels (quorum 2), all on loopback.
pub struct SentinelSet {
    pub name: String,
    pub master: RedisProc,
    pub replicas: Vec<RedisProc>,
    pub sentinels: Vec<RedisProc>,
}

impl SentinelSet {
    /// Started and settled: every replica in sync and every sentinel
    /// aware of the replicas and of the other sentinels, so a failover can
    /// run. `None` (skip) where `redis-server` is missing outside CI.
    pub fn start(replicas: usize) -> Option<SentinelSet> {
        if !crate::support::redis_server_installed() {
            return None;
        }
        let name = format!("hy{}", ulid::Ulid::new().to_string().to_lowercase());
        let master = RedisProc::server(&[]);
        let replicas: Vec<RedisProc> = (0..replicas)
            .map(|_| RedisProc::server(&["--replicaof", "127.0.0.1", &master.port.to_string()]))
            .collect();
        let sentinels: Vec<RedisProc> = (0..3)
            .map(|_| RedisProc::sentinel(&name, master.port, 2))
            .collect();
        let set = SentinelSet {
            name,
            master,
            replicas,
            sentinels,
        };
        set.settle(Duration::from_secs(20));
        Some(set)
    }

    /// The `queue.url` of this set.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{}/0", hosts.join(","), self.name)
    }

    fn settle(&self, within: Duration) {
        let start = Instant::now();
        let want_replicas = self.replicas.len();
        loop {
            let synced = want_replicas == 0
                || self
                    .master
                    .query::<String>(redis::cmd("INFO").arg("replication"))
                    .is_ok_and(|info| info.matches("state=online").count() == want_replicas);
            let known = self.sentinels.iter().all(|s| {
                let replicas: Vec<redis::Value> = s
                    .query(redis::cmd("SENTINEL").arg("replicas").arg(&self.name))
                    .unwrap_or_default();
                let others: Vec<redis::Value> = s
                    .query(redis::cmd("SENTINEL").arg("sentinels").arg(&self.name))
                    .unwrap_or_default();
                replicas.len() == want_replicas && others.len() == self.sentinels.len() - 1
            });
            if synced && known {
                return;
            }
            assert!(
                start.elapsed() < within,
                "the Sentinel set did not settle within {within:?} (replicas in sync: {synced}, \
                 sentinels aware: {known}); a sentinel's log:\n{}",
                self.sentinels[0].log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The master's port as the first sentinel that answers names it.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let addr: Option<(String, String)> = s
                .query(
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(&self.name),
                )
                .ok()
                .flatten();
            addr.and_then(|(_, port)| port.parse().ok())
        })
    }
}
