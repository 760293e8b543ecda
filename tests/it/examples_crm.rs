//! `examples/crm-platform` (SPEC §14): every sample body of the CRM platform
//! (HighLevel) goes through `hookyard render` on the real binary and through
//! a running daemon, signed with `X-GHL-Signature` as the platform signs it;
//! each comes out as the catalog event of `examples/crm-events` with its key
//! fields mapped.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ed25519_dalek::{Signer as _, SigningKey};
use hookyard::model::mac::base64_encode;
use serde_json::{Value, json};

use crate::admin_support::{authed, tokens_yaml};
use crate::support::{http, start_daemon_with_env};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/crm-platform")
}

/// The platform's key in these tests.
fn signer() -> SigningKey {
    SigningKey::from_bytes(&[41; 32])
}

fn env() -> HashMap<String, String> {
    HashMap::from([
        (
            "CRM_PUBLIC_KEY".to_owned(),
            base64_encode(signer().verifying_key().as_bytes()),
        ),
        ("APP_TOKEN".to_owned(), "app-token-value".to_owned()),
        (
            "DASHBOARD_SIGNING_SECRET".to_owned(),
            "dash-secret".to_owned(),
        ),
    ])
}

/// A sample file, the catalog event it maps to, and fields of the mapped data.
type Expectation = (&'static str, &'static str, Vec<(&'static str, Value)>);

fn expectations() -> Vec<Expectation> {
    vec![
        (
            "contact-create.json",
            "contact.created",
            vec![
                ("/contact/id", json!("Ct4pW8sLq2Nd6Yh3Jm0a")),
                ("/contact/email", json!("ada@example.com")),
                ("/contact/full_name", json!("Ada Lovelace")),
            ],
        ),
        (
            "contact-update.json",
            "contact.updated",
            vec![
                ("/contact/id", json!("Ct4pW8sLq2Nd6Yh3Jm0a")),
                ("/contact/email", json!("ada.king@example.com")),
                ("/contact/full_name", json!("Ada King")),
            ],
        ),
        (
            "contact-delete.json",
            "contact.deleted",
            vec![("/contact/id", json!("Ct9Vn3Kd7Rb1Ls5Hq8Ty"))],
        ),
        (
            "opportunity-stage-update.json",
            "opportunity.stage_changed",
            vec![
                ("/opportunity/id", json!("Op6Zt2Wq9Lm4Rc8Kd1Hs")),
                (
                    "/opportunity/stage",
                    json!("0c6f2d8e-7a41-4b9c-b3e5-91d2f4a8c610"),
                ),
                ("/opportunity/value", json!(4200)),
                ("/contact/id", json!("Ct4pW8sLq2Nd6Yh3Jm0a")),
            ],
        ),
        (
            "appointment-create.json",
            "appointment.booked",
            vec![
                ("/appointment/id", json!("Ap5Qs8Lx2Vm6Tn1Rb9Wc")),
                ("/appointment/status", json!("confirmed")),
                (
                    "/appointment/start_time",
                    json!("2025-03-12T15:00:00+00:00"),
                ),
            ],
        ),
        (
            "appointment-delete.json",
            "appointment.cancelled",
            vec![
                ("/appointment/id", json!("Ap5Qs8Lx2Vm6Tn1Rb9Wc")),
                ("/appointment/status", json!("cancelled")),
            ],
        ),
        (
            "order-create.json",
            "payment.received",
            vec![
                ("/payment/id", json!("67c9a1f2b3d4e5f601a2b3c4")),
                ("/payment/amount", json!(99.5)),
                ("/payment/currency", json!("USD")),
            ],
        ),
        (
            "inbound-message.json",
            "conversation.message_received",
            vec![
                ("/message/conversation_id", json!("Cv7Lr3Wb9Tk1Hs5Qm2Nd")),
                ("/message/channel", json!("SMS")),
                ("/message/body", json!("Can we move the demo to Thursday?")),
                ("/contact/id", json!("Ct4pW8sLq2Nd6Yh3Jm0a")),
            ],
        ),
    ]
}

fn check(sample: &str, data: &Value, fields: &[(&str, Value)]) {
    for (pointer, want) in fields {
        assert_eq!(
            data.pointer(pointer),
            Some(want),
            "{sample}: {pointer} in {data}"
        );
    }
}

#[test]
fn every_sample_is_covered() {
    let mut files: Vec<String> = std::fs::read_dir(example().join("samples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut covered: Vec<String> = expectations()
        .iter()
        .map(|(f, _, _)| (*f).to_owned())
        .collect();
    covered.sort();
    assert_eq!(files, covered);
}

#[test]
fn render_maps_every_sample_onto_the_catalog() {
    for (sample, event_type, fields) in expectations() {
        let work = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .current_dir(work.path())
            .env_clear()
            .envs(env())
            .arg("render")
            .arg("-c")
            .arg(example())
            .args(["--trigger", "crm", "--body"])
            .arg(example().join("samples").join(sample))
            .args(["--header", "Content-Type: application/json"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{sample}: {stdout}\n{stderr}");
        let start = stdout.find("event:\n").unwrap() + "event:\n".len();
        let end = stdout.find("\n\nmatches:").unwrap();
        let event: Value = serde_json::from_str(&stdout[start..end]).unwrap();
        assert_eq!(event["type"], event_type, "{sample}: {event}");
        assert_eq!(event["source"], "trigger:crm", "{sample}");
        check(sample, &event["data"], &fields);
    }
}

#[tokio::test]
async fn a_daemon_takes_every_signed_sample() {
    let config = std::fs::read_to_string(example().join("hookyard.yaml")).unwrap();
    // The example's own config, with this test's queue and API tokens.
    let secrets = tempfile::tempdir().unwrap();
    let mut yaml: String = config
        .lines()
        .filter(|l| !l.starts_with("queue:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let tokens = tokens_yaml(secrets.path());
    // Merge the token secrets and tokens into the example's sections.
    let (tok_secrets, tok_tokens) = tokens.split_once("tokens:\n").unwrap();
    let tok_secrets = tok_secrets.trim_start_matches("secrets:\n");
    yaml = yaml.replacen("secrets:\n", &format!("secrets:\n{tok_secrets}"), 1);
    yaml = yaml.replacen("tokens:\n", &format!("tokens:\n{tok_tokens}"), 1);
    let d = start_daemon_with_env(&yaml, env()).await;

    for (sample, event_type, fields) in expectations() {
        let text = std::fs::read_to_string(example().join("samples").join(sample)).unwrap();
        let mut body: Value = serde_json::from_str(&text).unwrap();
        // The platform stamps each delivery; the preset takes 5 minutes.
        body["timestamp"] = json!(jiff::Timestamp::now().to_string());
        let raw = serde_json::to_vec(&body).unwrap();
        let signature = base64_encode(&signer().sign(&raw).to_bytes());

        let r = http()
            .post(d.url("/hooks/crm"))
            .header("content-type", "application/json")
            .header("X-GHL-Signature", &signature)
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let ack: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null);
        assert_eq!(status, 202, "{sample}: {ack}");
        let id = ack["event_id"].as_str().unwrap().to_owned();

        let r = authed(
            http().get(d.url(&format!("/v1/events/{id}"))),
            &crate::admin_support::token("history_reader"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{sample}");
        let got: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(got["event"]["type"], event_type, "{sample}: {got}");
        check(sample, &got["event"]["data"], &fields);

        // Signed with another key: refused.
        let other = SigningKey::from_bytes(&[42; 32]).sign(&raw).to_bytes();
        let r = http()
            .post(d.url("/hooks/crm"))
            .header("content-type", "application/json")
            .header("X-GHL-Signature", base64_encode(&other))
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{sample}");
    }
    d.stop().await;
}
