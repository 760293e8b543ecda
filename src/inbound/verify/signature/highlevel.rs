//! The `highlevel` inbound preset (SPEC §14): HighLevel, the CRM platform,
//! signs the raw body with Ed25519 in `X-GHL-Signature` (base64), and
//! formerly with RSA-SHA256 in `X-WH-Signature` (base64), which the preset
//! accepts only while the trigger sets `legacy: true`. Neither header
//! carries a timestamp, so the replay window is on the body's `timestamp`
//! field, checked after the signature (so the field read is authentic).

use std::time::Duration;

use axum::http::HeaderMap;
use ed25519_dalek::VerifyingKey;
use jiff::Timestamp;
use rsa::RsaPublicKey;

use super::{Encoding, VerifyError, check_age, ed25519, rsa_sha256};

/// The current signature header (Ed25519).
const HEADER: &str = "x-ghl-signature";
/// The legacy signature header (RSA-SHA256).
const LEGACY_HEADER: &str = "x-wh-signature";
/// Where the timestamp is, as errors name it.
const TIMESTAMP_FIELD: &str = "$.timestamp";

/// Check `body`: `X-GHL-Signature` with `key` when present (or when legacy
/// is off), else `X-WH-Signature` with `legacy_key`; then its timestamp.
pub(super) fn verify(
    headers: &HeaderMap,
    key: Option<&VerifyingKey>,
    legacy_key: Option<&RsaPublicKey>,
    body: &[u8],
    tolerance: Duration,
    now: Timestamp,
) -> Result<(), VerifyError> {
    match legacy_key {
        Some(legacy) if !headers.contains_key(HEADER) => {
            rsa_sha256::verify(headers, LEGACY_HEADER, Encoding::Base64, Some(legacy), body)
                // Missing both: ask for the current header.
                .map_err(|e| match e {
                    VerifyError::MissingHeader(_) => VerifyError::MissingHeader(HEADER.to_owned()),
                    e => e,
                })?
        }
        _ => ed25519::verify(headers, HEADER, Encoding::Base64, key, body)?,
    }
    let signed = body_timestamp(body)?;
    check_age(TIMESTAMP_FIELD, signed, tolerance, now)
}

/// The body's top-level `timestamp` as unix seconds (see
/// [`super::timestamp_value`] for the forms accepted).
fn body_timestamp(body: &[u8]) -> Result<i64, VerifyError> {
    #[derive(serde::Deserialize)]
    struct Stamped {
        timestamp: Option<serde_json::Value>,
    }
    let problem = |problem| VerifyError::BodyTimestamp {
        field: TIMESTAMP_FIELD.to_owned(),
        problem,
    };
    let not_object = || problem("cannot be read: the body is not a JSON object");
    // serde would also read a struct from a JSON array: refuse that first.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(not_object());
    }
    let stamped: Stamped = serde_json::from_slice(body).map_err(|_| not_object())?;
    match stamped.timestamp {
        None | Some(serde_json::Value::Null) => Err(problem("is missing")),
        Some(v) => super::timestamp_value(&v).map_err(problem),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;
    use crate::inbound::verify::{Preset, SignatureRule};
    use crate::model::mac::{base64_encode, rsa_public_key};
    use axum::http::HeaderValue;
    use ed25519_dalek::{Signer as _, SigningKey};

    /// The body the legacy fixture signature was made over.
    const BODY: &[u8] =
        br#"{"type":"ContactCreate","timestamp":"2026-01-01T00:00:00Z","webhookId":"w-1"}"#;
    const LEGACY_SIG: &str = include_str!("../../../../tests/fixtures/rsa-test-sig-highlevel.b64");

    fn signed_at() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn signer() -> SigningKey {
        SigningKey::from_bytes(&[21; 32])
    }

    fn rule(legacy: bool) -> SignatureRule {
        SignatureRule::new(
            Preset::Highlevel {
                key: Some(signer().verifying_key()),
                legacy_key: legacy
                    .then(|| rsa_public_key(super::rsa_sha256::tests::PUBLIC_PEM).unwrap()),
            },
            Vec::new(),
        )
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ghl(body: &[u8]) -> (&'static str, String) {
        (
            "x-ghl-signature",
            base64_encode(&signer().sign(body).to_bytes()),
        )
    }

    #[test]
    fn the_ed25519_header_passes_within_five_minutes_of_the_body_timestamp() {
        let rule = rule(false);
        let h = headers(&[ghl(BODY)]);
        for offset in [0, 299, -299] {
            let now = signed_at()
                .checked_add(jiff::SignedDuration::from_secs(offset))
                .unwrap();
            assert_eq!(rule.verify(&h, BODY, now), Ok(()), "{offset}");
        }
        let late = signed_at()
            .checked_add(jiff::SignedDuration::from_secs(301))
            .unwrap();
        assert!(matches!(
            rule.verify(&h, BODY, late),
            Err(VerifyError::TimestampOutOfTolerance { age_secs: 301, .. })
        ));
        // Tampered body, another key.
        let other = SigningKey::from_bytes(&[22; 32]).sign(BODY).to_bytes();
        let forged = headers(&[("x-ghl-signature", base64_encode(&other))]);
        assert!(matches!(
            rule.verify(&forged, BODY, signed_at()),
            Err(VerifyError::PublicKeyMismatch { .. })
        ));
        assert!(matches!(
            rule.verify(&h, b"{}", signed_at()),
            Err(VerifyError::PublicKeyMismatch { .. })
        ));
    }

    #[test]
    fn timestamps_in_every_form_and_missing_ones() {
        let rule = rule(false);
        let at = signed_at();
        for body in [
            format!(r#"{{"timestamp":{}}}"#, at.as_second()),
            format!(r#"{{"timestamp":{}}}"#, at.as_millisecond()),
            format!(r#"{{"timestamp":"{}"}}"#, at.as_second()),
            r#"{"timestamp":"2026-01-01T01:00:00+01:00"}"#.to_owned(),
        ] {
            let b = body.as_bytes();
            assert_eq!(rule.verify(&headers(&[ghl(b)]), b, at), Ok(()), "{body}");
        }
        for body in [
            &br#"{"type":"x"}"#[..],
            br#"{"timestamp":null}"#,
            br#"{"timestamp":"yesterday"}"#,
            br#"{"timestamp":true}"#,
            b"[1]",
        ] {
            assert!(
                matches!(
                    rule.verify(&headers(&[ghl(body)]), body, at),
                    Err(VerifyError::BodyTimestamp { .. })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_legacy_rsa_header_counts_only_with_legacy_on() {
        let h = headers(&[("x-wh-signature", LEGACY_SIG.trim().to_owned())]);
        assert_eq!(rule(true).verify(&h, BODY, signed_at()), Ok(()));
        assert_eq!(
            rule(false).verify(&h, BODY, signed_at()),
            Err(VerifyError::MissingHeader("x-ghl-signature".into()))
        );
        // With legacy on, the current header still wins when present.
        let both = headers(&[
            ("x-wh-signature", LEGACY_SIG.trim().to_owned()),
            ("x-ghl-signature", base64_encode(&[0u8; 64])),
        ]);
        assert!(matches!(
            rule(true).verify(&both, BODY, signed_at()),
            Err(VerifyError::PublicKeyMismatch { .. })
        ));
        assert!(matches!(
            rule(true).verify(&h, b"{}", signed_at()),
            Err(VerifyError::PublicKeyMismatch { .. })
        ));
        assert_eq!(
            rule(true).verify(&HeaderMap::new(), BODY, signed_at()),
            Err(VerifyError::MissingHeader("x-ghl-signature".into()))
        );
    }
}
