//! The signature math shared by inbound verification and outbound signing:
//! HMAC-SHA256, hex and base64 codecs, and the Standard Webhooks key formats
//! (`whsec_` HMAC secrets, `whsk_` Ed25519 seeds, `whpk_` public keys).
//!
//! It sits in the bottom layer because both directions use it:
//! `inbound::verify` checks with it and `deliver::sign` signs with it, so both
//! compute the very same bytes (a hookyard can verify what another hookyard sent). Nothing here
//! panics on any input, and nothing here ever formats a key into an error.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;

/// The prefix Standard Webhooks (and Svix) put before a base64 secret.
pub const WHSEC_PREFIX: &str = "whsec_";

/// Standard base64 alphabet that accepts input with or without `=` padding:
/// senders disagree on padding and it carries no information.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A keyed HMAC-SHA256 state, or `None` if the key were refused.
///
/// HMAC accepts keys of any length (RFC 2104: longer keys are hashed, shorter
/// ones padded), so `new_from_slice` never fails in practice; returning an
/// `Option` keeps this code free of `expect` on configuration input.
fn keyed(key: &[u8]) -> Option<HmacSha256> {
    <HmacSha256 as KeyInit>::new_from_slice(key).ok()
}

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
///
/// Taking the message in parts lets callers sign `id.timestamp.body` without
/// copying the body into a new buffer.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<[u8; TAG_LEN]> {
    let mut mac = keyed(key)?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().into())
}

/// True when `tag` is the HMAC-SHA256 of `parts` under any of `keys`.
///
/// Every key is tried against every candidate tag, each comparison in
/// constant time (`verify_slice`), so the time taken does not depend on how
/// many leading bytes of a forged tag were right.
pub fn any_key_matches(keys: &[Vec<u8>], parts: &[&[u8]], tags: &[Vec<u8>]) -> bool {
    let mut matched = false;
    for key in keys {
        // A zero-length key is never used: anyone can sign with it.
        if key.is_empty() {
            continue;
        }
        let Some(mut mac) = keyed(key) else {
            continue;
        };
        for part in parts {
            mac.update(part);
        }
        for tag in tags {
            // `verify_slice` consumes the state; cloning the keyed and fed
            // state is cheaper than hashing the body again per tag.
            if mac.clone().verify_slice(tag).is_ok() {
                matched = true;
            }
        }
    }
    matched
}

/// Lowercase hex of `bytes` (the form GitHub, Stripe and Slack send).
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Decode hex (either case); `None` for odd length or a non-hex digit.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Standard base64 with padding, as Shopify and Standard Webhooks send it.
pub fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decode standard-alphabet base64, padded or not; `None` if invalid.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64_LENIENT.decode(text).ok()
}

/// A Standard Webhooks secret that is not valid base64 after `whsec_`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "secret starts with `whsec_` but the rest is not valid base64: copy the whole secret \
     exactly as the provider shows it, or drop the `whsec_` prefix to use the text as a raw key"
)]
pub struct WhsecError;

/// The HMAC key for a Standard Webhooks secret.
///
/// A `whsec_…` secret is base64 after the prefix, as the Standard Webhooks
/// spec and its reference libraries define it. Any other secret is used as
/// raw bytes, so a hand-chosen passphrase works too. (The reference libraries
/// also base64-decode an unprefixed secret; hookyard does not, because a
/// passphrase that happens to be valid base64 would silently change meaning.)
/// Call this at config load to reject a broken `whsec_` secret early.
pub fn standard_webhooks_key(secret: &[u8]) -> Result<Vec<u8>, WhsecError> {
    match secret.strip_prefix(WHSEC_PREFIX.as_bytes()) {
        Some(rest) => {
            let text = std::str::from_utf8(rest).map_err(|_| WhsecError)?;
            base64_decode(text.trim()).ok_or(WhsecError)
        }
        None => Ok(secret.to_vec()),
    }
}

/// The prefix of a Standard Webhooks Ed25519 signing secret (`v1a`):
/// base64 of the 32-byte seed follows.
pub const WHSK_PREFIX: &str = "whsk_";

/// The prefix of a Standard Webhooks Ed25519 public key: base64 of the
/// 32-byte key follows.
pub const WHPK_PREFIX: &str = "whpk_";

