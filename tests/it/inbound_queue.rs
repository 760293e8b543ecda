//! A queue that refuses the write: both ingestion paths answer 503 with
//! `Retry-After: 1` and the JSON error, and nothing is acknowledged; a
//! trigger with `on_unavailable: 429` answers 429 instead (SPEC §14). Uses
//! the Redis backend on a private key prefix and breaks that prefix's event
//! sequence counter (a non-integer), which makes the ingest script fail
//! before it writes anything.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use crate::support::get_text;
use serde_json::{Value, json};

use crate::inbound::{JsonReq, JsonResp};
use crate::support::{http, redis_available, start_daemon_with_env};

const URL: &str = "redis://127.0.0.1:6379/0";

#[tokio::test]
async fn queue_failure_answers_503_with_retry_after() {
    if !redis_available() {
        return;
    }
    let prefix = format!("hyt-inbound-{}", ulid::Ulid::new());
    let _cleanup = crate::support::RedisKeys::shared(&prefix);
    let yaml = format!(
        r#"
queue: {{ backend: redis, url: "{URL}", prefix: "{prefix}" }}
secrets:
  app: {{ env: APP_TOKEN }}
tokens:
  - {{ name: app, secret: app, scopes: [events:write] }}
triggers:
  - {{ id: t, verify: none, event: t.e }}
"#
    );
    let env = std::collections::HashMap::from([("APP_TOKEN".to_owned(), "tok".to_owned())]);
    let d = start_daemon_with_env(&yaml, env).await;
    // Healthy first: the same requests are accepted.
    let r = http()
        .post(d.url("/hooks/t"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    break_queue(&prefix).await;

    let r = http()
        .post(d.url("/hooks/t"))
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "queue_unavailable");

    for body in [json!({"type": "a.b"}), json!([{"type": "a.b"}])] {
        let r = http()
            .post(d.url("/v1/events"))
            .bearer_auth("tok")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{body}");
        assert_eq!(r.headers()["retry-after"], "1");
    }
    let metrics = get_text(d.url("/metrics")).await;
    assert!(metrics.contains(r#"trigger="t",status="503""#), "{metrics}");
    d.stop().await;
}

/// Make every ingest under `prefix` fail before it writes anything.
async fn break_queue(prefix: &str) {
    let client = redis::Client::open(URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:seq"))
        .arg("not-a-number")
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// SPEC §14: a sender that retries only on 429 gets 429 with
/// `Retry-After` from a trigger configured `on_unavailable: 429`; other
/// triggers and `/v1/events` keep 503.
#[tokio::test]
async fn on_unavailable_429_answers_429_with_retry_after() {
    if !redis_available() {
        return;
    }
    let prefix = format!("hyt-inbound-{}", ulid::Ulid::new());
    let _cleanup = crate::support::RedisKeys::shared(&prefix);
    let yaml = format!(
        r#"
queue: {{ backend: redis, url: "{URL}", prefix: "{prefix}" }}
secrets:
  app: {{ env: APP_TOKEN }}
tokens:
  - {{ name: app, secret: app, scopes: [events:write] }}
triggers:
  - {{ id: crm, verify: none, event: t.e, on_unavailable: 429 }}
  - {{ id: explicit, verify: none, event: t.e, on_unavailable: 503 }}
  - {{ id: plain, verify: none, event: t.e }}
"#
    );
    let env = std::collections::HashMap::from([("APP_TOKEN".to_owned(), "tok".to_owned())]);
    let d = start_daemon_with_env(&yaml, env).await;
    let r = http()
        .post(d.url("/hooks/crm"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "a healthy queue accepts as usual");

    break_queue(&prefix).await;

    let r = http()
        .post(d.url("/hooks/crm"))
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "queue_unavailable");

    for trigger in ["explicit", "plain"] {
        let r = http()
            .post(d.url(&format!("/hooks/{trigger}")))
            .json(&json!({"a": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{trigger}");
        assert_eq!(r.headers()["retry-after"], "1");
    }
    let r = http()
        .post(d.url("/v1/events"))
        .bearer_auth("tok")
        .json(&json!({"type": "a.b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "the event API keeps 503");
    d.stop().await;
}
