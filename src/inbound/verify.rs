//! Inbound verification: is this request really from the sender a trigger
//! trusts? Runs on the raw body bytes, before any parsing.
//!
//! A request enters as [`Unverified`] and leaves as [`Verified`], which only
//! [`Unverified::verify`] can build (its fields are private). The mapping
//! stage takes a `Verified`, so no code path can map an unchecked request —
//! the type-state idea of svix-bridge.
//!
//! A trigger's [`VerifyRules`] may combine a signature preset, an IP allow
//! list, a bearer token and basic auth; every rule listed must pass. Rules
//! run cheapest first (IP, then credentials, then the signature). Failures are
//! [`VerifyError`]s, which map to 401 (signature or credentials) or 403 (IP),
//! and never contain a secret or the signature we expected.
//!
//! Files: [`crate::model::mac`] (HMAC, hex, base64, `whsec_` keys), [`signature`] (the
//! presets), [`auth`] (bearer, basic), [`ip`] (client address, allow list).

pub mod auth;
pub mod ip;
pub mod signature;

use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode};
use ipnet::IpNet;
use jiff::Timestamp;

pub use auth::{BasicAuth, check_basic, check_bearer};
pub use ip::{client_ip, ip_allowed};
pub use signature::{
    DEFAULT_HMAC_HEADER, DEFAULT_TOLERANCE, Encoding, Preset, SignatureRule, verify_signature,
};

/// Why a request failed verification. Messages name the header or rule at
/// fault and what the operator can do; they never include secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the preset needs is absent.
    #[error(
        "missing header `{0}`: the sender did not sign this request, or the trigger uses the \
         wrong signature preset"
    )]
    MissingHeader(String),
    /// A header is present but not in the provider's format.
    #[error("malformed header `{header}`: {problem}")]
    MalformedHeader {
        /// Header name (lowercase).
        header: String,
        /// What is wrong with it, in a few words.
        problem: &'static str,
    },
    /// The signed timestamp is too far from our clock (replay protection).
    #[error(
        "timestamp in `{header}` is {age_secs}s old (negative: in the future), beyond the \
         {tolerance_secs}s tolerance: a replayed request, or a sender or server clock that is off"
    )]
    TimestampOutOfTolerance {
        /// Header holding the timestamp.
        header: String,
        /// `now - timestamp` in seconds; negative when it lies in the future.
        age_secs: i64,
        /// The configured tolerance in seconds.
        tolerance_secs: u64,
    },
    /// The signed timestamp in the body (`highlevel`'s `timestamp`, or the
    /// `timestamp` JSONPath of `ed25519`/`rsa-sha256`) is missing or
    /// unreadable.
    #[error("the body's `{field}` {problem}: the request cannot be checked for replay")]
    BodyTimestamp {
        /// Where it is read, e.g. `$.timestamp`.
        field: String,
        /// What is wrong with it, in a few words.
        problem: &'static str,
    },
    /// Well-formed signatures, none made with a configured secret.
    #[error(
        "no signature in `{header}` matches a configured secret: check that the trigger's \
         secret is the sender's current signing secret, and that nothing between the sender \
         and hookyard rewrites the body"
    )]
    SignatureMismatch {
        /// Header holding the signature(s).
        header: String,
    },
    /// Well-formed Ed25519 signatures, none made by the configured key.
    #[error(
        "no signature in `{header}` verifies with the trigger's public_key: check that it is \
         the sender's current public key, and that nothing between the sender and hookyard \
         rewrites the body"
    )]
    PublicKeyMismatch {
        /// Header holding the signature(s).
        header: String,
    },
    /// The signature rule has no secret to check with; nothing can pass.
    #[error("the trigger's signature check has no secret configured, so every request fails")]
    NoSecret,
    /// No usable `Authorization` header for the bearer/basic rule.
    #[error("missing `Authorization: {scheme} …` header")]
    MissingCredentials {
        /// `Bearer` or `Basic`.
        scheme: &'static str,
    },
    /// `Authorization` present but the credentials are wrong or malformed.
    #[error("the {scheme} credentials in `Authorization` are not valid for this trigger")]
    BadCredentials {
        /// `Bearer` or `Basic`.
        scheme: &'static str,
    },
    /// The client address is outside `ip_allow`.
    #[error(
        "client address {ip} is not in this trigger's ip_allow list (behind a proxy? list it \
         in server.trusted_proxies so X-Forwarded-For is used)"
    )]
    IpNotAllowed {
        /// The address that was checked.
        ip: IpAddr,
    },
}

