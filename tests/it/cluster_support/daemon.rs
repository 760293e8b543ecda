//! The daemon and the receiver of the cluster tests: [`Daemon`] is the
//! real `hookyard` binary on a config of the test's, killed with SIGKILL
//! on drop; [`Recorder`] is a receiver that knows which replica sent each
//! request (each daemon's target sends an `X-Replica` header of its own),
//! how many requests were in flight at once, and can hold one replica's
//! requests unanswered (so that replica keeps its leases until it dies).

#![allow(clippy::unwrap_used, dead_code)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{free_port, http};

/// The bearer token of every [`Daemon`]'s `app` token.
pub const TOKEN: &str = "cluster-test-token-value";

/// `hookyard run` (the real binary) on a config of the test's, killed
/// (SIGKILL) on drop.
pub struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// A daemon on `config` (every section but `server`, `reload`,
    /// `secrets` and `tokens`, which this adds: a token `app` of scope
    /// `events:write` whose value is [`TOKEN`]).
    pub fn spawn(config: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let yaml = format!(
            "server: {{ listen: \"127.0.0.1:{port}\" }}\nreload: {{ watch: false }}\n\
             secrets: {{ app_token: {{ env: CLUSTER_TEST_TOKEN }} }}\n\
             tokens: [ {{ name: app, secret: app_token, scopes: [events:write, deliveries:read] }} ]\n\
             {config}"
        );
        let path = dir.path().join("hookyard.yaml");
        std::fs::write(&path, yaml).unwrap();
        let log = dir.path().join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .arg("run")
            .arg("-c")
            .arg(&path)
            .env("CLUSTER_TEST_TOKEN", TOKEN)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        Daemon {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_ready(&self, within: Duration) {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(r) = http().get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "hookyard was not ready within {within:?}; stderr:\n{}",
            self.stderr()
        );
    }

    /// `kill -9`: leases it holds are left to lapse.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `POST /v1/events` of one event with the client id `id` and `data`:
    /// the status (0: no answer within 8 s).
    pub async fn post(&self, id: &str, data: serde_json::Value) -> u16 {
        let body = serde_json::json!({"type": "tick", "id": id, "data": data});
        match http()
            .post(self.url("/v1/events"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(8))
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One request the [`Recorder`] answered.
#[derive(Debug, Clone)]
pub struct Hit {
    pub event_id: String,
    /// The `X-Replica` header: which daemon sent it.
    pub replica: String,
    /// When the request arrived.
    pub at: Instant,
}

#[derive(Default)]
struct RecorderState {
    answered: Mutex<Vec<Hit>>,
    /// Event ids of held requests still open (their sender has not given
    /// up on them, by timeout or by dying).
    held: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Requests from this replica are never answered.
    hold: Mutex<Option<String>>,
    /// How long each answered request takes.
    delay: Mutex<Duration>,
}

/// A receiver on 127.0.0.1:0 that answers 200 (after its delay), except to
/// a held replica.
#[derive(Clone)]
pub struct Recorder {
    pub addr: std::net::SocketAddr,
    state: Arc<RecorderState>,
}

impl Recorder {
    pub async fn start(delay: Duration) -> Recorder {
        let state = Arc::new(RecorderState::default());
        *state.delay.lock().unwrap() = delay;
        let app = axum::Router::new()
            .fallback(recorder_answer)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Recorder { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Never answer requests whose `X-Replica` is `replica`.
    pub fn hold(&self, replica: &str) {
        *self.state.hold.lock().unwrap() = Some(replica.to_owned());
    }

    pub fn answered(&self) -> Vec<Hit> {
        self.state.answered.lock().unwrap().clone()
    }

    /// The event ids of held requests still open: jobs their sender is
    /// working on.
    pub fn held(&self) -> Vec<String> {
        self.state.held.lock().unwrap().clone()
    }

    /// The most requests ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// The answered event ids (duplicates folded).
    pub fn answered_ids(&self) -> HashSet<String> {
        self.answered().into_iter().map(|h| h.event_id).collect()
    }

    /// Wait until every id in `ids` was answered; panics after `within`
    /// with the missing ones and `context` (e.g. the daemons' logs).
    pub async fn wait_all(
        &self,
        ids: &HashSet<String>,
        within: Duration,
        context: impl Fn() -> String,
    ) {
        let start = Instant::now();
        loop {
            let seen = self.answered_ids();
            let mut missing: Vec<&String> = ids.iter().filter(|id| !seen.contains(*id)).collect();
            if missing.is_empty() {
                return;
            }
            if start.elapsed() > within {
                missing.sort();
                panic!(
                    "{} of {} events never delivered within {within:?}: {missing:?}\n{}",
                    missing.len(),
                    ids.len(),
                    context()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Decrements the in-flight count when a request ends, answered or not
/// (a killed sender's connection drops the handler).
struct InFlight(Arc<RecorderState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Takes a held request off the open list when its sender gives it up.
struct Held(Arc<RecorderState>, String);

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.0.held.lock().unwrap();
        if let Some(at) = held.iter().position(|id| *id == self.1) {
            held.remove(at);
        }
    }
}

async fn recorder_answer(
    axum::extract::State(state): axum::extract::State<Arc<RecorderState>>,
    headers: axum::http::HeaderMap,
) -> axum::http::StatusCode {
    let at = Instant::now();
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(state.clone());
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (event_id, replica) = (header("x-hookyard-event-id"), header("x-replica"));
    let held = state.hold.lock().unwrap().as_deref() == Some(replica.as_str());
    if held {
        state.held.lock().unwrap().push(event_id.clone());
        let _open = Held(state.clone(), event_id);
        // Never answered; dropped when the sender gives up or dies.
        return std::future::pending().await;
    }
    let delay = *state.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    state.answered.lock().unwrap().push(Hit {
        event_id,
        replica,
        at,
    });
    axum::http::StatusCode::OK
}
