//! The `ed25519` inbound signature preset (SPEC §14): a trigger checks an
//! Ed25519 signature of the raw body with an inline public key (PEM or
//! base64); a real daemon accepts what the matching private key signed and
//! refuses anything else. Config mistakes are errors with positions.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;

use ed25519_dalek::pkcs8::EncodePublicKey as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::{Signer as _, SigningKey};
use hookyard::config::{self, LoadOptions};
use hookyard::model::mac::base64_encode;

use crate::support::{http, start_daemon};

fn signer() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

/// The key as PEM, indented for a YAML block scalar under `public_key: |`.
fn pem_block(key: &SigningKey, indent: &str) -> String {
    let pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    pem.lines().map(|l| format!("{indent}{l}\n")).collect()
}

#[tokio::test]
async fn a_daemon_accepts_what_the_key_signed_and_refuses_the_rest() {
    let key = signer();
    let yaml = format!(
        "triggers:\n  - id: crm\n    event: crm.e\n    verify:\n      signature:\n        \
         preset: ed25519\n        header: X-Signature\n        public_key: |\n{}\
         \n  - id: raw\n    event: crm.e\n    verify:\n      signature: {{ preset: ed25519, \
         header: X-Sig, encoding: hex, public_key: \"{}\" }}\n",
        pem_block(&key, "          "),
        base64_encode(key.verifying_key().as_bytes()),
    );
    let d = start_daemon(&yaml).await;
    let body = br#"{"type":"ContactCreate","id":"c1"}"#;
    let sig = key.sign(body).to_bytes();
    let post = |path: &'static str, header: &'static str, value: String, body: &'static [u8]| {
        http()
            .post(d.url(path))
            .header("content-type", "application/json")
            .header(header, value)
            .body(body)
            .send()
    };
    let ok = post("/hooks/crm", "X-Signature", base64_encode(&sig), body)
        .await
        .unwrap();
    assert_eq!(ok.status(), 202, "{}", ok.text().await.unwrap());
    let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    let ok = post("/hooks/raw", "X-Sig", hex, body).await.unwrap();
    assert_eq!(ok.status(), 202);
    // The same signature over another body, another key's signature, junk.
    let tampered = br#"{"type":"ContactCreate","id":"c2"}"#;
    let other = SigningKey::from_bytes(&[12; 32]).sign(body).to_bytes();
    for (value, body) in [
        (base64_encode(&sig), &tampered[..]),
        (base64_encode(&other), &body[..]),
        ("junk".to_owned(), &body[..]),
    ] {
        let r = post("/hooks/crm", "X-Signature", value, body)
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = http()
        .post(d.url("/hooks/crm"))
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    d.stop().await;
}

/// Every error of loading `text`, as `line:col: message`.
pub fn errors(text: &str) -> Vec<String> {
    errors_with(text, "shh")
}

/// The load errors of `text` with the secret `s` holding `s_value`.
fn errors_with(text: &str, s_value: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, text).unwrap();
    let opts = LoadOptions {
        no_env: false,
        env: Some(HashMap::from([("S".to_owned(), s_value.to_owned())])),
    };
    match config::load(&path, opts) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .errors
            .iter()
            .map(|e| format!("{}:{}: {}", e.pos.line, e.pos.col, e.message))
            .collect(),
    }
}

/// A config with one trigger whose `verify.signature` is `signature`, and
/// the secret `s` (env `S`).
pub fn trigger(signature: &str) -> String {
    format!(
        "secrets: {{ s: {{ env: S }} }}\ntriggers:\n  - id: t\n    event: t.e\n    \
         verify:\n      signature: {signature}\n"
    )
}

#[test]
fn config_mistakes_are_errors_with_positions() {
    let good = base64_encode(signer().verifying_key().as_bytes());
    let ok = format!("{{ preset: ed25519, header: X-Sig, public_key: \"whpk_{good}\" }}");
    assert_eq!(errors(&trigger(&ok)), Vec::<String>::new());

    let bad_key = errors(&trigger(
        "{ preset: ed25519, header: X-Sig, public_key: \"aGk=\" }",
    ));
    assert_eq!(bad_key.len(), 1, "{bad_key:?}");
    assert!(
        bad_key[0].starts_with("6:64: ") && bad_key[0].contains("PEM"),
        "{bad_key:?}"
    );

    // The key may also come from a secret (a file, an env var).
    let from_secret = "{ preset: ed25519, header: X-Sig, public_key: { secret: s } }";
    assert_eq!(
        errors_with(&trigger(from_secret), &format!("whpk_{good}")),
        Vec::<String>::new()
    );
    // `validate --no-env` reads no secret: the key is given, not missing.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, trigger(from_secret)).unwrap();
    let no_env = LoadOptions {
        no_env: true,
        env: None,
    };
    assert!(config::load(&path, no_env).is_ok());
    let not_a_key = errors(&trigger(from_secret));
    assert!(
        not_a_key.len() == 1 && not_a_key[0].starts_with("6:64: "),
        "{not_a_key:?}"
    );

    let no_key = errors(&trigger("{ preset: ed25519, header: X-Sig }"));
    assert!(
        no_key.iter().any(|e| e.contains("needs `public_key`")),
        "{no_key:?}"
    );
    let no_header = errors(&trigger(&format!(
        "{{ preset: ed25519, public_key: \"{good}\" }}"
    )));
    assert!(
        no_header.iter().any(|e| e.contains("needs `header`")),
        "{no_header:?}"
    );
    let with_secret = errors(&trigger(&format!(
        "{{ preset: ed25519, header: X-Sig, secret: s, public_key: \"{good}\" }}"
    )));
    assert!(
        with_secret.iter().any(|e| e.contains("not `secret`")),
        "{with_secret:?}"
    );
    // HMAC presets still need a secret and take no public key.
    let hmac_no_secret = errors(&trigger("{ preset: github }"));
    assert!(
        hmac_no_secret.iter().any(|e| e.contains("needs `secret`")),
        "{hmac_no_secret:?}"
    );
    let hmac_key = errors(&trigger(&format!(
        "{{ preset: github, secret: s, public_key: \"{good}\" }}"
    )));
    assert!(
        hmac_key
            .iter()
            .any(|e| e.contains("only applies to `preset: ed25519`")),
        "{hmac_key:?}"
    );
}
