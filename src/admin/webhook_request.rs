//! Checking a `POST /v1/webhooks` request (SPEC §4) and building the
//! subscription to store: its id, URL, event patterns, `whsec_` secret and
//! literal headers. API subscriptions are untrusted targets, so an IP literal
//! the egress policy would refuse at delivery is refused here already.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;

use crate::model::ApiSubscription;
use crate::model::mac::{WHSEC_PREFIX, standard_webhooks_key};
use crate::send::{EgressPolicy, Trust, check_headers};

/// The body of `POST /v1/webhooks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Generated (a ULID with `sub_`) when absent.
    pub id: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    /// A `whsec_…` secret; generated when absent.
    pub secret: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Why a create request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Malformed field (422).
    #[error("{0}")]
    Invalid(String),
    /// The id is used by a YAML or API subscription (409).
    #[error(
        "a subscription with id {0:?} already exists; choose another id or leave it out to get a generated one"
    )]
    IdTaken(String),
    /// The URL's host is an address API targets may not reach (422).
    #[error("{0}")]
    Egress(String),
}

/// Longest id accepted.
const MAX_ID: usize = 64;

/// Check a create request against the subscriptions that exist (`taken`
/// says whether a YAML or API subscription has an id) and the egress
/// policy, and build the subscription to store.
pub fn validate_create(
    req: CreateRequest,
    taken: impl Fn(&str) -> bool,
    policy: &EgressPolicy,
    created_by: &str,
    now: Timestamp,
) -> Result<ApiSubscription, WebhookError> {
    let id = match req.id {
        Some(id) => {
            let ok_chars = id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if id.is_empty() || id.len() > MAX_ID || !ok_chars {
                return Err(WebhookError::Invalid(format!(
                    "id {id:?} is not valid: use 1 to {MAX_ID} letters, digits, '-', '_' or '.'"
                )));
            }
            id
        }
        None => format!("sub_{}", ulid::Ulid::new().to_string().to_lowercase()),
    };
    if taken(&id) {
        return Err(WebhookError::IdTaken(id));
    }
    let url = url::Url::parse(&req.url)
        .map_err(|e| WebhookError::Invalid(format!("url {:?} is not a valid URL: {e}", req.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WebhookError::Invalid(format!(
            "url scheme {:?} is not supported; use http or https",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(WebhookError::Invalid("url has no host".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::Invalid(
            "url may not carry credentials (user:password@); use headers or signing".to_owned(),
        ));
    }
    check_ip_literal(policy, &url)?;
    if req.events.is_empty() {
        return Err(WebhookError::Invalid(
            "events must list at least one event type (exact name, prefix.*, or \"*\")".to_owned(),
        ));
    }
    if let Some(bad) = req.events.iter().find(|e| e.trim().is_empty()) {
        return Err(WebhookError::Invalid(format!(
            "event pattern {bad:?} is empty"
        )));
    }
    let secret = match req.secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => generate_secret(),
    };
    let headers: Vec<(String, String)> = req.headers.into_iter().collect();
    check_headers(&headers).map_err(|e| WebhookError::Invalid(e.to_string()))?;
    Ok(ApiSubscription {
        id,
        url,
        events: req.events,
        secrets: vec![secret],
        headers,
        created_by: created_by.to_owned(),
        created_at: now,
    })
}

/// Refuse at creation a host that is an IP literal the egress policy would
/// refuse at delivery (host names are checked when resolved, at delivery).
fn check_ip_literal(policy: &EgressPolicy, url: &url::Url) -> Result<(), WebhookError> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => std::net::IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => std::net::IpAddr::V6(v6),
        _ => return Ok(()),
    };
    policy
        .check(ip, Trust::Api)
        .map_err(|e| WebhookError::Egress(e.to_string()))
}

/// A given secret must be a Standard Webhooks secret of 16 to 64 bytes.
fn check_secret(s: &str) -> Result<(), WebhookError> {
    let bad = || {
        WebhookError::Invalid(
            "secret must be `whsec_` followed by the base64 of 16 to 64 random bytes; \
             leave it out to get a generated one"
                .to_owned(),
        )
    };
    if !s.starts_with(WHSEC_PREFIX) {
        return Err(bad());
    }
    let key = standard_webhooks_key(s.as_bytes()).map_err(|_| bad())?;
    if (16..=64).contains(&key.len()) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A new Standard Webhooks secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "{}{}",
        WHSEC_PREFIX,
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn req(url: &str) -> CreateRequest {
        CreateRequest {
            url: url.to_owned(),
            events: vec!["order.*".to_owned()],
            ..Default::default()
        }
    }

    fn now() -> Timestamp {
        "2026-05-01T12:00:00Z".parse().unwrap()
    }

    fn check(r: CreateRequest) -> Result<ApiSubscription, WebhookError> {
        let existing = [Arc::new(
            validate_create(
                CreateRequest {
                    id: Some("api-one".into()),
                    ..req("https://example.com/a")
                },
                |_| false,
                &EgressPolicy::default(),
                "t",
                now(),
            )
            .unwrap(),
        )];
        validate_create(
            r,
            |id| id == "yaml-one" || existing.iter().any(|s| s.id == id),
            &EgressPolicy::default(),
            "ci",
            now(),
        )
    }

    #[test]
    fn a_valid_request_gets_an_id_and_a_secret() {
        let s = check(req("https://hooks.example.com/in")).unwrap();
        assert!(s.id.starts_with("sub_"), "{}", s.id);
        assert_eq!(s.secrets.len(), 1);
        assert!(s.secrets[0].starts_with("whsec_"));
        let key = standard_webhooks_key(s.secrets[0].as_bytes());
        assert_eq!(key.unwrap().len(), 32);
        assert_eq!(s.created_by, "ci");
        assert!(s.matches("order.created") && !s.matches("contact.created"));
        assert_ne!(generate_secret(), generate_secret());
    }

    #[test]
    fn ids_are_unique_across_yaml_and_api() {
        for id in ["yaml-one", "api-one"] {
            let r = CreateRequest {
                id: Some(id.into()),
                ..req("https://example.com/")
            };
            assert_eq!(check(r).unwrap_err(), WebhookError::IdTaken(id.into()));
        }
        let r = CreateRequest {
            id: Some("has space".into()),
            ..req("https://example.com/")
        };
        assert!(matches!(check(r), Err(WebhookError::Invalid(_))));
    }

    #[test]
    fn bad_urls_events_secrets_and_headers_are_refused() {
        for url in [
            "ftp://example.com/",
            "not a url",
            "https://u:p@example.com/",
        ] {
            assert!(
                matches!(check(req(url)), Err(WebhookError::Invalid(_))),
                "{url}"
            );
        }
        let r = CreateRequest {
            events: vec![],
            ..req("https://example.com/")
        };
        assert!(matches!(check(r), Err(WebhookError::Invalid(_))));
        for secret in ["plain", "whsec_!!!", "whsec_aGk="] {
            let r = CreateRequest {
                secret: Some(secret.into()),
                ..req("https://example.com/")
            };
            assert!(
                matches!(check(r), Err(WebhookError::Invalid(_))),
                "{secret}"
            );
        }
        let r = CreateRequest {
            headers: [("Host".to_owned(), "evil".to_owned())].into(),
            ..req("https://example.com/")
        };
        assert!(matches!(check(r), Err(WebhookError::Invalid(_))));
    }

    #[test]
    fn internal_ip_literals_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest",
            "http://[::1]/",
        ] {
            assert!(
                matches!(check(req(url)), Err(WebhookError::Egress(_))),
                "{url}"
            );
        }
        let allow = EgressPolicy {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            deny: vec![],
        };
        let s = validate_create(req("http://127.0.0.1:9/"), |_| false, &allow, "t", now());
        assert!(s.is_ok());
        assert!(check(req("http://93.184.216.34/")).is_ok());
    }
}
