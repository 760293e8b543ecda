//! The sending edge against a real receiver on 127.0.0.1: what arrives,
//! timeouts, refused connections, redirects, body limits, and the egress
//! policy on every way an address can be spelled or reached.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as AxumResponse};
use bytes::Bytes;
use hookyard::deliver::attempt::transport_outcome;
use hookyard::deliver::retry::Outcome;
use hookyard::send::{
    EgressPolicy, EgressReason, OutboundRequest, SendError, Sender, Trust, UnsafeRequest,
};
use reqwest::Method;
use url::Url;

const LIMIT: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A recording receiver on 127.0.0.1:<random port>.
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .fallback(record)
            .with_state((Arc::clone(&hits), addr));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, hits }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

async fn record(
    State((hits, addr)): State<(Arc<Mutex<Vec<Hit>>>, SocketAddr)>,
    req: Request,
) -> AxumResponse {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path().to_owned();
    hits.lock().unwrap().push(Hit {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
    });
    match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            StatusCode::OK.into_response()
        }
        "/redirect" => (
            StatusCode::FOUND,
            [("location", format!("http://{addr}/target"))],
        )
            .into_response(),
        "/endless" => {
            // An endless body: the sender must stop reading at its limit.
            let chunks =
                std::iter::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 4096])));
            Body::from_stream(futures_util::stream::iter(chunks)).into_response()
        }
        _ => (
            StatusCode::CREATED,
            [("x-reply", "yes"), ("retry-after", "120")],
            "hello",
        )
            .into_response(),
    }
}

