//! Helpers for the admin API, reload and metrics tests: a daemon whose API
//! tokens are file secrets (so reloads, which read the process environment,
//! see the same tokens), one token per scope plus one with every scope.

#![allow(clippy::unwrap_used)] // tests may unwrap
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{TestDaemon, http, start_daemon_at};

/// Token names and their scopes; the value of token `x` is [`token`]`(x)`.
pub const TOKENS: &[(&str, &[&str])] = &[
    ("events_writer", &["events:write"]),
    ("hooks_reader", &["webhooks:read"]),
    ("hooks_writer", &["webhooks:write"]),
    ("history_reader", &["deliveries:read"]),
    ("history_writer", &["deliveries:write"]),
    ("operator", &["admin"]),
    (
        "root",
        &[
            "events:write",
            "webhooks:read",
            "webhooks:write",
            "deliveries:read",
            "deliveries:write",
            "admin",
        ],
    ),
];

/// The bearer value of a token.
pub fn token(name: &str) -> String {
    format!("tok-{name}-6f1c2e")
}

/// The token holding exactly `scope` (or `root` for "all").
pub fn token_for_scope(scope: &str) -> String {
    let name = TOKENS
        .iter()
        .find(|(_, s)| s.len() == 1 && s[0] == scope)
        .map(|(n, _)| *n)
        .unwrap_or("root");
    token(name)
}

/// Write each token's value to `<secrets_dir>/<name>` and return the
/// `secrets:` and `tokens:` YAML.
pub fn tokens_yaml(secrets_dir: &Path) -> String {
    std::fs::create_dir_all(secrets_dir).unwrap();
    let mut secrets = String::from("secrets:\n");
    let mut tokens = String::from("tokens:\n");
    for (name, scopes) in TOKENS {
        let file = secrets_dir.join(name);
        std::fs::write(&file, token(name)).unwrap();
        secrets.push_str(&format!(
            "  tok_{name}: {{ file: \"{}\" }}\n",
            file.display()
        ));
        tokens.push_str(&format!(
            "  - {{ name: {name}, secret: tok_{name}, scopes: [{}] }}\n",
            scopes.join(", ")
        ));
    }
    format!("{secrets}{tokens}")
}

/// The full config text: `body` + tokens + an embedded queue under `dir`
/// (unless `body` has `queue:`) + `reload` (a `reload:` line).
pub fn config_text(dir: &Path, body: &str, reload: &str) -> String {
    let mut text = format!("{body}\n{}", tokens_yaml(&dir.join("secrets")));
    if !body.lines().any(|l| l.starts_with("queue:")) {
        text.push_str(&format!(
            "queue: {{ backend: embedded, path: \"{}\" }}\n",
            dir.join("data").display()
        ));
    }
    text.push_str(reload);
    text.push('\n');
    text
}

/// Start a daemon on `config_text(dir, body, reload)` written to
/// `<dir>/hookyard.yaml`.
pub async fn start(body: &str, reload: &str) -> TestDaemon {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookyard.yaml");
    std::fs::write(&path, config_text(dir.path(), body, reload)).unwrap();
    start_daemon_at(dir, path, Default::default()).await
}

pub fn config_path(d: &TestDaemon) -> PathBuf {
    d.dir.path().join("hookyard.yaml")
}

/// A request with `Authorization: Bearer <value>`.
pub fn authed(req: reqwest::RequestBuilder, value: &str) -> reqwest::RequestBuilder {
    req.header("Authorization", format!("Bearer {value}"))
}

/// GET a JSON API route with the `root` token; returns status and body.
pub async fn get_json(d: &TestDaemon, path: &str) -> (u16, serde_json::Value) {
    get_json_url(&d.url(path)).await
}

/// GET a JSON API URL with the `root` token; returns status and body.
pub async fn get_json_url(url: &str) -> (u16, serde_json::Value) {
    let r = authed(http().get(url), &token("root"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, body_json(r).await)
}

/// The value of the metric line starting with `series` (e.g.
/// `hookyard_config_reloads_total{result="failure"}`), if present.
pub async fn metric(d: &TestDaemon, series: &str) -> Option<f64> {
    let text = http()
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_in(&text, series)
}

pub fn metric_in(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().split(' ').next()?.parse().ok())
    })
}

/// Poll `check` every 50ms until it is true; panic after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// YAML subscription ids of the config serving now (from the admin API).
pub async fn served_subscriptions(d: &TestDaemon) -> Vec<String> {
    served_subscriptions_at(&d.url("")).await
}

/// As [`served_subscriptions`], for a daemon at `base` (`http://addr`).
pub async fn served_subscriptions_at(base: &str) -> Vec<String> {
    let (status, body) = get_json_url(&format!("{base}/v1/admin/config")).await;
    assert_eq!(status, 200, "{body}");
    body["summary"]["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// A YAML subscription (paused: nothing is sent) with id `id`.
pub fn paused_sub(id: &str, events: &str) -> String {
    format!(
        "  - {{ id: {id}, url: \"http://127.0.0.1:9/{id}\", events: [\"{events}\"], paused: true }}\n"
    )
}

pub use crate::support::free_port;

/// The real `hookyard run` binary on a config, stderr captured to a file.
/// Killed on drop if still running.
pub struct Proc {
    pub child: std::process::Child,
    pub base: String,
    pub stderr: PathBuf,
}

impl Proc {
    /// Start `hookyard run -c config --log-format json` with `env` added;
    /// `port` must be the config's `server.listen` port. Waits for `/readyz`.
    pub async fn start(config: &Path, port: u16, env: &[(&str, &str)], stderr: PathBuf) -> Proc {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"));
        cmd.args(["run", "-c"])
            .arg(config)
            .args(["--log-format", "json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut p = Proc {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stderr,
        };
        let client = http();
        for _ in 0..400 {
            if let Ok(r) = client.get(format!("{}/readyz", p.base)).send().await {
                if r.status() == 200 {
                    return p;
                }
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("hookyard exited with {status}: {}", p.logs());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = p.child.kill();
        panic!("hookyard did not become ready within 10s: {}", p.logs());
    }

    /// Send a signal (`HUP`, `TERM`) to this process by its id.
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// SIGTERM and wait for exit (up to 20s); the exit status.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        for _ in 0..400 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        panic!("hookyard did not stop within 20s after SIGTERM");
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The body as JSON (Null when it is not JSON); reqwest here has no `json`.
pub async fn body_json(r: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(serde_json::Value::Null)
}

/// A JSON request body.
pub fn with_json(req: reqwest::RequestBuilder, v: &serde_json::Value) -> reqwest::RequestBuilder {
    req.header("content-type", "application/json")
        .body(v.to_string())
}
