//! Triggers end to end through a real daemon: mapping (nested, missing,
//! typed, templated, form, header, query), pass-through, idempotency, body
//! limit, `otherwise`, strict catalog, schema, unknown trigger, routing into
//! jobs, metrics (handshakes, `respond` and rate limits are in
//! `inbound_answers.rs`). Stored events are read back by reopening the
//! embedded queue after the daemon stopped.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use crate::support::get_text;
use std::time::Duration;

use hookyard::queue::{DeliveryRecord, Event, HistoryQuery, Queue, StoreSettings};
use serde_json::{Value, json};

use crate::support::{TestDaemon, http, start_daemon};

/// `.json(&value)` for requests (reqwest is built without its `json` feature).
pub trait JsonReq {
    fn json(self, v: &Value) -> Self;
}

impl JsonReq for reqwest::RequestBuilder {
    fn json(self, v: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(v.to_string())
    }
}

/// `.json()` for responses.
pub trait JsonResp {
    fn json<T: serde::de::DeserializeOwned>(self) -> impl Future<Output = Result<T, String>>;
}

impl JsonResp for reqwest::Response {
    async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        let bytes = self.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&bytes)))
    }
}

/// Stop the daemon, reopen its embedded queue and return it.
pub async fn stopped_queue(d: &mut TestDaemon) -> Queue {
    d.shutdown.cancel();
    if let Some(h) = d.handle.take() {
        let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
    }
    let settings = StoreSettings {
        lease: Duration::from_secs(60),
        history_retention: Duration::from_secs(7 * 86400),
        history_max_events: 100_000,
        idempotency_window: Duration::from_secs(86400),
        consumer_name: "inbound-test".into(),
    };
    Queue::open_embedded(&d.dir.path().join("data"), settings)
        .await
        .unwrap()
}

/// Every stored event, oldest first.
pub async fn all_events(q: &Queue) -> Vec<Event> {
    let page = q
        .events(&HistoryQuery {
            limit: 1000,
            ..HistoryQuery::default()
        })
        .await
        .unwrap();
    let mut items = page.items;
    items.reverse();
    items
}

pub async fn stored(q: &Queue, id: &str) -> (Event, Vec<DeliveryRecord>) {
    q.event(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("event {id} not stored"))
}

pub async fn post_json(d: &TestDaemon, path: &str, body: Value) -> reqwest::Response {
    http().post(d.url(path)).json(&body).send().await.unwrap()
}

