//! Deliveries through an HTTP CONNECT proxy (`proxy:`, `egress.proxy`;
//! SPEC §14), with the egress policy still judging the target.
//!
//! reqwest's own proxy support asks the proxy to CONNECT to the target's
//! *name*: the proxy resolves it, and the address it reaches is one the
//! egress policy never saw (a name that resolves to 169.254.169.254 for
//! the proxy would pass). So hookyard opens the tunnel itself:
//! 1. resolve the target's host here and keep only the addresses the
//!    policy accepts (the same filter the direct clients' resolver uses);
//! 2. ask the proxy to `CONNECT <address>:<port>`, and report its answer
//!    by status when it refuses (hyper-util's tunnel hides the status,
//!    which is what a user needs to fix a proxy's allow list);
//! 3. for `https`, run TLS inside the tunnel with the target's *name* as
//!    SNI and for certificate checks, and the request carries that name in
//!    `Host`: the receiver cannot tell the proxy was there.
//!
//! The proxy's own address is the operator's choice in the YAML, so it is
//! not judged by the policy (an API client cannot set one).
//!
//! Responses are handed back as `reqwest::Response`, so reading them is the
//! same code as for direct deliveries.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::egress::{EgressPolicy, Trust};
use super::net::{NoAddress, filter_addrs};
use super::{BuildError, SendError};
use crate::config::Proxy;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// A pooled HTTP client whose every connection is a CONNECT tunnel through
/// one proxy.
#[derive(Clone, Debug)]
pub struct TunnelClient {
    client: Client<TunnelConnector, Full<Bytes>>,
}

impl TunnelClient {
    /// A client through `proxy` for targets of trust level `trust`, with
    /// `tls` for https targets.
    pub fn new(
        proxy: &Proxy,
        policy: &Arc<EgressPolicy>,
        trust: Trust,
        tls: rustls::ClientConfig,
    ) -> Result<TunnelClient, BuildError> {
        let host = match proxy.url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(BuildError(format!("{} has no host", proxy.shown))),
        };
        let auth = basic_from_userinfo(&proxy.url);
        let connector = TunnelConnector {
            proxy: (host, proxy.url.port_or_known_default().unwrap_or(80)),
            auth,
            policy: Arc::clone(policy),
            trust,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        };
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(TunnelClient { client })
    }

    /// Send `request` through the tunnel.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<reqwest::Response, SendError> {
        let response = self.client.request(request).await.map_err(classify)?;
        Ok(reqwest::Response::from(response.map(reqwest::Body::wrap)))
    }
}

/// `Basic …` from a URL's user and password (percent-decoded), marked
/// sensitive: the proxy's `Proxy-Authorization` (a proxy URL holds them
/// only when it came from a secret), and a tunnelled target's
/// `Authorization`, as reqwest sends for a direct one.
pub(super) fn basic_from_userinfo(url: &url::Url) -> Option<http::HeaderValue> {
    use base64::Engine as _;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or_default())
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = http::HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Opens one tunnel per connection, as the module header describes.
#[derive(Clone)]
struct TunnelConnector {
    /// The proxy's host and port.
    proxy: (String, u16),
    /// `Proxy-Authorization` value, when the URL holds credentials.
    auth: Option<http::HeaderValue>,
    policy: Arc<EgressPolicy>,
    trust: Trust,
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for TunnelConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelConnector").finish_non_exhaustive()
    }
}

impl tower_service::Service<Uri> for TunnelConnector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(dst).await })
    }
}

