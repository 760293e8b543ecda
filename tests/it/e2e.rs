//! End to end through a real daemon, as a user drives it over HTTP: a signed
//! trigger with a mapping feeds a workflow and a signed subscription; the
//! event API publishes; the history API shows deliveries and attempts;
//! retries, dead letters and redrive; the same happy path on Redis.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;
use std::time::Duration;

use hookyard::model::mac::{base64_encode, hex_encode, hmac_sha256};
use serde_json::{Value, json};

use crate::support::{
    Answer, Received, Receiver, TestDaemon, http, redis_available, start_daemon_with_env,
};

const T: Duration = Duration::from_secs(15);
const SHOP_KEY: &str = "shop-secret-1";
const SUB_KEY: &str = "sub-signing-key";
const TOKEN: &str = "e2e-token-value";

fn env() -> HashMap<String, String> {
    HashMap::from([
        ("E2E_SHOP".to_owned(), SHOP_KEY.to_owned()),
        ("E2E_SUB".to_owned(), SUB_KEY.to_owned()),
        ("E2E_TOKEN".to_owned(), TOKEN.to_owned()),
    ])
}

/// The full user config: shopify trigger with a mapping, a workflow action
/// to `/sales/{id}`, a signed subscription to `/webhooks`, an API token.
/// `extra` is appended (queue section, retry options).
fn config(rx: &Receiver, sub_extra: &str, extra: &str) -> String {
    format!(
        r#"
secrets:
  shop_hmac: {{ env: E2E_SHOP }}
  sub_key: {{ env: E2E_SUB }}
  app_token: {{ env: E2E_TOKEN }}
tokens:
  - name: app
    secret: app_token
    scopes: [events:write, deliveries:read, deliveries:write]
triggers:
  - id: shop-order
    event: order.created
    verify:
      signature: {{ preset: shopify, secret: shop_hmac }}
    mapping:
      order.id: "$.id"
      order.total: {{ path: "$.total_price", type: number, required: true }}
      order.paid: {{ path: "$.paid", type: boolean }}
      contact.email: "$.customer.email"
      contact.full_name: {{ template: "{{{{ body.customer.first_name }}}} {{{{ body.customer.last_name }}}}" }}
actions:
  - id: notify-sales
    method: POST
    url: "{sales}/{{{{ order.id }}}}"
    body:
      json:
        email: "{{{{ contact.email }}}}"
        total: "{{{{ order.total }}}}"
        paid: "{{{{ order.paid }}}}"
        name: "{{{{ contact.full_name }}}}"
        event_id: "{{{{ event.id }}}}"
workflows:
  - id: big-orders
    when: {{ event: order.created, if: "order.total > 100" }}
    steps:
      - action: notify-sales
subscriptions:
  - id: local
    url: "{hooks}"
    events: ["order.*"]
    signing: {{ scheme: hmac-sha256, secret: sub_key }}
{sub_extra}
{extra}
"#,
        sales = rx.url("/sales"),
        hooks = rx.url("/webhooks"),
    )
}

/// A response body as JSON (null when it is not JSON).
async fn json_body(r: reqwest::Response) -> Value {
    let bytes = r.bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn shop_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": 4711,
        "total_price": "150.50",
        "paid": "true",
        "customer": {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"}
    }))
    .unwrap()
}

async fn post_shop(d: &TestDaemon, body: &[u8]) -> (u16, Value) {
    let mac = hmac_sha256(SHOP_KEY.as_bytes(), &[body]).unwrap();
    let r = http()
        .post(d.url("/hooks/shop-order"))
        .header("content-type", "application/json")
        .header("X-Shopify-Hmac-Sha256", base64_encode(&mac))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, json_body(r).await)
}

