//! Known-answer tests of the generic `hmac-sha256` preset: bare hex,
//! hookyard's own `sha256=<hex>` and its rotation form, base64, a
//! configured prefix, and empty keys. Helpers and the GitHub vector
//! (the same HMAC of the body) come from `signature_tests.rs`.

use super::*;

#[test]
fn generic_default_is_hex_in_x_hmac_signature() {
    let preset = Preset::from_name("hmac-sha256").unwrap();
    let h = headers(&[("X-Hmac-Signature", &GH_SIG[7..])]);
    assert_eq!(check(&preset, &h, GH_BODY, &[GH_SECRET], 0), Ok(()));
    // Uppercase hex is the same signature.
    let upper = GH_SIG[7..].to_uppercase();
    let h = headers(&[("X-Hmac-Signature", &upper)]);
    assert_eq!(check(&preset, &h, GH_BODY, &[GH_SECRET], 0), Ok(()));
}

#[test]
fn generic_prefix_is_required_when_configured() {
    let preset = generic("x-signature", Encoding::Hex, Some("sha256="));
    let with = headers(&[("X-Signature", GH_SIG)]);
    assert_eq!(check(&preset, &with, GH_BODY, &[GH_SECRET], 0), Ok(()));
    let without = headers(&[("X-Signature", &GH_SIG[7..])]);
    assert!(matches!(
        check(&preset, &without, GH_BODY, &[GH_SECRET], 0),
        Err(VerifyError::MalformedHeader { .. })
    ));
}

#[test]
fn generic_base64_variant() {
    let preset = generic("x-sig", Encoding::Base64, None);
    let tag = hmac_sha256(GH_SECRET, &[GH_BODY]).unwrap();
    let b64 = base64_encode(&tag);
    let h = headers(&[("x-sig", &b64)]);
    assert_eq!(check(&preset, &h, GH_BODY, &[GH_SECRET], 0), Ok(()));
    // Hex text in a base64 slot decodes to other bytes: a mismatch.
    let h = headers(&[("x-sig", &GH_SIG[7..])]);
    assert!(matches!(
        check(&preset, &h, GH_BODY, &[GH_SECRET], 0),
        Err(VerifyError::SignatureMismatch { .. })
    ));
}

#[test]
fn generic_accepts_hookyards_own_multi_signature_header() {
    let preset = generic("x-hmac-signature", Encoding::Hex, Some("sha256="));
    let other = hex_encode(&hmac_sha256(b"newer", &[GH_BODY]).unwrap());
    let value = format!("sha256={other},{GH_SIG}");
    let h = headers(&[("x-hmac-signature", &value)]);
    assert_eq!(check(&preset, &h, GH_BODY, &[GH_SECRET], 0), Ok(()));
    assert_eq!(check(&preset, &h, GH_BODY, &[b"newer"], 0), Ok(()));
}

#[test]
fn generic_default_accepts_sha256_prefix_bare_hex_and_rotation() {
    let preset = Preset::from_name("hmac-sha256").unwrap();
    let ok = |value: &str, secrets: &[&[u8]]| {
        let h = headers(&[("X-Hmac-Signature", value)]);
        check(&preset, &h, GH_BODY, secrets, 0)
    };
    // What hookyard's outbound `hmac-sha256` signing sends (SPEC §5).
    assert_eq!(ok(GH_SIG, &[GH_SECRET]), Ok(()));
    assert_eq!(ok(&GH_SIG[7..], &[GH_SECRET]), Ok(()));
    // Rotation: `sha256=<a>,sha256=<b>`, valid when any matches.
    let newer = hex_encode(&hmac_sha256(b"newer", &[GH_BODY]).unwrap());
    let both = format!("sha256={newer},{GH_SIG}");
    assert_eq!(ok(&both, &[GH_SECRET]), Ok(()));
    assert_eq!(ok(&both, &[b"newer"]), Ok(()));
    assert!(matches!(
        ok(&both, &[b"neither"]),
        Err(VerifyError::SignatureMismatch { .. })
    ));
    // A wrong body under the prefix is a mismatch, not accepted.
    let h = headers(&[("X-Hmac-Signature", GH_SIG)]);
    assert!(matches!(
        check(&preset, &h, b"Hello, World?", &[GH_SECRET], 0),
        Err(VerifyError::SignatureMismatch { .. })
    ));
    // Another scheme's prefix is still malformed.
    assert!(matches!(
        ok(&format!("sha1={}", &GH_SIG[7..]), &[GH_SECRET]),
        Err(VerifyError::MalformedHeader { .. })
    ));
}

#[test]
fn empty_secrets_are_never_keys() {
    // HMAC with an empty key is computable by anyone: such a secret must
    // fail closed, not verify a body "signed" with "".
    let tag = hex_encode(&hmac_sha256(b"", &[GH_BODY]).unwrap());
    let h = headers(&[("X-Hmac-Signature", &tag)]);
    let preset = Preset::from_name("hmac-sha256").unwrap();
    assert_eq!(
        check(&preset, &h, GH_BODY, &[b""], 0),
        Err(VerifyError::NoSecret)
    );
    assert!(matches!(
        check(&preset, &h, GH_BODY, &[b"", b"real"], 0),
        Err(VerifyError::SignatureMismatch { .. })
    ));
}
