//! The console at `/ui/` (SPEC §13), against a real daemon on both backends,
//! over HTTP as a browser without JavaScript would use it: the login form,
//! the signed session cookie, pages, the CSRF token on every change, scopes,
//! the login rate limit, and no secret value in any page.
//! (`tests/browser/` clicks through the same pages in Chromium.)

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::inbound::{JsonReq, JsonResp};
use crate::support::{Receiver, TestDaemon, redis_available, start_daemon_with_env};

const FULL: &str = "console-full-token-0123456789";
const READER: &str = "console-reader-token-9876543210";
/// Planted in a subscription header and in the signing secret: it must
/// never show in a page.
const PLANTED: &str = "planted-secret-value-4242";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn daemon(rx: &Receiver, queue: &str) -> TestDaemon {
    let yaml = format!(
        r#"
{queue}
server: {{ trusted_proxies: ["127.0.0.0/8"] }}
egress: {{ allow: ["127.0.0.0/8"] }}
secrets:
  full: {{ env: CONSOLE_FULL }}
  reader: {{ env: CONSOLE_READER }}
  planted: {{ env: CONSOLE_PLANTED }}
tokens:
  - {{ name: ops, secret: full, scopes: [events:write, deliveries:read, deliveries:write, admin] }}
  - {{ name: viewer, secret: reader, scopes: [deliveries:read] }}
triggers:
  - id: shop
    verify: {{ bearer: planted }}
    event: order.created
    mapping: {{ total: $.amount, customer.email: $.email }}
subscriptions:
  - id: orders
    url: "{url}"
    events: ["order.*"]
    headers: {{ X-Api-Key: "{{{{ secrets.planted }}}}" }}
    signing: {{ scheme: hmac-sha256, secret: planted }}
    retry: {{ schedule: [] }}
"#,
        url = rx.url("/in"),
    );
    let env = HashMap::from([
        ("CONSOLE_FULL".to_owned(), FULL.to_owned()),
        ("CONSOLE_READER".to_owned(), READER.to_owned()),
        ("CONSOLE_PLANTED".to_owned(), PLANTED.to_owned()),
    ]);
    start_daemon_with_env(&yaml, env).await
}

