//! Property: no request to `/hooks/*` or `/v1/events` — random paths,
//! headers and bodies, against triggers using every feature — panics the
//! daemon or answers a 5xx other than 503.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use proptest::prelude::*;

use crate::support::{http, start_daemon_with_env};

const YAML: &str = r#"
secrets:
  s: { env: PROP_SECRET }
tokens:
  - { name: app, secret: s, scopes: [events:write] }
event_types:
  - { name: typed, schema: { type: object, required: [n], properties: { n: { type: integer } } } }
triggers:
  - id: mapped
    verify: none
    event: { path: "$.type", map: { a: typed, b: other }, otherwise: reject }
    idempotency_key: "$.id"
    mapping:
      n: { path: "$.n", type: integer }
      deep.x: "$..x"
      t: { template: "{{ body.t }}{{ headers['x-h'] }}{{ query.q }}", type: number }
      timestamp: "$.ts"
  - id: hdr
    verify: none
    event: { header: X-Event, otherwise: ignore }
    mapping: { b: { path: "$.b", type: boolean, required: true } }
  - { id: signed, event: e, verify: { signature: { preset: stripe, secret: s } } }
  - { id: slack, verify: none, event: e, handshake: slack, rate_limit: 1000/s }
  - { id: zoom, verify: none, event: e, handshake: zoom, handshake_secret: s }
  - { id: meta, verify: none, event: e, handshake: meta, handshake_secret: s }
  - { id: ip, event: e, verify: { ip_allow: ["10.0.0.0/8"] } }
  - { id: respond, verify: none, event: e, respond: { status: 200, body: "{{ event_id }}" } }
"#;

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "[ -~]{0,120}".prop_map(String::into_bytes),
        (any::<i64>(), "[a-c]", "[ -~]{0,10}", any::<bool>()).prop_map(|(n, t, s, b)| {
            serde_json::json!({"type": t, "n": n, "id": s, "x": [n, s], "t": s, "ts": s, "b": b,
                "event": "endpoint.url_validation", "payload": {"plainToken": s}, "challenge": s,
                "data": {"n": n}})
            .to_string()
            .into_bytes()
        }),
        Just(b"[{\"type\":\"typed\",\"data\":{\"n\":1}},{\"type\":\"\"}]".to_vec()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let trigger = prop_oneof![
        Just("mapped"),
        Just("hdr"),
        Just("signed"),
        Just("slack"),
        Just("zoom"),
        Just("meta"),
        Just("ip"),
        Just("respond"),
        Just("nope")
    ];
    (
        trigger,
        "[a-zA-Z0-9._~%-]{0,8}",
        "[a-z.=&0-9%]{0,30}",
        0..3u8,
    )
        .prop_map(|(t, extra, q, kind)| match kind {
            0 => format!("/hooks/{t}?{q}"),
            1 => format!("/hooks/{t}{extra}?{q}"),
            _ => format!("/v1/events?{q}"),
        })
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("content-type"),
        Just("x-event"),
        Just("x-h"),
        Just("stripe-signature"),
        Just("authorization"),
        Just("x-forwarded-for"),
        Just("content-encoding")
    ];
    let value = prop_oneof![
        "[ -~]{0,40}",
        Just("application/x-www-form-urlencoded".to_owned()),
        Just("Bearer prop-secret".to_owned()),
        Just("t=1,v1=00".to_owned()),
    ];
    proptest::collection::vec((name.prop_map(str::to_owned), value), 0..5)
}

#[test]
fn random_requests_never_panic_or_fail_with_5xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env =
        std::collections::HashMap::from([("PROP_SECRET".to_owned(), "prop-secret".to_owned())]);
    let d = rt.block_on(start_daemon_with_env(YAML, env));
    let client = http();
    let config = ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    };
    proptest!(config, |(path in path(), headers in headers(), body in body(), get in any::<bool>())| {
        let status = rt.block_on(async {
            let url = d.url(&path);
            let mut req = if get { client.get(url) } else { client.post(url) };
            for (k, v) in &headers {
                req = req.header(k.as_str(), v.as_str());
            }
            req.body(body.clone()).send().await.map(|r| r.status().as_u16())
        });
        let status = status.map_err(|e| TestCaseError::fail(format!("no answer (panic?): {e}")))?;
        prop_assert!(status < 500 || status == 503, "{path} {headers:?} → {status}");
    });
    // Still alive and serving after all of that.
    let ok = rt.block_on(async { client.get(d.url("/healthz")).send().await.unwrap().status() });
    assert_eq!(ok, 200);
    drop(d);
}
