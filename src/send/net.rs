//! Where the egress policy is enforced: on every address reqwest dials.
//!
//! reqwest reaches an address in exactly two ways, and both are covered
//! *before* a single packet leaves:
//! - a host name goes through the client's DNS resolver. [`EgressResolver`]
//!   replaces it: it resolves with the system resolver and returns only the
//!   addresses the policy accepts. The connector dials exactly the addresses
//!   the resolver returned (no second lookup), so DNS rebinding between a
//!   check and a connect is impossible.
//! - an IP literal (`http://169.254.169.254/`, `http://[::ffff:127.0.0.1]/`,
//!   `http://2130706433/`, which the `url` crate normalises to `127.0.0.1`)
//!   never reaches a resolver: hyper's connector parses it and dials it. So
//!   `Sender::send` checks literal hosts itself with [`check_literal_host`]
//!   before the request is handed to reqwest.
//!
//! As a last line, [`EgressLayer`] wraps reqwest's connector and checks the
//! peer address of every connection it established (the `HttpInfo` hyper
//! records from the socket) before any HTTP byte is written. It catches
//! anything the first two missed (a future reqwest code path, a proxy); it
//! cannot prevent the TCP (and TLS) handshake itself, which is why it is not
//! the only check: a refused-after-connect answer would let API clients scan
//! internal ports.
//!
//! The resolver and the layer are built per [`Trust`] level, so `Sender`
//! holds one client per level, and pooled connections are never shared
//! between trust levels.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::egress::{EgressError, EgressPolicy, Trust};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection whose peer address could not be read: refused, because an
/// address we cannot see is an address we cannot check.
#[derive(Debug, thiserror::Error)]
#[error("refused to use a connection whose peer address is unknown")]
pub struct UnknownPeer;

/// No address of a host name could be resolved (the name is not in the
/// error: it may be part of a secret URL).
#[derive(Debug, thiserror::Error)]
#[error("the host name did not resolve to any address")]
pub struct NoAddress;

/// Check the host of `url` when it is an IP literal. Host names are left to
/// [`EgressResolver`].
pub fn check_literal_host(
    policy: &EgressPolicy,
    url: &Url,
    trust: Trust,
) -> Result<(), EgressError> {
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(Host::Domain(domain)) => match domain.parse::<IpAddr>() {
            // The url crate turns every IPv4 spelling into Host::Ipv4 for
            // http(s); this is belt and braces in case a domain still
            // parses as an address when hyper reads it.
            Ok(ip) => ip,
            Err(_) => return Ok(()),
        },
        None => return Ok(()),
    };
    policy.check(ip, trust)
}

/// A DNS resolver that only returns addresses the egress policy accepts.
pub struct EgressResolver {
    /// The policy, shared with the connector layer and the `Sender`.
    pub policy: Arc<EgressPolicy>,
    /// The trust level of every target this client serves.
    pub trust: Trust,
}

impl Resolve for EgressResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let trust = self.trust;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest fills in the URL's port afterwards.
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|err| Box::new(err) as BoxError)?
                .collect();
            let (allowed, refused) = filter_addrs(&policy, trust, resolved);
            if allowed.is_empty() {
                return Err(match refused {
                    Some(err) => Box::new(err) as BoxError,
                    None => Box::new(NoAddress) as BoxError,
                });
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Keep the addresses the policy accepts; also return the first refusal,
/// to explain an empty result.
pub fn filter_addrs(
    policy: &EgressPolicy,
    trust: Trust,
    addrs: Vec<SocketAddr>,
) -> (Vec<SocketAddr>, Option<EgressError>) {
    let mut allowed = Vec::with_capacity(addrs.len());
    let mut first_refusal = None;
    for addr in addrs {
        match policy.check(addr.ip(), trust) {
            Ok(()) => allowed.push(addr),
            Err(err) => {
                first_refusal.get_or_insert(err);
            }
        }
    }
    (allowed, first_refusal)
}

/// Tower layer around reqwest's connector: checks each new connection's
/// peer address before it is used.
#[derive(Clone)]
pub struct EgressLayer {
    /// The policy, shared with the resolver.
    pub policy: Arc<EgressPolicy>,
    /// The trust level of every target this client serves.
    pub trust: Trust,
}

impl<S> tower_layer::Layer<S> for EgressLayer {
    type Service = EgressConnector<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EgressConnector {
            inner,
            policy: Arc::clone(&self.policy),
            trust: self.trust,
        }
    }
}

