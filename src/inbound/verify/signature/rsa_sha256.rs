//! The `rsa-sha256` inbound preset: an RSA PKCS#1 v1.5 signature with
//! SHA-256 of the raw body in a configured header, checked with the
//! sender's RSA public key (SPEC §14). Verification only: RUSTSEC-2023-0071
//! (a timing side channel) concerns RSA decryption and signing with a
//! private key, which hookyard never holds.

use axum::http::HeaderMap;
use rsa::sha2::{Digest as _, Sha256};
use rsa::traits::PublicKeyParts as _;
use rsa::{Pkcs1v15Sign, RsaPublicKey};

use super::{Encoding, VerifyError, any_signature_verifies};

/// Check `body` against the signature(s) in `header`: comma-separated,
/// any verifying passes. With no key nothing passes.
pub(super) fn verify(
    headers: &HeaderMap,
    header: &str,
    encoding: Encoding,
    key: Option<&RsaPublicKey>,
    body: &[u8],
) -> Result<(), VerifyError> {
    let Some(key) = key else {
        return Err(VerifyError::NoSecret);
    };
    let digest = Sha256::digest(body);
    any_signature_verifies(
        headers,
        header,
        encoding,
        "holds no RSA signature of the key's length in the configured encoding",
        // A PKCS#1 v1.5 signature is exactly as long as the modulus.
        |signature| {
            (signature.len() == key.size()).then(|| {
                key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, signature)
                    .is_ok()
            })
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
pub(crate) mod tests {
    use super::*;
    use crate::inbound::verify::{Preset, SignatureRule};
    use crate::model::mac::{
        RsaKeyError, base64_decode, base64_encode, hex_encode, rsa_public_key,
    };
    use axum::http::{HeaderName, HeaderValue};
    use jiff::Timestamp;

    /// The committed test key pair (tests/fixtures/RSA-TEST-KEYS.md).
    pub(crate) const PUBLIC_PEM: &str =
        include_str!("../../../../tests/fixtures/rsa-test-public.pem");
    const PUBLIC_PKCS1_PEM: &str =
        include_str!("../../../../tests/fixtures/rsa-test-public-pkcs1.pem");
    /// The fixture key's signature of [`BODY`].
    const SIG: &str = include_str!("../../../../tests/fixtures/rsa-test-sig-contact.b64");
    const BODY: &[u8] = br#"{"type":"ContactCreate"}"#;

    fn rule(encoding: Encoding, key: Option<RsaPublicKey>) -> SignatureRule {
        SignatureRule::new(
            Preset::RsaSha256 {
                header: HeaderName::from_static("x-sig"),
                encoding,
                key,
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
    fn keys_parse_in_every_written_form_and_small_ones_are_refused() {
        let spki = rsa_public_key(PUBLIC_PEM).unwrap();
        assert_eq!(rsa_public_key(PUBLIC_PKCS1_PEM).unwrap(), spki);
        // Base64 of either DER, wrapped or not.
        let der_b64 = |pem: &str| -> String {
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(rsa_public_key(&der_b64(PUBLIC_PEM)).unwrap(), spki);
        assert_eq!(rsa_public_key(&der_b64(PUBLIC_PKCS1_PEM)).unwrap(), spki);
        for bad in [
            "",
            "aGk=",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            "***",
        ] {
            assert_eq!(rsa_public_key(bad), Err(RsaKeyError::Unreadable), "{bad}");
        }
        // A 1024-bit key (RSA PUBLIC KEY DER: modulus 0xC000…01, e = 65537).
        let mut n = vec![0u8; 128];
        n[0] = 0xc0;
        n[127] = 1;
        let mut der = vec![0x30, 0x81, 0x89, 0x02, 0x81, 0x81, 0x00];
        der.extend_from_slice(&n);
        der.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
        assert_eq!(
            rsa_public_key(&base64_encode(&der)),
            Err(RsaKeyError::TooSmall(1024))
        );
    }

    #[test]
    fn a_body_signed_with_the_fixture_key_passes_in_either_encoding() {
        let key = rsa_public_key(PUBLIC_PEM).unwrap();
        let now = Timestamp::UNIX_EPOCH;
        let b64 = rule(Encoding::Base64, Some(key.clone()));
        assert_eq!(b64.verify(&with(SIG.trim()), BODY, now), Ok(()));
        let raw = base64_decode(SIG.trim()).unwrap();
        let hex = rule(Encoding::Hex, Some(key));
        assert_eq!(hex.verify(&with(&hex_encode(&raw)), BODY, now), Ok(()));
        // Several: any verifying passes.
        let other = base64_encode(&[7u8; 256]);
        let both = format!("{other}, {}", SIG.trim());
        assert_eq!(b64.verify(&with(&both), BODY, now), Ok(()));
    }

    #[test]
    fn tampered_body_forged_malformed_missing_and_keyless_all_fail() {
        let now = Timestamp::UNIX_EPOCH;
        let good = rule(Encoding::Base64, Some(rsa_public_key(PUBLIC_PEM).unwrap()));
        let mismatch = Err(VerifyError::PublicKeyMismatch {
            header: "x-sig".into(),
        });
        assert_eq!(good.verify(&with(SIG.trim()), b"{}", now), mismatch);
        assert_eq!(
            good.verify(&with(&base64_encode(&[7u8; 256])), BODY, now),
            mismatch
        );
        assert!(matches!(
            good.verify(&with(&base64_encode(&[7u8; 255])), BODY, now),
            Err(VerifyError::MalformedHeader { .. })
        ));
        assert!(matches!(
            good.verify(&with("junk!"), BODY, now),
            Err(VerifyError::MalformedHeader { .. })
        ));
        assert_eq!(
            good.verify(&HeaderMap::new(), BODY, now),
            Err(VerifyError::MissingHeader("x-sig".into()))
        );
        assert_eq!(
            rule(Encoding::Base64, None).verify(&with(SIG.trim()), BODY, now),
            Err(VerifyError::NoSecret)
        );
    }
}