/// Length in bytes of an Ed25519 seed (the private key) and of a public key.
pub const ED25519_KEY_LEN: usize = 32;

/// A `whsk_` secret that is not base64 of exactly 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "secret starts with `whsk_` (an Ed25519 signing key) but the rest is not base64 of \
     32 bytes: copy the whole key, or make a new one as `whsk_` followed by base64 of 32 \
     random bytes (`openssl rand -base64 32`)"
)]
pub struct WhskError;

/// The Ed25519 seed of a `whsk_…` secret; `None` when `secret` does not
/// start with `whsk_` (it is then not an Ed25519 key).
pub fn ed25519_seed(secret: &[u8]) -> Option<Result<[u8; ED25519_KEY_LEN], WhskError>> {
    let rest = secret.strip_prefix(WHSK_PREFIX.as_bytes())?;
    let seed = std::str::from_utf8(rest)
        .ok()
        .and_then(|text| base64_decode(text.trim()))
        .and_then(|bytes| <[u8; ED25519_KEY_LEN]>::try_from(bytes).ok());
    Some(seed.ok_or(WhskError))
}

/// A `public_key` that is not an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an Ed25519 public key: give the PEM block (`-----BEGIN PUBLIC KEY-----` …), base64 \
     of the 32-byte key (`whpk_` prefix optional, as `hookyard keys public` prints it), or \
     base64 of its DER"
)]
pub struct PublicKeyError;

/// Parse an Ed25519 public key written as PEM (SubjectPublicKeyInfo),
/// `whpk_` + base64, bare base64 of the 32 bytes, or base64 of the DER.
pub fn ed25519_public_key(text: &str) -> Result<ed25519_dalek::VerifyingKey, PublicKeyError> {
    use ed25519_dalek::VerifyingKey;
    use ed25519_dalek::pkcs8::DecodePublicKey as _;
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text).map_err(|_| PublicKeyError);
    }
    let b64 = text.strip_prefix(WHPK_PREFIX).unwrap_or(text);
    let bytes = base64_decode(b64).ok_or(PublicKeyError)?;
    match <[u8; ED25519_KEY_LEN]>::try_from(bytes.as_slice()) {
        Ok(raw) => VerifyingKey::from_bytes(&raw).map_err(|_| PublicKeyError),
        Err(_) => VerifyingKey::from_public_key_der(&bytes).map_err(|_| PublicKeyError),
    }
}

/// The smallest RSA modulus a `public_key` may have: below 2048 bits a
/// signature can be forged by whoever can factor the modulus.
pub const RSA_MIN_BITS: usize = 2048;

/// A `public_key` that is not a usable RSA public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsaKeyError {
    /// Not an RSA public key in any accepted form.
    #[error(
        "not an RSA public key: give the PEM block (`-----BEGIN PUBLIC KEY-----` or \
         `-----BEGIN RSA PUBLIC KEY-----` …) or base64 of its DER"
    )]
    Unreadable,
    /// An RSA key, but too short to trust.
    #[error("the RSA key has {0} bits; at least 2048 are required")]
    TooSmall(usize),
}