pub async fn event_id(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["duplicate"], false, "{v}");
    v["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn mapping_builds_nested_typed_templated_fields_from_json_form_headers_and_query() {
    let yaml = r#"
triggers:
  - id: shop
    verify: none
    event: order.created
    mapping:
      contact.email: "$.customer.email"
      contact.full_name: { template: "{{ body.customer.first }} {{ body.customer.last }}" }
      contact.phone: "$.customer.phone"
      order.total: { path: "$.total_price", type: number, required: true }
      order.items: { path: "$.items[*].sku" }
      order.count: { template: "{{ body['items'] | default([]) | length }}", type: integer }
      order.shop: { header: X-Shop-Domain }
      order.campaign: { query: utm }
      order.channel: { value: web }
      order.status: { path: "$.status", default: open }
      timestamp: "$.created_at"
  - id: form
    verify: none
    event: form.posted
    mapping:
      name: "$.name"
      age: { path: "$.age", type: integer }
  - id: raw
    verify: none
    event: raw.passed
"#;
    let mut d = start_daemon(yaml).await;
    let body = json!({
        "customer": {"email": "ada@example.com", "first": "Ada", "last": "Lovelace"},
        "total_price": "99.50",
        "items": [{"sku": "a"}, {"sku": "b"}],
        "created_at": "2026-01-02T03:04:05Z"
    });
    let r = http()
        .post(d.url("/hooks/shop?utm=spring"))
        .header("X-Shop-Domain", "ada.shop")
        .json(&body)
        .send()
        .await
        .unwrap();
    let shop_id = event_id(r).await;

    // Required field missing, and a value that is not a number: 422.
    let r = post_json(&d, "/hooks/shop", json!({"customer": {}})).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "mapping_failed");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("order.total"),
        "{v}"
    );
    let r = post_json(&d, "/hooks/shop", json!({"total_price": "lots"})).await;
    assert_eq!(r.status(), 422);

    let r = http()
        .post(d.url("/hooks/form"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Ada+L&age=36")
        .send()
        .await
        .unwrap();
    let form_id = event_id(r).await;

    let raw_body = json!({"anything": [1, {"x": null}]});
    let raw_id = event_id(post_json(&d, "/hooks/raw", raw_body.clone()).await).await;

    let r = http()
        .post(d.url("/hooks/raw"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_body");

    let q = stopped_queue(&mut d).await;
    let (shop, _) = stored(&q, &shop_id).await;
    assert_eq!(shop.event_type, "order.created");
    assert_eq!(shop.source, "trigger:shop");
    assert_eq!(shop.timestamp.to_string(), "2026-01-02T03:04:05Z");
    assert_eq!(
        shop.data,
        json!({
            "contact": {"email": "ada@example.com", "full_name": "Ada Lovelace"},
            "order": {"total": 99.5, "items": ["a", "b"], "count": 2, "shop": "ada.shop",
                      "campaign": "spring", "channel": "web", "status": "open"}
        })
    );
    assert!(
        shop.data["contact"].get("phone").is_none(),
        "missing optional field is absent"
    );
    assert!(
        ulid::Ulid::from_string(&shop.id).is_ok(),
        "event id is a ULID: {}",
        shop.id
    );
    let (form, _) = stored(&q, &form_id).await;
    assert_eq!(form.data, json!({"name": "Ada L", "age": 36}));
    let (raw, _) = stored(&q, &raw_id).await;
    assert_eq!(raw.data, raw_body);
    assert_eq!(
        all_events(&q).await.len(),
        3,
        "refused requests stored nothing"
    );
}

#[tokio::test]
async fn idempotency_keys_are_per_trigger_and_return_the_first_event() {
    let yaml = r#"
triggers:
  - { id: a, verify: none, event: t.e, idempotency_key: "$.id" }
  - { id: b, verify: none, event: t.e, idempotency_key: "header:Idempotency-Key" }
"#;
    let mut d = start_daemon(yaml).await;
    let first = event_id(post_json(&d, "/hooks/a", json!({"id": 7})).await).await;
    let r = post_json(&d, "/hooks/a", json!({"id": 7, "other": true})).await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"event_id": first, "duplicate": true}));
    // Same key on another trigger is a different scope.
    let send_b = |key: &'static str| {
        http()
            .post(d.url("/hooks/b"))
            .header("Idempotency-Key", key)
            .json(&json!({"id": 7}))
            .send()
    };
    let b1 = event_id(send_b("7").await.unwrap()).await;
    let v: Value = send_b("7").await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({"event_id": b1, "duplicate": true}));
    // No key in the request: not deduplicated.
    event_id(post_json(&d, "/hooks/a", json!({})).await).await;
    event_id(post_json(&d, "/hooks/a", json!({})).await).await;
    let q = stopped_queue(&mut d).await;
    assert_eq!(all_events(&q).await.len(), 4);
}