impl TunnelConnector {
    async fn connect(self, dst: Uri) -> Result<Stream, BoxError> {
        let https = dst.scheme_str() == Some("https");
        let host = dst.host().ok_or("the target URL has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = dst.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addrs = self.judged_addresses(host, port).await?;
        let mut last: Option<BoxError> = None;
        for addr in addrs {
            match self.open(addr).await {
                Ok(io) if https => {
                    let name = ServerName::try_from(host.to_owned())
                        .map_err(|_| "the target's host is not a valid TLS server name")?;
                    let tls = self.tls.connect(name, TokioIo::new(io)).await?;
                    return Ok(MaybeHttpsStream::Https(TokioIo::new(tls)));
                }
                Ok(io) => return Ok(MaybeHttpsStream::Http(io)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Box::new(NoAddress)))
    }

    /// The target's addresses the egress policy accepts, or why none.
    async fn judged_addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, BoxError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.policy.check(ip, self.trust)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        let (allowed, refused) = filter_addrs(&self.policy, self.trust, resolved);
        if allowed.is_empty() {
            return Err(match refused {
                Some(err) => Box::new(err),
                None => Box::new(NoAddress),
            });
        }
        Ok(allowed)
    }

    /// A tunnel to `addr` through the proxy: `CONNECT addr`, and the
    /// connection once the proxy answers 2xx.
    async fn open(&self, addr: SocketAddr) -> Result<TokioIo<TcpStream>, BoxError> {
        let refused = |why: String| Box::new(ProxyRefused { addr, why }) as BoxError;
        let mut stream = TcpStream::connect((self.proxy.0.as_str(), self.proxy.1))
            .await
            .map_err(|e| refused(format!("the proxy is unreachable ({e})")))?;
        let mut request = format!("CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n");
        if let Some(auth) = &self.auth {
            request.push_str("Proxy-Authorization: ");
            request.push_str(auth.to_str().unwrap_or_default());
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| refused(format!("the proxy closed the connection ({e})")))?;
        let head = read_head(&mut stream).await.map_err(refused)?;
        match connect_status(&head) {
            Some((200..=299, _)) => Ok(TokioIo::new(stream)),
            Some((407, _)) => Err(refused(
                "it asks for credentials (407): give them in the proxy URL, from a secret"
                    .to_owned(),
            )),
            Some((status, reason)) => Err(refused(format!(
                "it answered {status} {reason} to the CONNECT: check its allow list"
            ))),
            None => Err(refused("its answer is not HTTP".to_owned())),
        }
    }
}

/// The most a proxy's answer head to CONNECT may be.
const HEAD_LIMIT: usize = 8 * 1024;

/// Read the proxy's answer up to its blank line, byte by byte so no byte
/// of the tunnelled stream is consumed.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= HEAD_LIMIT {
            return Err("its answer to the CONNECT is too long".to_owned());
        }
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return Err("it closed the connection before answering".to_owned()),
            Err(e) => return Err(format!("reading its answer failed ({e})")),
        }
    }
    Ok(head)
}

/// The status code and reason of an answer head (`HTTP/1.1 200 OK`).
fn connect_status(head: &[u8]) -> Option<(u16, String)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let reason: String = parts
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    Some((status, reason))
}

/// Why a tunnel could not be opened, in the user's words.
#[derive(Debug, thiserror::Error)]
#[error("the proxy did not open a tunnel to {addr}: {why}")]
pub struct ProxyRefused {
    addr: SocketAddr,
    why: String,
}

fn classify(err: hyper_util::client::legacy::Error) -> SendError {
    if let Some(egress) = super::find_source::<super::EgressError>(&err) {
        return SendError::Egress(egress.clone());
    }
    let message = super::error_chain(&err);
    if err.is_connect() {
        return SendError::Connect(message);
    }
    SendError::Other(message)
}

#[cfg(test)]
mod tests {
    use super::connect_status;

    #[test]
    fn connect_answers_are_read_by_status() {
        let ok = connect_status(b"HTTP/1.1 200 Connection established\r\n\r\n");
        assert_eq!(ok, Some((200, "Connection established".to_owned())));
        let refused = connect_status(b"HTTP/1.0 403 Forbidden\r\nVia: squid\r\n\r\n");
        assert_eq!(refused, Some((403, "Forbidden".to_owned())));
        assert_eq!(
            connect_status(b"HTTP/1.1 407\r\n\r\n"),
            Some((407, String::new()))
        );
        assert_eq!(connect_status(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(connect_status(b"HTTP/1.1 abc x\r\n\r\n"), None);
    }
}