fn post(url: Url) -> OutboundRequest {
    OutboundRequest {
        method: Method::POST,
        url,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Bytes::from_static(br#"{"order":1}"#),
    }
}

fn policy(allow: &[&str], deny: &[&str]) -> EgressPolicy {
    EgressPolicy {
        allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
        deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

fn egress_reason(result: Result<hookyard::send::Response, SendError>) -> EgressReason {
    match result {
        Err(SendError::Egress(err)) => err.reason,
        other => panic!("expected an egress refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn delivers_method_headers_and_body() {
    let rx = Receiver::start().await;
    let sender = Sender::new(EgressPolicy::default()).unwrap();
    let mut req = post(rx.url("/ok"));
    req.headers.push(("X-Multi".into(), "a".into()));
    req.headers.push(("X-Multi".into(), "b".into()));
    req.headers.push(("X-Name".into(), "José".into()));
    let resp = sender
        .send(req, Trust::Config, None, TIMEOUT, LIMIT)
        .await
        .unwrap();

    assert_eq!(resp.status, 201);
    assert_eq!(resp.body, Bytes::from_static(b"hello"));
    assert!(!resp.body_truncated);
    assert_eq!(resp.retry_after.as_deref(), Some("120"));
    assert!(resp.headers.contains(&("x-reply".into(), "yes".into())));

    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.method, "POST");
    assert_eq!(hit.uri, "/ok");
    assert_eq!(hit.body, Bytes::from_static(br#"{"order":1}"#));
    assert_eq!(hit.headers["content-type"], "application/json");
    let multi: Vec<_> = hit.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    assert_eq!(hit.headers["x-name"].as_bytes(), "José".as_bytes());
    let ua = hit.headers["user-agent"].to_str().unwrap();
    assert!(ua.starts_with("hookyard/"), "{ua}");
}

#[tokio::test]
async fn total_timeout_against_a_slow_receiver() {
    let rx = Receiver::start().await;
    let sender = Sender::new(EgressPolicy::default()).unwrap();
    let started = Instant::now();
    let result = sender
        .send(
            post(rx.url("/slow")),
            Trust::Config,
            None,
            Duration::from_millis(300),
            LIMIT,
        )
        .await;
    let err = result.unwrap_err();
    assert_eq!(err, SendError::Timeout(Duration::from_millis(300)));
    assert!(retryable(&err));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        rx.hits().len(),
        1,
        "the request did arrive; the answer did not"
    );
}

#[tokio::test]
async fn connection_refused_is_a_connect_error_without_the_url() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let sender = Sender::new(EgressPolicy::default()).unwrap();
    let url = Url::parse(&format!("http://{addr}/hooks/secret-token-abc")).unwrap();
    let err = sender
        .send(post(url), Trust::Config, None, TIMEOUT, LIMIT)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Connect(_)), "{err:?}");
    assert!(retryable(&err));
    let message = err.to_string();
    assert!(!message.contains("secret-token-abc"), "{message}");
    assert!(!message.contains(&addr.to_string()), "{message}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let rx = Receiver::start().await;
    let sender = Sender::new(EgressPolicy::default()).unwrap();
    let resp = sender
        .send(
            post(rx.url("/redirect")),
            Trust::Config,
            None,
            TIMEOUT,
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 302);
    let paths: Vec<String> = rx.hits().into_iter().map(|h| h.uri).collect();
    assert_eq!(
        paths,
        ["/redirect"],
        "the redirect target must receive nothing"
    );
}

#[tokio::test]
async fn response_body_is_cut_at_the_limit() {
    let rx = Receiver::start().await;
    let sender = Sender::new(EgressPolicy::default()).unwrap();
    let resp = sender
        .send(
            post(rx.url("/endless")),
            Trust::Config,
            None,
            TIMEOUT,
            10_000,
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), 10_000);
    assert!(resp.body_truncated);

    // Exactly at the limit is complete; one byte less is truncated.
    let exact = sender
        .send(post(rx.url("/ok")), Trust::Config, None, TIMEOUT, 5)
        .await
        .unwrap();
    assert_eq!(
        (exact.body.as_ref(), exact.body_truncated),
        (b"hello".as_ref(), false)
    );
    let short = sender
        .send(post(rx.url("/ok")), Trust::Config, None, TIMEOUT, 4)
        .await
        .unwrap();
    assert_eq!(
        (short.body.as_ref(), short.body_truncated),
        (b"hell".as_ref(), true)
    );
}

#[tokio::test]
async fn api_targets_may_not_reach_loopback() {
    let rx = Receiver::start().await;
    let sender = Sender::new(EgressPolicy::default()).unwrap();
    let err = sender
        .send(post(rx.url("/ok")), Trust::Api, None, TIMEOUT, LIMIT)
        .await
        .unwrap_err();
    assert!(!retryable(&err));
    assert!(err.to_string().contains("egress.allow"), "{err}");
    assert_eq!(egress_reason(Err(err)), EgressReason::Loopback);
    assert!(rx.hits().is_empty());
}

#[tokio::test]
async fn api_targets_reach_loopback_when_allowed() {
    let rx = Receiver::start().await;
    let sender = Sender::new(policy(&["127.0.0.0/8"], &[])).unwrap();
    let resp = sender
        .send(post(rx.url("/ok")), Trust::Api, None, TIMEOUT, LIMIT)
        .await
        .unwrap();
    assert_eq!(resp.status, 201);
    let port = rx.addr.port();
    let by_name = Url::parse(&format!("http://localhost:{port}/ok")).unwrap();
    let resp = sender
        .send(post(by_name), Trust::Api, None, TIMEOUT, LIMIT)
        .await
        .unwrap();
    assert_eq!(resp.status, 201);
    assert_eq!(rx.hits().len(), 2);
}

#[tokio::test]
async fn every_spelling_of_loopback_is_refused_for_api_targets() {
    let rx = Receiver::start().await;
    let port = rx.addr.port();
    let sender = Sender::new(EgressPolicy::default()).unwrap();
    let spellings = [
        format!("http://2130706433:{port}/ok"),
        format!("http://0x7f000001:{port}/ok"),
        format!("http://0177.0.0.1:{port}/ok"),
        format!("http://127.1:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
        format!("http://[::1]:{port}/ok"),
        // A host name: refused after resolution, by the resolver.
        format!("http://localhost:{port}/ok"),
    ];
    for spelling in &spellings {
        let url = Url::parse(spelling).unwrap();
        let result = sender
            .send(post(url), Trust::Api, None, TIMEOUT, LIMIT)
            .await;
        assert_eq!(egress_reason(result), EgressReason::Loopback, "{spelling}");
    }
    assert!(rx.hits().is_empty());

    // Control: the same spellings really lead to the receiver when trusted,
    // so the refusals above are the policy, not a broken URL.
    for spelling in [&spellings[0], &spellings[1], &spellings[3], &spellings[6]] {
        let url = Url::parse(spelling).unwrap();
        let resp = sender
            .send(post(url), Trust::Config, None, TIMEOUT, LIMIT)
            .await
            .unwrap();
        assert_eq!(resp.status, 201, "{spelling}");
    }
    assert_eq!(rx.hits().len(), 4);
}

#[tokio::test]
async fn deny_applies_to_config_targets() {
    let rx = Receiver::start().await;
    let port = rx.addr.port();
    let sender = Sender::new(policy(&["127.0.0.0/8"], &["127.0.0.1/32"])).unwrap();
    for url in [
        rx.url("/ok"),
        Url::parse(&format!("http://localhost:{port}/ok")).unwrap(),
    ] {
        for trust in [Trust::Config, Trust::Api] {
            let result = sender
                .send(post(url.clone()), trust, None, TIMEOUT, LIMIT)
                .await;
            assert_eq!(
                egress_reason(result),
                EgressReason::Denied,
                "{url} {trust:?}"
            );
        }
    }
    assert!(rx.hits().is_empty());
}

#[tokio::test]
async fn smuggled_headers_are_refused_before_sending() {
    let rx = Receiver::start().await;
    let sender = Sender::new(EgressPolicy::default()).unwrap();
    let mut req = post(rx.url("/ok"));
    req.headers
        .push(("X-Order".into(), "1\r\nX-Injected: yes".into()));
    let err = sender
        .send(req, Trust::Config, None, TIMEOUT, LIMIT)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SendError::InvalidRequest(UnsafeRequest::HeaderValue("X-Order".into()))
    );
    let mut req = post(rx.url("/ok"));
    req.headers.push(("Host".into(), "internal.example".into()));
    let err = sender
        .send(req, Trust::Config, None, TIMEOUT, LIMIT)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        SendError::InvalidRequest(UnsafeRequest::ReservedHeader(_))
    ));
    assert!(rx.hits().is_empty());
}

