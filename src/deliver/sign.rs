//! Outbound signing (SPEC §5) and the headers every delivery carries.
//!
//! Pure functions: given the signing config, the event id, the time of the
//! attempt and the exact body bytes that will be sent, they return the
//! headers to add. The worker must sign the final body — after rendering,
//! byte for byte — or the receiver's check fails.
//!
//! Schemes:
//! - `hmac-sha256`: `X-Hmac-Signature: sha256=<hex>` over the raw body; with
//!   several secrets one signature each, newest first, comma-separated. It
//!   carries no timestamp, so it does not stop replays.
//! - `standard-webhooks`: `webhook-id` (the event id, stable across retries
//!   and replays, so receivers can deduplicate), `webhook-timestamp` (unix
//!   seconds of this attempt), `webhook-signature: v1,<base64>` over
//!   `id.timestamp.body`, space-separated when there are several secrets.
//!
//! The HMAC and key handling are shared with inbound verification
//! ([`crate::model::mac`]), so hookyard verifies what it signs.

use jiff::Timestamp;

use crate::model::mac::{base64_encode, hex_encode, hmac_sha256};
pub use crate::model::signing::{Scheme, SignError, Signing};

/// `User-Agent` of every delivery.
pub use crate::send::USER_AGENT;

/// Header of the `hmac-sha256` scheme.
pub const HMAC_SIGNATURE_HEADER: &str = "X-Hmac-Signature";