/// Parse an RSA public key written as PEM (SubjectPublicKeyInfo `PUBLIC
/// KEY` or PKCS#1 `RSA PUBLIC KEY`) or as base64 of either DER. Only for
/// verification: hookyard never holds an RSA private key (RUSTSEC-2023-0071
/// concerns decryption and signing, not verification).
pub fn rsa_public_key(text: &str) -> Result<rsa::RsaPublicKey, RsaKeyError> {
    use rsa::RsaPublicKey;
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    let text = text.trim();
    let key = if text.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
        RsaPublicKey::from_pkcs1_pem(text).ok()
    } else if text.starts_with("-----BEGIN") {
        RsaPublicKey::from_public_key_pem(text).ok()
    } else {
        // Base64 DER may be wrapped over several lines.
        let compact: String = text.split_whitespace().collect();
        base64_decode(&compact).and_then(|der| {
            RsaPublicKey::from_public_key_der(&der)
                .or_else(|_| RsaPublicKey::from_pkcs1_der(&der))
                .ok()
        })
    };
    let key = key.ok_or(RsaKeyError::Unreadable)?;
    let bits = key.n().bits();
    if bits < RSA_MIN_BITS {
        return Err(RsaKeyError::TooSmall(bits));
    }
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;

    /// RFC 4231 §4.2, test case 1: 20-byte key of 0x0b, "Hi There".
    #[test]
    fn rfc4231_case_1() {
        let tag = hmac_sha256(&[0x0b; 20], &[b"Hi There"]).unwrap();
        assert_eq!(
            hex_encode(&tag),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    /// RFC 4231 §4.3, test case 2: a key shorter than the output ("Jefe").
    #[test]
    fn rfc4231_case_2() {
        let tag = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]).unwrap();
        assert_eq!(
            hex_encode(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// RFC 4231 §4.7, test case 6: a 131-byte key, longer than the block, which
    /// HMAC must hash first.
    #[test]
    fn rfc4231_case_6_long_key() {
        let tag = hmac_sha256(
            &[0xaa; 131],
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        )
        .unwrap();
        assert_eq!(
            hex_encode(&tag),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn any_key_matches_tries_every_key_and_tag() {
        let good = hmac_sha256(b"new", &[b"body"]).unwrap().to_vec();
        let keys = vec![b"old".to_vec(), b"new".to_vec()];
        let tags = vec![vec![0u8; 32], vec![1, 2, 3], good.clone()];
        assert!(any_key_matches(&keys, &[b"bo", b"dy"], &tags));
        assert!(!any_key_matches(&keys, &[b"body!"], &tags));
        assert!(!any_key_matches(&[b"other".to_vec()], &[b"body"], &[good]));
        assert!(!any_key_matches(&keys, &[b"body"], &[]));
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        assert_eq!(hex_encode(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(hex_decode("00ABff"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode(""), Some(vec![]));
    }

    #[test]
    fn base64_accepts_missing_padding() {
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("aGk"), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("a*k="), None);
        assert_eq!(base64_encode(b"hi"), "aGk=");
    }

    #[test]
    fn whsec_secrets_are_base64_after_the_prefix() {
        assert_eq!(standard_webhooks_key(b"whsec_aGk=").unwrap(), b"hi");
        assert_eq!(standard_webhooks_key(b"aGk=").unwrap(), b"aGk=");
        assert_eq!(standard_webhooks_key(b"whsec_not base64!"), Err(WhsecError));
        assert_eq!(standard_webhooks_key(b"whsec_\xff"), Err(WhsecError));
    }

    #[test]
    fn whsk_secrets_are_base64_of_32_bytes() {
        let seed = [7u8; 32];
        let text = format!("whsk_{}", base64_encode(&seed));
        assert_eq!(ed25519_seed(text.as_bytes()), Some(Ok(seed)));
        assert_eq!(ed25519_seed(b"whsec_aGk="), None);
        assert_eq!(ed25519_seed(b"plain"), None);
        assert_eq!(ed25519_seed(b"whsk_aGk="), Some(Err(WhskError)));
        assert_eq!(ed25519_seed(b"whsk_***"), Some(Err(WhskError)));
        assert_eq!(ed25519_seed(b"whsk_\xff"), Some(Err(WhskError)));
    }

    #[test]
    fn ed25519_public_keys_in_every_written_form() {
        // RFC 8032 §7.1 test 1 public key; its PEM as `openssl pkey -pubout`
        // writes it (the 12-byte SPKI header + the key).
        let raw =
            hex_decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").unwrap();
        let mut der = hex_decode("302a300506032b6570032100").unwrap();
        der.extend_from_slice(&raw);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64_encode(&der)
        );
        for text in [
            pem.clone(),
            base64_encode(&raw),
            format!("whpk_{}", base64_encode(&raw)),
            format!("  {}\n", base64_encode(&der)),
        ] {
            let key = ed25519_public_key(&text).unwrap();
            assert_eq!(key.as_bytes().as_slice(), raw.as_slice(), "{text}");
        }
        for bad in [
            "",
            "whpk_aGk=",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            "***",
        ] {
            assert_eq!(ed25519_public_key(bad), Err(PublicKeyError), "{bad}");
        }
    }
}
