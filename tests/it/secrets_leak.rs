//! Secret values never leave the daemon (SPEC §2): the real binary runs
//! with JSON logs and two planted secrets (a signing key and an API token,
//! from the environment); API calls (good and bad tokens, config view,
//! webhooks) and failed reloads (watcher and API) happen; then neither value
//! may appear in its logs or in any API answer.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Duration;

use crate::admin_support::{Proc, authed, eventually, free_port};
use crate::support::http;

const HMAC: &str = "planted-hmac-8c2d41f7e0";
const TOKEN: &str = "planted-token-3e9b77a1";

fn config(port: u16, extra: &str) -> String {
    format!(
        r#"server: {{ listen: "127.0.0.1:{port}" }}
secrets:
  shop_hmac: {{ env: HOOKYARD_T_SHOP_HMAC }}
  api_tok: {{ env: HOOKYARD_T_API_TOKEN }}
tokens:
  - {{ name: ops, secret: api_tok, scopes: [admin, webhooks:read, webhooks:write, deliveries:read, deliveries:write] }}
subscriptions:
  - {{ id: billing, url: "http://127.0.0.1:9/in", events: ["*"], paused: true,
      signing: {{ scheme: hmac-sha256, secret: shop_hmac }} }}
{extra}
queue: {{ backend: embedded, path: "./data" }}
reload: {{ watch: true, debounce: 100ms }}
"#
    )
}

#[tokio::test]
async fn planted_secrets_never_appear_in_logs_or_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("hookyard.yaml");
    let data = dir.path().join("data");
    let fix_data = |t: String| t.replace("./data", &data.display().to_string());
    std::fs::write(&path, fix_data(config(port, ""))).unwrap();
    let env = [
        ("HOOKYARD_T_SHOP_HMAC", HMAC),
        ("HOOKYARD_T_API_TOKEN", TOKEN),
    ];
    let mut p = Proc::start(&path, port, &env, dir.path().join("stderr.log")).await;
    let client = http();
    let mut answers = String::new();
    let mut call = async |method: &str, path: &str, bearer: &str, body: Option<&str>| {
        let url = format!("{}{path}", p.base);
        let req = match method {
            "GET" => client.get(url),
            "DELETE" => client.delete(url),
            _ => client
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or("{}").to_owned()),
        };
        let r = authed(req, bearer).send().await.unwrap();
        let status = r.status().as_u16();
        answers.push_str(&r.text().await.unwrap());
        status
    };
    assert_eq!(call("GET", "/v1/admin/config", TOKEN, None).await, 200);
    assert_eq!(call("GET", "/v1/webhooks", TOKEN, None).await, 200);
    assert_eq!(call("GET", "/v1/webhooks/billing", TOKEN, None).await, 200);
    assert_eq!(call("GET", "/v1/events", TOKEN, None).await, 200);
    // Near misses of the token: still 401, and not echoed.
    assert_eq!(
        call("GET", "/v1/webhooks", &format!("{TOKEN}x"), None).await,
        401
    );
    assert_eq!(
        call("GET", "/v1/webhooks", &TOKEN[..TOKEN.len() - 1], None).await,
        401
    );
    let body = r#"{"url": "https://x.example/in", "events": []}"#;
    assert_eq!(call("POST", "/v1/webhooks", TOKEN, Some(body)).await, 422);

    // A broken config, seen by the watcher and by the API: both fail.
    let broken = config(port, "egress: { allow: [not-a-cidr] }\nbogus_key: 1\n");
    std::fs::write(&path, fix_data(broken)).unwrap();
    eventually(
        Duration::from_secs(15),
        "the failed reload logged",
        || async { p.logs().contains("config reload failed") },
    )
    .await;
    assert_eq!(call("POST", "/v1/admin/reload", TOKEN, None).await, 422);
    let logs = p.logs();
    let status = p.stop().await;
    assert!(status.success(), "{status}");
    let logs = logs + &p.logs();

    assert!(
        logs.contains("bogus_key"),
        "the reload errors are logged: {logs}"
    );
    assert!(
        logs.lines().all(|l| l.starts_with('{')),
        "JSON logs: {logs}"
    );
    for secret in [HMAC, TOKEN] {
        assert!(!logs.contains(secret), "secret in logs:\n{logs}");
        assert!(
            !answers.contains(secret),
            "secret in an API answer:\n{answers}"
        );
    }
}
