//! Inbound verification end to end: every signature preset through a real
//! daemon with a correctly signed request (202), and a wrong secret, a
//! missing header, a tampered body and (timestamped presets) a stale
//! timestamp (401); `ip_allow` with and without trusted proxies (403).

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::inbound::JsonResp;
use crate::support::{TestDaemon, http, start_daemon, start_daemon_with_env};

const SECRET: &str = "s3cret-key";
/// A Standard Webhooks secret: `whsec_` + base64 of the key bytes.
const WHSEC_KEY: &[u8] = b"standard-webhooks-key-bytes";

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Headers a sender using `preset` would send for `body` at unix time `ts`.
fn sign(preset: &str, key: &[u8], body: &[u8], ts: i64) -> Vec<(String, String)> {
    let t = ts.to_string();
    let h = |k: &str, v: String| (k.to_owned(), v);
    match preset {
        "hmac-sha256" => vec![h(
            "x-sig",
            format!("sha256={}", B64.encode(hmac(key, &[body]))),
        )],
        "github" => vec![h(
            "x-hub-signature-256",
            format!("sha256={}", hex(&hmac(key, &[body]))),
        )],
        "shopify" => vec![h("x-shopify-hmac-sha256", B64.encode(hmac(key, &[body])))],
        "stripe" => vec![h(
            "stripe-signature",
            format!("t={t},v1={}", hex(&hmac(key, &[t.as_bytes(), b".", body]))),
        )],
        "slack" => vec![
            h("x-slack-request-timestamp", t.clone()),
            h(
                "x-slack-signature",
                format!(
                    "v0={}",
                    hex(&hmac(key, &[b"v0:", t.as_bytes(), b":", body]))
                ),
            ),
        ],
        "standard-webhooks" => vec![
            h("webhook-id", "msg_1".into()),
            h("webhook-timestamp", t.clone()),
            h(
                "webhook-signature",
                format!(
                    "v1,{}",
                    B64.encode(hmac(key, &[b"msg_1.", t.as_bytes(), b".", body]))
                ),
            ),
        ],
        other => panic!("no preset {other}"),
    }
}

async fn daemon_with_presets() -> TestDaemon {
    let yaml = r#"
secrets:
  plain: { env: PLAIN_SECRET }
  whsec: { env: WHSEC_SECRET }
triggers:
  - { id: hmac-sha256, event: t.e, verify: { signature: { preset: hmac-sha256, secret: plain, header: X-Sig, encoding: base64, prefix: "sha256=" } } }
  - { id: github, event: t.e, verify: { signature: { preset: github, secret: plain } } }
  - { id: shopify, event: t.e, verify: { signature: { preset: shopify, secret: plain } } }
  - { id: stripe, event: t.e, verify: { signature: { preset: stripe, secret: plain } } }
  - { id: slack, event: t.e, verify: { signature: { preset: slack, secret: plain } } }
  - { id: standard-webhooks, event: t.e, verify: { signature: { preset: standard-webhooks, secret: whsec } } }
"#;
    let env = HashMap::from([
        ("PLAIN_SECRET".to_owned(), SECRET.to_owned()),
        (
            "WHSEC_SECRET".to_owned(),
            format!("whsec_{}", B64.encode(WHSEC_KEY)),
        ),
    ]);
    start_daemon_with_env(yaml, env).await
}

async fn post(d: &TestDaemon, trigger: &str, body: &[u8], headers: &[(String, String)]) -> u16 {
    let mut req = http()
        .post(d.url(&format!("/hooks/{trigger}")))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_preset_accepts_good_signatures_and_refuses_bad_ones() {
    let d = daemon_with_presets().await;
    let body = br#"{"id":1,"msg":"hello"}"#;
    let now = jiff::Timestamp::now().as_second();
    for preset in [
        "hmac-sha256",
        "github",
        "shopify",
        "stripe",
        "slack",
        "standard-webhooks",
    ] {
        let key: &[u8] = if preset == "standard-webhooks" {
            WHSEC_KEY
        } else {
            SECRET.as_bytes()
        };
        let good = sign(preset, key, body, now);
        assert_eq!(
            post(&d, preset, body, &good).await,
            202,
            "{preset}: good signature"
        );
        let wrong = sign(preset, b"not-the-secret", body, now);
        assert_eq!(
            post(&d, preset, body, &wrong).await,
            401,
            "{preset}: wrong secret"
        );
        assert_eq!(
            post(&d, preset, body, &[]).await,
            401,
            "{preset}: no headers"
        );
        // Each header alone missing.
        for skip in 0..good.len() {
            let partial: Vec<_> = good
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, h)| h.clone())
                .collect();
            assert_eq!(
                post(&d, preset, body, &partial).await,
                401,
                "{preset}: missing {}",
                good[skip].0
            );
        }
        let tampered = br#"{"id":1,"msg":"hellO"}"#;
        assert_eq!(
            post(&d, preset, tampered, &good).await,
            401,
            "{preset}: tampered body"
        );
        if matches!(preset, "stripe" | "slack" | "standard-webhooks") {
            let stale = sign(preset, key, body, now - 3600);
            assert_eq!(
                post(&d, preset, body, &stale).await,
                401,
                "{preset}: stale timestamp"
            );
        }
    }
    // The error body is the JSON error shape with the signature code.
    let r = http()
        .post(d.url("/hooks/github"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_signature", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-hub-signature-256"),
        "{v}"
    );
    d.stop().await;
}