/// The signature headers for sending `body` as (one attempt of) event
/// `event_id` at time `now`, as `(header name, value)` pairs.
pub fn sign(
    signing: &Signing,
    event_id: &str,
    now: Timestamp,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, SignError> {
    let keys = signing.keys()?;
    match signing.scheme {
        Scheme::HmacSha256 => {
            let value = keys
                .iter()
                .filter_map(|key| hmac_sha256(key, &[body]))
                .map(|tag| format!("sha256={}", hex_encode(&tag)))
                .collect::<Vec<_>>()
                .join(",");
            Ok(vec![(HMAC_SIGNATURE_HEADER, value)])
        }
        Scheme::StandardWebhooks => {
            let timestamp = now.as_second().to_string();
            let parts: [&[u8]; 5] = [event_id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
            let value = keys
                .iter()
                .filter_map(|key| hmac_sha256(key, &parts))
                .map(|tag| format!("v1,{}", base64_encode(&tag)))
                .collect::<Vec<_>>()
                .join(" ");
            Ok(vec![
                ("webhook-id", event_id.to_owned()),
                ("webhook-timestamp", timestamp),
                ("webhook-signature", value),
            ])
        }
    }
}

/// The headers every delivery attempt carries (SPEC §5). `attempt` counts
/// from 1; `delivery_id` is the same for every attempt of one delivery.
///
/// Values are passed through as given; the caller builds `HeaderValue`s,
/// which refuses control characters, so an event type carrying CR/LF fails
/// that delivery instead of injecting a header.
pub fn delivery_headers(
    event_id: &str,
    event_type: &str,
    delivery_id: &str,
    attempt: u32,
) -> Vec<(&'static str, String)> {
    vec![
        ("X-Hookyard-Event-Id", event_id.to_owned()),
        ("X-Hookyard-Event-Type", event_type.to_owned()),
        ("X-Hookyard-Delivery-Id", delivery_id.to_owned()),
        ("X-Hookyard-Attempt", attempt.to_string()),
        ("User-Agent", USER_AGENT.to_owned()),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;
    use crate::inbound::verify::{Preset, verify_signature};
    use crate::model::mac::{WhsecError, standard_webhooks_key};
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use std::time::Duration;

    fn to_map(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    const SW_SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn the_generic_inbound_default_verifies_what_hookyard_signs() {
        let body: &[u8] = br#"{"action":"opened"}"#;
        let signing = Signing {
            scheme: Scheme::HmacSha256,
            secrets: vec![b"newest".to_vec(), b"older".to_vec()],
        };
        let signed = sign(&signing, "evt_1", at(0), body).unwrap();
        let preset = Preset::from_name("hmac-sha256").unwrap();
        for secret in [b"older".to_vec(), b"newest".to_vec()] {
            let verified = verify_signature(
                &preset,
                &to_map(&signed),
                body,
                &[secret],
                Duration::ZERO,
                at(0),
            );
            assert_eq!(verified, Ok(()));
        }
    }

    #[test]
    fn standard_webhooks_published_vector() {
        // standard-webhooks/standard-webhooks, libraries/python/tests/
        // test_webhooks.py::test_sign_function.
        let signing = Signing {
            scheme: Scheme::StandardWebhooks,
            secrets: vec![SW_SECRET.to_vec()],
        };
        let headers = sign(&signing, SW_ID, at(1_614_265_330), SW_BODY).unwrap();
        assert_eq!(
            headers,
            vec![
                ("webhook-id", SW_ID.to_owned()),
                ("webhook-timestamp", "1614265330".to_owned()),
                (
                    "webhook-signature",
                    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn standard_webhooks_several_secrets_round_trip_through_verify() {
        let signing = Signing {
            scheme: Scheme::StandardWebhooks,
            secrets: vec![b"whsec_c2Vjb25k".to_vec(), SW_SECRET.to_vec()],
        };
        let now = at(1_700_000_000);
        let body = br#"{"id":1}"#;
        let headers = sign(&signing, "evt_01", now, body).unwrap();
        let value = &headers[2].1;
        assert_eq!(value.split(' ').count(), 2);
        assert!(value.ends_with(&{
            let tag = hmac_sha256(
                &standard_webhooks_key(SW_SECRET).unwrap(),
                &[b"evt_01.1700000000.", body],
            )
            .unwrap();
            format!(" v1,{}", base64_encode(&tag))
        }));
        let map = to_map(&headers);
        for secret in &signing.secrets {
            let secrets = vec![secret.clone()];
            let result = verify_signature(
                &Preset::StandardWebhooks,
                &map,
                body,
                &secrets,
                Duration::from_secs(300),
                now,
            );
            assert_eq!(result, Ok(()));
        }
        let wrong = vec![b"whsec_b3RoZXI=".to_vec()];
        let result = verify_signature(
            &Preset::StandardWebhooks,
            &map,
            body,
            &wrong,
            Duration::from_secs(300),
            now,
        );
        assert!(result.is_err());
    }

    #[test]
    fn hmac_sha256_single_secret_known_answer() {
        // GitHub's documented vector: same math, hookyard's header name.
        let signing = Signing {
            scheme: Scheme::HmacSha256,
            secrets: vec![b"It's a Secret to Everybody".to_vec()],
        };
        let headers = sign(&signing, "ignored", at(0), b"Hello, World!").unwrap();
        assert_eq!(
            headers,
            vec![(
                "X-Hmac-Signature",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn hmac_sha256_several_secrets_newest_first_and_verifiable() {
        let signing = Signing {
            scheme: Scheme::HmacSha256,
            secrets: vec![b"newest".to_vec(), b"older".to_vec()],
        };
        let body = b"payload";
        let headers = sign(&signing, "e", at(0), body).unwrap();
        let expected = format!(
            "sha256={},sha256={}",
            hex_encode(&hmac_sha256(b"newest", &[body]).unwrap()),
            hex_encode(&hmac_sha256(b"older", &[body]).unwrap()),
        );
        assert_eq!(headers[0].1, expected);
        let preset = Preset::HmacSha256 {
            header: HeaderName::from_static("x-hmac-signature"),
            encoding: crate::inbound::verify::Encoding::Hex,
            prefix: Some("sha256=".into()),
        };
        let map = to_map(&headers);
        for secret in [b"older".to_vec(), b"newest".to_vec()] {
            let result = verify_signature(&preset, &map, body, &[secret], Duration::ZERO, at(0));
            assert_eq!(result, Ok(()));
        }
    }

    #[test]
    fn config_errors() {
        let none = Signing {
            scheme: Scheme::HmacSha256,
            secrets: vec![],
        };
        assert_eq!(sign(&none, "e", at(0), b""), Err(SignError::NoSecret));
        // A zero-length key is never used, even beside a real one.
        let empty = Signing {
            scheme: Scheme::HmacSha256,
            secrets: vec![b"real".to_vec(), Vec::new()],
        };
        assert_eq!(sign(&empty, "e", at(0), b""), Err(SignError::NoSecret));
        let broken = Signing {
            scheme: Scheme::StandardWebhooks,
            secrets: vec![SW_SECRET.to_vec(), b"whsec_***".to_vec()],
        };
        let err = broken.check().unwrap_err();
        assert_eq!(
            err,
            SignError::BadSecret {
                index: 1,
                source: WhsecError
            }
        );
        assert!(err.to_string().starts_with("signing secret #2:"));
        assert!(!err.to_string().contains("***"));
        // A `whsec_`-looking secret is fine for hmac-sha256: raw bytes there.
        let raw = Signing {
            scheme: Scheme::HmacSha256,
            secrets: vec![b"whsec_***".to_vec()],
        };
        assert_eq!(raw.check(), Ok(()));
    }

    #[test]
    fn delivery_headers_are_complete() {
        let headers = delivery_headers("01J0EVENT", "order.created", "01J0DELIV", 3);
        assert_eq!(
            headers,
            vec![
                ("X-Hookyard-Event-Id", "01J0EVENT".to_owned()),
                ("X-Hookyard-Event-Type", "order.created".to_owned()),
                ("X-Hookyard-Delivery-Id", "01J0DELIV".to_owned()),
                ("X-Hookyard-Attempt", "3".to_owned()),
                (
                    "User-Agent",
                    format!("hookyard/{}", env!("CARGO_PKG_VERSION"))
                ),
            ]
        );
        assert_eq!(
            Scheme::from_name("standard-webhooks"),
            Some(Scheme::StandardWebhooks)
        );
        assert_eq!(Scheme::HmacSha256.name(), "hmac-sha256");
    }
}
