//! Trigger pieces that read the config: the event type of a request and its
//! idempotency key. (The `verify:` block is compiled with the config, in
//! `config::verify_rules`, into the rules [`super::verify`] checks.)

use serde_json::Value;

use super::errors::InboundError;
use super::map::ParsedRequest;
use crate::config::{EventSource, KeySource, Otherwise, Trigger};

/// What the event type source said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTypeOutcome {
    /// The event's type.
    Type(String),
    /// `otherwise: ignore`: answer 204, enqueue nothing.
    Ignore,
}

/// The event type of a request to `trigger`.
pub fn event_type(
    trigger: &Trigger,
    req: &ParsedRequest<'_>,
) -> Result<EventTypeOutcome, InboundError> {
    let (found, map, otherwise, what) = match &trigger.event {
        EventSource::Fixed(t) => return Ok(EventTypeOutcome::Type(t.clone())),
        EventSource::Header {
            name,
            map,
            otherwise,
        } => (
            req.header(name).map(str::to_owned),
            map,
            otherwise,
            format!("header `{name}`"),
        ),
        EventSource::Path {
            path,
            map,
            otherwise,
        } => (
            path.query(&req.body).first().and_then(scalar_text),
            map,
            otherwise,
            "the body's event type field".to_owned(),
        ),
    };
    let found = found.filter(|s| !s.is_empty());
    let resolved = match (&found, map) {
        (Some(v), Some(map)) => map.get(v).cloned(),
        (Some(v), None) => Some(v.clone()),
        (None, _) => None,
    };
    match (resolved, otherwise) {
        (Some(t), _) => {
            // Without a `map` the sender names the type: hold it to the
            // event API's rule.
            super::api::printable("type", &t)?;
            Ok(EventTypeOutcome::Type(t))
        }
        (None, Otherwise::Ignore) => Ok(EventTypeOutcome::Ignore),
        (None, Otherwise::Reject) => Err(InboundError::UnknownEventType(match found {
            Some(v) => format!("{what} is `{v}`, which this trigger does not map to an event type"),
            None => format!("{what} is missing, so the event type is unknown"),
        })),
    }
}

/// The idempotency key of a request, when the trigger has one and the
/// request carries it (a request without it is simply not deduplicated).
pub fn idempotency_key(trigger: &Trigger, req: &ParsedRequest<'_>) -> Option<String> {
    let key = match trigger.idempotency_key.as_ref()? {
        KeySource::Header(name) => req.header(name).map(str::to_owned),
        KeySource::Path(path) => path.query(&req.body).first().and_then(|v| match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }),
    };
    key.filter(|k| !k.is_empty())
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use axum::http::HeaderName;

    use crate::config;
    use crate::inbound::verify::{self, Preset, VerifyRules};
    use std::net::{IpAddr, Ipv4Addr};

    use axum::http::{HeaderMap, HeaderValue};
    use jiff::Timestamp;

    use super::*;
    use crate::config::{Config, LoadOptions};
    use crate::inbound::verify::Unverified;

    fn config(yaml: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        let env = [("S".to_owned(), "sec".to_owned())].into_iter().collect();
        config::load(
            &path,
            LoadOptions {
                no_env: false,
                env: Some(env),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Run `f` on a parsed request with `headers` and JSON `body`.
    fn with_request<T>(
        headers: &[(&'static str, &'static str)],
        body: &str,
        f: impl FnOnce(&ParsedRequest<'_>) -> T,
    ) -> T {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_static(v));
        }
        let verified = Unverified::new(&map, body.as_bytes(), IpAddr::V4(Ipv4Addr::LOCALHOST))
            .verify(&VerifyRules::default(), &[], Timestamp::now())
            .unwrap();
        f(&ParsedRequest::parse(verified, None).unwrap())
    }

    const YAML: &str = r#"
secrets: { s: { env: S } }
triggers:
  - id: gh
    verify: none
    event: { header: X-GitHub-Event, map: { push: github.push }, otherwise: ignore }
    idempotency_key: "header:X-Delivery"
  - id: crm
    verify: none
    event: { path: "$.kind", otherwise: reject }
    idempotency_key: "$.id"
  - id: generic
    event: e
    verify: { signature: { preset: hmac-sha256, secret: s, header: X-Sig, encoding: base64, prefix: "v1=" }, ip_allow: ["10.0.0.0/8"] }
"#;

    #[test]
    fn event_types_from_header_map_and_path() {
        let c = config(YAML);
        let gh = c.trigger("gh").unwrap();
        let crm = c.trigger("crm").unwrap();
        let ty = |t: &str| EventTypeOutcome::Type(t.into());
        with_request(&[("x-github-event", "push")], "{}", |r| {
            assert_eq!(event_type(gh, r).unwrap(), ty("github.push"))
        });
        with_request(&[("x-github-event", "ping")], "{}", |r| {
            assert_eq!(event_type(gh, r).unwrap(), EventTypeOutcome::Ignore)
        });
        with_request(&[], "{}", |r| {
            assert_eq!(event_type(gh, r).unwrap(), EventTypeOutcome::Ignore)
        });
        with_request(&[], r#"{"kind":"contact.created"}"#, |r| {
            assert_eq!(event_type(crm, r).unwrap(), ty("contact.created"))
        });
        with_request(&[], r#"{"kind":""}"#, |r| {
            assert_eq!(event_type(crm, r).unwrap_err().code(), "unknown_event_type")
        });
        with_request(&[], r#"{"kind":{"a":1}}"#, |r| {
            assert!(event_type(crm, r).is_err())
        });
    }

    #[test]
    fn idempotency_keys_from_header_and_path() {
        let c = config(YAML);
        let gh = c.trigger("gh").unwrap();
        let crm = c.trigger("crm").unwrap();
        with_request(&[("x-delivery", "d-1")], "{}", |r| {
            assert_eq!(idempotency_key(gh, r).as_deref(), Some("d-1"))
        });
        with_request(&[], "{}", |r| assert_eq!(idempotency_key(gh, r), None));
        with_request(&[], r#"{"id":42}"#, |r| {
            assert_eq!(idempotency_key(crm, r).as_deref(), Some("42"))
        });
        with_request(&[], r#"{"id":"abc"}"#, |r| {
            assert_eq!(idempotency_key(crm, r).as_deref(), Some("abc"))
        });
        with_request(&[], r#"{"id":null}"#, |r| {
            assert_eq!(idempotency_key(crm, r), None)
        });
    }

    #[test]
    fn config_verify_block_becomes_verify_rules() {
        let c = config(YAML);
        let rules = c.trigger("generic").unwrap().rules.clone();
        let sig = rules.signature.unwrap();
        assert_eq!(
            sig.preset,
            Preset::HmacSha256 {
                header: HeaderName::from_static("x-sig"),
                encoding: verify::Encoding::Base64,
                prefix: Some("v1=".into()),
            }
        );
        assert_eq!(sig.secrets, vec![b"sec".to_vec()]);
        assert_eq!(
            rules.ip_allow.unwrap(),
            vec!["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]
        );
        assert!(rules.bearer.is_none() && rules.basic.is_none());
        // No verify block: nothing is checked.
        let none = c.trigger("gh").unwrap().rules.clone();
        assert_eq!(none, VerifyRules::default());
    }
}
