//! `hookyard render --trigger ID --body FILE [--header K:V]…` on the real
//! binary and the shipped quickstart: the request goes through the
//! trigger's mapping, the router picks the targets, each request is printed,
//! nothing is sent and no queue is opened.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart")
}

/// Run `hookyard render` on the quickstart from an empty working directory
/// with `body` in a file; returns the output and the working directory.
fn render(body: &str, extra: &[&str]) -> (Output, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let body_path = files.path().join("body.json");
    std::fs::write(&body_path, body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .current_dir(work.path())
        .arg("render")
        .arg("-c")
        .arg(quickstart())
        .args(["--trigger", "shop-order", "--body"])
        .arg(&body_path)
        .args(extra)
        .output()
        .unwrap();
    (out, work)
}

const BIG_ORDER: &str = r#"{"id": 1001, "total_price": "250.00",
  "customer": {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"}}"#;

#[test]
fn render_trigger_prints_event_matches_and_requests() {
    let (out, work) = render(
        BIG_ORDER,
        &[
            "--header",
            "Content-Type: application/json",
            "--header",
            "X-Shopify-Shop-Domain: shop.example",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Signatures are not checked, and render says so.
    assert!(
        stdout.contains("does not check the trigger's `verify:`"),
        "{stdout}"
    );
    // The mapped event, with the mapping's JSON types.
    let start = stdout.find("event:\n").unwrap() + "event:\n".len();
    let end = stdout.find("\n\nmatches:").unwrap();
    let event: serde_json::Value = serde_json::from_str(&stdout[start..end]).unwrap();
    assert_eq!(event["type"], "order.created");
    assert_eq!(event["source"], "trigger:shop-order");
    assert_eq!(
        event["data"],
        serde_json::json!({
            "order": {"id": 1001, "total": 250.0},
            "contact": {"email": "ada@example.com", "full_name": "Ada Lovelace"},
        })
    );
    // The router's matches and each request.
    assert!(
        stdout.contains("matches:\n  workflow big-orders\n  subscription local-receiver\n"),
        "{stdout}"
    );
    assert!(stdout.contains("--- workflow/big-orders/notify-sales (step 1 of 1)\nPOST http://127.0.0.1:9000/sales/1001\n"), "{stdout}");
    assert!(
        stdout.contains(r#"{"email":"ada@example.com","name":"Ada Lovelace","total":250.0}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("--- subscription/local-receiver\nPOST http://127.0.0.1:9000/webhooks\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("X-Hookyard-Event-Type: order.created"),
        "{stdout}"
    );
    assert!(stdout.contains("API-created subscriptions"), "{stdout}");
    assert!(stdout.ends_with("(nothing was sent)\n"), "{stdout}");
    // No queue was opened: the quickstart's `./hookyard-data` was not created.
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}

#[test]
fn render_trigger_shows_a_false_condition_and_a_refusal() {
    // A small order: the workflow's `if` is false; the subscription matches.
    let (out, _work) = render(
        r#"{"id": 7, "total_price": 5, "customer": {"email": "b@example.com"}}"#,
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("matches:\n  subscription local-receiver\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("their `if` is false (or fails to evaluate):\n  workflow big-orders\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("--- workflow/"), "{stdout}");

    // `total_price` is required: the trigger would answer 422.
    let (out, _work) = render(r#"{"id": 8}"#, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("HTTP 422"), "{stderr}");
    assert!(
        stderr.contains("required field `order.total` is missing"),
        "{stderr}"
    );

    // An unknown trigger names the configured ones.
    let out = Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .arg("render")
        .arg("-c")
        .arg(quickstart())
        .args(["--trigger", "nope", "--body", "/dev/null"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("shop-order"), "{stderr}");
}

/// `hookyard render` of a contact.created event against one subscription
/// whose `auth` is `auth` and whose secret `name` is `value` (from the
/// environment variable `HY_T_SECRET`); its stdout, once it succeeded.
fn render_with_auth(auth: &str, name: &str, value: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookyard.yaml");
    std::fs::write(
        &config,
        format!(
            "secrets: {{ {name}: {{ env: HY_T_SECRET }} }}\n\
             subscriptions:\n  - id: s\n    url: \"https://crm.example/hook\"\n    \
             events: [\"*\"]\n    auth: {auth}\n"
        ),
    )
    .unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(&event, r#"{"type": "contact.created", "data": {}}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .current_dir(dir.path())
        .env("HY_T_SECRET", value)
        .arg("render")
        .arg("-c")
        .arg(&config)
        .arg("--event")
        .arg(&event)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

/// SPEC §14: an `oauth2` target's preview says where its token comes from.
#[test]
fn render_says_where_an_oauth2_token_comes_from() {
    let stdout = render_with_auth(
        "{ oauth2: { token_url: \"https://auth.example/token\", client_id: hy, client_secret: cs } }",
        "cs",
        "render-client-secret",
    );
    assert!(
        stdout.contains(
            "Authorization: Bearer [OAuth2 token from https://auth.example/token, fetched when the request is sent]"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("render-client-secret"), "{stdout}");
}

/// SPEC §14: a target's `auth: { basic }` is in the preview, redacted.
#[test]
fn render_shows_outbound_basic_auth_redacted() {
    let stdout = render_with_auth(
        "{ basic: { user: hookyard, password: crm_pw } }",
        "crm_pw",
        "render-password-value",
    );
    assert!(stdout.contains("Authorization: [redacted]"), "{stdout}");
    let encoded = hookyard::model::mac::base64_encode(b"hookyard:render-password-value");
    assert!(!stdout.contains(&encoded), "{stdout}");
    assert!(!stdout.contains("render-password-value"), "{stdout}");
}
