//! Known-answer and negative tests for the signature presets.
//!
//! Published vectors: GitHub's (docs.github.com, "Validating webhook
//! deliveries"), Slack's (api.slack.com, "Verifying requests from Slack") and
//! Standard Webhooks' (standard-webhooks repo, libraries/python/tests).
//! Stripe and Shopify publish none; their expected values below were computed
//! with Python's standard `hmac`/`base64` modules, independently of this code.

use super::*;
use crate::model::mac::{base64_encode, hex_encode, hmac_sha256};
use axum::http::HeaderValue;
use proptest::prelude::*;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn check(
    preset: &Preset,
    h: &HeaderMap,
    body: &[u8],
    secrets: &[&[u8]],
    now: i64,
) -> Result<(), VerifyError> {
    let secrets: Vec<Vec<u8>> = secrets.iter().map(|s| s.to_vec()).collect();
    verify_signature(preset, h, body, &secrets, DEFAULT_TOLERANCE, at(now))
}

fn generic(header: &'static str, encoding: Encoding, prefix: Option<&str>) -> Preset {
    Preset::HmacSha256 {
        header: HeaderName::from_static(header),
        encoding,
        prefix: prefix.map(str::to_owned),
    }
}

// ---- GitHub -------------------------------------------------------------

const GH_SECRET: &[u8] = b"It's a Secret to Everybody";
const GH_BODY: &[u8] = b"Hello, World!";
const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[test]
fn github_documented_vector() {
    let h = headers(&[("X-Hub-Signature-256", GH_SIG)]);
    assert_eq!(check(&Preset::Github, &h, GH_BODY, &[GH_SECRET], 0), Ok(()));
}

#[test]
fn github_rejects_wrong_secret_tampered_body_and_bad_headers() {
    let h = headers(&[("X-Hub-Signature-256", GH_SIG)]);
    let mismatch = Err(VerifyError::SignatureMismatch {
        header: "x-hub-signature-256".into(),
    });
    assert_eq!(
        check(&Preset::Github, &h, GH_BODY, &[b"wrong"], 0),
        mismatch
    );
    assert_eq!(
        check(&Preset::Github, &h, b"Hello, World?", &[GH_SECRET], 0),
        mismatch
    );
    assert_eq!(
        check(&Preset::Github, &HeaderMap::new(), GH_BODY, &[GH_SECRET], 0),
        Err(VerifyError::MissingHeader("x-hub-signature-256".into()))
    );
    // Without the `sha256=` prefix, or not hex: malformed, not a mismatch.
    let bare = headers(&[("X-Hub-Signature-256", &GH_SIG[7..])]);
    assert!(matches!(
        check(&Preset::Github, &bare, GH_BODY, &[GH_SECRET], 0),
        Err(VerifyError::MalformedHeader { .. })
    ));
    let not_hex = headers(&[("X-Hub-Signature-256", "sha256=xyz")]);
    assert!(matches!(
        check(&Preset::Github, &not_hex, GH_BODY, &[GH_SECRET], 0),
        Err(VerifyError::MalformedHeader { .. })
    ));
    // Truncated signature: well-formed hex, wrong length, never matches.
    let short = headers(&[("X-Hub-Signature-256", &GH_SIG[..41])]);
    assert_eq!(
        check(&Preset::Github, &short, GH_BODY, &[GH_SECRET], 0),
        mismatch
    );
}

#[test]
fn rotation_second_secret_matches() {
    let h = headers(&[("X-Hub-Signature-256", GH_SIG)]);
    assert_eq!(
        check(
            &Preset::Github,
            &h,
            GH_BODY,
            &[b"next-secret", GH_SECRET],
            0
        ),
        Ok(())
    );
}

#[test]
fn no_secret_fails_closed() {
    let h = headers(&[("X-Hub-Signature-256", GH_SIG)]);
    assert_eq!(
        check(&Preset::Github, &h, GH_BODY, &[], 0),
        Err(VerifyError::NoSecret)
    );
}

// ---- generic hmac-sha256: in `signature_hmac_tests.rs` ----------------------

#[path = "signature_hmac_tests.rs"]
mod hmac;

