//! The console's Overview numbers (SPEC §13) from a real daemon on both
//! backends: deliveries that succeed, fail (and dead-letter, opening the
//! circuit) and one held in flight by a slow receiver; trigger requests
//! accepted and refused. `GET /v1/stats` and the `/ui/` page must show
//! them, from the per-minute counters housekeeping writes every 5 s.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::inbound::{JsonReq, JsonResp};

use crate::support::{
    Answer, Receiver, RedisKeys, TestDaemon, http, redis_available, start_daemon_with_env,
};

const OPS: &str = "overview-ops-token-0123456789";
const PUBLISHER: &str = "overview-publisher-token-012345";
const HOOK: &str = "overview-hook-bearer-0123456789";

async fn daemon(queue: &str, rx: &Receiver, slow: &Receiver) -> TestDaemon {
    let yaml = format!(
        r#"
{queue}
egress: {{ allow: ["127.0.0.0/8"] }}
secrets:
  ops: {{ env: OV_OPS }}
  publisher: {{ env: OV_PUBLISHER }}
  hook: {{ env: OV_HOOK }}
tokens:
  - {{ name: ops, secret: ops, scopes: [events:write, deliveries:read] }}
  - {{ name: publisher, secret: publisher, scopes: [events:write] }}
triggers:
  - {{ id: gh, event: ping.received, verify: {{ bearer: hook }} }}
subscriptions:
  - id: orders
    url: "{orders}"
    events: ["order.*"]
    retry: {{ schedule: [] }}
  - id: slow
    url: "{slow}"
    events: ["slow.*"]
  - id: idle
    url: "{orders}"
    events: ["never.*"]
    paused: true
"#,
        orders = rx.url("/orders"),
        slow = slow.url("/slow"),
    );
    let env = HashMap::from([
        ("OV_OPS".to_owned(), OPS.to_owned()),
        ("OV_PUBLISHER".to_owned(), PUBLISHER.to_owned()),
        ("OV_HOOK".to_owned(), HOOK.to_owned()),
    ]);
    start_daemon_with_env(&yaml, env).await
}