#[tokio::test]
async fn ip_allow_honours_forwarded_for_only_from_trusted_proxies() {
    let yaml = |trusted: &str| {
        format!(
            r#"
server: {{ listen: "127.0.0.1:0", trusted_proxies: [{trusted}] }}
triggers:
  - {{ id: office, event: t.e, verify: {{ ip_allow: ["203.0.113.0/24"] }} }}
  - {{ id: local, event: t.e, verify: {{ ip_allow: ["127.0.0.0/8"] }} }}
"#
        )
    };
    let xff = vec![("x-forwarded-for".to_owned(), "203.0.113.7".to_owned())];

    let d = start_daemon(&yaml("")).await;
    assert_eq!(post(&d, "local", b"{}", &[]).await, 202);
    assert_eq!(post(&d, "office", b"{}", &[]).await, 403);
    // Not behind a trusted proxy: the header is ignored, the peer is checked.
    assert_eq!(post(&d, "office", b"{}", &xff).await, 403);
    let r = http()
        .post(d.url("/hooks/office"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "ip_not_allowed");
    d.stop().await;

    let d = start_daemon(&yaml("\"127.0.0.1/32\"")).await;
    assert_eq!(post(&d, "office", b"{}", &xff).await, 202);
    assert_eq!(post(&d, "office", b"{}", &[]).await, 403);
    // The client is now 203.0.113.7, outside `local`'s list.
    assert_eq!(post(&d, "local", b"{}", &xff).await, 403);
    d.stop().await;
}

#[tokio::test]
async fn bearer_and_basic_credentials() {
    let yaml = r#"
secrets:
  tok: { env: TOK }
  pw: { env: PW }
triggers:
  - { id: bearer, event: t.e, verify: { bearer: tok } }
  - { id: basic, event: t.e, verify: { basic: { user: ada, password: pw } } }
"#;
    let env = HashMap::from([
        ("TOK".to_owned(), "t0ken".to_owned()),
        ("PW".to_owned(), "pa55".to_owned()),
    ]);
    let d = start_daemon_with_env(yaml, env).await;
    let auth = |v: &str| vec![("authorization".to_owned(), v.to_owned())];
    assert_eq!(post(&d, "bearer", b"{}", &auth("Bearer t0ken")).await, 202);
    assert_eq!(post(&d, "bearer", b"{}", &auth("Bearer nope")).await, 401);
    assert_eq!(post(&d, "bearer", b"{}", &[]).await, 401);
    let basic = |u: &str, p: &str| auth(&format!("Basic {}", B64.encode(format!("{u}:{p}"))));
    assert_eq!(post(&d, "basic", b"{}", &basic("ada", "pa55")).await, 202);
    assert_eq!(post(&d, "basic", b"{}", &basic("ada", "wrong")).await, 401);
    assert_eq!(post(&d, "basic", b"{}", &basic("eve", "pa55")).await, 401);
    d.stop().await;
}

#[tokio::test]
async fn verification_runs_before_the_body_is_parsed_or_mapped() {
    let yaml = r#"
secrets:
  plain: { env: PLAIN_SECRET }
triggers:
  - id: gh
    event: { path: "$.type", otherwise: reject }
    verify: { signature: { preset: github, secret: plain } }
    mapping: { n: { path: "$.n", required: true } }
"#;
    let env = HashMap::from([("PLAIN_SECRET".to_owned(), SECRET.to_owned())]);
    let d = start_daemon_with_env(yaml, env).await;
    // Unsigned garbage, unsigned unmappable JSON: both refused as unsigned.
    assert_eq!(post(&d, "gh", b"{not json", &[]).await, 401);
    assert_eq!(post(&d, "gh", b"{}", &[]).await, 401);
    // Signed, the same bodies reach the parser and the mapping.
    let now = jiff::Timestamp::now().as_second();
    let signed = |b: &[u8]| sign("github", SECRET.as_bytes(), b, now);
    assert_eq!(
        post(&d, "gh", b"{not json", &signed(b"{not json")).await,
        422
    );
    assert_eq!(post(&d, "gh", b"{}", &signed(b"{}")).await, 422);
    let ok = br#"{"type":"a.b","n":1}"#;
    assert_eq!(post(&d, "gh", ok, &signed(ok)).await, 202);
    d.stop().await;
}
