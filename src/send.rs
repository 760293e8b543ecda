//! The HTTP sending edge of delivery: one rendered request out, one
//! response (or a classified error) back.
//!
//! [`Sender`] is built once and cloned into every worker. It holds one
//! pooled reqwest client per [`Trust`] level (rustls with `ring`, HTTP/2 by
//! ALPN, redirects off, proxies off), each with the egress policy wired into
//! its DNS resolver and around its connector (see `send/net.rs` for why
//! that checks the address actually dialled, and `send/egress.rs` for the
//! policy itself).
//!
//! Choices and why:
//! - **No proxy from the environment**: `HTTP_PROXY`/`ALL_PROXY` would
//!   route API targets around the egress policy, since a proxy dials the
//!   target for us. A proxy is set in the YAML (`proxy:`, `egress.proxy`),
//!   and then hookyard opens the CONNECT tunnel itself, to an address the
//!   policy judged (`send/tunnel.rs`). Targets with their own `tls:` or
//!   `proxy:` get a client each (`routes`); `send/tls.rs` builds their TLS.
//! - **Redirects are never followed**: a 3xx is a response like any other
//!   (not 2xx, so the retry policy decides). Following one would dial an
//!   address chosen by the receiver.
//! - **One total timeout** around connect, headers and body, so a receiver
//!   that trickles its body cannot hold a worker longer than `timeout`.
//! - **Bounded response bodies**: at most `body_limit` bytes are kept;
//!   reading stops at the first byte past the limit.
//! - **No URL in errors**: the URL may be the credential (Slack, Zapier).
//!   Errors name what happened; the caller adds the target's display name.
//!
//! Pure checks on the request (header smuggling, host swap, redaction for
//! the attempt record) live in `send/safety.rs`.

mod egress;
mod net;
pub mod redact;
mod safety;
mod tls;
mod tunnel;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use url::Url;

use crate::config::{Proxy, Tls, Transport};
pub use egress::{EgressError, EgressPolicy, EgressReason, Trust, classify};
pub use safety::{
    REDACTED, UnsafeRequest, check_headers, literal_origin, literal_prefix, redact_headers,
    url_safety,
};

/// `User-Agent` sent with every delivery (SPEC §5); a rendered
/// `User-Agent` header replaces it.
pub const USER_AGENT: &str = concat!("hookyard/", env!("CARGO_PKG_VERSION"));

/// A fully rendered and signed request, ready to send.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// GET, POST, PUT, PATCH or DELETE.
    pub method: reqwest::Method,
    /// The rendered URL (already checked with [`url_safety`] by the caller).
    pub url: Url,
    /// Headers in order; repeated names are sent as repeated headers.
    pub headers: Vec<(String, String)>,
    /// The exact bytes that were signed.
    pub body: Bytes,
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers in order (non-UTF-8 bytes replaced).
    pub headers: Vec<(String, String)>,
    /// At most `body_limit` bytes of the body.
    pub body: Bytes,
    /// True when the body was longer than `body_limit`, or broke off after
    /// the status arrived (the status still counts).
    pub body_truncated: bool,
    /// The raw `Retry-After` value, for the retry policy to parse.
    pub retry_after: Option<String>,
}

/// Why a request got no response. Messages never contain the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, DNS failure, TLS).
    #[error("could not connect: {0}")]
    Connect(String),
    /// No complete response within the delivery's timeout.
    #[error(
        "no complete response within {}; raise the target's timeout if it is slow",
        humantime::format_duration(*.0)
    )]
    Timeout(Duration),
    /// The egress policy refused every address of the target.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The rendered request is unsafe or malformed; nothing was sent.
    #[error("request not sent: {0}")]
    InvalidRequest(#[from] UnsafeRequest),
    /// The request failed after connecting (connection reset, protocol error).
    #[error("request failed: {0}")]
    Other(String),
    /// The target's credentials could not be obtained (an OAuth2 token
    /// request failed); the message never holds a token or secret.
    #[error("{0}")]
    Auth(String),
}

/// The HTTP client could not be built (a TLS setup problem on this host).
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client: {0}")]
pub struct BuildError(String);

