//! Delivery end to end against a real receiver on 127.0.0.1: signing,
//! retries, dead letters, test mode, workflow chains, orphans, injection
//! and history redaction.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;
use std::time::Duration;

use hookyard::model::mac::{base64_encode, hex_encode, hmac_sha256, standard_webhooks_key};
use hookyard::queue::DeliveryState;
use serde_json::json;

use crate::deliver_support::{event, harness, harness_env, step, sub};
use crate::support::{Answer, Receiver};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn subscription_delivers_signed_envelope_and_records_attempt() {
    let rx = Receiver::start().await;
    let env = HashMap::from([("K".to_owned(), "topsecret".to_owned())]);
    let h = harness_env(
        &format!(
            r#"
secrets: {{ k: {{ env: K }} }}
subscriptions:
  - id: s
    url: "{}"
    events: ["*"]
    signing: {{ scheme: hmac-sha256, secret: k }}
    headers: {{ X-Team: "t-{{{{ event.type }}}}" }}
"#,
            rx.url("/hook")
        ),
        env,
    )
    .await;
    let ev = event("order.created", json!({"n": 1}));
    let ids = h.ingest(&ev, vec![sub("s")]).await;
    let got = rx.wait_for(1, T).await;
    let r = &got[0];
    let body = r.json();
    assert_eq!(body["id"], ev.id);
    assert_eq!(body["type"], "order.created");
    assert_eq!(body["source"], "api:test");
    assert_eq!(body["data"], json!({"n": 1}));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let mac = hmac_sha256(b"topsecret", &[&r.body]).unwrap();
    assert_eq!(
        r.header("x-hmac-signature").unwrap(),
        format!("sha256={}", hex_encode(&mac))
    );
    assert_eq!(r.header("x-hookyard-event-id").unwrap(), ev.id);
    assert_eq!(r.header("x-hookyard-event-type").unwrap(), "order.created");
    assert_eq!(r.header("x-hookyard-delivery-id").unwrap(), ids[0]);
    assert_eq!(r.header("x-hookyard-attempt").unwrap(), "1");
    assert!(r.header("user-agent").unwrap().starts_with("hookyard/"));
    assert_eq!(r.header("x-team").unwrap(), "t-order.created");
    assert_eq!(r.header("content-type").unwrap(), "application/json");
    let rec = h.wait_state(&ids[0], DeliveryState::Succeeded, T).await;
    assert_eq!(rec.attempts.len(), 1);
    let a = &rec.attempts[0];
    assert_eq!(a.attempt, 1);
    assert_eq!(a.response.as_ref().unwrap()["status"], 200);
    assert_eq!(a.request["method"], "POST");
    assert_eq!(a.request["url"], rx.url("/hook"));
    assert!(a.error.is_none());
    let m = h.metrics();
    assert!(
        m.contains(r#"hookyard_deliveries_total{target="subscription/s",outcome="success"} 1"#),
        "{m}"
    );
    assert!(
        m.contains("hookyard_end_to_end_latency_seconds_count 1"),
        "{m}"
    );
}

#[tokio::test]
async fn standard_webhooks_signature_verifies() {
    let rx = Receiver::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let env = HashMap::from([("K".to_owned(), secret.to_owned())]);
    let h = harness_env(
        &format!(
            "secrets: {{ k: {{ env: K }} }}\nsubscriptions:\n  - id: s\n    url: \"{}\"\n    events: [\"*\"]\n    signing: {{ scheme: standard-webhooks, secret: k }}\n",
            rx.url("/")
        ),
        env,
    )
    .await;
    let ev = event("a.b", json!({}));
    h.ingest(&ev, vec![sub("s")]).await;
    let r = &rx.wait_for(1, T).await[0];
    assert_eq!(r.header("webhook-id").unwrap(), ev.id);
    let ts = r.header("webhook-timestamp").unwrap();
    let key = standard_webhooks_key(secret.as_bytes()).unwrap();
    let mac = hmac_sha256(
        &key,
        &[ev.id.as_bytes(), b".", ts.as_bytes(), b".", &r.body],
    )
    .unwrap();
    assert_eq!(
        r.header("webhook-signature").unwrap(),
        format!("v1,{}", base64_encode(&mac))
    );
}

fn sub_yaml(url: &str, extra: &str) -> String {
    format!("subscriptions:\n  - id: s\n    url: \"{url}\"\n    events: [\"*\"]\n{extra}")
}

#[tokio::test]
async fn retries_until_success_then_retry_after_is_honoured() {
    let rx = Receiver::start().await;
    rx.script([
        Answer::status(500),
        Answer::status(503),
        Answer {
            headers: vec![("Retry-After".into(), "1".into())],
            ..Answer::status(429)
        },
    ]);
    let h = harness(&sub_yaml(
        &rx.url("/"),
        "    retry: { schedule: [100ms, 100ms, 100ms] }\n",
    ))
    .await;
    let ev = event("a", json!({}));
    let ids = h.ingest(&ev, vec![sub("s")]).await;
    let rec = h.wait_state(&ids[0], DeliveryState::Succeeded, T).await;
    let got = rx.received();
    assert_eq!(got.len(), 4);
    assert_eq!(rec.attempts.len(), 4);
    assert_eq!(got[3].header("x-hookyard-attempt").unwrap(), "4");
    // Same delivery id on every attempt.
    assert!(
        got.iter()
            .all(|r| r.header("x-hookyard-delivery-id").unwrap() == ids[0])
    );
    assert!(got[1].at - got[0].at < Duration::from_millis(900));
    assert!(
        got[3].at - got[2].at >= Duration::from_millis(950),
        "Retry-After: 1 honoured"
    );
    assert_eq!(rec.attempts[0].response.as_ref().unwrap()["status"], 500);
    assert!(rec.attempts[0].error.as_deref().unwrap().contains("500"));
    let m = h.metrics();
    assert!(
        m.contains(r#"hookyard_deliveries_total{target="subscription/s",outcome="retry"} 3"#),
        "{m}"
    );
}

#[tokio::test]
async fn client_error_dead_letters_at_once() {
    let rx = Receiver::start().await;
    rx.script([Answer::status(404)]);
    let h = harness(&sub_yaml(
        &rx.url("/"),
        "    retry: { schedule: [50ms, 50ms] }\n",
    ))
    .await;
    let ids = h.ingest(&event("a", json!({})), vec![sub("s")]).await;
    let rec = h.wait_state(&ids[0], DeliveryState::DeadLetter, T).await;
    assert_eq!(rec.reason.as_deref(), Some("http_404"));
    assert_eq!(rec.attempts.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 1);
}

#[tokio::test]
async fn timeout_then_exhausted() {
    let rx = Receiver::start().await;
    rx.script([Answer {
        delay: Duration::from_secs(3),
        ..Answer::status(200)
    }]);
    let h = harness(&sub_yaml(
        &rx.url("/"),
        "    timeout: 300ms\n    retry: { schedule: [] }\n",
    ))
    .await;
    let ids = h.ingest(&event("a", json!({})), vec![sub("s")]).await;
    let rec = h.wait_state(&ids[0], DeliveryState::DeadLetter, T).await;
    assert_eq!(rec.reason.as_deref(), Some("attempts_exhausted"));
    let a = &rec.attempts[0];
    assert!(a.response.is_none());
    assert!(
        a.error.as_deref().unwrap().contains("no complete response"),
        "{a:?}"
    );
    assert!(a.duration_ms >= 250 && a.duration_ms < 2000, "{a:?}");
}

#[tokio::test]
async fn connection_refused_is_retried_then_dead_lettered() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let h = harness(&sub_yaml(
        &format!("http://127.0.0.1:{port}/x"),
        "    retry: { schedule: [50ms, 50ms] }\n",
    ))
    .await;
    let ids = h.ingest(&event("a", json!({})), vec![sub("s")]).await;
    let rec = h.wait_state(&ids[0], DeliveryState::DeadLetter, T).await;
    assert_eq!(rec.reason.as_deref(), Some("attempts_exhausted"));
    assert_eq!(rec.attempts.len(), 3);
    assert!(
        rec.attempts[2]
            .error
            .as_deref()
            .unwrap()
            .contains("connect")
    );
}

#[tokio::test]
async fn test_mode_sends_nothing_and_records_test() {
    let rx = Receiver::start().await;
    let h = harness(&format!(
        r#"
workflows:
  - id: w
    mode: test
    when: {{ event: "*" }}
    steps:
      - request: {{ url: "{}", body: {{ json: {{ id: "{{{{ event.id }}}}" }} }} }}
"#,
        rx.url("/t")
    ))
    .await;
    let ev = event("a", json!({}));
    let ids = h.ingest(&ev, vec![step("w", "w-1")]).await;
    let rec = h.wait_state(&ids[0], DeliveryState::Test, T).await;
    assert_eq!(rec.target, "workflow/w/w-1");
    let req = &rec.attempts[0].request;
    assert_eq!(req["url"], rx.url("/t"));
    assert_eq!(req["body"], json!({"id": ev.id}).to_string());
    assert!(rec.attempts[0].response.is_none());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.received().is_empty());
    assert!(h.metrics().contains(r#"outcome="test"} 1"#));
}

#[tokio::test]
async fn workflow_passes_step_response_to_next_step() {
    let rx = Receiver::start().await;
    rx.script([Answer {
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: r#"{"id": 42}"#.into(),
        ..Answer::status(201)
    }]);
    let h = harness(&format!(
        r#"
actions:
  - id: first
    url: "{0}/first"
    body: {{ json: {{ email: "{{{{ contact.email }}}}" }} }}
workflows:
  - id: w
    when: {{ event: "*" }}
    steps:
      - action: first
      - request: {{ method: PUT, url: "{0}/second/{{{{ steps.first.response.body.id }}}}", body: {{ json: {{ got: "{{{{ steps.first.response.body.id }}}}", st: "{{{{ steps.first.response.status }}}}" }} }} }}
"#,
        rx.url("")
    ))
    .await;
    let ev = event("a", json!({"contact": {"email": "a@b.c"}}));
    h.ingest(&ev, vec![step("w", "first")]).await;
    let got = rx.wait_for(2, T).await;
    assert_eq!(got[0].uri.path(), "/first");
    assert_eq!(got[0].json(), json!({"email": "a@b.c"}));
    assert_eq!(got[1].method, "PUT");
    assert_eq!(got[1].uri.path(), "/second/42");
    assert_eq!(got[1].json(), json!({"got": 42, "st": 201}));
    // Both deliveries are in the event's history.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ds = h.deliveries(&ev.id).await;
    assert_eq!(ds.len(), 2);
    assert!(ds.iter().all(|d| d.state == DeliveryState::Succeeded));
}

#[tokio::test]
async fn orphaned_target_is_dead_lettered_after_grace() {
    let h = harness("reload: { watch: false, orphan_grace: 300ms }\n").await;
    let start = std::time::Instant::now();
    let ids = h
        .ingest(&event("a", json!({})), vec![step("gone", "x"), sub("nope")])
        .await;
    for id in &ids {
        let rec = h.wait_state(id, DeliveryState::DeadLetter, T).await;
        assert_eq!(rec.reason.as_deref(), Some("target_removed"));
        assert!(rec.attempts.is_empty());
    }
    assert!(start.elapsed() >= Duration::from_millis(280));
}

#[tokio::test]
async fn injection_is_refused_and_path_values_are_encoded() {
    let rx = Receiver::start().await;
    let h = harness(&format!(
        r#"
actions:
  - id: hdr
    url: "{0}/h"
    headers: {{ X-V: "{{{{ v }}}}" }}
  - id: path
    url: "{0}/p/{{{{ v }}}}"
  - id: host
    url: "http://127.0.0.1{{{{ v }}}}"
workflows:
  - id: w
    when: {{ event: "*" }}
    steps: [ {{ action: hdr }}, {{ action: path }}, {{ action: host }} ]
"#,
        rx.url("")
    ))
    .await;
    let bad = h
        .ingest(
            &event("a", json!({"v": "1\r\nX-Evil: 1"})),
            vec![step("w", "hdr")],
        )
        .await;
    let rec = h.wait_state(&bad[0], DeliveryState::DeadLetter, T).await;
    assert_eq!(rec.reason.as_deref(), Some("template_error"));
    assert!(
        rec.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("line break")
    );
    let host = h
        .ingest(
            &event("a", json!({"v": ".evil.example/x"})),
            vec![step("w", "host")],
        )
        .await;
    let rec = h.wait_state(&host[0], DeliveryState::DeadLetter, T).await;
    assert_eq!(rec.reason.as_deref(), Some("template_error"));
    let p = h
        .ingest(
            &event("a", json!({"v": "../../admin?x=1#f"})),
            vec![step("w", "path")],
        )
        .await;
    h.wait_state(&p[0], DeliveryState::Succeeded, T).await;
    let got = rx.received();
    assert_eq!(got.len(), 1, "only the path delivery was sent");
    assert_eq!(got[0].uri.path(), "/p/..%2F..%2Fadmin%3Fx%3D1%23f");
    assert!(got[0].uri.query().is_none());
}

#[tokio::test]
async fn history_redacts_secrets() {
    let rx = Receiver::start().await;
    let env = HashMap::from([
        ("TOK".to_owned(), "tok-12345".to_owned()),
        ("PATH".to_owned(), "p-67890".to_owned()),
    ]);
    let h = harness_env(
        &format!(
            r#"
secrets: {{ tok: {{ env: TOK }}, path: {{ env: PATH }}, whole: {{ env: TOK }} }}
actions:
  - id: a
    url: "{0}/x/{{{{ secrets.path }}}}"
    headers: {{ Authorization: "Bearer {{{{ secrets.tok }}}}", X-Copy: "k={{{{ secrets.tok }}}}" }}
workflows:
  - id: w
    when: {{ event: "*" }}
    steps: [ {{ action: a }} ]
"#,
            rx.url("")
        ),
        env,
    )
    .await;
    let ids = h.ingest(&event("a", json!({})), vec![step("w", "a")]).await;
    let rec = h.wait_state(&ids[0], DeliveryState::Succeeded, T).await;
    let got = &rx.received()[0];
    assert_eq!(got.uri.path(), "/x/p-67890");
    assert_eq!(got.header("authorization").unwrap(), "Bearer tok-12345");
    let req = rec.attempts[0].request.to_string();
    assert!(
        !req.contains("tok-12345") && !req.contains("p-67890"),
        "{req}"
    );
    assert_eq!(rec.attempts[0].request["headers"]["X-Copy"], "[redacted]");
    assert_eq!(
        rec.attempts[0].request["url"],
        format!("{}/x/[redacted]", rx.url(""))
    );
}

#[tokio::test]
async fn strict_action_missing_field_dead_letters_and_counts() {
    let rx = Receiver::start().await;
    let h = harness(&format!(
        r#"
actions:
  - id: strict
    strict: true
    url: "{0}/s"
    body: {{ json: {{ e: "{{{{ contact.email }}}}" }} }}
  - id: lax
    url: "{0}/l"
    body: {{ json: {{ e: "{{{{ contact.email }}}}", n: "x{{{{ nope }}}}" }} }}
workflows:
  - id: w
    when: {{ event: "*" }}
    steps: [ {{ action: strict }} ]
  - id: w2
    when: {{ event: "*" }}
    steps: [ {{ action: lax }} ]
"#,
        rx.url("")
    ))
    .await;
    let ev = event("a", json!({}));
    let ids = h
        .ingest(&ev, vec![step("w", "strict"), step("w2", "lax")])
        .await;
    let rec = h.wait_state(&ids[0], DeliveryState::DeadLetter, T).await;
    assert_eq!(rec.reason.as_deref(), Some("template_error"));
    assert!(rec.attempts[0].error.as_deref().unwrap().contains("strict"));
    h.wait_state(&ids[1], DeliveryState::Succeeded, T).await;
    assert_eq!(rx.received()[0].json(), json!({"e": null, "n": "x"}));
    let m = h.metrics();
    assert!(
        m.contains(r#"hookyard_template_missing_total{target="workflow/w/strict"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"hookyard_template_missing_total{target="workflow/w2/lax"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn fifo_target_holds_the_line_behind_a_failing_head() {
    let rx = Receiver::start().await;
    rx.script([Answer::status(500), Answer::status(500)]);
    let h = harness(&sub_yaml(
        &rx.url("/"),
        "    ordering: fifo\n    retry: { schedule: [150ms, 150ms, 150ms] }\n",
    ))
    .await;
    let mut ids = vec![];
    for n in 0..3 {
        ids.extend(
            h.ingest_ordered(&event("a", json!({"n": n})), vec![sub("s")], true)
                .await,
        );
    }
    for id in &ids {
        h.wait_state(id, DeliveryState::Succeeded, T).await;
    }
    let order: Vec<i64> = rx
        .received()
        .iter()
        .map(|r| r.json()["data"]["n"].as_i64().unwrap())
        .collect();
    // The head failed twice and was retried before the others went out.
    assert_eq!(order, vec![0, 0, 0, 1, 2]);
}

#[tokio::test]
async fn redis_backend_retries_and_succeeds() {
    if !crate::support::redis_available() {
        return;
    }
    let prefix = format!("hy-deliver-test-{}", ulid::Ulid::new());
    let _keys = crate::support::RedisKeys::shared(&prefix);
    let rx = Receiver::start().await;
    rx.script([Answer::status(503)]);
    let h = crate::deliver_support::harness_redis(
        &sub_yaml(&rx.url("/"), "    retry: { schedule: [100ms] }\n"),
        &prefix,
    )
    .await;
    let ids = h.ingest(&event("a", json!({"r": 1})), vec![sub("s")]).await;
    let rec = h.wait_state(&ids[0], DeliveryState::Succeeded, T).await;
    assert_eq!(rec.attempts.len(), 2);
    assert_eq!(rx.received()[1].json()["data"], json!({"r": 1}));
    h.stop.cancel();
}