/// Env var that makes `proxy_env_child` run (it is `#[ignore]`d otherwise).
const CHILD_MARK: &str = "HOOKYARD_SEND_PROXY_CHILD";

/// Proxies from the environment cannot route deliveries around the egress
/// check. Changing the environment in-process needs `unsafe` (forbidden
/// here), so this test runs `proxy_env_child` in a child process of this
/// test binary with `HTTP_PROXY`/`ALL_PROXY` pointing at a recording proxy.
#[tokio::test]
async fn environment_proxies_are_ignored() {
    let target = Receiver::start().await;
    let proxy = Receiver::start().await;
    let proxy_url = format!("http://{}", proxy.addr);
    let exe = std::env::current_exe().unwrap();
    let output = tokio::process::Command::new(exe)
        .args([
            "send::proxy_env_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_MARK, target.url("/ok").as_str())
        .env("HTTP_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("ALL_PROXY", &proxy_url)
        .env("all_proxy", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run:\n{stdout}"
    );
    // The control client went through the proxy (so the env was live)...
    let proxied: Vec<String> = proxy.hits().into_iter().map(|h| h.uri).collect();
    assert_eq!(proxied, [target.url("/ok").to_string()]);
    // ...while both Sender clients dialled the target directly.
    assert_eq!(target.hits().len(), 2);
}

#[tokio::test]
#[ignore = "run by environment_proxies_are_ignored in a child process"]
async fn proxy_env_child() {
    let Ok(target) = std::env::var(CHILD_MARK) else {
        return;
    };
    let target = Url::parse(&target).unwrap();
    let sender = Sender::new(policy(&["127.0.0.0/8"], &[])).unwrap();
    for trust in [Trust::Config, Trust::Api] {
        let resp = sender
            .send(post(target.clone()), trust, None, TIMEOUT, LIMIT)
            .await
            .unwrap();
        assert_eq!(resp.status, 201);
    }
    // Control: a default client honours the proxy variables. The proxy
    // (a recorder) answers 201 itself without forwarding.
    let control = reqwest::Client::builder().build().unwrap();
    let resp = control.post(target).send().await.unwrap();
    assert_eq!(resp.status(), 201);
}

/// Whether the worker would try again after this error.
fn retryable(err: &SendError) -> bool {
    matches!(transport_outcome(err), Outcome::Retryable(_))
}