/// Sends delivery requests with pooled connections under the egress policy.
/// Cheap to clone; build once per egress policy and set of target
/// transports (a reload that changes `egress:`, or a target's `tls:` or
/// `proxy:`, builds a new one, which also drops connections made under the
/// old settings).
#[derive(Debug, Clone)]
pub struct Sender {
    /// For targets from the YAML config: only `egress.deny` applies.
    config_client: Client,
    /// For targets created through the API: internal addresses refused.
    api_client: Client,
    /// YAML targets with their own `tls:` or `proxy:`, each with a client.
    routes: Vec<(Arc<Transport>, Client)>,
    /// Also checked here for IP-literal hosts, which skip the resolver.
    policy: Arc<EgressPolicy>,
}

/// One pooled client: straight to the target, or through a proxy.
#[derive(Debug, Clone)]
enum Client {
    Direct(reqwest::Client),
    Tunnel(Box<tunnel::TunnelClient>),
}

/// rustls needs a crypto provider installed (its own process default);
/// reqwest is built with `rustls-no-provider`, so install `ring` before a
/// client is built. Clients are built at start and when `egress:` changes,
/// so trying each time costs nothing; after the first it answers Err, which
/// means one is installed already.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The client for targets of `trust` reached through `proxy` (if any) with
/// their own `tls` (if any).
fn build_client(
    policy: &Arc<EgressPolicy>,
    trust: Trust,
    proxy: Option<&Proxy>,
    tls: Option<&Tls>,
) -> Result<Client, BuildError> {
    install_crypto_provider();
    if let Some(proxy) = proxy {
        let config = tls::client_config(tls)?;
        return Ok(Client::Tunnel(Box::new(tunnel::TunnelClient::new(
            proxy, policy, trust, config,
        )?)));
    }
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(net::EgressResolver {
            policy: Arc::clone(policy),
            trust,
        })
        .connector_layer(net::EgressLayer {
            policy: Arc::clone(policy),
            trust,
        })
        .user_agent(USER_AGENT);
    if tls.is_some() {
        builder = builder.tls_backend_preconfigured(tls::client_config(tls)?);
    }
    let client = builder
        .build()
        .map_err(|err| BuildError(error_chain(&err.without_url())))?;
    Ok(Client::Direct(client))
}

/// A client for the daemon's own requests to an address its operator
/// configured (the OTLP collector, `telemetry.otlp`), not a delivery:
/// the egress policy is for targets, so it does not apply. No proxy and
/// no redirects, as for deliveries; `timeout` bounds each request.
pub fn plain_client(timeout: Duration) -> Result<reqwest::Client, BuildError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|err| BuildError(error_chain(&err.without_url())))
}

impl Sender {
    /// Build the clients for this egress policy (no proxy, no target with
    /// its own transport).
    pub fn new(policy: EgressPolicy) -> Result<Sender, BuildError> {
        Sender::with_transports(policy, None, &[])
    }

    /// Build the default clients (through `default_proxy`, from
    /// `egress.proxy`, when set) and one client per YAML target transport.
    /// A transport without its own proxy uses `default_proxy`.
    pub fn with_transports(
        policy: EgressPolicy,
        default_proxy: Option<&Proxy>,
        transports: &[Arc<Transport>],
    ) -> Result<Sender, BuildError> {
        let policy = Arc::new(policy);
        let mut routes: Vec<(Arc<Transport>, Client)> = Vec::new();
        for t in transports {
            if routes.iter().any(|(r, _)| r == t) {
                continue;
            }
            let proxy = t.proxy.as_ref().or(default_proxy);
            let client = build_client(&policy, Trust::Config, proxy, t.tls.as_ref())?;
            routes.push((Arc::clone(t), client));
        }
        Ok(Sender {
            config_client: build_client(&policy, Trust::Config, default_proxy, None)?,
            api_client: build_client(&policy, Trust::Api, default_proxy, None)?,
            routes,
            policy,
        })
    }

