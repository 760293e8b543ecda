//! Console sessions (SPEC §13): a login with an API token yields a signed
//! cookie; no session table.
//!
//! The cookie holds the token's name and an expiry, signed with a key derived
//! from that token's secret. Any replica with the same config checks it
//! without asking anyone, a reload that removes or rotates the token ends its
//! sessions at once, and the token value itself never leaves the login form.
//! The CSRF token every change must carry is derived from the same key and
//! the same session, so it cannot be reused with another session.
//!
//! Pure functions; the HTTP side is in `super::pages` and `super::login`.

use jiff::Timestamp;

use crate::config::{Config, Token};
use crate::model::mac::{base64_decode, base64_encode, hex_encode, hmac_sha256};

/// The session cookie's name.
pub const COOKIE: &str = "hookyard_session";

/// How long a session lasts after login.
pub const TTL_SECONDS: i64 = 8 * 3600;

/// A logged-in console user: the token they logged in with.
#[derive(Debug, Clone)]
pub struct Session<'c> {
    pub token: &'c Token,
    pub expires: Timestamp,
    /// The value every form that changes something must send back.
    pub csrf: String,
}

/// The signing key of a token's sessions. Domain-separated from every
/// other use of the token's secret.
fn key(token: &Token) -> Option<[u8; 32]> {
    hmac_sha256(token.secret.expose(), &[b"hookyard console session v1"])
}

fn tag(token: &Token, purpose: &[u8], expires: i64) -> Option<[u8; 32]> {
    let key = key(token)?;
    let expires = expires.to_string();
    hmac_sha256(
        &key,
        &[
            purpose,
            b"|",
            token.name.as_bytes(),
            b"|",
            expires.as_bytes(),
        ],
    )
}

/// The cookie value for a new session of `token`, valid until `expires`.
pub fn issue(token: &Token, expires: Timestamp) -> Option<String> {
    let at = expires.as_second();
    let mac = tag(token, b"session", at)?;
    Some(format!(
        "{}.{at}.{}",
        hex_encode(token.name.as_bytes()),
        base64_encode(&mac).trim_end_matches('=')
    ))
}

/// The session a cookie value stands for, if its signature holds under the
/// current config and it has not expired at `now`.
pub fn check<'c>(config: &'c Config, cookie: &str, now: Timestamp) -> Option<Session<'c>> {
    let mut parts = cookie.split('.');
    let (name, at, mac) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let name = String::from_utf8(hex_decode(name)?).ok()?;
    let at: i64 = at.parse().ok()?;
    let expires = Timestamp::from_second(at).ok()?;
    if expires <= now {
        return None;
    }
    let token = config.tokens.iter().find(|t| t.name == name)?;
    let expected = tag(token, b"session", at)?;
    let given = base64_decode(mac)?;
    if !crate::config::secret::credentials_equal(&expected, &given) {
        return None;
    }
    Some(Session {
        token,
        expires,
        csrf: csrf(token, at)?,
    })
}

fn csrf(token: &Token, expires: i64) -> Option<String> {
    tag(token, b"csrf", expires).map(|t| hex_encode(&t))
}

impl Session<'_> {
    /// Whether a form's CSRF field is this session's.
    pub fn csrf_matches(&self, given: &str) -> bool {
        crate::config::secret::credentials_equal(self.csrf.as_bytes(), given.as_bytes())
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    crate::model::mac::hex_decode(text)
}

/// The `Set-Cookie` value that starts a session (`secure` when the request
/// came over TLS through a trusted proxy).
pub fn set_cookie(value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={TTL_SECONDS}{secure}")
}

/// The `Set-Cookie` value that ends the session in this browser.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// The session cookie's value in a `Cookie` header, if present.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, load_str};

    fn config(secret: &str) -> Config {
        let yaml = "secrets: { t: { env: T } }\n\
                    tokens: [ { name: ops, secret: t, scopes: [deliveries:read] } ]\n";
        let opts = LoadOptions {
            no_env: false,
            env: Some([("T".to_owned(), secret.to_owned())].into()),
        };
        load_str(yaml, std::path::Path::new("c.yaml"), opts).unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_session_checks_until_it_expires() {
        let c = config("first-secret");
        let cookie = issue(&c.tokens[0], at(2_000)).unwrap();
        let s = check(&c, &cookie, at(1_000)).unwrap();
        assert_eq!(s.token.name, "ops");
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches("0000"));
        assert!(check(&c, &cookie, at(2_000)).is_none(), "expired");
    }

    #[test]
    fn a_forged_or_stale_cookie_is_refused() {
        let c = config("first-secret");
        let cookie = issue(&c.tokens[0], at(2_000)).unwrap();
        // A later expiry without a new signature.
        let forged = cookie.replace(".2000.", ".9000.");
        assert!(check(&c, &forged, at(1_000)).is_none());
        // The token's secret rotated: old sessions end.
        let rotated = config("second-secret");
        assert!(check(&rotated, &cookie, at(1_000)).is_none());
        for junk in ["", "a.b", "6f7073.x.y", "..", "6f7073.2000.AAAA.extra"] {
            assert!(check(&c, junk, at(1_000)).is_none(), "{junk}");
        }
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let c = config("first-secret");
        let one = check(&c, &issue(&c.tokens[0], at(2_000)).unwrap(), at(0)).unwrap();
        let two = check(&c, &issue(&c.tokens[0], at(3_000)).unwrap(), at(0)).unwrap();
        assert_ne!(one.csrf, two.csrf);
        assert!(!one.csrf_matches(&two.csrf));
    }

    #[test]
    fn cookies_are_http_only_strict_and_found_among_others() {
        let set = set_cookie("v", false);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(!set.contains("Secure"));
        assert!(set_cookie("v", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
        assert_eq!(cookie_value("a=1; hookyard_session=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("hookyard_session="), None);
        assert_eq!(cookie_value("other=1"), None);
    }
}