impl VerifyError {
    /// HTTP status for this failure (SPEC §3): 403 for an address outside
    /// `ip_allow`, 401 for every signature or credential problem.
    pub fn status(&self) -> StatusCode {
        match self {
            VerifyError::IpNotAllowed { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// Stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::IpNotAllowed { .. } => "ip_not_allowed",
            VerifyError::MissingCredentials { .. } | VerifyError::BadCredentials { .. } => {
                "unauthorized"
            }
            _ => "invalid_signature",
        }
    }
}

pub use crate::config::verify_rules::VerifyRules;

/// A request as received, not yet checked. Deliberately neither `Clone`
/// nor `Copy`: [`Unverified::verify`] consumes it.
#[derive(Debug)]
pub struct Unverified<'a> {
    headers: &'a HeaderMap,
    body: &'a [u8],
    peer: IpAddr,
}

/// A request that passed its trigger's [`VerifyRules`]. Only
/// [`Unverified::verify`] makes one.
#[derive(Debug, Clone, Copy)]
pub struct Verified<'a> {
    headers: &'a HeaderMap,
    body: &'a [u8],
    client_ip: IpAddr,
}

impl<'a> Unverified<'a> {
    /// Wrap a request: its headers, raw body bytes and TCP peer address.
    pub fn new(headers: &'a HeaderMap, body: &'a [u8], peer: IpAddr) -> Unverified<'a> {
        Unverified {
            headers,
            body,
            peer,
        }
    }

    /// The client address: the peer, or the `X-Forwarded-For` hop a
    /// trusted proxy vouches for (see [`client_ip`]).
    pub fn client_ip(&self, trusted_proxies: &[IpNet]) -> IpAddr {
        // Several X-Forwarded-For lines form one list, in order (RFC 9110
        // §5.3); a line that is not text is left out rather than trusted.
        let forwarded: Vec<&str> = self
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let joined = forwarded.join(",");
        let forwarded = if forwarded.is_empty() {
            None
        } else {
            Some(joined.as_str())
        };
        client_ip(self.peer, forwarded, trusted_proxies)
    }

    /// Check every rule in `rules` at time `now`. `trusted_proxies` is
    /// `server.trusted_proxies`.
    pub fn verify(
        self,
        rules: &VerifyRules,
        trusted_proxies: &[IpNet],
        now: Timestamp,
    ) -> Result<Verified<'a>, VerifyError> {
        let client = self.client_ip(trusted_proxies);
        if let Some(allow) = &rules.ip_allow {
            if !ip_allowed(client, allow) {
                return Err(VerifyError::IpNotAllowed { ip: client });
            }
        }
        if let Some(tokens) = &rules.bearer {
            check_bearer(self.headers, tokens)?;
        }
        if let Some(basic) = &rules.basic {
            check_basic(self.headers, basic)?;
        }
        if let Some(rule) = &rules.signature {
            rule.verify(self.headers, self.body, now)?;
        }
        Ok(Verified {
            headers: self.headers,
            body: self.body,
            client_ip: client,
        })
    }
}

