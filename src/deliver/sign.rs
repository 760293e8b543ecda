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
//!   seconds of this attempt), `webhook-signature: v1,<base64>` (HMAC) over
//!   `id.timestamp.body`, space-separated when there are several secrets.
//!   A `whsk_` secret signs the same content with Ed25519 instead:
//!   `v1a,<base64 of the 64-byte signature>` (receivers verify with the
//!   `whpk_` public key `hookyard keys public` prints).
//!
//! The HMAC and key handling are shared with inbound verification
//! ([`crate::model::mac`]), so hookyard verifies what it signs.

use ed25519_dalek::Signer as _;
use jiff::Timestamp;

use crate::model::mac::{base64_encode, hex_encode, hmac_sha256};
pub use crate::model::signing::{Key, Scheme, SignError, Signing};

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
                .filter_map(|key| match key {
                    Key::Hmac(key) => hmac_sha256(key, &[body]),
                    // Not compiled under this scheme.
                    Key::Ed25519(_) => None,
                })
                .map(|tag| format!("sha256={}", hex_encode(&tag)))
                .collect::<Vec<_>>()
                .join(",");
            Ok(vec![(HMAC_SIGNATURE_HEADER, value)])
        }
        Scheme::StandardWebhooks => {
            let timestamp = now.as_second().to_string();
            let parts: [&[u8]; 5] = [event_id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
            // Ed25519 signs one contiguous message; build it only when needed.
            let mut message = Vec::new();
            if keys.iter().any(|k| matches!(k, Key::Ed25519(_))) {
                message = parts.concat();
            }
            let value =
                keys.iter()
                    .filter_map(|key| match key {
                        Key::Hmac(key) => hmac_sha256(key, &parts)
                            .map(|tag| format!("v1,{}", base64_encode(&tag))),
                        Key::Ed25519(key) => Some(format!(
                            "v1a,{}",
                            base64_encode(&key.sign(&message).to_bytes())
                        )),
                    })
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
    use crate::model::mac::{WhsecError, base64_decode, standard_webhooks_key};
    use crate::model::signing::KeyError;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
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
        let signing = Signing::new(Scheme::HmacSha256, &[b"newest".to_vec(), b"older".to_vec()]);
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
        let signing = Signing::new(Scheme::StandardWebhooks, &[SW_SECRET.to_vec()]);
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
        let secrets = [b"whsec_c2Vjb25k".to_vec(), SW_SECRET.to_vec()];
        let signing = Signing::new(Scheme::StandardWebhooks, &secrets);
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
        for secret in &secrets {
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

    /// Seed 00 01 … 1f; the expected values were computed with Python
    /// `cryptography` (an independent Ed25519), over the Standard Webhooks
    /// published id, timestamp and body.
    const WHSK: &str = "whsk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const WHPK: &str = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
    const V1A: &str = "v1a,yoUrgEkc12aGqm0n4Sydmdz55xJfTz4AsAgieHFjmkR7LJtqVCZOQYzvvHjI5kAey+r4iaBGxTFRrl2iBQxtDQ==";

    #[test]
    fn standard_webhooks_ed25519_known_answer() {
        let signing = Signing::new(Scheme::StandardWebhooks, &[WHSK]);
        let headers = sign(&signing, SW_ID, at(1_614_265_330), SW_BODY).unwrap();
        assert_eq!(headers[0], ("webhook-id", SW_ID.to_owned()));
        assert_eq!(headers[1], ("webhook-timestamp", "1614265330".to_owned()));
        assert_eq!(headers[2], ("webhook-signature", V1A.to_owned()));
        let keys = signing.keys().unwrap();
        assert_eq!(keys[0].public_key().unwrap(), WHPK);
    }

    #[test]
    fn standard_webhooks_rotation_from_hmac_to_ed25519_sends_both() {
        let signing = Signing::new(Scheme::StandardWebhooks, &[WHSK.as_bytes(), SW_SECRET]);
        let now = at(1_700_000_000);
        let body = br#"{"id":2}"#;
        let headers = sign(&signing, "evt_02", now, body).unwrap();
        let value = &headers[2].1;
        let (ed, mac) = value.split_once(' ').unwrap();
        // The HMAC half still verifies with the old secret.
        let map = to_map(&headers);
        let result = verify_signature(
            &Preset::StandardWebhooks,
            &map,
            body,
            &[SW_SECRET.to_vec()],
            Duration::from_secs(300),
            now,
        );
        assert_eq!(result, Ok(()));
        assert!(mac.starts_with("v1,"));
        // The Ed25519 half verifies with the public key, over id.ts.body.
        let public = base64_decode(WHPK.strip_prefix("whpk_").unwrap()).unwrap();
        let public = VerifyingKey::from_bytes(&public.try_into().unwrap()).unwrap();
        let raw = base64_decode(ed.strip_prefix("v1a,").unwrap()).unwrap();
        let sig = Signature::from_slice(&raw).unwrap();
        assert!(public.verify(b"evt_02.1700000000.{\"id\":2}", &sig).is_ok());
        assert!(
            public
                .verify(b"evt_02.1700000001.{\"id\":2}", &sig)
                .is_err()
        );
    }

    #[test]
    fn hmac_sha256_single_secret_known_answer() {
        // GitHub's documented vector: same math, hookyard's header name.
        let signing = Signing::new(
            Scheme::HmacSha256,
            &[b"It's a Secret to Everybody".to_vec()],
        );
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
        let signing = Signing::new(Scheme::HmacSha256, &[b"newest".to_vec(), b"older".to_vec()]);
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
        let none = Signing::new::<&[u8]>(Scheme::HmacSha256, &[]);
        assert_eq!(sign(&none, "e", at(0), b""), Err(SignError::NoSecret));
        // A zero-length key is never used, even beside a real one.
        let empty = Signing::new(Scheme::HmacSha256, &[b"real".to_vec(), Vec::new()]);
        assert_eq!(sign(&empty, "e", at(0), b""), Err(SignError::NoSecret));
        let broken = Signing::new(
            Scheme::StandardWebhooks,
            &[SW_SECRET.to_vec(), b"whsec_***".to_vec()],
        );
        let err = broken.check().unwrap_err();
        assert_eq!(
            err,
            SignError::BadSecret {
                index: 1,
                source: KeyError::Whsec(WhsecError)
            }
        );
        assert!(err.to_string().starts_with("signing secret #2:"));
        assert!(!err.to_string().contains("***"));
        // A `whsec_`-looking secret is fine for hmac-sha256: raw bytes there.
        let raw = Signing::new(Scheme::HmacSha256, &[b"whsec_***".to_vec()]);
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
