//! Outbound `auth: { oauth2: … }` (SPEC §14) with the real binary, a tiny
//! OAuth2 token endpoint and a receiver that accepts only live tokens, all
//! on loopback: concurrent deliveries share one token request, a token is
//! refreshed before it expires, a 401 drops the token and the request is
//! made once more inside the same attempt, a second 401 dead-letters, and
//! neither a token nor the client secret reaches history or the log.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::admin_support::{Proc, authed, free_port};
use crate::deliver_tls_proxy::post_event;
use crate::inbound::JsonResp;
use crate::support::http;

const CLIENT_SECRET: &str = "client-secret-7f3a9c1e55";
const API_TOKEN: &str = "api-token-oauth2-test";
/// Lifetime of the issued tokens: refreshed 0.3 s before it ends.
const EXPIRES_IN: u64 = 3;

#[derive(Default)]
struct Auth {
    /// Token requests per client id.
    requests: HashMap<String, usize>,
    /// Every token issued, with when it stops being accepted.
    issued: Vec<(String, Instant)>,
    /// Tokens the receiver no longer accepts (as if revoked).
    revoked: Vec<String>,
    /// `(path, Authorization, status)` of every delivery seen.
    deliveries: Vec<(String, String, u16)>,
    /// The token request bodies (form fields).
    forms: Vec<HashMap<String, String>>,
}

type Shared = Arc<Mutex<Auth>>;

async fn token(State(s): State<Shared>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    // Let concurrent deliveries pile up behind one request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut a = s.lock().unwrap();
    a.forms.push(form.clone());
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let client = form.get("client_id").cloned().unwrap_or_default();
    let n = {
        let c = a.requests.entry(client.clone()).or_default();
        *c += 1;
        *c
    };
    let value = format!("tok-{client}-{n}-{}", ulid::Ulid::new());
    a.issued.push((
        value.clone(),
        Instant::now() + Duration::from_secs(EXPIRES_IN),
    ));
    axum::Json(json!({"access_token": value, "token_type": "Bearer", "expires_in": EXPIRES_IN}))
        .into_response()
}

async fn receive(State(s): State<Shared>, uri: Uri, headers: HeaderMap) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut a = s.lock().unwrap();
    let live = auth.strip_prefix("Bearer ").is_some_and(|t| {
        !a.revoked.iter().any(|r| r == t)
            && a.issued
                .iter()
                .any(|(v, until)| v == t && Instant::now() < *until)
    });
    let status = if live && uri.path() != "/deny" {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    a.deliveries
        .push((uri.path().to_owned(), auth, status.as_u16()));
    status
}

