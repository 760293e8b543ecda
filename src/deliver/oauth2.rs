//! OAuth2 client credentials for `auth: { oauth2: … }` (SPEC §14): fetch
//! an access token from the target's token endpoint, cache it, and hand it
//! to the delivery as `Authorization: Bearer <token>`.
//!
//! Choices and why:
//! - **Client authentication is `client_secret_post`**: `client_id` and
//!   `client_secret` go in the form body with `grant_type`, `scope`
//!   (space-separated) and `audience` (RFC 6749 §2.3.1 allows both this
//!   and HTTP basic; the form is what every server tried accepts).
//! - **The token request goes through the delivery [`Sender`]** with
//!   [`Trust::Config`] (the grant comes from the YAML config): the same
//!   egress policy, no redirects, the target's timeout, and the target's
//!   `proxy:`/`tls:` (else `egress.proxy`).
//! - **One cache entry per grant** (token URL, client id, scopes, audience,
//!   client secret), shared by every target using the same grant. Each
//!   entry has its own async mutex, held while fetching: concurrent
//!   deliveries wait for one token request instead of each making one.
//! - **A token is used until `min(60 s, 10 % of its lifetime)` before it
//!   expires**, the lifetime counted from when the request was sent. A
//!   response without `expires_in` is taken to last an hour.
//! - **A 401 drops the token** ([`Tokens::reject`]), but only if it is
//!   still the cached one: a delivery that held an older token must not
//!   throw away the fresh one another delivery just fetched.
//! - **Nothing secret in errors**: a failed token request names the HTTP
//!   status and at most the OAuth2 `error` code (a short word), never the
//!   response body, which could hold a token.
//!
//! The cache is process state of the delivery worker; it is never written
//! to the queue, history, logs or metrics, and [`Token`]'s `Debug` hides
//! its value.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{OAuth2, Transport};
use crate::send::{OutboundRequest, SendError, Sender, Trust};

/// Lifetime assumed when the token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Most of a token's lifetime given up to refresh it early.
const MAX_MARGIN: Duration = Duration::from_secs(60);
/// Most bytes of a token response read.
const BODY_LIMIT: usize = 64 * 1024;

/// An access token. `Debug` prints no value.
#[derive(Clone)]
pub struct Token {
    value: Arc<str>,
    /// Which fetch it came from, so a 401 drops only that one.
    id: u64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}, [redacted])", self.id)
    }
}

impl Token {
    /// The `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.value)
    }
}

struct Cached {
    token: Token,
    refresh_at: Instant,
}

/// What identifies one grant's token. Holds the client secret so that a
/// reload that changes it fetches a new token; never printed.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    token_url: String,
    client_id: String,
    scopes: Vec<String>,
    audience: Option<String>,
    secret: Vec<u8>,
}

impl Key {
    fn of(grant: &OAuth2) -> Key {
        Key {
            token_url: grant.token_url.to_string(),
            client_id: grant.client_id.clone(),
            scopes: grant.scopes.clone(),
            audience: grant.audience.clone(),
            secret: grant.client_secret.expose().to_vec(),
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// The token cache of one delivery worker.
#[derive(Default)]
pub struct Tokens {
    slots: Mutex<HashMap<Key, Slot>>,
    next_id: AtomicU64,
}

impl Tokens {
    fn slot(&self, grant: &OAuth2) -> Slot {
        let mut slots = match self.slots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        Arc::clone(slots.entry(Key::of(grant)).or_default())
    }

    /// A token for `grant`: the cached one while fresh, else one fetched
    /// now (callers for the same grant wait for that one fetch). A failed
    /// fetch is a [`SendError::Auth`], retried like a transport error.
    pub async fn get(
        &self,
        grant: &OAuth2,
        sender: &Sender,
        transport: Option<&Transport>,
        timeout: Duration,
    ) -> Result<Token, SendError> {
        let slot = self.slot(grant);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        *cached = None;
        let asked = Instant::now();
        let (value, lifetime) = fetch(grant, sender, transport, timeout).await?;
        let token = Token {
            value: Arc::from(value),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        };
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: asked + lifetime.saturating_sub(margin(lifetime)),
        });
        Ok(token)
    }

    /// The target refused `token` (401): drop it if it is still cached.
    pub async fn reject(&self, grant: &OAuth2, token: &Token) {
        let slot = self.slot(grant);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|c| c.token.id == token.id) {
            *cached = None;
        }
    }
}

/// How long before expiry a token is replaced: `min(60 s, lifetime / 10)`.
pub fn margin(lifetime: Duration) -> Duration {
    MAX_MARGIN.min(lifetime / 10)
}

/// The form body of the client credentials request.
pub fn form(grant: &OAuth2) -> String {
    let mut f = url::form_urlencoded::Serializer::new(String::new());
    f.append_pair("grant_type", "client_credentials");
    f.append_pair("client_id", &grant.client_id);
    f.append_pair(
        "client_secret",
        &String::from_utf8_lossy(grant.client_secret.expose()),
    );
    if !grant.scopes.is_empty() {
        f.append_pair("scope", &grant.scopes.join(" "));
    }
    if let Some(a) = &grant.audience {
        f.append_pair("audience", a);
    }
    f.finish()
}