/// Log in with `token`: the session cookie (`name=value`).
async fn login(d: &TestDaemon, token: &str) -> String {
    let r = client()
        .post(d.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "login with a known token redirects");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

async fn page(d: &TestDaemon, cookie: &str, path: &str) -> (u16, String) {
    let r = client()
        .get(d.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post_form(d: &TestDaemon, cookie: &str, path: &str, form: &str) -> (u16, String) {
    let r = client()
        .post(d.url(path))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (status, location.unwrap_or(r.text().await.unwrap()))
}

/// The CSRF token in a page (every page with a session has the logout form).
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

async fn publish(d: &TestDaemon) -> String {
    let r = client()
        .post(d.url("/v1/events"))
        .bearer_auth(FULL)
        .json(&json!({"type": "order.created", "data": {"total": 120}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    body["event_id"].as_str().unwrap().to_owned()
}

async fn state_of(d: &TestDaemon, event: &str) -> String {
    let r = client()
        .get(d.url(&format!("/v1/events/{event}")))
        .bearer_auth(FULL)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["deliveries"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn wait_state(d: &TestDaemon, event: &str, want: &str) {
    let start = Instant::now();
    while state_of(d, event).await != want {
        assert!(start.elapsed() < Duration::from_secs(10), "never {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_console_works(d: &TestDaemon, rx: &Receiver) {
    // Without a session: the login form, which works without JavaScript.
    let (status, html) = page(d, "", "/ui/").await;
    assert_eq!(status, 200);
    assert!(html.contains("<form class=\"login\" method=\"post\" action=\"/ui/login\">"));
    assert!(
        html.contains("type=\"password\" name=\"token\"")
            || html.contains("name=\"token\" type=\"password\"")
    );
    let (status, _) = page(d, "", "/ui/events").await;
    assert_eq!(status, 303, "a page without a session sends to the login");
    // A wrong token is refused.
    let (status, html) = post_form(d, "", "/ui/login", "token=wrong").await;
    assert_eq!(status, 401);
    assert!(html.contains("not known"));

    let ops = login(d, FULL).await;
    // The receiver fails: the delivery is dead-lettered (no retries).
    rx.script([crate::support::Answer::status(500)]);
    let event = publish(d).await;
    wait_state(d, &event, "dead_letter").await;

    let mut pages = Vec::new();
    let (status, html) = page(d, &ops, "/ui/events").await;
    assert_eq!(status, 200);
    assert!(html.contains(&event), "the event is listed");
    pages.push(html);
    // Filters: delivery state, source, time range.
    let (_, html) = page(d, &ops, "/ui/events?state=dead_letter").await;
    assert!(html.contains(&event), "dead-lettered events are listed");
    let (_, html) = page(d, &ops, "/ui/events?state=succeeded").await;
    assert!(!html.contains(&event), "{html}");
    let (_, html) = page(d, &ops, "/ui/events?source=api:ops").await;
    assert!(html.contains(&event));
    let (_, html) = page(d, &ops, "/ui/events?source=api:someone-else").await;
    assert!(!html.contains(&event));
    let (_, html) = page(d, &ops, "/ui/events?until=2020-01-01T00:00:00Z").await;
    assert!(!html.contains(&event));
    let (status, html) = page(d, &ops, &format!("/ui/events/{event}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("attempt 1"), "{html}");
    assert!(
        html.contains("class=\"body request-body\""),
        "the request body is kept"
    );
    assert!(html.contains("&quot;total&quot;:120") || html.contains("\"total\":120"));
    assert!(html.contains("Retry this delivery"));
    let token = csrf(&html);
    pages.push(html);
    let (status, html) = page(d, &ops, "/ui/dead-letter").await;
    assert_eq!(status, 200);
    // (minijinja writes `/` as `&#x2f;` in HTML.)
    assert!(html.contains("subscription&#x2f;orders"), "{html}");
    assert!(html.contains("attempts_exhausted"), "{html}");
    pages.push(html);
    let (status, html) = page(d, &ops, "/ui/config").await;
    assert_eq!(status, 200);
    pages.push(html);
    let (status, html) = page(d, &ops, "/ui/").await;
    assert_eq!(status, 200);
    pages.push(html);

    // Every change needs the session's CSRF token.
    let delivery_id = {
        let r = client()
            .get(d.url(&format!("/v1/events/{event}")))
            .bearer_auth(FULL)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["deliveries"][0]["id"].as_str().unwrap().to_owned()
    };
    let retry = format!("/ui/deliveries/{delivery_id}/retry");
    let (status, _) = post_form(d, &ops, &retry, "").await;
    assert_eq!(status, 403, "no CSRF token");
    let (status, _) = post_form(d, &ops, &retry, "csrf=0000").await;
    assert_eq!(status, 403, "a wrong CSRF token");
    let (status, _) = post_form(d, "", &retry, &format!("csrf={token}")).await;
    assert_eq!(status, 401, "no session");
    for change in [
        format!("/ui/events/{event}/replay"),
        "/ui/dead-letter/redrive".to_owned(),
        "/ui/triggers/shop/try".to_owned(),
        "/ui/logout".to_owned(),
    ] {
        let (status, _) = post_form(d, &ops, &change, "target=&confirmed=yes").await;
        assert_eq!(status, 403, "{change} without a CSRF token");
    }

    // A reader sees no controls, and its POST is refused.
    let viewer = login(d, READER).await;
    let (status, html) = page(d, &viewer, &format!("/ui/events/{event}")).await;
    assert_eq!(status, 200);
    assert!(!html.contains("Retry this delivery") && !html.contains("Replay"));
    let (_, dead) = page(d, &viewer, "/ui/dead-letter").await;
    assert!(!dead.contains("Redrive"));
    let (status, _) = post_form(d, &viewer, &retry, &format!("csrf={}", csrf(&html))).await;
    assert_eq!(status, 403);
    let (status, _) = page(d, &viewer, "/ui/config").await;
    assert_eq!(status, 403, "config needs admin");
    pages.push(html);

    // The receiver recovers; redrive from the console; the delivery succeeds.
    rx.script([crate::support::Answer::status(200)]);
    let (status, location) = post_form(
        d,
        &ops,
        &retry,
        &format!("csrf={token}&back=/ui/dead-letter"),
    )
    .await;
    assert_eq!(status, 303);
    assert!(location.starts_with("/ui/dead-letter?done="), "{location}");
    wait_state(d, &event, "succeeded").await;

    // No page shows a secret's value.
    for html in &pages {
        for secret in [FULL, READER, PLANTED] {
            assert!(!html.contains(secret), "a page shows a secret value");
        }
    }

    // Logout needs the token too, and clears the cookie.
    let (status, _) = post_form(d, &ops, "/ui/logout", "").await;
    assert_eq!(status, 403);
    let r = client()
        .post(d.url("/ui/logout"))
        .header("cookie", &ops)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_on_the_embedded_backend() {
    let rx = Receiver::start().await;
    let d = daemon(&rx, "").await;
    the_console_works(&d, &rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_on_redis() {
    if !redis_available() {
        return;
    }
    let rx = Receiver::start().await;
    let prefix = format!("console-{}", ulid::Ulid::new());
    let queue = format!(
        "queue: {{ backend: redis, url: \"redis://127.0.0.1:6379\", prefix: \"{prefix}\" }}"
    );
    let d = daemon(&rx, &queue).await;
    the_console_works(&d, &rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited_and_tls_makes_the_cookie_secure() {
    let rx = Receiver::start().await;
    let d = daemon(&rx, "").await;
    let mut limited = false;
    for _ in 0..12 {
        let (status, _) = post_form(&d, "", "/ui/login", "token=guess").await;
        if status == 429 {
            limited = true;
            break;
        }
        assert_eq!(status, 401);
    }
    assert!(limited, "the 11th guess within a minute is refused");
    // Another address (through a trusted proxy) is not held up, and one
    // that came over TLS gets a Secure cookie.
    let r = client()
        .post(d.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .body(format!("token={FULL}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");
}

/// A trigger's samples (kept, redacted, with the verification result and
/// the mapped event) and "try a mapping" against one of them.
async fn samples_and_try_a_mapping(d: &TestDaemon) {
    for (auth, amount) in [(PLANTED, 42), ("wrong-guess", 7)] {
        let r = client()
            .post(d.url("/hooks/shop"))
            .bearer_auth(auth)
            .json(&json!({"amount": amount, "email": "ann@example.com"}))
            .send()
            .await
            .unwrap();
        assert!(r.status() == 202 || r.status() == 401, "{}", r.status());
    }
    let ops = login(d, FULL).await;
    let (status, html) = page(d, &ops, "/ui/triggers").await;
    assert_eq!(status, 200);
    assert!(html.contains("bearer token"), "{html}");
    let (status, html) = page(d, &ops, "/ui/triggers/shop").await;
    assert_eq!(status, 200);
    assert!(html.contains("verification passed"), "{html}");
    assert!(html.contains("verification refused"), "{html}");
    assert!(
        html.contains("ann@example.com"),
        "the mapped event is shown"
    );
    assert!(!html.contains(PLANTED), "the bearer token is redacted");
    // The newest sample is the refused one (amount 7): try a mapping on the
    // accepted one, the second.
    let form = format!(
        "csrf={}&sample=1&mapping={}",
        csrf(&html),
        crate::support::form_value("order_total: { path: $.amount, type: string }\nwho: $.email")
    );
    let (status, html) = post_form(d, &ops, "/ui/triggers/shop/try", &form).await;
    assert_eq!(status, 200);
    assert!(html.contains("class=\"body tried-event\""), "{html}");
    assert!(
        html.contains("&quot;order_total&quot;: &quot;42&quot;"),
        "{html}"
    );
    assert!(
        html.contains("mapping:\n  order_total:"),
        "the YAML to copy"
    );
    assert!(
        html.contains("subscription&#x2f;orders") || html.contains("orders"),
        "the requests it would send"
    );
    assert!(!html.contains(PLANTED));
    // A mapping that does not compile says where.
    let form = format!(
        "csrf={}&sample=1&mapping={}",
        csrf(&html),
        crate::support::form_value("a: { path: \"$[\" }")
    );
    let (_, html) = post_form(d, &ops, "/ui/triggers/shop/try", &form).await;
    assert!(html.contains("line 1:"), "{html}");
    // Without the CSRF token: refused.
    let (status, _) = post_form(d, &ops, "/ui/triggers/shop/try", "sample=0&mapping=a").await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_samples_and_mapping_trials_on_the_embedded_backend() {
    let rx = Receiver::start().await;
    let d = daemon(&rx, "").await;
    samples_and_try_a_mapping(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_samples_are_stored_on_redis() {
    if !redis_available() {
        return;
    }
    let rx = Receiver::start().await;
    let prefix = format!("console-{}", ulid::Ulid::new());
    let queue = format!(
        "queue: {{ backend: redis, url: \"redis://127.0.0.1:6379\", prefix: \"{prefix}\" }}"
    );
    let d = daemon(&rx, &queue).await;
    samples_and_try_a_mapping(&d).await;
    // Written to the store within a housekeeping period (5 s), redacted.
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let start = Instant::now();
    let stored: String = loop {
        let v: Option<String> = redis::cmd("HGET")
            .arg(format!("{prefix}:state"))
            .arg("capture:shop")
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Some(v) = v {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "samples never stored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let samples: Vec<Value> = serde_json::from_str(&stored).unwrap();
    assert_eq!(samples.len(), 2);
    assert!(!stored.contains(PLANTED));
}