async fn publish(d: &TestDaemon, event_type: &str) {
    let r = http()
        .post(d.url("/v1/events"))
        .bearer_auth(OPS)
        .json(&json!({"type": event_type, "data": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// POST to the trigger; the error code when refused.
async fn hook(d: &TestDaemon, bearer: Option<&str>, body: &str) -> Option<String> {
    let mut req = http()
        .post(d.url("/hooks/gh"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let r = req.send().await.unwrap();
    if r.status().is_success() {
        return None;
    }
    let v: Value = r.json().await.unwrap();
    Some(v["error"]["code"].as_str().unwrap().to_owned())
}

async fn stats(d: &TestDaemon, token: &str) -> (u16, Value) {
    let r = http()
        .get(d.url("/v1/stats"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn row<'v>(stats: &'v Value, list: &str, key: &str, name: &str) -> &'v Value {
    stats[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == name)
        .unwrap_or_else(|| panic!("no {list} row {name} in {stats}"))
}

/// `/v1/stats` once `done` holds (housekeeping writes counters every 5 s).
async fn stats_when(d: &TestDaemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (status, v) = stats(d, OPS).await;
        assert_eq!(status, 200, "{v}");
        if done(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(25),
            "never {what}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The session cookie of a console login with `token`.
async fn login(d: &TestDaemon, token: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(d.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// The `<tr>` of `/ui/` whose `attr` is `value` (HTML-escaped as the
/// templates escape it: `/` is `&#x2f;`).
fn html_row<'h>(html: &'h str, attr: &str, value: &str) -> &'h str {
    let escaped = value.replace('/', "&#x2f;");
    let at = html
        .find(&format!("{attr}=\"{escaped}\""))
        .unwrap_or_else(|| panic!("no row {attr}={value} in the overview:\n{html}"));
    let rest = &html[at..];
    &rest[..rest.find("</tr>").unwrap()]
}

async fn the_overview_counts(queue: &str) {
    let (rx, slow) = (Receiver::start().await, Receiver::start().await);
    let d = daemon(queue, &rx, &slow).await;

    // The API route: a token and its scope.
    assert_eq!(stats(&d, "nope").await.0, 401);
    assert_eq!(stats(&d, PUBLISHER).await.0, 403);

    // In flight: a slow receiver holds one delivery for 3 s.
    slow.script([Answer {
        delay: Duration::from_secs(3),
        ..Answer::status(200)
    }]);
    publish(&d, "slow.started").await;
    let v = stats_when(&d, "slow in flight", |v| {
        row(v, "targets", "target", "subscription/slow")["in_flight"] == 1
    })
    .await;
    assert_eq!(
        row(&v, "targets", "target", "subscription/slow")["pending"],
        1
    );

    // Three deliveries succeed, then five fail: each is dead-lettered (no
    // retries), and five failures in a row open the circuit.
    for _ in 0..3 {
        publish(&d, "order.created").await;
    }
    rx.wait_for(3, Duration::from_secs(10)).await;
    rx.script((0..5).map(|_| Answer::status(500)));
    for _ in 0..5 {
        publish(&d, "order.created").await;
    }
    rx.wait_for(8, Duration::from_secs(10)).await;

    // Trigger requests: two accepted, three refused.
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    for (bearer, body) in [
        (Some(HOOK), "{}"),
        (Some(HOOK), r#"{"a":1}"#),
        (None, "{}"),
        (Some("wrong"), "{}"),
        (Some(HOOK), "not json"),
    ] {
        if let Some(code) = hook(&d, bearer, body).await {
            *refused.entry(code).or_default() += 1;
        }
    }
    assert_eq!(refused.values().sum::<u64>(), 3, "{refused:?}");

    let v = stats_when(&d, "every attempt and request counted", |v| {
        let orders = row(v, "targets", "target", "subscription/orders");
        let slow = row(v, "targets", "target", "subscription/slow");
        orders["attempts"] == 8
            && orders["dead_letter"] == 5
            && orders["circuit"] == "open"
            && slow["attempts"] == 1
            && row(v, "triggers", "trigger", "gh")["requests"] == 5
    })
    .await;
    assert_eq!(v["window_minutes"], 60);
    let orders = row(&v, "targets", "target", "subscription/orders");
    assert_eq!(orders["succeeded"], 3, "{orders}");
    assert_eq!(orders["failed"], 5);
    assert_eq!(orders["success_rate"], 0.375);
    assert_eq!(orders["pending"], 0);
    assert_eq!(orders["in_flight"], 0);
    assert_eq!(orders["paused"], false);
    assert_eq!(orders["configured"], true);
    let p95 = orders["p95_ms"].as_u64().unwrap();
    assert!(p95 <= 2500, "a local receiver answers fast: p95 {p95} ms");
    let slow_row = row(&v, "targets", "target", "subscription/slow");
    assert_eq!(
        slow_row["p95_ms"], 5000,
        "3 s is in the (2.5 s, 5 s] bucket"
    );
    assert_eq!(slow_row["success_rate"], 1.0);
    assert_eq!(slow_row["in_flight"], 0);
    assert_eq!(slow_row["circuit"], "closed");
    let idle = row(&v, "targets", "target", "subscription/idle");
    assert_eq!(idle["paused"], true);
    assert_eq!(idle["attempts"], 0);
    assert!(idle["success_rate"].is_null() && idle["p95_ms"].is_null());
    let gh = row(&v, "triggers", "trigger", "gh");
    assert_eq!(gh["path"], "/hooks/gh");
    assert_eq!(gh["rejected"], 3);
    assert_eq!(gh["rejections"], json!(refused));
    assert_eq!(v["queue"]["dead_letter"], 5);

    // The console's overview shows the same numbers.
    let cookie = login(&d, OPS).await;
    let r = http()
        .get(d.url("/ui/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let orders = html_row(&html, "data-target", "subscription/orders");
    for cell in ["<td>8</td>", "37.5%", ">open<", &format!("{p95} ms")] {
        assert!(orders.contains(cell), "{cell} not in {orders}");
    }
    assert!(orders.contains(">5</a>"), "5 dead-lettered: {orders}");
    let slow_html = html_row(&html, "data-target", "subscription/slow");
    assert!(slow_html.contains("5000 ms") && slow_html.contains("100.0%"));
    assert!(html_row(&html, "data-target", "subscription/idle").contains("paused"));
    let gh = html_row(&html, "data-trigger", "gh");
    assert!(
        gh.contains("<td>5</td>") && gh.contains("<td>3</td>"),
        "{gh}"
    );
    for (code, n) in &refused {
        assert!(
            gh.contains(&format!("{code}: {n}")),
            "{code}: {n} not in {gh}"
        );
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_on_the_embedded_backend() {
    the_overview_counts("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_on_redis() {
    if !redis_available() {
        return;
    }
    let keys = RedisKeys::fresh("overview");
    the_overview_counts(&keys.queue_yaml("")).await;
}
