//! SPEC §11 "Connections" and "Shutdown is bounded" on the real `hookyard`
//! binary: 1,500 clients that send half a request line are closed after
//! `server.header_timeout` while normal requests are served, and SIGTERM
//! with 1,500 of them open exits 0 within delay + grace + 1 s.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::{free_port, http};

const TOKEN: &str = "edge-token-value";
const SLOW_CLIENTS: usize = 1_500;
/// Half a request line: the headers never complete.
const HALF_REQUEST: &[u8] = b"POST /hooks/x HT";

/// `hookyard run` on a temp-dir config; killed on drop (panics included).
struct Daemon {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Daemon {
    async fn start(server: &str) -> Daemon {
        raise_open_file_limit(4 * SLOW_CLIENTS as u64 + 1024);
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let yaml = format!(
            r#"
server: {{ listen: "127.0.0.1:{port}", {server} }}
queue: {{ backend: embedded, path: "{data}" }}
reload: {{ watch: false }}
secrets: {{ app: {{ env: EDGE_TOKEN }} }}
tokens: [ {{ name: app, secret: app, scopes: [events:write] }} ]
"#,
            data = dir.path().join("data").display(),
        );
        let config = dir.path().join("hookyard.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("hookyard.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .arg("run")
            .arg("-c")
            .arg(&config)
            .env("EDGE_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut d = Daemon { child, port, dir };
        let client = http();
        for _ in 0..400 {
            if let Ok(r) = client.get(d.url("/readyz")).send().await {
                if r.status() == 200 {
                    return d;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = d.child.kill();
        panic!("hookyard not ready within 10s:\n{}", d.log());
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn log(&self) -> String {
        let path: PathBuf = self.dir.path().join("hookyard.log");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// `/healthz` answers 200 and `POST /v1/events` 202 (new connections).
    async fn serves_normal_requests(&self) {
        let client = http();
        let health = client.get(self.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let posted = client
            .post(self.url("/v1/events"))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/json")
            .body(r#"{"type":"edge.test","data":{"n":1}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 202, "{}", posted.text().await.unwrap());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 1,500 client sockets here and as many in the daemon: raise this
/// process's soft limit (the daemon inherits it) when it is lower.
fn raise_open_file_limit(want: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if soft >= want {
        return;
    }
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={want}:"))
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "the open-file limit is {soft}, this test needs {want}: run `ulimit -n {want}` first"
    );
}

/// Open `n` connections that each send half a request line.
async fn open_slow_clients(port: u16, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(HALF_REQUEST).await.unwrap();
        conns.push(s);
    }
    conns
}

/// How many of `conns` the server closed (read gives EOF or an error)
/// before `deadline`.
async fn closed_by(conns: Vec<TcpStream>, deadline: Instant) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for mut s in conns {
        tasks.spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) => continue,
                    Err(_) => return false,
                }
            }
        });
    }
    let mut closed = 0;
    while let Some(res) = tasks.join_next().await {
        closed += usize::from(res.unwrap());
    }
    closed
}

#[tokio::test]
async fn slow_clients_are_closed_after_header_timeout_while_others_are_served() {
    let header_timeout = Duration::from_secs(2);
    let d = Daemon::start("header_timeout: 2s, idle_timeout: 60s").await;
    let conns = open_slow_clients(d.port, SLOW_CLIENTS).await;
    let all_open = Instant::now();
    d.serves_normal_requests().await;
    let closed = closed_by(conns, all_open + header_timeout + Duration::from_secs(2)).await;
    assert_eq!(
        closed,
        SLOW_CLIENTS,
        "connections with incomplete headers still open {:?} after the last one \
         started (header_timeout {header_timeout:?})\n{}",
        all_open.elapsed(),
        d.log()
    );
    d.serves_normal_requests().await;
}

#[tokio::test]
async fn sigterm_with_slow_clients_open_exits_0_within_delay_grace_and_a_second() {
    // header_timeout is far beyond the grace: only the shutdown bound can
    // close these connections.
    let (delay, grace) = (Duration::ZERO, Duration::from_secs(2));
    let mut d = Daemon::start(
        "header_timeout: 60s, idle_timeout: 60s, shutdown_delay: 0s, shutdown_grace: 2s",
    )
    .await;
    let conns = open_slow_clients(d.port, SLOW_CLIENTS).await;
    d.serves_normal_requests().await;

    let sent = Instant::now();
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(d.child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let bound = delay + grace + Duration::from_secs(1);
    let status = loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() <= bound,
            "still running {:?} after SIGTERM (SPEC §11: exit by delay + grace + 1s = {bound:?})\n{}",
            sent.elapsed(),
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = sent.elapsed();
    eprintln!("hookyard exited {took:?} after SIGTERM (bound {bound:?})");
    assert!(took <= bound, "exited after {took:?}, bound {bound:?}");
    assert_eq!(status.code(), Some(0), "{}", d.log());
    drop(conns);
}

/// SIGTERM while the daemon is still starting (its Redis accepts the
/// connection and never answers): the start ends at once, exit 0, well
/// within delay + grace + 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_starting_exits_0_within_the_bound() {
    // A "Redis" that accepts and then says nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redis_port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for conn in silent.incoming().take(8).flatten() {
            conns.push(conn);
        }
        conns
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("hookyard.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
server: {{ listen: "127.0.0.1:{port}", shutdown_delay: 0s, shutdown_grace: 2s }}
queue: {{ backend: redis, url: "redis://127.0.0.1:{redis_port}", prefix: "edge-start" }}
reload: {{ watch: false }}
"#
        ),
    )
    .unwrap();
    let log = dir.path().join("hookyard.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .arg("run")
        .arg("-c")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    // Let it reach the queue open, which waits on the silent server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let sent = Instant::now();
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    let bound = Duration::from_secs(3);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > bound {
            let _ = child.kill();
            panic!(
                "still starting {:?} after SIGTERM (bound {bound:?})\n{}",
                sent.elapsed(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    drop(held);
}