async fn publish(d: &TestDaemon, ev: Value) -> (u16, Value) {
    let r = http()
        .post(d.url("/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&ev).unwrap())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, json_body(r).await)
}

async fn get_event(d: &TestDaemon, id: &str) -> Value {
    let r = http()
        .get(d.url(&format!("/v1/events/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    json_body(r).await
}

/// Poll the history API until every delivery of the event is in `state`
/// (and there are `n` of them).
async fn wait_deliveries(d: &TestDaemon, id: &str, n: usize, state: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let v = get_event(d, id).await;
        let ds = v["deliveries"].as_array().cloned().unwrap_or_default();
        if ds.len() == n && ds.iter().all(|x| x["state"] == state) {
            return ds;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("deliveries of {id} not all {state} within {T:?}: {v:#}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn by_path<'a>(got: &'a [Received], prefix: &str) -> Vec<&'a Received> {
    got.iter()
        .filter(|r| r.uri.path().starts_with(prefix))
        .collect()
}

fn check_signed_envelope(r: &Received, event_id: &str, ty: &str, source: &str) -> Value {
    let mac = hmac_sha256(SUB_KEY.as_bytes(), &[&r.body]).unwrap();
    assert_eq!(
        r.header("x-hmac-signature").unwrap(),
        format!("sha256={}", hex_encode(&mac))
    );
    assert_eq!(r.header("x-hookyard-event-id").unwrap(), event_id);
    assert_eq!(r.header("x-hookyard-event-type").unwrap(), ty);
    let env = r.json();
    assert_eq!(env["id"], event_id);
    assert_eq!(env["type"], ty);
    assert_eq!(env["source"], source);
    let ts = env["timestamp"].as_str().unwrap();
    assert!(ts.parse::<jiff::Timestamp>().is_ok(), "timestamp {ts}");
    env
}

/// The happy path of the whole product on a given queue section.
async fn happy_path(queue: &str) {
    let rx = Receiver::start().await;
    let d = start_daemon_with_env(&config(&rx, "", queue), env()).await;

    // 1. A signed shop webhook: workflow request + subscription envelope.
    let (status, ack) = post_shop(&d, &shop_body()).await;
    assert_eq!(status, 202, "{ack}");
    assert_eq!(ack["duplicate"], false);
    let event_id = ack["event_id"].as_str().unwrap().to_owned();
    let got = rx.wait_for(2, T).await;

    let sales = by_path(&got, "/sales/");
    assert_eq!(sales.len(), 1, "{got:?}");
    assert_eq!(sales[0].uri.path(), "/sales/4711");
    assert_eq!(sales[0].header("x-hookyard-event-id").unwrap(), event_id);
    assert_eq!(
        sales[0].json(),
        json!({
            "email": "ada@example.com",
            "total": 150.5,
            "paid": true,
            "name": "Ada Lovelace",
            "event_id": event_id,
        })
    );

    let hooks = by_path(&got, "/webhooks");
    assert_eq!(hooks.len(), 1, "{got:?}");
    let envelope =
        check_signed_envelope(hooks[0], &event_id, "order.created", "trigger:shop-order");
    assert_eq!(
        envelope["data"],
        json!({
            "order": {"id": 4711, "total": 150.5, "paid": true},
            "contact": {"email": "ada@example.com", "full_name": "Ada Lovelace"},
        })
    );

    let ds = wait_deliveries(&d, &event_id, 2, "succeeded").await;
    let mut targets: Vec<&str> = ds.iter().map(|x| x["target"].as_str().unwrap()).collect();
    targets.sort();
    assert_eq!(
        targets,
        ["subscription/local", "workflow/big-orders/notify-sales"]
    );
    for x in &ds {
        let attempts = x["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{x:#}");
        assert_eq!(attempts[0]["attempt"], 1);
        assert_eq!(attempts[0]["response"]["status"], 200);
    }

    // 2. The event API: only the subscription matches a payment event.
    let (status, ack) = publish(
        &d,
        json!({"type": "order.refunded", "data": {"order": {"id": 9, "total": 5}}}),
    )
    .await;
    assert_eq!(status, 202, "{ack}");
    let api_id = ack["event_id"].as_str().unwrap().to_owned();
    let got = rx.wait_for(3, T).await;
    let r = got
        .iter()
        .find(|r| r.header("x-hookyard-event-id") == Some(api_id.as_str()))
        .unwrap();
    assert_eq!(r.uri.path(), "/webhooks");
    let envelope = check_signed_envelope(r, &api_id, "order.refunded", "api:app");
    assert_eq!(envelope["data"], json!({"order": {"id": 9, "total": 5}}));
    let ds = wait_deliveries(&d, &api_id, 1, "succeeded").await;
    assert_eq!(ds[0]["target"], "subscription/local");
    assert_eq!(ds[0]["attempts"][0]["response"]["status"], 200);

    // A wrong signature is refused and nothing more is delivered.
    let r = http()
        .post(d.url("/hooks/shop-order"))
        .header("X-Shopify-Hmac-Sha256", base64_encode(b"not the mac"))
        .body(shop_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.received().len(), 3);
    d.stop().await;
}

#[tokio::test]
async fn signed_webhook_and_api_event_are_delivered_and_recorded() {
    happy_path("").await;
}

#[tokio::test]
async fn redis_signed_webhook_and_api_event_are_delivered_and_recorded() {
    if !redis_available() {
        return;
    }
    let keys = crate::support::RedisKeys::fresh("e2e");
    happy_path(&keys.queue_yaml("")).await;
}

#[tokio::test]
async fn a_500_then_200_shows_two_attempts() {
    let rx = Receiver::start().await;
    rx.script([Answer::status(500)]);
    let d = start_daemon_with_env(
        &config(&rx, "    retry: { schedule: [100ms, 100ms] }", ""),
        env(),
    )
    .await;
    let (status, ack) = publish(&d, json!({"type": "order.paid", "data": {"n": 1}})).await;
    assert_eq!(status, 202, "{ack}");
    let id = ack["event_id"].as_str().unwrap().to_owned();
    let got = rx.wait_for(2, T).await;
    assert_eq!(got[0].header("x-hookyard-attempt").unwrap(), "1");
    assert_eq!(got[1].header("x-hookyard-attempt").unwrap(), "2");
    assert_eq!(
        got[0].header("x-hookyard-delivery-id"),
        got[1].header("x-hookyard-delivery-id")
    );
    let ds = wait_deliveries(&d, &id, 1, "succeeded").await;
    let attempts = ds[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{:#}", ds[0]);
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["response"]["status"], 500);
    assert_eq!(attempts[1]["attempt"], 2);
    assert_eq!(attempts[1]["response"]["status"], 200);
    d.stop().await;
}

#[tokio::test]
async fn a_404_is_dead_lettered_then_redriven_after_the_fix() {
    let rx = Receiver::start().await;
    rx.script([Answer::status(404)]);
    let d = start_daemon_with_env(
        &config(&rx, "    retry: { schedule: [100ms, 100ms] }", ""),
        env(),
    )
    .await;
    let (status, ack) = publish(&d, json!({"type": "order.paid", "data": {"n": 2}})).await;
    assert_eq!(status, 202, "{ack}");
    let id = ack["event_id"].as_str().unwrap().to_owned();
    let ds = wait_deliveries(&d, &id, 1, "dead_letter").await;
    assert_eq!(
        ds[0]["attempts"].as_array().unwrap().len(),
        1,
        "{:#}",
        ds[0]
    );
    assert_eq!(ds[0]["attempts"][0]["response"]["status"], 404);
    assert_eq!(rx.received().len(), 1);

    // The receiver is "fixed" (its script is used up: it answers 200 now).
    let r = http()
        .post(d.url("/v1/dead-letter/redrive?target=subscription/local"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = json_body(r).await;
    assert_eq!(v["redriven"], 1, "{v}");
    let got = rx.wait_for(2, T).await;
    assert_eq!(got[1].header("x-hookyard-event-id").unwrap(), id);
    let ds = wait_deliveries(&d, &id, 1, "succeeded").await;
    let statuses: Vec<&Value> = ds[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["response"]["status"])
        .collect();
    assert_eq!(statuses.last().unwrap(), &&json!(200), "{:#}", ds[0]);
    d.stop().await;
}
