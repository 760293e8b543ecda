//! SPEC §11 edge cases driven the way a user meets them: templates that try
//! to run forever or write without end, secrets in every spelling of a URL,
//! and a Meta handshake someone tries to brute-force.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;
use std::time::Duration;

use hookyard::queue::DeliveryState;
use serde_json::json;

use crate::deliver_support::{event, harness, harness_env, step};
use crate::inbound::{JsonResp, post_json};
use crate::support::{Receiver, http, start_daemon, start_daemon_with_env};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn templates_past_their_bounds_dead_letter_as_render_limit() {
    let rx = Receiver::start().await;
    let h = harness(&format!(
        r#"
render: {{ max_output: 64KiB }}
actions:
  # 2,000 copies of a 1 KiB field: 2 MB of output, past the 64 KiB cap
  - id: long
    url: "{0}/long"
    body: {{ raw: {{ template: "{{% for i in range(2000) %}}{{{{ big }}}}{{% endfor %}}" }} }}
  # nested loops: 10^10 iterations, stopped by fuel long before
  - id: endless
    url: "{0}/endless"
    body: {{ raw: {{ template: "{{% for i in range(100000) %}}{{% for j in range(100000) %}}{{% endfor %}}{{% endfor %}}" }} }}
  # an expression leaf: a lazy sequence that would be 100 MB as JSON
  - id: leaf
    url: "{0}/leaf"
    body: {{ json: {{ all: "{{{{ [big] * 100000 }}}}" }} }}
  # the same template within bounds still renders
  - id: fits
    url: "{0}/fits"
    body: {{ raw: {{ template: "{{% for i in range(3) %}}{{{{ big }}}}{{% endfor %}}" }} }}
workflows:
  - id: w
    when: {{ event: "*" }}
    steps: [ {{ action: long }}, {{ action: endless }}, {{ action: leaf }}, {{ action: fits }} ]
"#,
        rx.url("")
    ))
    .await;
    let big = "x".repeat(1024);
    for action in ["long", "endless", "leaf"] {
        let ids = h
            .ingest(&event("a", json!({"big": big})), vec![step("w", action)])
            .await;
        let rec = h.wait_state(&ids[0], DeliveryState::DeadLetter, T).await;
        assert_eq!(rec.reason.as_deref(), Some("render_limit"), "{action}");
        let error = rec.attempts[0].error.clone().unwrap();
        assert!(
            error.contains("render.max_output") || error.contains("fuel"),
            "{action}: {error}"
        );
    }
    let ids = h
        .ingest(&event("a", json!({"big": big})), vec![step("w", "fits")])
        .await;
    h.wait_state(&ids[0], DeliveryState::Succeeded, T).await;
    let got = rx.wait_for(1, T).await;
    assert_eq!(got[0].body.len(), 3 * 1024);
    assert_eq!(
        rx.received().len(),
        1,
        "nothing was sent for the refused renders"
    );
}

#[tokio::test]
async fn a_mapping_template_past_its_bounds_is_a_422() {
    let d = start_daemon(
        r#"
render: { max_output: 4KiB }
triggers:
  - id: t
    event: e.x
    verify: none
    mapping:
      copies: { template: "{% for i in range(100) %}{{ body.big }}{% endfor %}" }
"#,
    )
    .await;
    let r = post_json(&d, "/hooks/t", json!({"big": "y".repeat(1000)})).await;
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "mapping_failed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("render.max_output"),
        "{body}"
    );
    // A small body maps fine on the same trigger.
    let r = post_json(&d, "/hooks/t", json!({"big": "y"})).await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn a_secret_in_a_url_is_redacted_in_every_spelling() {
    let rx = Receiver::start().await;
    let env = HashMap::from([("K".to_owned(), "s3cr3t/with space+plus".to_owned())]);
    let h = harness_env(
        &format!(
            r#"
secrets: {{ k: {{ env: K }} }}
actions:
  - id: encoded
    url: "{0}/x?raw={{{{ secrets.k }}}}&key={{{{ secrets.k | urlencode | safe }}}}&twice={{{{ secrets.k | urlencode }}}}"
    query: {{ again: "{{{{ secrets.k }}}}" }}
workflows:
  - id: w
    when: {{ event: "*" }}
    steps: [ {{ action: encoded }} ]
"#,
            rx.url("")
        ),
        env,
    )
    .await;
    let ids = h
        .ingest(&event("a", json!({})), vec![step("w", "encoded")])
        .await;
    let rec = h.wait_state(&ids[0], DeliveryState::Succeeded, T).await;
    // The receiver did get the secret, in four spellings…
    let got = rx.wait_for(1, T).await;
    let sent = got[0].uri.to_string();
    for spelling in [
        "raw=s3cr3t/with%20space+plus&",
        "key=s3cr3t/with%20space%2Bplus&",
        "twice=s3cr3t%2Fwith%2520space%252Bplus&",
        "again=s3cr3t%2Fwith+space%2Bplus",
    ] {
        assert!(sent.contains(spelling), "{spelling} in {sent}");
    }
    // …and history shows none of them.
    let url = rec.attempts[0].request["url"].as_str().unwrap().to_owned();
    assert_eq!(
        url,
        rx.url("/x?raw=[redacted]&key=[redacted]&twice=[redacted]&again=[redacted]"),
        "history URL: {url}"
    );
}

#[tokio::test]
async fn the_meta_handshake_counts_against_the_rate_limit() {
    let env = HashMap::from([("META_TOKEN".to_owned(), "verify-me".to_owned())]);
    let d = start_daemon_with_env(
        r#"
secrets: { meta: { env: META_TOKEN } }
triggers:
  - { id: meta, event: meta.event, handshake: meta, handshake_secret: meta, rate_limit: 3/m, verify: none }
"#,
        env,
    )
    .await;
    let guess = |token: &str| {
        http()
            .get(d.url(&format!(
                "/hooks/meta?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=42"
            )))
            .send()
    };
    for i in 0..3 {
        assert_eq!(guess(&format!("guess-{i}")).await.unwrap().status(), 403);
    }
    // The budget is spent: even the right token waits now.
    let r = guess("verify-me").await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}
