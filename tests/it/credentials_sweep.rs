//! No credential leaves the daemon (SPEC §14 "done when"): one real daemon
//! uses every kind of credential at once, each a planted value: an API
//! token, an inbound bearer secret, a basic password, an OAuth2 client
//! secret and the access tokens it is issued, an Ed25519 signing seed
//! (`whsk_`), a TLS client key and a proxy password. Every delivery must
//! succeed (so each credential was really used), and then none of the
//! values may appear in the log (at debug level), in any event's history,
//! in the API's answers (config view, webhooks, events, stats), in
//! `/metrics` or in the exported trace spans.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::sync::{Arc, Mutex};

use axum::Router;
use serde_json::json;
use tokio::net::TcpListener;

use crate::admin_support::{Proc, authed, free_port};
use crate::deliver_tls_proxy::{
    API_TOKEN, ProxyMode, Shared, connect_proxy, finished, make_certs, mtls_receiver,
    plain_receiver, start_config, to,
};
use crate::inbound::{JsonReq, JsonResp};
use crate::support::http;

const BEARER: &str = "planted-inbound-bearer-31f0";
const BASIC_PW: &str = "planted-basic-pw-51c0aa";
const CLIENT_SECRET: &str = "planted-client-secret-9a7e";
const TOKEN_PREFIX: &str = "planted-access-token-";
const PROXY_PW: &str = "planted-proxy-pw-77d2";
/// base64 of 32 bytes of 0x5A: the `whsk_` seed.
const SEED_B64: &str = "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=";

