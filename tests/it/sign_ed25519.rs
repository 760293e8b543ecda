//! Standard Webhooks `v1a` (Ed25519) outbound signing, checked by an
//! independent implementation: a real daemon delivers to a loopback
//! receiver, `hookyard keys public` prints the `whpk_` key, and Python
//! `cryptography` (tests/fixtures/verify_v1a.py) verifies the received
//! signature with it. Under CI=true a missing Python package fails the test
//! (`.ci/run` installs it); elsewhere the Python half is skipped with a note.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hookyard::config::{self, LoadOptions};
use hookyard::model::mac::base64_encode;

use crate::support::{Receiver, http, start_daemon_with_env};

const T: Duration = Duration::from_secs(15);
const VAR: &str = "HOOKYARD_TEST_WHSK";

/// A `whsk_` secret: base64 of a 32-byte seed.
fn whsk(seed: u8) -> String {
    format!("whsk_{}", base64_encode(&[seed; 32]))
}

fn hookyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookyard"))
}

/// True when `python3` can import `cryptography`. Under CI=true a missing
/// package is a failure, not a skip.
fn python_has_cryptography() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "python3 with the `cryptography` package is needed to verify v1a signatures \
             independently: `python3 -m pip install cryptography` (.ci/run does this)"
        );
    }
    if !ok {
        eprintln!("note: python3 `cryptography` missing; skipping the independent v1a check");
    }
    ok
}

/// Run tests/fixtures/verify_v1a.py; true when it verified.
fn python_verifies(public: &str, id: &str, ts: &str, header: &str, body: &Path) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/verify_v1a.py");
    let out = Command::new("python3")
        .arg(script)
        .args([public, id, ts, header])
        .arg(body)
        .output()
        .unwrap();
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "verify_v1a.py failed to run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    code == Some(0)
}

/// `hookyard keys public` on `config` for secret `name`, with the secret's
/// variable set: (exit code, stdout, stderr).
fn keys_public(config: &Path, name: &str, value: &str) -> (Option<i32>, String, String) {
    let out = hookyard()
        .args(["keys", "public", "-c"])
        .arg(config)
        .args(["--secret", name])
        .env(VAR, value)
        .env("HOOKYARD_TEST_WHSEC", "whsec_aGk=")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn v1a_signature_from_a_real_daemon_verifies_in_python_with_the_printed_key() {
    let rx = Receiver::start().await;
    let secret = whsk(42);
    let yaml = format!(
        "secrets:\n  ed: {{ env: {VAR} }}\n  mac: {{ env: HOOKYARD_TEST_WHSEC }}\n\
         triggers:\n  - {{ id: t, verify: none, event: t.e }}\n\
         subscriptions:\n  - id: s\n    url: \"{}\"\n    events: [\"t.e\"]\n    \
         signing: {{ scheme: standard-webhooks, secret: ed }}\n",
        rx.url("/in")
    );
    let env = HashMap::from([
        (VAR.to_owned(), secret.clone()),
        ("HOOKYARD_TEST_WHSEC".to_owned(), "whsec_aGk=".to_owned()),
    ]);
    let d = start_daemon_with_env(&yaml, env).await;
    let sent = http()
        .post(d.url("/hooks/t"))
        .header("content-type", "application/json")
        .body(r#"{"order":{"id":7,"note":"caf\u00e9"}}"#)
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "{}", sent.status());
    let got = rx.wait_for(1, T).await;
    let r = &got[0];
    let id = r.header("webhook-id").unwrap().to_owned();
    let ts = r.header("webhook-timestamp").unwrap().to_owned();
    let sig = r.header("webhook-signature").unwrap().to_owned();
    assert!(sig.starts_with("v1a,") && !sig.contains(' '), "{sig}");

    let config = d.dir.path().join("hookyard.yaml");
    let (code, public, stderr) = keys_public(&config, "ed", &secret);
    assert_eq!(code, Some(0), "{stderr}");
    let public = public.trim().to_owned();
    assert!(public.starts_with("whpk_"), "{public}");
    assert!(
        !public.contains(&secret["whsk_".len()..]),
        "printed the seed"
    );

    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, &r.body).unwrap();
    let tampered = dir.path().join("tampered");
    let mut bytes = r.body.to_vec();
    bytes.push(b' ');
    std::fs::write(&tampered, &bytes).unwrap();
    if python_has_cryptography() {
        assert!(python_verifies(&public, &id, &ts, &sig, &body));
        assert!(!python_verifies(&public, &id, &ts, &sig, &tampered));
        let later = (ts.parse::<i64>().unwrap() + 1).to_string();
        assert!(!python_verifies(&public, &id, &later, &sig, &body));
        // A key printed for another secret does not verify.
        let (_, other, _) = keys_public(&config, "ed", &whsk(43));
        assert!(!python_verifies(other.trim(), &id, &ts, &sig, &body));
    }
    d.stop().await;
}

#[test]
fn keys_public_refuses_hmac_secrets_and_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!("secrets:\n  ed: {{ env: {VAR} }}\n  mac: {{ env: HOOKYARD_TEST_WHSEC }}\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = keys_public(&config, "mac", &whsk(1));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("`mac`") && stderr.contains("whsk_"),
        "{stderr}"
    );
    assert!(!stderr.contains("aGk="), "{stderr}");
    let (code, _, stderr) = keys_public(&config, "nope", &whsk(1));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("ed, mac"), "{stderr}");
    // A `whsk_` value that is not 32 bytes, even unused by signing.
    let (code, stdout, stderr) = keys_public(&config, "ed", "whsk_aGk=");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty() && !stderr.contains("aGk="), "{stderr}");
}

#[test]
fn a_broken_whsk_signing_secret_is_a_config_error_at_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let text = format!(
        "secrets: {{ ed: {{ env: {VAR} }} }}\n\
         subscriptions:\n  - id: s\n    url: \"http://127.0.0.1:9/\"\n    events: [\"*\"]\n    \
         signing: {{ scheme: standard-webhooks, secret: [ed] }}\n"
    );
    std::fs::write(&path, text).unwrap();
    let broken = format!("whsk_{}", base64_encode(&[9u8; 31]));
    let opts = |value: &str| LoadOptions {
        no_env: false,
        env: Some(HashMap::from([(VAR.to_owned(), value.to_owned())])),
    };
    let errs = config::load(&path, opts(&broken)).unwrap_err();
    assert_eq!(errs.errors.len(), 1, "{errs}");
    let e = &errs.errors[0];
    // The name `ed` in `signing: { scheme: standard-webhooks, secret: [ed] }`.
    assert_eq!((e.pos.line, e.pos.col), (6, 52), "{errs}");
    assert!(
        e.message.contains("`ed`") && e.message.contains("32 bytes"),
        "{errs}"
    );
    assert!(!e.message.contains(&broken[5..]), "{errs}");
    // The same config with a good key loads, and so does hmac-sha256 with
    // the broken text (raw bytes there).
    assert!(config::load(&path, opts(&whsk(3))).is_ok());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("standard-webhooks", "hmac-sha256")).unwrap();
    assert!(config::load(&path, opts(&broken)).is_ok());
}