/// The service [`EgressLayer`] builds.
#[derive(Clone)]
pub struct EgressConnector<S> {
    inner: S,
    policy: Arc<EgressPolicy>,
    trust: Trust,
}

impl<S, Req> tower_service::Service<Req> for EgressConnector<S>
where
    S: tower_service::Service<Req, Error = BoxError>,
    S::Response: Connection + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let connecting = self.inner.call(req);
        let policy = Arc::clone(&self.policy);
        let trust = self.trust;
        Box::pin(async move {
            let conn = connecting.await?;
            let mut extensions = http::Extensions::new();
            conn.connected().get_extras(&mut extensions);
            let Some(info) = extensions.get::<HttpInfo>() else {
                return Err(Box::new(UnknownPeer) as BoxError);
            };
            policy
                .check(info.remote_addr().ip(), trust)
                .map_err(|err| Box::new(err) as BoxError)?;
            Ok(conn)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn literal_hosts_in_every_spelling_are_checked() {
        let policy = EgressPolicy::default();
        for u in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://0/",
            "https://10.0.0.1:8443/",
        ] {
            assert!(
                check_literal_host(&policy, &url(u), Trust::Api).is_err(),
                "{u} must be refused"
            );
        }
        for u in [
            "http://8.8.8.8/",
            "https://example.com/",
            "http://localhost/",
        ] {
            // Names are the resolver's job; public literals pass.
            assert!(
                check_literal_host(&policy, &url(u), Trust::Api).is_ok(),
                "{u}"
            );
        }
    }

    #[test]
    fn filter_keeps_only_accepted_addresses() {
        let policy = EgressPolicy::default();
        let addrs: Vec<SocketAddr> = ["127.0.0.1:0", "8.8.8.8:0", "[::1]:0", "[2606:4700::1]:0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let (allowed, refused) = filter_addrs(&policy, Trust::Api, addrs.clone());
        assert_eq!(allowed, vec![addrs[1], addrs[3]]);
        assert_eq!(refused.map(|e| e.ip), Some(addrs[0].ip()));
        let (allowed, _) = filter_addrs(&policy, Trust::Config, addrs.clone());
        assert_eq!(allowed, addrs);
    }

    /// A TCP listener on 127.0.0.1 that counts connections and bytes.
    async fn counting_listener() -> (SocketAddr, Arc<std::sync::Mutex<(usize, usize)>>) {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new((0, 0)));
        let counter = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counter.lock().unwrap().0 += 1;
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        counter.lock().unwrap().1 += n;
                    }
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn layer_refuses_a_connection_before_any_byte_is_written() {
        super::super::install_crypto_provider();
        let (addr, seen) = counting_listener().await;
        // The layer alone, with reqwest's own resolver and no literal check:
        // the connection is made, and the layer must stop it there.
        let client = reqwest::Client::builder()
            .no_proxy()
            .connector_layer(EgressLayer {
                policy: Arc::new(EgressPolicy::default()),
                trust: Trust::Api,
            })
            .build()
            .unwrap();
        for url in [
            format!("http://{addr}/"),
            format!("http://localhost:{}/", addr.port()),
        ] {
            let err = client.get(&url).send().await.unwrap_err();
            let egress = super::super::find_source::<EgressError>(&err);
            assert_eq!(egress.map(|e| e.ip), Some(addr.ip()), "{url}: {err:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (connections, bytes) = *seen.lock().unwrap();
        assert!(connections >= 2, "the layer test must really connect");
        assert_eq!(bytes, 0, "no HTTP byte may reach a refused peer");
    }

    #[tokio::test]
    async fn sender_refuses_before_dialling() {
        let (addr, seen) = counting_listener().await;
        let sender = super::super::Sender::new(EgressPolicy::default()).unwrap();
        for url in [
            format!("http://{addr}/"),
            format!("http://localhost:{}/", addr.port()),
        ] {
            let req = super::super::OutboundRequest {
                method: reqwest::Method::GET,
                url: Url::parse(&url).unwrap(),
                headers: vec![],
                body: bytes::Bytes::new(),
            };
            let timeout = std::time::Duration::from_secs(5);
            let result = sender.send(req, Trust::Api, None, timeout, 1024).await;
            assert!(
                matches!(result, Err(super::super::SendError::Egress(_))),
                "{url}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // No connection at all: a refusal after connecting would tell an API
        // client which internal ports are open.
        assert_eq!(*seen.lock().unwrap(), (0, 0));
    }
}
