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
}
