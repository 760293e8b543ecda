//! Outbound `auth: { basic: … }` (SPEC §14) with a real daemon and a
//! loopback receiver: an action and a YAML subscription send
//! `Authorization: Basic base64(user:password)`, and the event's history
//! (`GET /v1/events/{id}`) shows the header redacted, never its value.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hookyard::model::mac::base64_encode;
use serde_json::{Value, json};

use crate::inbound::{JsonReq, JsonResp};
use crate::support::{Receiver, TestDaemon, http, start_daemon_with_env};

const PASSWORD: &str = "crm-password-value";
const TOKEN: &str = "auth-test-token";

/// The event's history once every delivery succeeded.
async fn succeeded(d: &TestDaemon, event: &str, deliveries: usize) -> Value {
    let start = Instant::now();
    loop {
        let v: Value = http()
            .get(d.url(&format!("/v1/events/{event}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let list = v["deliveries"].as_array().cloned().unwrap_or_default();
        if list.len() == deliveries && list.iter().all(|x| x["state"] == "succeeded") {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never done: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn basic_auth_is_sent_and_redacted_in_history() {
    let rx = Receiver::start().await;
    let yaml = format!(
        r#"
secrets:
  crm_pw: {{ env: CRM_PW }}
  api: {{ env: API_TOKEN }}
tokens:
  - {{ name: ops, secret: api, scopes: [events:write, deliveries:read] }}
triggers:
  - {{ id: t, verify: none, event: contact.created }}
actions:
  - id: crm
    url: "{action}"
    body: {{ json: {{ email: "{{{{ data.email }}}}" }} }}
    auth: {{ basic: {{ user: hookyard, password: crm_pw }} }}
workflows:
  - {{ id: w, when: {{ event: contact.created }}, steps: [{{ action: crm }}] }}
subscriptions:
  - id: s
    url: "{sub}"
    events: ["*"]
    auth: {{ basic: {{ user: hookyard, password: crm_pw }} }}
  - {{ id: plain, url: "{plain}", events: ["*"] }}
"#,
        action = rx.url("/action"),
        sub = rx.url("/sub"),
        plain = rx.url("/plain"),
    );
    let env = HashMap::from([
        ("CRM_PW".to_owned(), PASSWORD.to_owned()),
        ("API_TOKEN".to_owned(), TOKEN.to_owned()),
    ]);
    let d = start_daemon_with_env(&yaml, env).await;
    let r = http()
        .post(d.url("/hooks/t"))
        .json(&json!({"email": "a@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let event = r.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    let expected = format!(
        "Basic {}",
        base64_encode(format!("hookyard:{PASSWORD}").as_bytes())
    );
    for path in ["/action", "/sub"] {
        let r = got.iter().find(|r| r.uri.path() == path).unwrap();
        assert_eq!(r.header("authorization"), Some(expected.as_str()), "{path}");
    }
    let plain = got.iter().find(|r| r.uri.path() == "/plain").unwrap();
    assert_eq!(plain.header("authorization"), None, "no auth, no header");

    let history = succeeded(&d, &event, 3).await;
    let text = history.to_string();
    let encoded = base64_encode(format!("hookyard:{PASSWORD}").as_bytes());
    assert!(!text.contains(&encoded), "credentials in history: {text}");
    assert!(!text.contains(PASSWORD), "password in history: {text}");
    for delivery in history["deliveries"].as_array().unwrap() {
        let headers = &delivery["attempts"][0]["request"]["headers"];
        let auth = headers.as_object().and_then(|h| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        });
        if delivery["target"] == "subscription/plain" {
            assert!(auth.is_none(), "{headers}");
        } else {
            let (_, value) = auth.unwrap_or_else(|| panic!("no Authorization in {headers}"));
            assert_eq!(value, "[redacted]", "{headers}");
        }
    }
    d.stop().await;
}
