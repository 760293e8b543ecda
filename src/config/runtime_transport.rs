//! Compiled `tls:`, `proxy:` and `egress.proxy` (SPEC §14): how a target
//! is reached when it is not the default way. Kept apart from the rest of
//! the compiled config because the sender compares them by value to know
//! when its clients must be rebuilt.

use url::Url;

use super::secret::Secret;

/// How one YAML target is reached when it differs from the default:
/// `tls:` and/or `proxy:` (SPEC §14). Compared by value, so a reload that
/// keeps them keeps the sender's connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport {
    /// Client certificate and extra CA.
    pub tls: Option<Tls>,
    /// The target's own proxy; `None` falls back to `egress.proxy`.
    pub proxy: Option<Proxy>,
}

/// `tls:` of a target, as PEM checked at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// Client certificate chain and its private key (both or neither).
    pub client: Option<(Secret, Secret)>,
    /// CA certificates trusted in addition to the system's roots.
    pub ca: Option<Secret>,
}

/// An HTTP CONNECT proxy. Its URL may hold `user:password` only when it
/// comes from a secret; `Debug` never shows those.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `http://[user:password@]host:port`.
    pub url: Url,
    /// Where it came from, for messages: the URL without credentials, or
    /// the secret's name.
    pub shown: String,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}