async fn serve(state: Shared) -> String {
    let app = Router::new()
        .route("/token", axum::routing::post(token))
        .fallback(receive)
        .with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The event's history once its delivery is finished (not pending).
async fn finished(p: &Proc, event: &str) -> Value {
    crate::deliver_tls_proxy::finished_event(p, API_TOKEN, event).await
}

fn requests(s: &Shared, client: &str) -> usize {
    s.lock().unwrap().requests.get(client).copied().unwrap_or(0)
}

#[tokio::test]
async fn oauth2_tokens_are_shared_refreshed_retried_once_and_never_shown() {
    let state = Shared::default();
    let base = serve(state.clone()).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"server: {{ listen: "127.0.0.1:{port}" }}
secrets:
  cs: {{ env: HOOKYARD_T_OAUTH_CS }}
  api: {{ env: HOOKYARD_T_API }}
tokens:
  - {{ name: ops, secret: api, scopes: [deliveries:read] }}
triggers:
  - {{ id: a, verify: none, event: a.created }}
  - {{ id: b, verify: none, event: b.created }}
subscriptions:
  - id: s
    url: "{base}/ok"
    events: ["a.*"]
    retry: {{ schedule: [1s] }}
    auth: {{ oauth2: {{ token_url: "{base}/token", client_id: main, client_secret: cs,
                       scopes: [hooks.write, hooks.read], audience: "https://api.example" }} }}
  - id: deny
    url: "{base}/deny"
    events: ["b.*"]
    auth: {{ oauth2: {{ token_url: "{base}/token", client_id: other, client_secret: cs }} }}
queue: {{ backend: embedded, path: "{data}" }}
reload: {{ watch: false }}
"#,
        data = dir.path().join("data").display(),
    );
    let path = dir.path().join("hookyard.yaml");
    std::fs::write(&path, yaml).unwrap();
    let env = [
        ("HOOKYARD_T_OAUTH_CS", CLIENT_SECRET),
        ("HOOKYARD_T_API", API_TOKEN),
        ("RUST_LOG", "hookyard=debug,info"),
    ];
    let mut p = Proc::start(&path, port, &env, dir.path().join("stderr.log")).await;
    let mut events = Vec::new();

    // Several deliveries at once: one token request among them.
    for _ in 0..6 {
        events.push(post_event(&p, "a").await);
    }
    for e in &events {
        assert_eq!(finished(&p, e).await["deliveries"][0]["state"], "succeeded");
    }
    assert_eq!(
        requests(&state, "main"),
        1,
        "one token for concurrent deliveries"
    );
    {
        let a = state.lock().unwrap();
        let form = &a.forms[0];
        assert_eq!(form["client_id"], "main");
        assert_eq!(form["scope"], "hooks.write hooks.read");
        assert_eq!(form["audience"], "https://api.example");
        let first = format!("Bearer {}", a.issued[0].0);
        assert_eq!(a.deliveries.len(), 6);
        assert!(
            a.deliveries
                .iter()
                .all(|(_, h, st)| *h == first && *st == 200)
        );
    }

    // The receiver stops accepting the token: 401, a new token, the same
    // attempt sent once more and delivered; history shows one attempt.
    {
        let mut a = state.lock().unwrap();
        let current = a.issued[0].0.clone();
        a.revoked.push(current);
    }
    let revoked = post_event(&p, "a").await;
    let h = finished(&p, &revoked).await;
    let d = &h["deliveries"][0];
    assert_eq!(d["state"], "succeeded", "{h}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{h}");
    assert_eq!(d["attempts"][0]["attempt"], 1, "{h}");
    assert_eq!(requests(&state, "main"), 2);
    {
        let a = state.lock().unwrap();
        let last: Vec<u16> = a.deliveries[6..].iter().map(|x| x.2).collect();
        assert_eq!(last, [401, 200]);
    }
    events.push(revoked);

    // Past expiry minus the margin: a new token before the old one lapses,
    // so the receiver never sees an expired one.
    tokio::time::sleep(Duration::from_secs(EXPIRES_IN)).await;
    let later = post_event(&p, "a").await;
    assert_eq!(
        finished(&p, &later).await["deliveries"][0]["state"],
        "succeeded"
    );
    assert_eq!(requests(&state, "main"), 3, "refreshed after expiry");
    {
        let a = state.lock().unwrap();
        let (_, h, st) = a.deliveries.last().unwrap();
        assert_eq!(*st, 200);
        assert_eq!(*h, format!("Bearer {}", a.issued.last().unwrap().0));
        assert_eq!(a.deliveries.len(), 9, "no 401 for an expired token");
    }
    events.push(later);

    // A target that keeps answering 401: one refresh and retry, then the
    // second 401 dead-letters the job after its first attempt.
    let denied = post_event(&p, "b").await;
    let h = finished(&p, &denied).await;
    let d = &h["deliveries"][0];
    assert_eq!(d["state"], "dead_letter", "{h}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{h}");
    assert_eq!(requests(&state, "other"), 2);
    {
        let a = state.lock().unwrap();
        let deny: Vec<u16> = a
            .deliveries
            .iter()
            .filter(|x| x.0 == "/deny")
            .map(|x| x.2)
            .collect();
        assert_eq!(deny, [401, 401]);
    }
    events.push(denied);

    // History shows `Authorization: [redacted]`; no token or client
    // secret in any event's history or in the log.
    let tokens: Vec<String> = state
        .lock()
        .unwrap()
        .issued
        .iter()
        .map(|x| x.0.clone())
        .collect();
    let mut seen = String::new();
    for e in &events {
        let h = finished(&p, e).await;
        let headers = &h["deliveries"][0]["attempts"][0]["request"]["headers"];
        let auth = headers.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        });
        assert_eq!(auth.map(|x| x.1.clone()), Some(json!("[redacted]")), "{h}");
        seen.push_str(&h.to_string());
    }
    let metrics = http()
        .get(format!("{}/metrics", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    seen.push_str(&metrics);
    p.stop().await;
    let logs = p.logs();
    assert!(logs.contains("401"), "the retry is logged: {logs}");
    for t in &tokens {
        assert!(!seen.contains(t.as_str()), "token in history or metrics");
        assert!(!logs.contains(t.as_str()), "token in the log: {logs}");
    }
    assert!(!seen.contains(CLIENT_SECRET), "client secret in history");
    assert!(!logs.contains(CLIENT_SECRET), "client secret in the log");
}

#[tokio::test]
async fn a_failing_token_endpoint_fails_the_attempt_with_a_clear_error() {
    let state = Shared::default();
    let base = serve(state.clone()).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"server: {{ listen: "127.0.0.1:{port}" }}
secrets:
  wrong: {{ env: HOOKYARD_T_WRONG }}
  api: {{ env: HOOKYARD_T_API }}
tokens:
  - {{ name: ops, secret: api, scopes: [deliveries:read] }}
triggers:
  - {{ id: a, verify: none, event: a.created }}
subscriptions:
  - id: s
    url: "{base}/ok"
    events: ["*"]
    retry: {{ schedule: [30s] }}
    auth: {{ oauth2: {{ token_url: "{base}/token", client_id: main, client_secret: wrong }} }}
queue: {{ backend: embedded, path: "{data}" }}
reload: {{ watch: false }}
"#,
        data = dir.path().join("data").display(),
    );
    let path = dir.path().join("hookyard.yaml");
    std::fs::write(&path, yaml).unwrap();
    let env = [
        ("HOOKYARD_T_WRONG", "not-the-secret"),
        ("HOOKYARD_T_API", API_TOKEN),
    ];
    let mut p = Proc::start(&path, port, &env, dir.path().join("stderr.log")).await;
    let event = post_event(&p, "a").await;
    let start = Instant::now();
    let attempt = loop {
        let v: Value = authed(
            http().get(format!("{}/v1/events/{event}", p.base)),
            API_TOKEN,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if let Some(a) = v["deliveries"][0]["attempts"].get(0) {
            assert_eq!(v["deliveries"][0]["state"], "pending", "retried: {v}");
            break a.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no attempt: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = attempt["error"].as_str().unwrap();
    assert_eq!(
        error,
        "OAuth2 token request failed: the token endpoint answered HTTP 401 (invalid_client)"
    );
    assert!(!error.contains("not-the-secret"));
    assert!(state.lock().unwrap().deliveries.is_empty(), "nothing sent");
    p.stop().await;
}
