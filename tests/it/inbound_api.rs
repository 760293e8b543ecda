//! The event API (`POST /v1/events`) end to end: token auth (401/403),
//! single and batch events, client ids as global idempotency keys, catalog
//! and schema checks, the batch limit, and what was stored.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use serde_json::{Value, json};

use crate::inbound::{JsonReq, JsonResp, all_events, stopped_queue, stored};
use crate::support::{TestDaemon, http, start_daemon_with_env};

async fn daemon() -> TestDaemon {
    let yaml = r#"
secrets:
  app: { env: APP_TOKEN }
  other: { env: OTHER_TOKEN }
  reader: { env: READER_TOKEN }
tokens:
  - { name: app, secret: app, scopes: [events:write] }
  - { name: other, secret: other, scopes: [events:write] }
  - { name: reader, secret: reader, scopes: [deliveries:read] }
event_types:
  - name: pay.done
    schema: { type: object, required: [amount], properties: { amount: { type: integer } } }
subscriptions:
  - { id: pay, url: "http://127.0.0.1:9/pay", events: ["pay.*"] }
"#;
    let env = std::collections::HashMap::from([
        ("APP_TOKEN".to_owned(), "app-token".to_owned()),
        ("OTHER_TOKEN".to_owned(), "other-token".to_owned()),
        ("READER_TOKEN".to_owned(), "reader-token".to_owned()),
    ]);
    start_daemon_with_env(yaml, env).await
}

async fn send(d: &TestDaemon, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http().post(d.url("/v1/events")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tokens_and_scopes_are_enforced() {
    let mut d = daemon().await;
    let ev = json!({"type": "x.y", "data": {}});
    let (s, v) = send(&d, None, ev.clone()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(send(&d, Some("wrong"), ev.clone()).await.0, 401);
    let (s, v) = send(&d, Some("reader-token"), ev.clone()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let r = http()
        .post(d.url("/v1/events"))
        .header("authorization", "Basic YTpi")
        .json(&ev)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let q = stopped_queue(&mut d).await;
    assert!(all_events(&q).await.is_empty());
}

#[tokio::test]
async fn single_events_with_client_ids_and_duplicates() {
    let mut d = daemon().await;
    let (s, v) = send(
        &d,
        Some("app-token"),
        json!({"type": "user.created", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(s, 202);
    assert_eq!(v["duplicate"], false);
    let generated = v["event_id"].as_str().unwrap().to_owned();

    let ev = json!({"type": "pay.done", "id": "client-1", "timestamp": "2026-03-01T10:00:00Z", "data": {"amount": 5}});
    let (s, v) = send(&d, Some("app-token"), ev.clone()).await;
    assert_eq!(
        (s, v),
        (202, json!({"event_id": "client-1", "duplicate": false}))
    );
    // The client id is global: another token sending it is a duplicate too.
    let (s, v) = send(&d, Some("other-token"), ev).await;
    assert_eq!(
        (s, v),
        (202, json!({"event_id": "client-1", "duplicate": true}))
    );

    let (s, v) = send(
        &d,
        Some("app-token"),
        json!({"type": "pay.done", "data": {"amount": "x"}}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("schema_validation_failed"))
    );
    let (s, _) = send(&d, Some("app-token"), json!({"data": {}})).await;
    assert_eq!(s, 422, "type is required");
    let (s, _) = send(
        &d,
        Some("app-token"),
        json!({"type": "a", "timestamp": "yesterday"}),
    )
    .await;
    assert_eq!(s, 422);
    let (s, _) = send(&d, Some("app-token"), json!("just a string")).await;
    assert_eq!(s, 422);

    let q = stopped_queue(&mut d).await;
    let (e, jobs) = stored(&q, "client-1").await;
    assert_eq!(e.source, "api:app");
    assert_eq!(e.timestamp.to_string(), "2026-03-01T10:00:00Z");
    assert_eq!(e.data, json!({"amount": 5}));
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].target, "subscription/pay");
    let (e, jobs) = stored(&q, &generated).await;
    assert!(ulid::Ulid::from_string(&e.id).is_ok());
    assert!(jobs.is_empty());
    assert_eq!(all_events(&q).await.len(), 2);
}

#[tokio::test]
async fn batches_answer_in_order_and_are_checked_whole() {
    let mut d = daemon().await;
    send(&d, Some("app-token"), json!({"type": "a.b", "id": "seen"})).await;
    let batch = json!([
        {"type": "a.b", "id": "b-1"},
        {"type": "a.b", "id": "seen"},
        {"type": "pay.done", "data": {"amount": 1}},
    ]);
    let (s, v) = send(&d, Some("app-token"), batch).await;
    assert_eq!(s, 202, "{v}");
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0], json!({"event_id": "b-1", "duplicate": false}));
    assert_eq!(list[1], json!({"event_id": "seen", "duplicate": true}));
    assert_eq!(list[2]["duplicate"], false);

    // One bad item refuses the whole batch and names it.
    let (s, v) = send(
        &d,
        Some("app-token"),
        json!([{"type": "a.b", "id": "b-2"}, {"type": "pay.done", "data": {}}]),
    )
    .await;
    assert_eq!(s, 422);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("[1]"),
        "{v}"
    );

    let too_many: Vec<Value> = (0..501).map(|_| json!({"type": "a.b"})).collect();
    let (s, v) = send(&d, Some("app-token"), Value::Array(too_many)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("batch_too_large"))
    );
    let (s, v) = send(&d, Some("app-token"), json!([])).await;
    assert_eq!((s, v), (202, json!([])));

    let q = stopped_queue(&mut d).await;
    assert!(q.event("b-2").await.unwrap().is_none());
    assert_eq!(all_events(&q).await.len(), 3);
}

#[tokio::test]
async fn malformed_bodies_say_what_is_wrong_and_store_nothing() {
    let mut d = daemon().await;
    let raw = |body: &'static str| {
        http()
            .post(d.url("/v1/events"))
            .bearer_auth("app-token")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // (body, words the message must contain)
    let cases = [
        (r#"{"type": "a.b""#, "not valid JSON"),
        (r#"  {"type": "a.b"} trailing"#, "not valid JSON"),
        (r#"{"data": {}}"#, "not an event: missing field `type`"),
        (r#"{"type": 5}"#, "not an event: invalid type"),
        ("42", "must be an event object or an array"),
        ("nope", "not valid JSON"),
        (
            r#"[{"type": "a.b"}, {"type": []}]"#,
            "event [1]: not an event",
        ),
    ];
    for (body, want) in cases {
        let r = raw(body).await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 422, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_body", "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(want), "{body}: {message}");
    }
    let q = stopped_queue(&mut d).await;
    assert!(all_events(&q).await.is_empty());
}