// ---- Shopify ----------------------------------------------------------------

const SHOPIFY_SECRET: &[u8] = b"shpss_hush";
const SHOPIFY_BODY: &[u8] = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
/// base64(HMAC-SHA256(SHOPIFY_SECRET, SHOPIFY_BODY)), computed with Python.
const SHOPIFY_SIG: &str = "minWArgZa/Hsplvy6dlnaKNnlyvuW8Y2ovDcBlzZSE0=";

#[test]
fn shopify_base64_over_body() {
    let h = headers(&[("X-Shopify-Hmac-Sha256", SHOPIFY_SIG)]);
    assert_eq!(
        check(&Preset::Shopify, &h, SHOPIFY_BODY, &[SHOPIFY_SECRET], 0),
        Ok(())
    );
    assert!(matches!(
        check(&Preset::Shopify, &h, b"{}", &[SHOPIFY_SECRET], 0),
        Err(VerifyError::SignatureMismatch { .. })
    ));
    let bad = headers(&[("X-Shopify-Hmac-Sha256", "%%%")]);
    assert!(matches!(
        check(&Preset::Shopify, &bad, SHOPIFY_BODY, &[SHOPIFY_SECRET], 0),
        Err(VerifyError::MalformedHeader { .. })
    ));
}

// ---- Stripe -------------------------------------------------------------------

const STRIPE_SECRET: &[u8] = b"whsec_test_secret";
const STRIPE_T: i64 = 1_700_000_000;
const STRIPE_BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
/// hex(HMAC-SHA256("whsec_test_secret", "1700000000." + body)), with Python:
/// the whole `whsec_…` text is the key, as Stripe uses it.
const STRIPE_V1: &str = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";

fn stripe_header(value: &str) -> HeaderMap {
    headers(&[("Stripe-Signature", value)])
}

#[test]
fn stripe_known_answer_with_extra_entries() {
    let h = stripe_header(&format!("t={STRIPE_T},v1={STRIPE_V1},v0=deadbeef"));
    assert_eq!(
        check(&Preset::Stripe, &h, STRIPE_BODY, &[STRIPE_SECRET], STRIPE_T),
        Ok(())
    );
    // Several v1 entries (Stripe sends one per active secret): any may match.
    let h = stripe_header(&format!(
        "t={STRIPE_T},v1={},v1={STRIPE_V1}",
        "00".repeat(32)
    ));
    assert_eq!(
        check(&Preset::Stripe, &h, STRIPE_BODY, &[STRIPE_SECRET], STRIPE_T),
        Ok(())
    );
}

#[test]
fn stripe_timestamp_window_both_directions() {
    let h = stripe_header(&format!("t={STRIPE_T},v1={STRIPE_V1}"));
    let ok = |now| check(&Preset::Stripe, &h, STRIPE_BODY, &[STRIPE_SECRET], now);
    assert_eq!(ok(STRIPE_T + 300), Ok(()));
    assert_eq!(ok(STRIPE_T - 300), Ok(()));
    assert_eq!(
        ok(STRIPE_T + 301),
        Err(VerifyError::TimestampOutOfTolerance {
            header: "stripe-signature".into(),
            age_secs: 301,
            tolerance_secs: 300,
        })
    );
    assert!(matches!(
        ok(STRIPE_T - 301),
        Err(VerifyError::TimestampOutOfTolerance { age_secs: -301, .. })
    ));
}

#[test]
fn stripe_signs_the_timestamp_too() {
    // The v1 of t=1700000000 presented with another t fails even in window.
    let t = STRIPE_T + 1;
    let h = stripe_header(&format!("t={t},v1={STRIPE_V1}"));
    assert!(matches!(
        check(&Preset::Stripe, &h, STRIPE_BODY, &[STRIPE_SECRET], t),
        Err(VerifyError::SignatureMismatch { .. })
    ));
}