    /// The egress policy this sender enforces.
    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// Send one request to a target of `trust` with its own `transport`
    /// (YAML targets only; `None` for the default clients). `timeout`
    /// covers connect, headers and body; at most `body_limit` bytes of the
    /// response body are kept.
    pub async fn send(
        &self,
        req: OutboundRequest,
        trust: Trust,
        transport: Option<&Transport>,
        timeout: Duration,
        body_limit: usize,
    ) -> Result<Response, SendError> {
        if !matches!(req.url.scheme(), "http" | "https") {
            return Err(UnsafeRequest::Scheme.into());
        }
        check_headers(&req.headers)?;
        net::check_literal_host(&self.policy, &req.url, trust)?;
        let headers = header_map(&req.headers)?;
        let client = match (trust, transport) {
            (Trust::Api, _) => &self.api_client,
            (Trust::Config, None) => &self.config_client,
            (Trust::Config, Some(t)) => self
                .routes
                .iter()
                .find(|(r, _)| std::ptr::eq(&**r, t) || **r == *t)
                .map(|(_, c)| c)
                .ok_or_else(|| {
                    // The snapshot swaps config and sender together, so
                    // this would be a bug, not a user mistake.
                    SendError::Connect(
                        "this target's `tls`/`proxy` client was not built; reload the config"
                            .to_owned(),
                    )
                })?,
        };
        let exchange = async {
            let response = match client {
                Client::Direct(client) => client
                    .request(req.method, req.url)
                    .headers(headers)
                    .body(req.body)
                    .send()
                    .await
                    .map_err(classify_error)?,
                Client::Tunnel(client) => client.send(tunnel_request(req, headers)?).await?,
            };
            read_response(response, body_limit).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_elapsed) => Err(SendError::Timeout(timeout)),
        }
    }
}

/// The request as hyper sends it through a tunnel, with what reqwest would
/// have added: `User-Agent`, and `Authorization: Basic` from a URL's
/// `user:password` (which is then cut from the URL).
fn tunnel_request(
    mut req: OutboundRequest,
    mut headers: HeaderMap,
) -> Result<http::Request<http_body_util::Full<Bytes>>, SendError> {
    if !headers.contains_key(reqwest::header::USER_AGENT) {
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
    }
    if !req.url.username().is_empty() || req.url.password().is_some() {
        if !headers.contains_key(reqwest::header::AUTHORIZATION) {
            if let Some(value) = tunnel::basic_from_userinfo(&req.url) {
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
        }
        let _ = req.url.set_username("");
        let _ = req.url.set_password(None);
    }
    let mut request = http::Request::builder()
        .method(req.method)
        .uri(req.url.as_str())
        .body(http_body_util::Full::new(req.body))
        .map_err(|e| SendError::Other(format!("could not build the request: {e}")))?;
    *request.headers_mut() = headers;
    Ok(request)
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, UnsafeRequest> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| UnsafeRequest::HeaderName(name.clone()))?;
        let header_value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| UnsafeRequest::HeaderValue(name.clone()))?;
        map.append(header_name, header_value);
    }
    Ok(map)
}

async fn read_response(
    mut response: reqwest::Response,
    body_limit: usize,
) -> Result<Response, SendError> {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
    let mut body = BytesMut::new();
    let mut body_truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = body_limit - body.len();
                if chunk.len() > room {
                    // One byte past the limit is enough to know; stop reading
                    // (the connection is dropped rather than drained).
                    body.extend_from_slice(&chunk[..room]);
                    body_truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(_) => {
                // The status already arrived and decides the attempt; keep
                // what was read and mark it incomplete.
                body_truncated = true;
                break;
            }
        }
    }
    Ok(Response {
        status,
        headers,
        body: body.freeze(),
        body_truncated,
        retry_after,
    })
}

/// Turn a reqwest error into a [`SendError`] without the URL.
fn classify_error(err: reqwest::Error) -> SendError {
    if let Some(egress) = find_source::<EgressError>(&err) {
        return SendError::Egress(egress.clone());
    }
    let err = err.without_url();
    let message = error_chain(&err);
    if err.is_timeout() {
        // Only reachable if reqwest times out on its own before ours.
        return SendError::Other(message);
    }
    if err.is_connect() || find_source::<net::UnknownPeer>(&err).is_some() {
        return SendError::Connect(message);
    }
    SendError::Other(message)
}

fn find_source<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// "outer: inner: root" with repeated fragments dropped (reqwest repeats
/// its source's text in its own).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}
