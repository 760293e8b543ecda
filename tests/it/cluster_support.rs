//! Real Redis Clusters for the cluster tests (SPEC §16), and the pieces
//! those tests share:
//!
//! - [`Cluster`]: a private cluster of `redis-server` children
//!   ([`RedisProc`], killed on drop) on free loopback ports, made with
//!   `redis-cli --cluster create` and a short node timeout (1 s), so a
//!   killed master's replica takes over within seconds;
//! - [`ClusterKeys`]: deletes a test's keys from every master when dropped
//!   (a cluster has no single server to SCAN);
//! - [`Daemon`] and [`Recorder`] (`cluster_support/daemon.rs`): the real
//!   `hookyard` binary on a config of the test's, and a receiver that knows
//!   which replica sent each request.
//!
//! Clusters need `redis-server` and `redis-cli`: outside CI, without them
//! the tests are skipped with a message; under CI=true that is a failure.

#![allow(clippy::unwrap_used, dead_code)]

pub mod daemon;

pub use daemon::{Daemon, Recorder};

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::sentinel_support::RedisProc;
use crate::support::free_port;

/// Whether `redis-server` and `redis-cli` are both here; under CI=true
/// their absence is a failure, never a skip.
pub fn cluster_tools_installed() -> bool {
    let has = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    let found = has("redis-server") && has("redis-cli");
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "redis-server and redis-cli are required in CI (Debian: redis-server, redis-tools)"
            );
        }
        eprintln!("SKIPPED: a Redis Cluster test needs redis-server and redis-cli");
    }
    found
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port(taken: &HashSet<u16>) -> u16 {
    loop {
        let port = free_port();
        let bus = u32::from(port) + 10_000;
        if bus <= 65_535
            && !taken.contains(&port)
            && std::net::TcpListener::bind(("127.0.0.1", bus as u16)).is_ok()
        {
            return port;
        }
    }
}

/// One line of `CLUSTER NODES`: a node, its role and the slots it serves.
#[derive(Debug, Clone)]
pub struct NodeLine {
    pub port: u16,
    pub master: bool,
    /// Flagged `fail` or `fail?` by the node asked.
    pub failing: bool,
    pub slots: usize,
}

/// `CLUSTER NODES` text, parsed (importing/migrating markers ignored).
pub fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            // 127.0.0.1:7001@17001[,hostname]
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags: Vec<&str> = f[2].split(',').collect();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .map(|s| match s.split_once('-') {
                    Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
                    None => 1,
                })
                .sum();
            Some(NodeLine {
                port,
                master: flags.contains(&"master"),
                failing: flags.contains(&"fail") || flags.contains(&"fail?"),
                slots,
            })
        })
        .collect()
}

