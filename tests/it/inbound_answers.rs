//! Answers a trigger gives besides the plain 202: provider handshakes
//! (Slack, Meta, Zoom; never enqueued), `respond` overrides, and the
//! per-trigger rate limit (429 with `Retry-After`).

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use serde_json::{Value, json};

use crate::inbound::{JsonResp, all_events, event_id, post_json, stopped_queue, stored};
use crate::support::{http, start_daemon};

#[tokio::test]
async fn handshakes_are_answered_and_never_enqueued() {
    let yaml = r#"
secrets:
  meta: { env: META_TOKEN }
  zoom: { env: ZOOM_SECRET }
triggers:
  - { id: slack, verify: none, event: slack.event, handshake: slack }
  - { id: meta, verify: none, event: meta.event, handshake: meta, handshake_secret: meta }
  - { id: zoom, verify: none, event: zoom.event, handshake: zoom, handshake_secret: zoom }
"#;
    let env = std::collections::HashMap::from([
        ("META_TOKEN".to_owned(), "verify-me".to_owned()),
        ("ZOOM_SECRET".to_owned(), "zoom-secret".to_owned()),
    ]);
    let mut d = crate::support::start_daemon_with_env(yaml, env).await;
    let r = post_json(
        &d,
        "/hooks/slack",
        json!({"type": "url_verification", "challenge": "abc123"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["challenge"], "abc123");

    let meta = |token: &str| {
        http()
            .get(d.url(&format!(
                "/hooks/meta?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
            )))
            .send()
    };
    let r = meta("verify-me").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1158201444");
    assert_eq!(meta("wrong").await.unwrap().status(), 403);

    let r = post_json(&d, "/hooks/zoom", json!({"event": "endpoint.url_validation", "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"zoom-secret").unwrap();
    mac.update(b"qgg8vlvZRS6UYooatFL8Aw");
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        v,
        json!({"plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": expected})
    );

    // Ordinary events still flow.
    event_id(post_json(&d, "/hooks/slack", json!({"type": "event_callback"})).await).await;
    let q = stopped_queue(&mut d).await;
    let events = all_events(&q).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "slack.event");
}

#[tokio::test]
async fn respond_overrides_the_answer() {
    let yaml = r#"
triggers:
  - id: custom
    verify: none
    event: t.e
    respond: { status: 200, body: '{"ok": true, "id": "{{ event_id }}"}', headers: { X-Handled-By: hookyard } }
  - id: text
    verify: none
    event: t.e
    respond: { status: 201, body: "thanks {{ event_id }}" }
"#;
    let mut d = start_daemon(yaml).await;
    let r = post_json(&d, "/hooks/custom", json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-handled-by"], "hookyard");
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ok"], true);
    let id = v["id"].as_str().unwrap().to_owned();
    let r = post_json(&d, "/hooks/text", json!({})).await;
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("thanks ") && text.len() == "thanks ".len() + 26,
        "{text}"
    );
    let q = stopped_queue(&mut d).await;
    assert_eq!(stored(&q, &id).await.0.source, "trigger:custom");
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let yaml = "triggers:\n  - { id: slow, verify: none, event: t.e, rate_limit: 2/m }\n  - { id: free, verify: none, event: t.e }\n";
    let mut d = start_daemon(yaml).await;
    assert_eq!(post_json(&d, "/hooks/slow", json!({})).await.status(), 202);
    assert_eq!(post_json(&d, "/hooks/slow", json!({})).await.status(), 202);
    let r = post_json(&d, "/hooks/slow", json!({})).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "retry-after {wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    assert_eq!(post_json(&d, "/hooks/free", json!({})).await.status(), 202);
    let q = stopped_queue(&mut d).await;
    assert_eq!(all_events(&q).await.len(), 3);
}

#[tokio::test]
async fn forged_requests_do_not_use_up_the_rate_limit() {
    let yaml = r#"
secrets:
  tok: { env: TOK }
triggers:
  - { id: guarded, event: t.e, rate_limit: 1/m, verify: { bearer: tok } }
"#;
    let env = std::collections::HashMap::from([("TOK".to_owned(), "t0ken".to_owned())]);
    let d = crate::support::start_daemon_with_env(yaml, env).await;
    let send = |auth: &'static str| {
        http()
            .post(d.url("/hooks/guarded"))
            .header("authorization", auth)
            .body("{}")
            .send()
    };
    for _ in 0..5 {
        assert_eq!(send("Bearer forged").await.unwrap().status(), 401);
    }
    assert_eq!(send("Bearer t0ken").await.unwrap().status(), 202);
    assert_eq!(send("Bearer t0ken").await.unwrap().status(), 429);
    d.stop().await;
}