/// A token endpoint issuing a fresh planted token per request.
async fn token_endpoint(issued: Arc<Mutex<Vec<String>>>) -> String {
    let app = Router::new().route(
        "/token",
        axum::routing::post(move |body: String| {
            let issued = Arc::clone(&issued);
            async move {
                assert!(body.contains(CLIENT_SECRET), "client_secret_post: {body}");
                let mut all = issued.lock().unwrap();
                let token = format!("{TOKEN_PREFIX}{}", all.len());
                all.push(token.clone());
                axum::Json(
                    json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/token")
}

#[tokio::test]
async fn no_planted_credential_reaches_logs_history_api_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let seen = Shared::default();
    let https = mtls_receiver(dir.path(), Arc::clone(&seen)).await;
    let plain = plain_receiver(Arc::clone(&seen)).await;
    let basic_proxy_auth = {
        use base64::Engine as _;
        let pair = format!("hy:{PROXY_PW}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let proxy = connect_proxy(Arc::clone(&seen), ProxyMode::RequireAuth(basic_proxy_auth)).await;
    let issued = Arc::new(Mutex::new(Vec::new()));
    let token_url = token_endpoint(Arc::clone(&issued)).await;
    // Traces on, when the OTLP decoder is there (under CI it must be).
    // Started before the daemon's port is picked, so it cannot take it.
    let collector =
        crate::traces::python_has_otlp_proto().then(|| crate::traces::Collector::start(dir.path()));
    let port = free_port();
    let telemetry = collector.as_ref().map_or(String::new(), |c| {
        format!(
            "telemetry: {{ otlp: {{ endpoint: \"http://127.0.0.1:{}\" }} }}\n",
            c.port
        )
    });
    let body = format!(
        r#"{telemetry}triggers:
  - {{ id: a, event: a.created, verify: {{ bearer: inbound }} }}
subscriptions:
  - id: basic
    url: "http://localhost:{plain}/basic"
    events: ["*"]
    auth: {{ basic: {{ user: hy, password: basic_pw }} }}
  - id: oauth
    url: "http://localhost:{plain}/oauth"
    events: ["*"]
    auth: {{ oauth2: {{ token_url: "{token_url}", client_id: hy, client_secret: client_secret }} }}
  - id: signed
    url: "http://localhost:{plain}/signed"
    events: ["*"]
    signing: {{ scheme: standard-webhooks, secret: seed }}
  - id: mtls-proxied
    url: "https://localhost:{https}/mtls"
    events: ["*"]
    tls: {{ client_cert: client_cert, client_key: client_key, ca: ca }}
    proxy: {{ secret: proxy_url }}
"#
    );
    let path = start_config(dir.path(), port, &body);
    // The secrets block of start_config, plus this test's own.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "secrets:\n",
        "secrets:\n  inbound: { env: HOOKYARD_T_BEARER }\n  basic_pw: { env: HOOKYARD_T_BASIC }\n  \
         client_secret: { env: HOOKYARD_T_CS }\n  seed: { env: HOOKYARD_T_SEED }\n  \
         proxy_url: { env: HOOKYARD_T_PROXY }\n",
    );
    std::fs::write(&path, text).unwrap();
    let whsk = format!("whsk_{SEED_B64}");
    let proxy_url = format!("http://hy:{PROXY_PW}@127.0.0.1:{proxy}");
    let env = [
        ("HOOKYARD_T_API", API_TOKEN),
        ("HOOKYARD_T_BEARER", BEARER),
        ("HOOKYARD_T_BASIC", BASIC_PW),
        ("HOOKYARD_T_CS", CLIENT_SECRET),
        ("HOOKYARD_T_SEED", whsk.as_str()),
        ("HOOKYARD_T_PROXY", proxy_url.as_str()),
        ("RUST_LOG", "hookyard=debug,info"),
    ];
    let mut p = Proc::start(&path, port, &env, dir.path().join("stderr.log")).await;

    // A wrong bearer first (401), then the right one.
    let wrong = http()
        .post(format!("{}/hooks/a", p.base))
        .bearer_auth(format!("{BEARER}x"))
        .json(&json!({"n": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let mut answers = wrong.text().await.unwrap();
    let r = http()
        .post(format!("{}/hooks/a", p.base))
        .bearer_auth(BEARER)
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let accepted: serde_json::Value = r.json().await.unwrap();
    let event = accepted["event_id"].as_str().unwrap().to_owned();
    let ds = finished(&p, &event).await;
    for id in ["basic", "oauth", "signed", "mtls-proxied"] {
        assert_eq!(to(&ds, id)["state"], "succeeded", "{id}: {ds:?}");
    }
    assert_eq!(seen.lock().unwrap().connects.len(), 1, "through the proxy");
    assert!(!issued.lock().unwrap().is_empty(), "a token was issued");

    for route in [
        format!("/v1/events/{event}"),
        "/v1/events".to_owned(),
        "/v1/admin/config".to_owned(),
        "/v1/webhooks".to_owned(),
        "/v1/stats".to_owned(),
    ] {
        let r = authed(http().get(format!("{}{route}", p.base)), API_TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{route}: {status} {text}");
        answers.push_str(&text);
    }
    let metrics = http()
        .get(format!("{}/metrics", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    answers.push_str(&metrics);
    let status = p.stop().await;
    assert!(status.success(), "{status}");
    let logs = p.logs();
    assert!(
        logs.contains("DEBUG") || logs.contains("debug"),
        "debug logs: {logs}"
    );
    // Spans are flushed at shutdown: inbound and one per attempt.
    if let Some(c) = &collector {
        let spans = c.spans();
        assert!(spans.len() >= 5, "spans exported: {spans:?}");
        answers.push_str(&serde_json::to_string(&spans).unwrap());
    }

    // The client key: its PEM body lines, each long enough to be unique.
    let key_pem = std::fs::read_to_string(dir.path().join("client.key")).unwrap();
    let key_lines: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        .collect();
    assert!(!key_lines.is_empty());
    let tokens = issued.lock().unwrap().clone();
    let mut planted: Vec<&str> = vec![
        API_TOKEN,
        BEARER,
        BASIC_PW,
        CLIENT_SECRET,
        SEED_B64,
        PROXY_PW,
    ];
    planted.extend(tokens.iter().map(String::as_str));
    planted.extend(key_lines);
    for value in planted {
        assert!(!logs.contains(value), "`{value}` in the log:\n{logs}");
        assert!(
            !answers.contains(value),
            "`{value}` in an answer:\n{answers}"
        );
    }
}