fn auth_error(msg: impl std::fmt::Display) -> SendError {
    SendError::Auth(format!("OAuth2 token request failed: {msg}"))
}

/// One client credentials request: the token and its lifetime.
/// It goes the way the target's deliveries go (its `proxy:` and `tls:`,
/// if any), as a token endpoint is usually reached like its API.
async fn fetch(
    grant: &OAuth2,
    sender: &Sender,
    transport: Option<&Transport>,
    timeout: Duration,
) -> Result<(String, Duration), SendError> {
    let req = OutboundRequest {
        method: reqwest::Method::POST,
        url: grant.token_url.clone(),
        headers: vec![
            (
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("Accept".to_owned(), "application/json".to_owned()),
        ],
        body: Bytes::from(form(grant)),
    };
    let r = sender
        .send(req, Trust::Config, transport, timeout, BODY_LIMIT)
        .await
        .map_err(auth_error)?;
    let body: Option<serde_json::Value> = serde_json::from_slice(&r.body).ok();
    if !(200..300).contains(&r.status) {
        let code = body
            .as_ref()
            .and_then(|b| b.get("error"))
            .and_then(|e| e.as_str())
            .filter(|e| is_word(e))
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(auth_error(format!(
            "the token endpoint answered HTTP {}{code}",
            r.status
        )));
    }
    parse(body.as_ref(), r.body_truncated).map_err(auth_error)
}

/// The token and lifetime of a token response body; the error never
/// quotes the body.
pub fn parse(
    body: Option<&serde_json::Value>,
    truncated: bool,
) -> Result<(String, Duration), String> {
    if truncated {
        return Err(format!(
            "the token response is longer than {BODY_LIMIT} bytes"
        ));
    }
    let Some(body) = body.and_then(|b| b.as_object()) else {
        return Err("the token response is not a JSON object".to_owned());
    };
    if let Some(t) = body.get("token_type").and_then(|t| t.as_str()) {
        if !t.eq_ignore_ascii_case("bearer") {
            let shown = if is_word(t) { t } else { "?" };
            return Err(format!("token_type `{shown}` is not Bearer"));
        }
    }
    let token = match body.get("access_token").and_then(|t| t.as_str()) {
        Some(t) if !t.is_empty() && t.bytes().all(|b| (0x21..0x7f).contains(&b)) => t,
        Some(_) => return Err("the access_token is not a valid header value".to_owned()),
        None => return Err("the token response has no access_token".to_owned()),
    };
    let lifetime = match body.get("expires_in") {
        None | Some(serde_json::Value::Null) => DEFAULT_LIFETIME,
        Some(v) => {
            // Some servers send the number as a string.
            let secs = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse::<f64>().ok()));
            match secs {
                Some(s) if s.is_finite() && s > 0.0 => {
                    Duration::from_secs_f64(s.min(10.0 * 365.0 * 86_400.0))
                }
                _ => return Err("expires_in is not a positive number".to_owned()),
            }
        }
    };
    Ok((token.to_owned(), lifetime))
}

/// A short OAuth2 error code or token type, safe to show.
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use serde_json::json;

    #[test]
    fn margin_is_a_tenth_of_the_lifetime_at_most_a_minute() {
        assert_eq!(margin(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(margin(Duration::from_secs(100)), Duration::from_secs(10));
        assert_eq!(margin(Duration::from_secs(2)), Duration::from_millis(200));
    }

    #[test]
    fn form_is_client_secret_post_with_scope_and_audience() {
        let grant = OAuth2 {
            token_url: url::Url::parse("https://auth.example/token").unwrap(),
            client_id: "hookyard".to_owned(),
            client_secret: Secret::new("s", "p&ss w"),
            scopes: vec!["a".to_owned(), "b:write".to_owned()],
            audience: Some("https://api.example".to_owned()),
        };
        assert_eq!(
            form(&grant),
            "grant_type=client_credentials&client_id=hookyard&client_secret=p%26ss+w\
             &scope=a+b%3Awrite&audience=https%3A%2F%2Fapi.example"
        );
    }

    #[test]
    fn parse_reads_token_and_lifetime_and_never_quotes_the_body() {
        let ok = json!({"access_token": "tok", "token_type": "bearer", "expires_in": 30});
        assert_eq!(
            parse(Some(&ok), false).unwrap(),
            ("tok".to_owned(), Duration::from_secs(30))
        );
        let no_expiry = json!({"access_token": "tok"});
        assert_eq!(parse(Some(&no_expiry), false).unwrap().1, DEFAULT_LIFETIME);
        let as_text = json!({"access_token": "tok", "expires_in": "5"});
        assert_eq!(
            parse(Some(&as_text), false).unwrap().1,
            Duration::from_secs(5)
        );
        for bad in [
            json!({"access_token": "se cret"}),
            json!({"token_type": "mac", "access_token": "secret"}),
            json!({"access_token": "secret", "expires_in": -1}),
            json!({"token": "secret"}),
            json!("secret"),
        ] {
            let e = parse(Some(&bad), false).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
        assert!(parse(None, false).is_err());
        assert!(parse(Some(&ok), true).is_err());
    }
}
