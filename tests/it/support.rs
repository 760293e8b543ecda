//! Shared test support: a real daemon on 127.0.0.1:0 with the embedded queue
//! (or Redis) and a recording receiver, so tests drive hookyard the way a
//! user does, over HTTP.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hookyard::config::{self, LoadOptions};
use hookyard::daemon::{self, Listeners};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running daemon. Dropping it stops the daemon.
pub struct TestDaemon {
    /// `server.listen`: `/hooks/*`, `/v1/*`, `/metrics`, health.
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub shutdown: CancellationToken,
    pub handle: Option<JoinHandle<Result<(), daemon::DaemonError>>>,
}

/// GET `url` and return the body as text (e.g. a `/metrics` scrape).
pub async fn get_text(url: impl reqwest::IntoUrl) -> String {
    http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

impl TestDaemon {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stop gracefully and wait for the daemon to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Write `yaml` into a fresh temp dir and start a daemon on it. The YAML may
/// use `{{DATA}}` for a private embedded-queue directory; when it has no
/// `queue:` section one pointing there is appended.
pub async fn start_daemon(yaml: &str) -> TestDaemon {
    start_daemon_with_env(yaml, Default::default()).await
}

/// As [`start_daemon`], with environment variables for `${VAR}` and
/// `secrets: {env: VAR}` (tests must not mutate the process environment).
pub async fn start_daemon_with_env(
    yaml: &str,
    env: std::collections::HashMap<String, String>,
) -> TestDaemon {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut text = yaml.replace("{{DATA}}", &data.display().to_string());
    if !text.lines().any(|l| l.starts_with("queue:")) {
        text.push_str(&format!(
            "\nqueue: {{ backend: embedded, path: \"{}\" }}\n",
            data.display()
        ));
    }
    if !text.lines().any(|l| l.starts_with("reload:")) {
        text.push_str("\nreload: { watch: false }\n");
    }
    let path = dir.path().join("hookyard.yaml");
    std::fs::write(&path, text).expect("write config");
    start_daemon_at(dir, path, env).await
}

/// Start a daemon on an existing config path inside `dir`.
pub async fn start_daemon_at(
    dir: tempfile::TempDir,
    path: PathBuf,
    env: std::collections::HashMap<String, String>,
) -> TestDaemon {
    let mut all_env: std::collections::HashMap<String, String> = std::env::vars().collect();
    all_env.extend(env);
    let cfg = match config::load(
        &path,
        LoadOptions {
            no_env: false,
            env: Some(all_env),
        },
    ) {
        Ok(c) => c,
        Err(e) => panic!("test config does not load:\n{e}"),
    };
    let main = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = main.local_addr().expect("addr");
    let listeners = Listeners {
        main,
        api: None,
        metrics: None,
    };
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(daemon::run(
        cfg,
        path,
        listeners,
        shutdown.clone(),
        Default::default(),
    ));
    let daemon = TestDaemon {
        addr,
        dir,
        shutdown,
        handle: Some(handle),
    };
    wait_ready(&daemon).await;
    daemon
}

/// An HTTP client for tests (reqwest is built without a default TLS
/// provider, so install one first).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn wait_ready(d: &TestDaemon) {
    let client = http();
    for _ in 0..200 {
        if let Ok(r) = client.get(d.url("/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("daemon did not become ready within 5s");
}

/// One request seen by the receiver.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: std::time::Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("receiver got JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A scripted answer: status, extra headers, body, delay before answering.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: vec![],
            body: String::new(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    /// Answers used in order; when empty, 200.
    script: Mutex<VecDeque<Answer>>,
    notify: tokio::sync::Notify,
}

/// A recording HTTP receiver on 127.0.0.1:0 answering every path.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = Router::new().fallback(record).with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Queue answers for the next requests (then 200s).
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.script.lock().expect("lock").extend(answers);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// Wait until at least `n` requests arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.notify.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "receiver got {} requests, expected {n} within {timeout:?}",
                    self.received().len()
                );
            }
        }
    }
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = state.script.lock().expect("lock").pop_front();
    let answer = answer.unwrap_or(Answer::status(200));
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    state.received.lock().expect("lock").push(Received {
        method,
        uri,
        headers,
        body,
        at: std::time::Instant::now(),
    });
    state.notify.notify_waiters();
    let mut resp = (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
        answer.body,
    )
        .into_response();
    for (k, v) in answer.headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// Whether Redis at 127.0.0.1:6379 answers; in CI it must.
/// Whether `redis-server` can be started here, for tests that run their
/// own; in CI its absence is a failure, never a skip.
pub fn redis_server_installed() -> bool {
    let found = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("redis-server is required in CI");
        }
        eprintln!("SKIPPED: redis-server not installed");
    }
    found
}

pub fn redis_available() -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:6379".parse().expect("addr"),
        Duration::from_millis(300),
    )
    .is_ok();
    if !up {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("Redis at 127.0.0.1:6379 is required in CI");
        }
        eprintln!("SKIPPED: Redis at 127.0.0.1:6379 is not reachable");
    }
    up
}

/// A free loopback port (bound then released; tests accept the small race).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// The `X-Hookyard-Event-Id`s a receiver has seen (duplicates folded).
pub fn received_event_ids(rx: &Receiver) -> std::collections::HashSet<String> {
    rx.received()
        .iter()
        .filter_map(|r| r.header("x-hookyard-event-id").map(str::to_owned))
        .collect()
}

/// Deletes every key under `<prefix>:` of the Redis at `url` when dropped
/// (also when a test fails), so tests leave the shared Redis as they found
/// it. SCAN, not KEYS, so other tests sharing that Redis are not stalled.
pub struct RedisKeys {
    pub url: String,
    pub prefix: String,
}

impl RedisKeys {
    /// Keys of `prefix` on the shared Redis at 127.0.0.1:6379.
    pub fn shared(prefix: &str) -> RedisKeys {
        RedisKeys {
            url: "redis://127.0.0.1:6379/0".into(),
            prefix: prefix.into(),
        }
    }

    /// A new unique prefix `<name>-<ulid>` on the shared Redis.
    pub fn fresh(name: &str) -> RedisKeys {
        RedisKeys::shared(&format!("{name}-{}", ulid::Ulid::new()))
    }

    /// The config line of a Redis queue under this prefix; `extra` adds
    /// more `queue` keys (e.g. `", lease: 2s"`).
    pub fn queue_yaml(&self, extra: &str) -> String {
        format!(
            "queue: {{ backend: redis, url: \"{}\", prefix: \"{}\"{extra} }}\n",
            self.url, self.prefix
        )
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let pattern = format!("{}:*", self.prefix);
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
            Err(_) => return,
        };
        for chunk in keys.chunks(500) {
            let _: Result<u64, _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

/// `text` encoded as a form field value.
pub fn form_value(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
