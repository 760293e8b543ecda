//! The public-key presets `rsa-sha256` and `highlevel` (SPEC §14) against a
//! real daemon: what the right key signed is accepted, anything else is 401;
//! `highlevel` also refuses a stale body `timestamp`, takes the legacy
//! `X-WH-Signature` only with `legacy: true`, and deduplicates on
//! `$.webhookId`. RSA signatures come from the committed test key pair
//! (tests/fixtures/RSA-TEST-KEYS.md) through `openssl dgst -sha256 -sign`.
//! Config mistakes are errors with positions.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use crate::inbound_ed25519::{errors, trigger};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use ed25519_dalek::{Signer as _, SigningKey};
use hookyard::config::{self, LoadOptions};
use hookyard::model::mac::{base64_decode, base64_encode};
use serde_json::Value;

use crate::support::{TestDaemon, http, start_daemon_with_env};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Base64 RSA-SHA256 (PKCS#1 v1.5) signature of `body` with the test key.
fn rsa_sign(body: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, body).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(fixture("rsa-test-private.pem"))
        .arg(&file)
        .output()
        .expect("openssl on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    base64_encode(&out.stdout)
}

fn ghl_signer() -> SigningKey {
    SigningKey::from_bytes(&[31; 32])
}

/// A HighLevel-shaped body signed `age_secs` ago.
fn body(webhook_id: &str, age_secs: i64) -> Vec<u8> {
    let at = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(age_secs))
        .unwrap();
    format!(
        r#"{{"type":"ContactCreate","locationId":"loc-1","id":"c-1","timestamp":"{at}","webhookId":"{webhook_id}"}}"#
    )
    .into_bytes()
}

/// The test RSA public key PEM, indented for a YAML block scalar.
fn rsa_pem_block(indent: &str) -> String {
    let pem = std::fs::read_to_string(fixture("rsa-test-public.pem")).unwrap();
    pem.lines().map(|l| format!("{indent}{l}\n")).collect()
}