#[test]
fn stripe_malformed_headers() {
    for value in [
        format!("v1={STRIPE_V1}"),
        format!("t={STRIPE_T}"),
        format!("t=abc,v1={STRIPE_V1}"),
        format!("t=-5,v1={STRIPE_V1}"),
        format!("t={STRIPE_T},t={STRIPE_T},v1={STRIPE_V1}"),
        format!("t={STRIPE_T},v1=nothex"),
        "garbage".to_owned(),
    ] {
        let h = stripe_header(&value);
        assert!(
            matches!(
                check(&Preset::Stripe, &h, STRIPE_BODY, &[STRIPE_SECRET], STRIPE_T),
                Err(VerifyError::MalformedHeader { .. })
            ),
            "{value}"
        );
    }
}

// ---- Slack -----------------------------------------------------------------------

const SLACK_SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TS: i64 = 1_531_420_618;
const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

fn slack_headers(sig: &str, ts: &str) -> HeaderMap {
    headers(&[
        ("X-Slack-Signature", sig),
        ("X-Slack-Request-Timestamp", ts),
    ])
}

#[test]
fn slack_documented_vector() {
    let h = slack_headers(SLACK_SIG, "1531420618");
    assert_eq!(
        check(&Preset::Slack, &h, SLACK_BODY, &[SLACK_SECRET], SLACK_TS),
        Ok(())
    );
}

#[test]
fn slack_rejects_stale_wrong_and_malformed() {
    let h = slack_headers(SLACK_SIG, "1531420618");
    assert!(matches!(
        check(
            &Preset::Slack,
            &h,
            SLACK_BODY,
            &[SLACK_SECRET],
            SLACK_TS + 3600
        ),
        Err(VerifyError::TimestampOutOfTolerance { .. })
    ));
    assert!(matches!(
        check(&Preset::Slack, &h, SLACK_BODY, &[b"nope"], SLACK_TS),
        Err(VerifyError::SignatureMismatch { .. })
    ));
    let no_version = slack_headers(&SLACK_SIG[3..], "1531420618");
    assert!(matches!(
        check(
            &Preset::Slack,
            &no_version,
            SLACK_BODY,
            &[SLACK_SECRET],
            SLACK_TS
        ),
        Err(VerifyError::MalformedHeader { .. })
    ));
    let no_ts = headers(&[("X-Slack-Signature", SLACK_SIG)]);
    assert_eq!(
        check(
            &Preset::Slack,
            &no_ts,
            SLACK_BODY,
            &[SLACK_SECRET],
            SLACK_TS
        ),
        Err(VerifyError::MissingHeader(
            "x-slack-request-timestamp".into()
        ))
    );
}

// ---- Standard Webhooks -----------------------------------------------------------

const SW_SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: i64 = 1_614_265_330;
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn sw_headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
    headers(&[
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", sig),
    ])
}

#[test]
fn standard_webhooks_published_vector() {
    let h = sw_headers(SW_ID, "1614265330", SW_SIG);
    let sw = Preset::StandardWebhooks;
    assert_eq!(check(&sw, &h, SW_BODY, &[SW_SECRET], SW_TS), Ok(()));
    // Among other versions and a wrong v1, as the reference tests do.
    let many = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc {SW_SIG}");
    let h = sw_headers(SW_ID, "1614265330", &many);
    assert_eq!(check(&sw, &h, SW_BODY, &[SW_SECRET], SW_TS), Ok(()));
}