#[tokio::test]
async fn body_limit_unknown_trigger_and_method() {
    let yaml = "server: { listen: \"127.0.0.1:0\", max_body: 1KiB }\ntriggers:\n  - { id: small, verify: none, event: t.e }\n  - { id: deep, verify: none, event: t.e, path: /hooks/a/b/c }\n";
    let mut d = start_daemon(yaml).await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2000));
    let r = http()
        .post(d.url("/hooks/small"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "body_too_large");
    let ok = format!("{{\"pad\":\"{}\"}}", "x".repeat(900));
    assert_eq!(
        http()
            .post(d.url("/hooks/small"))
            .body(ok)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );

    let r = post_json(&d, "/hooks/nope", json!({})).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unknown_trigger");
    // A trigger with its own path is served there, and only there.
    assert_eq!(post_json(&d, "/hooks/a/b/c", json!({})).await.status(), 202);
    assert_eq!(post_json(&d, "/hooks/deep", json!({})).await.status(), 404);
    assert_eq!(
        http()
            .get(d.url("/hooks/small"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );

    let metrics = get_text(d.url("/metrics")).await;
    for needle in [
        r#"trigger="small",status="413""#,
        r#"trigger="small",status="202""#,
        r#"status="404""#,
        r#"hookyard_events_ingested_total{source="trigger:small",type="_undeclared"} 1"#,
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
    let q = stopped_queue(&mut d).await;
    assert_eq!(all_events(&q).await.len(), 2);
}

#[tokio::test]
async fn event_type_from_header_and_path_with_ignore_and_reject() {
    let yaml = r#"
triggers:
  - id: gh
    verify: none
    event: { header: X-GitHub-Event, map: { push: github.push, release: github.release }, otherwise: ignore }
    mappings:
      github.push: { ref: "$.ref" }
  - id: crm
    verify: none
    event: { path: "$.type", otherwise: reject }
"#;
    let mut d = start_daemon(yaml).await;
    let gh = |ev: &'static str| {
        http()
            .post(d.url("/hooks/gh"))
            .header("X-GitHub-Event", ev)
            .json(&json!({"ref": "main", "x": 1}))
            .send()
    };
    let push = event_id(gh("push").await.unwrap()).await;
    let release = event_id(gh("release").await.unwrap()).await;
    let r = gh("ping").await.unwrap();
    assert_eq!(r.status(), 204);
    let r = post_json(&d, "/hooks/gh", json!({})).await;
    assert_eq!(r.status(), 204, "missing header is ignored too");

    let contact = event_id(
        post_json(
            &d,
            "/hooks/crm",
            json!({"type": "contact.created", "id": 1}),
        )
        .await,
    )
    .await;
    let r = post_json(&d, "/hooks/crm", json!({"id": 1})).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unknown_event_type");

    let q = stopped_queue(&mut d).await;
    let (e, _) = stored(&q, &push).await;
    assert_eq!(
        (e.event_type.as_str(), e.data.clone()),
        ("github.push", json!({"ref": "main"}))
    );
    let (e, _) = stored(&q, &release).await;
    assert_eq!(
        (e.event_type.as_str(), e.data.clone()),
        ("github.release", json!({"ref": "main", "x": 1}))
    );
    let (e, _) = stored(&q, &contact).await;
    assert_eq!(e.event_type, "contact.created");
    assert_eq!(all_events(&q).await.len(), 3);
}

#[tokio::test]
async fn strict_catalog_and_schema_validation() {
    let yaml = r#"
event_catalog: strict
event_types:
  - name: order.created
    schema: { type: object, required: [total], properties: { total: { type: number } } }
triggers:
  - { id: ok, verify: none, event: order.created, mapping: { total: { path: "$.t", type: number } } }
  - { id: undeclared, verify: none, event: other.thing }
"#;
    let mut d = start_daemon(yaml).await;
    event_id(post_json(&d, "/hooks/ok", json!({"t": "12"})).await).await;
    let r = post_json(&d, "/hooks/ok", json!({})).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "schema_validation_failed");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("total"),
        "{v}"
    );
    let r = post_json(&d, "/hooks/undeclared", json!({})).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "undeclared_event_type");
    let metrics = get_text(d.url("/metrics")).await;
    let needle = r#"hookyard_events_ingested_total{source="trigger:ok",type="order.created"} 1"#;
    assert!(metrics.contains(needle), "{metrics}");
    let q = stopped_queue(&mut d).await;
    assert_eq!(all_events(&q).await.len(), 1);
}

#[tokio::test]
async fn accepted_events_are_stored_with_their_routed_jobs() {
    let yaml = r#"
triggers:
  - { id: shop, verify: none, event: order.created, mapping: { total: { path: "$.total", type: number } } }
actions:
  - { id: notify, url: "http://127.0.0.1:9/notify" }
workflows:
  - { id: big, when: { event: order.created, if: "total > 100" }, steps: [ { action: notify } ] }
subscriptions:
  - { id: orders, url: "http://127.0.0.1:9/orders", events: ["order.*"] }
"#;
    let mut d = start_daemon(yaml).await;
    let big = event_id(post_json(&d, "/hooks/shop", json!({"total": 500})).await).await;
    let small = event_id(post_json(&d, "/hooks/shop", json!({"total": 5})).await).await;
    let q = stopped_queue(&mut d).await;
    let targets = |records: Vec<DeliveryRecord>| {
        let mut t: Vec<String> = records.into_iter().map(|r| r.target).collect();
        t.sort();
        t
    };
    assert_eq!(
        targets(stored(&q, &big).await.1),
        ["subscription/orders", "workflow/big/notify"]
    );
    assert_eq!(targets(stored(&q, &small).await.1), ["subscription/orders"]);
}