async fn post(d: &TestDaemon, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let mut req = http()
        .post(d.url(path))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn highlevel_and_rsa_triggers_on_a_real_daemon() {
    let ghl_key = base64_encode(ghl_signer().verifying_key().as_bytes());
    let yaml = format!(
        "triggers:\n\
         \x20 - id: ghl\n    event: crm.e\n    verify:\n      signature: {{ preset: highlevel, public_key: \"${{GHL_PUBLIC_KEY}}\" }}\n\
         \x20 - id: ghl-legacy\n    event: crm.e\n    verify:\n      signature:\n        preset: highlevel\n        \
         public_key: \"${{GHL_PUBLIC_KEY}}\"\n        legacy: true\n        legacy_public_key: |\n{pem}\
         \x20 - id: rsa\n    event: crm.e\n    verify:\n      signature:\n        preset: rsa-sha256\n        \
         header: X-Sig-Rsa\n        public_key: |\n{pem}",
        pem = rsa_pem_block("          "),
    );
    let env = HashMap::from([("GHL_PUBLIC_KEY".to_owned(), ghl_key)]);
    let d = start_daemon_with_env(&yaml, env).await;
    let ghl = |b: &[u8]| {
        (
            "X-GHL-Signature",
            base64_encode(&ghl_signer().sign(b).to_bytes()),
        )
    };

    // Valid → 202; the same webhookId again is a duplicate.
    let b = body("wh-1", 0);
    let (status, ack) = post(&d, "/hooks/ghl", &[ghl(&b)], &b).await;
    assert_eq!(status, 202, "{ack}");
    assert_eq!(ack["duplicate"], false, "{ack}");
    let (status, again) = post(&d, "/hooks/ghl", &[ghl(&b)], &b).await;
    assert!(status == 200 || status == 202, "{status} {again}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["event_id"], ack["event_id"], "{again}");

    // Bad signature: another key's, or over another body → 401.
    let other = SigningKey::from_bytes(&[32; 32]).sign(&b).to_bytes();
    let (status, _) = post(
        &d,
        "/hooks/ghl",
        &[("X-GHL-Signature", base64_encode(&other))],
        &b,
    )
    .await;
    assert_eq!(status, 401);
    let b2 = body("wh-2", 0);
    let (status, _) = post(&d, "/hooks/ghl", &[ghl(&b)], &b2).await;
    assert_eq!(status, 401);
    // Correctly signed but 10 minutes old, or 10 minutes ahead → 401.
    for age in [600, -600] {
        let stale = body("wh-3", age);
        let (status, answer) = post(&d, "/hooks/ghl", &[ghl(&stale)], &stale).await;
        assert_eq!(status, 401, "{age}: {answer}");
    }
    // Unsigned → 401.
    let (status, _) = post(&d, "/hooks/ghl", &[], &b2).await;
    assert_eq!(status, 401);

    // The legacy RSA header: refused without `legacy: true`, taken with it.
    let b4 = body("wh-4", 0);
    let legacy = ("X-WH-Signature", rsa_sign(&b4));
    let (status, _) = post(&d, "/hooks/ghl", std::slice::from_ref(&legacy), &b4).await;
    assert_eq!(status, 401);
    let (status, ack) = post(&d, "/hooks/ghl-legacy", std::slice::from_ref(&legacy), &b4).await;
    assert_eq!(status, 202, "{ack}");
    let b5 = body("wh-5", 0);
    let (status, _) = post(&d, "/hooks/ghl-legacy", &[legacy], &b5).await;
    assert_eq!(status, 401);
    // The current header is still accepted on the legacy trigger.
    let (status, ack) = post(&d, "/hooks/ghl-legacy", &[ghl(&b5)], &b5).await;
    assert_eq!(status, 202, "{ack}");

    // rsa-sha256: the key's signature passes, a tampered body does not.
    let b6 = br#"{"type":"ContactCreate","id":"c-6"}"#;
    let sig = rsa_sign(b6);
    assert_eq!(base64_decode(&sig).unwrap().len(), 256);
    let (status, ack) = post(&d, "/hooks/rsa", &[("X-Sig-Rsa", sig.clone())], b6).await;
    assert_eq!(status, 202, "{ack}");
    let (status, _) = post(&d, "/hooks/rsa", &[("X-Sig-Rsa", sig)], b"{}").await;
    assert_eq!(status, 401);
    d.stop().await;
}

#[test]
fn config_mistakes_are_errors_with_positions() {
    let ed = base64_encode(ghl_signer().verifying_key().as_bytes());
    let pem = std::fs::read_to_string(fixture("rsa-test-public.pem")).unwrap();
    let rsa_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let ok = [
        format!("{{ preset: highlevel, public_key: \"{ed}\" }}"),
        format!(
            "{{ preset: highlevel, public_key: \"{ed}\", legacy: true, legacy_public_key: \"{rsa_b64}\" }}"
        ),
        format!(
            "{{ preset: highlevel, public_key: \"{ed}\", legacy: false, legacy_public_key: \"{rsa_b64}\" }}"
        ),
        format!("{{ preset: rsa-sha256, header: X-Sig, public_key: \"{rsa_b64}\" }}"),
        format!(
            "{{ preset: rsa-sha256, header: X-Sig, encoding: hex, public_key: \"{rsa_b64}\" }}"
        ),
    ];
    for sig in ok {
        assert_eq!(errors(&trigger(&sig)), Vec::<String>::new(), "{sig}");
    }
    let has = |sig: String, want: &str| {
        let errs = errors(&trigger(&sig));
        assert!(errs.iter().any(|e| e.contains(want)), "{sig}: {errs:?}");
        errs
    };
    // An Ed25519 key where RSA is wanted: the error points at the key.
    let errs = has(
        format!("{{ preset: rsa-sha256, header: X-Sig, public_key: \"{ed}\" }}"),
        "not an RSA public key",
    );
    assert!(errs[0].starts_with("6:67: "), "{errs:?}");
    has(
        format!("{{ preset: rsa-sha256, public_key: \"{rsa_b64}\" }}"),
        "needs `header`",
    );
    has(
        "{ preset: rsa-sha256, header: X-Sig }".to_owned(),
        "needs `public_key`",
    );
    has(
        format!("{{ preset: rsa-sha256, header: X-Sig, secret: s, public_key: \"{rsa_b64}\" }}"),
        "not `secret`",
    );
    // HighLevel: key required, fixed header, legacy needs its key.
    has("{ preset: highlevel }".to_owned(), "needs `public_key`");
    has(
        format!("{{ preset: highlevel, public_key: \"{rsa_b64}\" }}"),
        "not an Ed25519 public key",
    );
    has(
        format!("{{ preset: highlevel, header: X-Other, public_key: \"{ed}\" }}"),
        "fixes them",
    );
    let errs = has(
        format!("{{ preset: highlevel, public_key: \"{ed}\", legacy: true }}"),
        "needs `legacy_public_key`",
    );
    assert!(errs[0].starts_with("6:"), "{errs:?}");
    has(
        format!(
            "{{ preset: highlevel, public_key: \"{ed}\", legacy: true, legacy_public_key: \"{ed}\" }}"
        ),
        "`legacy_public_key`: not an RSA public key",
    );
    has(
        format!("{{ preset: ed25519, header: X-Sig, public_key: \"{ed}\", legacy: true }}"),
        "`legacy` only applies to `preset: highlevel`",
    );
    has(
        "{ preset: github, secret: s, legacy_public_key: \"x\" }".to_owned(),
        "only applies to `preset: highlevel`",
    );
}

#[test]
fn highlevel_deduplicates_on_webhook_id_unless_the_trigger_says_otherwise() {
    let ed = base64_encode(ghl_signer().verifying_key().as_bytes());
    let load = |extra: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let text = format!(
            "triggers:\n  - id: t\n    event: t.e\n{extra}    verify:\n      signature: {{ preset: highlevel, public_key: \"{ed}\" }}\n"
        );
        std::fs::write(&path, text).unwrap();
        let cfg = config::load(&path, LoadOptions::default()).unwrap();
        format!("{:?}", cfg.triggers[0].idempotency_key)
    };
    assert!(load("").contains("webhookId"), "{}", load(""));
    let own = load("    idempotency_key: \"header:X-Delivery\"\n");
    assert!(
        own.contains("X-Delivery") && !own.contains("webhookId"),
        "{own}"
    );
}
