//! The `ed25519` inbound preset: an Ed25519 signature of the raw body in a
//! configured header, checked with the sender's public key (SPEC §14).
//! Strict verification (`verify_strict`): it refuses the malleable and
//! small-order forms that plain verification lets through.

use axum::http::HeaderMap;
use ed25519_dalek::{Signature, VerifyingKey};

use super::{Encoding, VerifyError, any_signature_verifies};

/// Check `body` against the signature(s) in `header`: comma-separated,
/// any verifying passes. With no key nothing passes.
pub(super) fn verify(
    headers: &HeaderMap,
    header: &str,
    encoding: Encoding,
    key: Option<&VerifyingKey>,
    body: &[u8],
) -> Result<(), VerifyError> {
    let Some(key) = key else {
        return Err(VerifyError::NoSecret);
    };
    any_signature_verifies(
        headers,
        header,
        encoding,
        "holds no 64-byte Ed25519 signature in the configured encoding",
        |bytes| {
            let signature = Signature::from_slice(bytes).ok()?;
            Some(key.verify_strict(body, &signature).is_ok())
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;
    use crate::inbound::verify::{Preset, SignatureRule};
    use crate::model::mac::{base64_encode, hex_encode};
    use axum::http::{HeaderName, HeaderValue};
    use ed25519_dalek::{Signer as _, SigningKey};
    use jiff::Timestamp;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn rule(encoding: Encoding, public: Option<VerifyingKey>) -> SignatureRule {
        SignatureRule::new(
            Preset::Ed25519 {
                header: HeaderName::from_static("x-sig"),
                encoding,
                key: public,
            },
            Vec::new(),
        )
    }

    fn with(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("x-sig", HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn a_body_signed_with_the_matching_key_passes_in_either_encoding() {
        let body = br#"{"type":"ContactCreate"}"#;
        let signer = key(5);
        let sig = signer.sign(body).to_bytes();
        let now = Timestamp::UNIX_EPOCH;
        let b64 = rule(Encoding::Base64, Some(signer.verifying_key()));
        assert_eq!(b64.verify(&with(&base64_encode(&sig)), body, now), Ok(()));
        let hex = rule(Encoding::Hex, Some(signer.verifying_key()));
        assert_eq!(hex.verify(&with(&hex_encode(&sig)), body, now), Ok(()));
        // Rotation on the sender's side: any of several passes.
        let other = key(6).sign(body).to_bytes();
        let both = format!("{}, {}", base64_encode(&other), base64_encode(&sig));
        assert_eq!(b64.verify(&with(&both), body, now), Ok(()));
    }

    #[test]
    fn wrong_key_tampered_body_malformed_and_missing_all_fail() {
        let body = b"payload";
        let sig = base64_encode(&key(5).sign(body).to_bytes());
        let now = Timestamp::UNIX_EPOCH;
        let good = rule(Encoding::Base64, Some(key(5).verifying_key()));
        let wrong = rule(Encoding::Base64, Some(key(6).verifying_key()));
        let mismatch = Err(VerifyError::PublicKeyMismatch {
            header: "x-sig".into(),
        });
        assert_eq!(wrong.verify(&with(&sig), body, now), mismatch);
        assert_eq!(good.verify(&with(&sig), b"payload!", now), mismatch);
        assert!(matches!(
            good.verify(&with("not-a-signature"), body, now),
            Err(VerifyError::MalformedHeader { .. })
        ));
        assert!(matches!(
            good.verify(&with(&base64_encode(&[0u8; 63])), body, now),
            Err(VerifyError::MalformedHeader { .. })
        ));
        assert_eq!(
            good.verify(&HeaderMap::new(), body, now),
            Err(VerifyError::MissingHeader("x-sig".into()))
        );
        // No key compiled: nothing passes.
        let none = rule(Encoding::Base64, None);
        assert_eq!(
            none.verify(&with(&sig), body, now),
            Err(VerifyError::NoSecret)
        );
    }

    fn stamped(at: crate::config::KeySource, shown: &str) -> SignatureRule {
        let mut r = rule(Encoding::Base64, Some(key(5).verifying_key()));
        r.timestamp = Some(crate::config::SignedTimestamp {
            at,
            shown: shown.to_owned(),
        });
        r
    }

    #[test]
    fn a_timestamp_header_is_signed_with_the_body_and_kept_within_tolerance() {
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let body = br#"{"type":"ping"}"#;
        let ts = "1800000000";
        let signed = [ts.as_bytes(), body].concat();
        let mut headers = with(&base64_encode(&key(5).sign(&signed).to_bytes()));
        headers.insert("x-ts", HeaderValue::from_static("1800000000"));
        let r = stamped(
            crate::config::KeySource::Header("x-ts".into()),
            "header:X-Ts",
        );
        assert_eq!(r.verify(&headers, body, at), Ok(()));
        // Five minutes each way, then a replay.
        let later = Timestamp::from_second(1_800_000_300).unwrap();
        assert_eq!(r.verify(&headers, body, later), Ok(()));
        let stale = Timestamp::from_second(1_800_000_301).unwrap();
        assert!(matches!(
            r.verify(&headers, body, stale),
            Err(VerifyError::TimestampOutOfTolerance { age_secs: 301, .. })
        ));
        // A replay with a fresh timestamp header no longer verifies.
        headers.insert("x-ts", HeaderValue::from_static("1800000300"));
        assert!(matches!(
            r.verify(&headers, body, later),
            Err(VerifyError::PublicKeyMismatch { .. })
        ));
        headers.remove("x-ts");
        assert_eq!(
            r.verify(&headers, body, at),
            Err(VerifyError::MissingHeader("x-ts".into()))
        );
    }

    #[test]
    fn a_timestamp_in_the_body_is_read_after_the_signature_in_any_form() {
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let path = serde_json_path::JsonPath::parse("$.meta.sent").unwrap();
        let r = stamped(crate::config::KeySource::Path(path), "$.meta.sent");
        for sent in [
            "1800000000",
            "\"1800000000\"",
            "1800000000000",
            "\"2027-01-15T08:00:00Z\"",
        ] {
            let body = format!(r#"{{"meta":{{"sent":{sent}}}}}"#);
            let h = with(&base64_encode(&key(5).sign(body.as_bytes()).to_bytes()));
            let when = if sent.contains('T') {
                "2027-01-15T08:01:00Z".parse().unwrap()
            } else {
                at
            };
            assert_eq!(r.verify(&h, body.as_bytes(), when), Ok(()), "{sent}");
            let late = when
                .checked_add(jiff::SignedDuration::from_secs(600))
                .unwrap();
            assert!(
                matches!(
                    r.verify(&h, body.as_bytes(), late),
                    Err(VerifyError::TimestampOutOfTolerance { .. })
                ),
                "{sent}"
            );
        }
        let body = br#"{"meta":{}}"#;
        let h = with(&base64_encode(&key(5).sign(body).to_bytes()));
        let missing = r.verify(&h, body, at).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "the body's `$.meta.sent` is missing: the request cannot be checked for replay"
        );
        // An unsigned body is refused before its timestamp is read.
        let forged = with(&base64_encode(&key(6).sign(body).to_bytes()));
        assert!(matches!(
            r.verify(&forged, body, at),
            Err(VerifyError::PublicKeyMismatch { .. })
        ));
    }
}