impl<'a> Verified<'a> {
    /// The request headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The raw body, exactly as verified.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The client address the IP rule saw (for logs and history).
    pub fn client_ip(&self) -> IpAddr {
        self.client_ip
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;
    use crate::model::mac;
    use axum::http::HeaderValue;

    const NOW: i64 = 1_700_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    fn github_signed(body: &[u8], secret: &[u8]) -> HeaderMap {
        let tag = mac::hmac_sha256(secret, &[body]).unwrap();
        let mut headers = HeaderMap::new();
        let value = format!("sha256={}", mac::hex_encode(&tag));
        headers.insert(
            "x-hub-signature-256",
            HeaderValue::from_str(&value).unwrap(),
        );
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn rules_all() -> VerifyRules {
        VerifyRules {
            signature: Some(SignatureRule::new(Preset::Github, vec![b"s3cret".to_vec()])),
            ip_allow: Some(vec!["203.0.113.0/24".parse().unwrap()]),
            bearer: Some(vec![b"tok".to_vec()]),
            basic: None,
        }
    }

    #[test]
    fn all_rules_pass_gives_verified_with_body_and_client() {
        let body = b"{\"a\":1}";
        let mut headers = github_signed(body, b"s3cret");
        headers.insert("authorization", HeaderValue::from_static("Bearer tok"));
        let verified = Unverified::new(&headers, body, ip("203.0.113.7"))
            .verify(&rules_all(), &[], now())
            .unwrap();
        assert_eq!(verified.body(), body);
        assert_eq!(verified.client_ip(), ip("203.0.113.7"));
        assert!(verified.headers().contains_key("authorization"));
    }

    #[test]
    fn each_rule_is_enforced_with_its_status() {
        let body = b"{\"a\":1}";
        let mut headers = github_signed(body, b"s3cret");
        headers.insert("authorization", HeaderValue::from_static("Bearer tok"));
        let rules = rules_all();

        let err = Unverified::new(&headers, body, ip("198.51.100.1"))
            .verify(&rules, &[], now())
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::IpNotAllowed {
                ip: ip("198.51.100.1")
            }
        );
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        assert_eq!(err.code(), "ip_not_allowed");

        let mut wrong_token = headers.clone();
        wrong_token.insert("authorization", HeaderValue::from_static("Bearer nope"));
        let err = Unverified::new(&wrong_token, body, ip("203.0.113.7"))
            .verify(&rules, &[], now())
            .unwrap_err();
        assert_eq!(err, VerifyError::BadCredentials { scheme: "Bearer" });
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.code(), "unauthorized");

        let err = Unverified::new(&headers, b"{\"a\":2}", ip("203.0.113.7"))
            .verify(&rules, &[], now())
            .unwrap_err();
        assert!(matches!(err, VerifyError::SignatureMismatch { .. }));
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.code(), "invalid_signature");
    }

    #[test]
    fn no_rules_means_anything_passes() {
        let headers = HeaderMap::new();
        let verified = Unverified::new(&headers, b"x", ip("192.0.2.1"))
            .verify(&VerifyRules::default(), &[], now())
            .unwrap();
        assert_eq!(verified.body(), b"x");
    }

    #[test]
    fn empty_ip_allow_fails_closed() {
        let headers = HeaderMap::new();
        let rules = VerifyRules {
            ip_allow: Some(vec![]),
            ..VerifyRules::default()
        };
        let err = Unverified::new(&headers, b"x", ip("192.0.2.1"))
            .verify(&rules, &[], now())
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn ip_rule_uses_forwarded_for_only_behind_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        let rules = VerifyRules {
            ip_allow: Some(vec!["203.0.113.0/24".parse().unwrap()]),
            ..VerifyRules::default()
        };
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];

        let verified = Unverified::new(&headers, b"", ip("10.0.0.1"))
            .verify(&rules, &proxies, now())
            .unwrap();
        assert_eq!(verified.client_ip(), ip("203.0.113.9"));

        // Same header from an untrusted peer: ignored, the peer is checked.
        let err = Unverified::new(&headers, b"", ip("198.51.100.5"))
            .verify(&rules, &proxies, now())
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::IpNotAllowed {
                ip: ip("198.51.100.5")
            }
        );
    }

    #[test]
    fn error_messages_never_contain_the_secret_or_expected_signature() {
        let secret = b"very-private-key";
        let body = b"payload";
        let expected = mac::hex_encode(&mac::hmac_sha256(secret, &[body]).unwrap());
        let headers = github_signed(b"other payload", secret);
        let rules = VerifyRules {
            signature: Some(SignatureRule::new(Preset::Github, vec![secret.to_vec()])),
            ..VerifyRules::default()
        };
        let err = Unverified::new(&headers, body, ip("192.0.2.1"))
            .verify(&rules, &[], now())
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("very-private-key"));
        assert!(!text.contains(&expected));
    }
}
