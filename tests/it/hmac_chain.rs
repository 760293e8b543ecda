//! hookyard talks to hookyard (SPEC §11): one daemon's `hmac-sha256`
//! signing (`X-Hmac-Signature: sha256=<hex>`) verifies at another daemon's
//! `hmac-sha256` trigger on default settings.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{Receiver, http, start_daemon_with_env};

#[tokio::test]
async fn an_event_signed_by_one_daemon_is_accepted_by_another() {
    let env: HashMap<String, String> =
        [("CHAIN_KEY".to_owned(), "chain-secret-1".to_owned())].into();
    let rx = Receiver::start().await;
    // Daemon 2: verifies with the preset's defaults, forwards to `rx`.
    let second = start_daemon_with_env(
        &format!(
            "secrets: {{ s: {{ env: CHAIN_KEY }} }}\n\
             triggers:\n  - id: from-first\n    event: chained.order\n    \
             verify: {{ signature: {{ preset: hmac-sha256, secret: s }} }}\n\
             subscriptions:\n  - {{ id: out, url: \"{}\", events: [\"*\"] }}\n",
            rx.url("/received")
        ),
        env.clone(),
    )
    .await;
    // Daemon 1: an open trigger, and a subscription signing with the same
    // secret to daemon 2's trigger.
    let first = start_daemon_with_env(
        &format!(
            "secrets: {{ s: {{ env: CHAIN_KEY }} }}\n\
             triggers:\n  - {{ id: in, event: order.created, verify: none }}\n\
             subscriptions:\n  - id: to-second\n    url: \"{}\"\n    events: [\"*\"]\n    \
             signing: {{ scheme: hmac-sha256, secret: s }}\n    retry: {{ schedule: [] }}\n",
            second.url("/hooks/from-first")
        ),
        env,
    )
    .await;

    let r = http()
        .post(first.url("/hooks/in"))
        .header("content-type", "application/json")
        .body("{\"n\":7}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(
        got[0].header("x-hookyard-event-type"),
        Some("chained.order")
    );
    // Daemon 2's event data is the envelope daemon 1 delivered.
    let body = got[0].json();
    assert_eq!(body["data"]["data"]["n"], 7, "{body}");
    assert_eq!(body["data"]["type"], "order.created", "{body}");
    first.stop().await;
    second.stop().await;
}