/// `CLUSTER NODES` as the node on `addr` ("host:port", "user:pw@host:port")
/// sees it.
pub fn cluster_nodes(addr: &str) -> redis::RedisResult<Vec<NodeLine>> {
    let client = redis::Client::open(format!("redis://{addr}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn)?;
    Ok(parse_nodes(&text))
}

/// A private Redis Cluster on loopback, every node killed on drop.
pub struct Cluster {
    /// Every node, by port (a restarted node replaces its killed self).
    pub nodes: Vec<RedisProc>,
    /// Killed nodes, kept for their logs.
    pub killed: Vec<RedisProc>,
    /// Where each node's `nodes.conf` lives, so a restart rejoins.
    conf_dir: tempfile::TempDir,
}

impl Cluster {
    /// `masters` masters (at least 3) with `replicas_per_master` replicas
    /// each, created and settled: every node sees all slots served and
    /// every replica is in sync. `None` (skip) without the tools outside
    /// CI. Blocking: call from `spawn_blocking`.
    pub fn start(masters: usize, replicas_per_master: usize) -> Option<Cluster> {
        assert!(masters >= 3, "redis-cli --cluster create needs 3 masters");
        if !cluster_tools_installed() {
            return None;
        }
        let mut taken = HashSet::new();
        let ports: Vec<u16> = (0..masters * (1 + replicas_per_master))
            .map(|_| {
                let p = free_cluster_port(&taken);
                taken.insert(p);
                p
            })
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            killed: Vec::new(),
            conf_dir: tempfile::tempdir().unwrap(),
        };
        for &port in &ports {
            cluster.nodes.push(cluster.spawn(port));
        }
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", &replicas_per_master.to_string()])
            .arg("--cluster-yes")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.settle(replicas_per_master, Duration::from_secs(30));
        Some(cluster)
    }

    fn spawn(&self, port: u16) -> RedisProc {
        let conf = self.conf_dir.path().join(format!("nodes-{port}.conf"));
        RedisProc::server_on(
            port,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.to_str().unwrap(),
                "--cluster-node-timeout",
                "1000",
            ],
        )
    }

    /// The `queue.url` of this cluster: every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Every node's port, killed ones too.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .nodes
            .iter()
            .chain(&self.killed)
            .map(|n| n.port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The masters that serve slots, as a live node sees them, in slot
    /// order of nothing in particular but stable: sorted by port.
    pub fn master_ports(&self) -> Vec<u16> {
        let live: HashSet<u16> = self.nodes.iter().map(|n| n.port).collect();
        let mut masters: Vec<u16> = self
            .nodes
            .iter()
            .find_map(|n| cluster_nodes(&format!("127.0.0.1:{}", n.port)).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.master && n.slots > 0 && !n.failing && live.contains(&n.port))
            .map(|n| n.port)
            .collect();
        masters.sort_unstable();
        masters
    }

    /// `kill -9` of the `idx`-th of [`Cluster::master_ports`]; its port.
    pub fn kill_master(&mut self, idx: usize) -> u16 {
        let port = self.master_ports()[idx];
        let at = self.nodes.iter().position(|n| n.port == port).unwrap();
        let mut node = self.nodes.remove(at);
        node.kill();
        self.killed.push(node);
        port
    }

    /// Start the killed node on `port` again from its `nodes.conf` (as an
    /// operator would): it rejoins as a replica of whoever took over; this
    /// returns once it is in sync with that master.
    pub fn restart(&mut self, port: u16) {
        assert!(
            self.killed.iter().any(|n| n.port == port),
            "{port} was not killed"
        );
        let node = self.spawn(port);
        let start = Instant::now();
        while !node
            .query::<String>(redis::cmd("INFO").arg("replication"))
            .is_ok_and(|i| i.contains("role:slave") && i.contains("master_link_status:up"))
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the restarted node {port} did not become an up-to-date replica within 30s\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.nodes.push(node);
    }

    /// Wait until every live node says `cluster_state:ok` and sees all
    /// 16384 slots served by live masters not flagged as failing; how
    /// long that took. Panics with the nodes' logs after `within`.
    pub fn wait_failover(&self, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            match self.serving() {
                Ok(()) => return start.elapsed(),
                Err(why) => assert!(
                    start.elapsed() < within,
                    "the cluster did not recover within {within:?}: {why}\n{}",
                    self.logs()
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ok when every live node agrees the cluster serves every slot from
    /// a live master; else what is not so.
    fn serving(&self) -> Result<(), String> {
        let live: HashSet<u16> = self.nodes.iter().map(|n| n.port).collect();
        for node in &self.nodes {
            let info: String = node
                .query(redis::cmd("CLUSTER").arg("INFO"))
                .map_err(|e| format!("node {}: {e}", node.port))?;
            if !info.contains("cluster_state:ok") {
                return Err(format!("node {} says the cluster is not ok", node.port));
            }
            let lines = cluster_nodes(&format!("127.0.0.1:{}", node.port))
                .map_err(|e| format!("node {}: {e}", node.port))?;
            let served: usize = lines
                .iter()
                .filter(|l| l.master && !l.failing && live.contains(&l.port))
                .map(|l| l.slots)
                .sum();
            if served != 16384 {
                return Err(format!(
                    "node {} sees {served} of 16384 slots on live masters",
                    node.port
                ));
            }
        }
        Ok(())
    }

    /// Serving, and every master has `replicas` replicas in sync.
    fn settle(&self, replicas: usize, within: Duration) {
        let start = Instant::now();
        loop {
            let synced = || {
                self.master_ports().iter().all(|port| {
                    let node = self.nodes.iter().find(|n| n.port == *port).unwrap();
                    node.query::<String>(redis::cmd("INFO").arg("replication"))
                        .is_ok_and(|i| i.matches("state=online").count() == replicas)
                })
            };
            let why = match self.serving() {
                Ok(()) if synced() => return,
                Ok(()) => "replicas not in sync yet".to_owned(),
                Err(why) => why,
            };
            assert!(
                start.elapsed() < within,
                "the new cluster did not settle within {within:?}: {why}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of every node's log, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in self.nodes.iter().chain(&self.killed) {
            let log = node.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("-- node {}:\n{tail}\n", node.port));
        }
        out
    }
}

/// Deletes every key of a queue prefix on every master of a cluster when
/// dropped (also when a test fails): SCAN on each master, DEL one key at a
/// time (keys of different slots cannot share a DEL). On a cluster the
/// prefix may sit inside a hash tag (`{<prefix>}:subs`,
/// `{<prefix>:tally}:<minute>`, `<prefix>:{<tag>}:ready`), so this matches
/// every key that contains it; a test's prefix is unique (a ULID).
pub struct ClusterKeys {
    /// Seed nodes, `host:port` or `user:pw@host:port`.
    pub seeds: Vec<String>,
    pub prefix: String,
}

impl ClusterKeys {
    /// The seeds of a `redis+cluster://[user:pw@]h1:p1,h2:p2` URL.
    pub fn of_url(url: &str, prefix: &str) -> ClusterKeys {
        let rest = url.strip_prefix("redis+cluster://").unwrap_or(url);
        let rest = rest.split('/').next().unwrap_or_default();
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        ClusterKeys {
            seeds: hosts.split(',').map(|h| format!("{auth}{h}")).collect(),
            prefix: prefix.into(),
        }
    }

    fn masters(&self) -> Vec<String> {
        let auth = self.seeds[0]
            .rsplit_once('@')
            .map(|(a, _)| format!("{a}@"))
            .unwrap_or_default();
        let Some(lines) = self.seeds.iter().find_map(|s| cluster_nodes(s).ok()) else {
            return Vec::new();
        };
        lines
            .iter()
            .filter(|l| l.master && !l.failing)
            .map(|l| format!("{auth}127.0.0.1:{}", l.port))
            .collect()
    }
}

impl Drop for ClusterKeys {
    fn drop(&mut self) {
        let pattern = format!("*{}*", self.prefix);
        for master in self.masters() {
            let Ok(client) = redis::Client::open(format!("redis://{master}")) else {
                continue;
            };
            let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
                continue;
            };
            let keys: Vec<String> = match redis::cmd("SCAN")
                .cursor_arg(0)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .clone()
                .iter::<String>(&mut conn)
            {
                Ok(iter) => iter.filter_map(Result::ok).collect(),
                Err(_) => continue,
            };
            for key in keys {
                let _: Result<u64, _> = redis::cmd("DEL").arg(key).query(&mut conn);
            }
        }
    }
}