#[test]
fn standard_webhooks_failures() {
    let sw = Preset::StandardWebhooks;
    let h = sw_headers(SW_ID, "1614265330", SW_SIG);
    // The reference tests' one-character-off signature.
    let off = sw_headers(
        SW_ID,
        "1614265330",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
    );
    assert!(matches!(
        check(&sw, &off, SW_BODY, &[SW_SECRET], SW_TS),
        Err(VerifyError::SignatureMismatch { .. })
    ));
    // Another id is another signed message.
    let other_id = sw_headers("msg_other", "1614265330", SW_SIG);
    assert!(matches!(
        check(&sw, &other_id, SW_BODY, &[SW_SECRET], SW_TS),
        Err(VerifyError::SignatureMismatch { .. })
    ));
    assert!(matches!(
        check(&sw, &h, SW_BODY, &[SW_SECRET], SW_TS + 301),
        Err(VerifyError::TimestampOutOfTolerance { age_secs: 301, .. })
    ));
    assert!(matches!(
        check(&sw, &h, SW_BODY, &[SW_SECRET], SW_TS - 301),
        Err(VerifyError::TimestampOutOfTolerance { age_secs: -301, .. })
    ));
    let bad_ts = sw_headers(SW_ID, "hello", SW_SIG);
    assert!(matches!(
        check(&sw, &bad_ts, SW_BODY, &[SW_SECRET], SW_TS),
        Err(VerifyError::MalformedHeader { .. })
    ));
    let only_v2 = sw_headers(SW_ID, "1614265330", "v2,abc");
    assert!(matches!(
        check(&sw, &only_v2, SW_BODY, &[SW_SECRET], SW_TS),
        Err(VerifyError::MalformedHeader { .. })
    ));
    let no_id = headers(&[
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", SW_SIG),
    ]);
    assert_eq!(
        check(&sw, &no_id, SW_BODY, &[SW_SECRET], SW_TS),
        Err(VerifyError::MissingHeader("webhook-id".into()))
    );
    // The secret without `whsec_` is a raw key in hookyard, so it differs.
    assert!(matches!(
        check(&sw, &h, SW_BODY, &[&SW_SECRET[6..]], SW_TS),
        Err(VerifyError::SignatureMismatch { .. })
    ));
}

#[test]
fn tolerance_is_configurable() {
    let rule = SignatureRule {
        preset: Preset::StandardWebhooks,
        secrets: vec![SW_SECRET.to_vec()],
        tolerance: Duration::from_secs(3600),
        timestamp: None,
    };
    let h = sw_headers(SW_ID, "1614265330", SW_SIG);
    assert_eq!(rule.verify(&h, SW_BODY, at(SW_TS + 3000)), Ok(()));
    assert!(rule.verify(&h, SW_BODY, at(SW_TS + 3601)).is_err());
}

#[test]
fn preset_names_round_trip() {
    for name in Preset::NAMES {
        assert_eq!(Preset::from_name(name).unwrap().name(), name);
    }
    assert_eq!(Preset::from_name("sha1"), None);
    assert!(Preset::Stripe.is_timestamped());
    assert!(!Preset::Github.is_timestamped());
}

// ---- never panic on hostile input ---------------------------------------------------

fn all_presets() -> Vec<Preset> {
    let mut presets: Vec<Preset> = Preset::NAMES
        .iter()
        .filter_map(|n| Preset::from_name(n))
        .collect();
    presets.push(generic("x-sig", Encoding::Base64, Some("sha256=")));
    // With a key, so hostile headers reach the Ed25519 decoding.
    presets.push(Preset::Ed25519 {
        header: HeaderName::from_static("webhook-signature"),
        encoding: Encoding::Base64,
        key: Some(ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key()),
    });
    presets
}

const HEADER_NAMES: [&str; 9] = [
    "x-hmac-signature",
    "x-hub-signature-256",
    "x-shopify-hmac-sha256",
    "stripe-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

proptest! {
    #[test]
    fn random_headers_and_bodies_never_panic_or_pass(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), HEADER_NAMES.len()),
        texts in proptest::collection::vec("(t=|v1=|v0=|v1,|sha256=|[0-9a-f]{0,70}|[ ,=]|[A-Za-z0-9+/=]{0,50})*", HEADER_NAMES.len()),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        now in any::<i64>(),
        use_text in any::<bool>(),
    ) {
        let mut map = HeaderMap::new();
        for (i, name) in HEADER_NAMES.iter().enumerate() {
            let value = if use_text {
                HeaderValue::from_str(&texts[i]).ok()
            } else {
                HeaderValue::from_bytes(&values[i]).ok()
            };
            if let Some(value) = value {
                map.insert(*name, value);
            }
        }
        let now = Timestamp::from_second(now.clamp(-377_705_116_800, 253_402_207_199))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        for preset in all_presets() {
            let result = verify_signature(&preset, &map, &body, &[b"k".to_vec()], DEFAULT_TOLERANCE, now);
            // Random input forging an HMAC would be a broken HMAC.
            prop_assert!(result.is_err());
        }
    }
}
