//! A corpus of malformed and hostile requests, sent over raw TCP so nothing
//! is cleaned up on the way (an HTTP client would normalise `..` in paths
//! and refuse bad header values): bad JSON, deep nesting, invalid UTF-8,
//! bad escapes, huge ids, bad query strings, path tricks, wrong auth
//! schemes, oversized batches, wrong methods. Each must get a 4xx with the
//! JSON error body; afterwards the daemon is up and still delivers.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Receiver, start_daemon_with_env};

const TOKEN: &str = "hostile-token";

/// One request as raw bytes, and what it probes.
struct Probe {
    what: String,
    raw: Vec<u8>,
}

fn request(method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: hookyard\r\nConnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn bearer() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

fn json_ct() -> (&'static str, String) {
    ("Content-Type", "application/json".to_owned())
}

/// Bodies no JSON parser may accept, or that parse to something no route
/// takes.
fn bad_bodies() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = [
        "",
        "{",
        "}",
        "[",
        "{\"a\":}",
        "{\"a\" 1}",
        "{a: 1}",
        "{'a': 1}",
        "[1,]",
        "{\"a\":1,}",
        "nul",
        "tru",
        "01",
        "1e",
        "-",
        "\"unterminated",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\uZZZZ\"}",
        "{\"a\":\"\\\"}",
        "{\"a\":1}{\"b\":2}",
        "[1] x",
        "NaN",
        "Infinity",
        "{\"a\":1e999999}",
        "\u{feff}{}",
        "{\"a\":\"\t\"}",
        "/* c */ {}",
    ]
    .iter()
    .map(|s| (format!("bad JSON {s:?}"), s.as_bytes().to_vec()))
    .collect();
    out.push(("deep arrays".into(), "[".repeat(100_000).into_bytes()));
    out.push(("deep objects".into(), "{\"a\":".repeat(50_000).into_bytes()));
    let closed = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    out.push(("deep but closed".into(), closed.into_bytes()));
    for bytes in [
        &b"{\"a\":\"\xff\"}"[..],
        b"{\"a\":\"\xc3\x28\"}",
        b"{\"\xed\xa0\x80\":1}",
        b"\xfe\xff\x00{\x00}",
        b"{\"a\":\"\xf8\x88\x80\x80\x80\"}",
    ] {
        out.push((format!("invalid UTF-8 {bytes:?}"), bytes.to_vec()));
    }
    out
}

/// Event API bodies that parse but are not valid events.
fn bad_events() -> Vec<(String, Value)> {
    let long = "i".repeat(257);
    let mut out = vec![
        ("no type".into(), json!({"data": {}})),
        ("empty type".into(), json!({"type": "", "data": {}})),
        ("type not a string".into(), json!({"type": 7, "data": {}})),
        ("long type".into(), json!({"type": long, "data": {}})),
        (
            "empty id".into(),
            json!({"type": "a", "id": "", "data": {}}),
        ),
        (
            "huge id".into(),
            json!({"type": "a", "id": long, "data": {}}),
        ),
        (
            "megabyte id".into(),
            json!({"type": "a", "id": "i".repeat(500_000)}),
        ),
        ("id with newline".into(), json!({"type": "a", "id": "a\nb"})),
        ("id with NUL".into(), json!({"type": "a", "id": "a\u{0}b"})),
        ("id not a string".into(), json!({"type": "a", "id": 5})),
        (
            "bad timestamp".into(),
            json!({"type": "a", "timestamp": "yesterday"}),
        ),
        (
            "timestamp number".into(),
            json!({"type": "a", "timestamp": [1]}),
        ),
        ("a string".into(), json!("event")),
        ("a number".into(), json!(42)),
        ("null".into(), json!(null)),
        ("batch of strings".into(), json!(["a", "b"])),
        (
            "batch with one bad".into(),
            json!([{"type": "a"}, {"type": ""}]),
        ),
    ];
    let batch: Vec<Value> = (0..501)
        .map(|i| json!({"type": "a", "data": {"i": i}}))
        .collect();
    out.push(("501 events".into(), Value::Array(batch)));
    for ctl in ["\u{1}", "\u{7f}", "\r", "\t", "\u{85}", "\n"] {
        out.push((
            format!("type with {ctl:?}"),
            json!({"type": format!("a{ctl}b")}),
        ));
    }
    out
}

fn corpus() -> Vec<Probe> {
    let mut probes = Vec::new();
    let mut add = |what: String, raw: Vec<u8>| probes.push(Probe { what, raw });
    for (what, body) in bad_bodies() {
        add(
            format!("trigger: {what}"),
            request("POST", "/hooks/open", &[json_ct()], &body),
        );
        add(
            format!("event API: {what}"),
            request("POST", "/v1/events", &[json_ct(), bearer()], &body),
        );
        add(
            format!("signed trigger, forged: {what}"),
            request(
                "POST",
                "/hooks/signed",
                &[json_ct(), ("X-Hmac-Signature", "sha256=00".to_owned())],
                &body,
            ),
        );
    }
    for (what, body) in bad_events() {
        let body = serde_json::to_vec(&body).unwrap();
        add(
            format!("event API: {what}"),
            request("POST", "/v1/events", &[json_ct(), bearer()], &body),
        );
    }
    let big = vec![b'x'; 70 * 1024];
    add(
        "body over max_body".into(),
        request("POST", "/hooks/open", &[json_ct()], &big),
    );
    add(
        "event API body over max_body".into(),
        request("POST", "/v1/events", &[json_ct(), bearer()], &big),
    );
    for query in [
        "limit=abc",
        "limit=-1",
        "limit=0",
        "limit=100000",
        "limit=1e3",
        "limit=",
        "since=garbage",
        "since=2026-13-45T00:00:00Z",
        "cursor=%ff%fe",
        "cursor=not-a-cursor",
        "state=bogus",
        "unknown=1",
        "limit=1&limit=2",
        "limit=99999999999999999999999",
        "state=pending&state=",
        "since=-1",
    ] {
        for route in ["/v1/events", "/v1/deliveries"] {
            add(
                format!("GET {route}?{query}"),
                request("GET", &format!("{route}?{query}"), &[bearer()], b""),
            );
        }
    }
    for path in [
        "/hooks/../v1/events",
        "/hooks/%2e%2e/v1/events",
        "/hooks/open/../../etc/passwd",
        "/hooks/..%2f..%2fetc%2fpasswd",
        "/hooks/open%00",
        "/hooks/open%2F",
        "/hooks/",
        "/hooks/nope",
        "/hooks/%ff%fe",
        "/hooks/open/extra",
        "/hooks//open",
        "/HOOKS/open",
        "/v1/events/..%2f..%2fadmin",
        "/v1/../v1/admin/config",
        "/v1/nope",
        "/nope",
        "/.env",
        "/%2e%2e/%2e%2e/etc/passwd",
    ] {
        add(
            format!("path {path}"),
            request("POST", path, &[json_ct(), bearer()], b"{}"),
        );
    }
    let hooks = format!("/hooks/{}", "a".repeat(8_000));
    add(
        "very long path".into(),
        request("POST", &hooks, &[json_ct()], b"{}"),
    );
    for (what, value) in [
        ("no scheme", TOKEN.to_owned()),
        ("Basic", format!("Basic {TOKEN}")),
        ("Token", format!("Token {TOKEN}")),
        ("empty bearer", "Bearer ".to_owned()),
        ("bearer of spaces", "Bearer      ".to_owned()),
        ("wrong token", "Bearer nope".to_owned()),
        ("token with suffix", format!("Bearer {TOKEN}x")),
        ("token prefix", format!("Bearer {}", &TOKEN[..5])),
        ("two tokens", format!("Bearer {TOKEN}, Bearer {TOKEN}")),
        ("huge token", format!("Bearer {}", "t".repeat(6_000))),
        ("non-ASCII", "Bearer t\u{f6}ken".to_owned()),
    ] {
        add(
            format!("auth {what}"),
            request(
                "POST",
                "/v1/events",
                &[json_ct(), ("Authorization", value)],
                b"{\"type\":\"a\"}",
            ),
        );
    }
    add(
        "signed trigger, no signature".into(),
        request("POST", "/hooks/signed", &[json_ct()], b"{}"),
    );
    for sig in [
        "zz",
        "sha256=",
        "sha256=zz",
        "sha1=00",
        &"0".repeat(64),
        &"a".repeat(10_000),
    ] {
        add(
            format!("signed trigger, signature {}", &sig[..sig.len().min(20)]),
            request(
                "POST",
                "/hooks/signed",
                &[json_ct(), ("X-Hmac-Signature", sig.to_owned())],
                b"{}",
            ),
        );
    }
    for method in ["PUT", "DELETE", "PATCH", "GET"] {
        add(
            format!("{method} on a trigger"),
            request(method, "/hooks/open", &[json_ct()], b"{}"),
        );
        add(
            format!("{method} on the event API"),
            request(method, "/v1/events/x/replay", &[bearer()], b""),
        );
    }
    for ct in [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
    ] {
        add(
            format!("trigger with content type {ct}"),
            request(
                "POST",
                "/hooks/open",
                &[("Content-Type", ct.to_owned())],
                b"<a/>",
            ),
        );
    }
    add(
        "form body that is not a form".into(),
        request(
            "POST",
            "/hooks/open",
            &[(
                "Content-Type",
                "application/x-www-form-urlencoded".to_owned(),
            )],
            b"%zz=%%&&==",
        ),
    );
    probes
}

/// Send `raw`, read the whole answer (the request asked to close).
async fn send(addr: SocketAddr, raw: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the daemon answered within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |i| i + 4);
    let head = text[..split.min(text.len())].to_ascii_lowercase();
    let mut body = answer[split..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

#[tokio::test]
async fn hostile_requests_get_a_json_4xx_and_the_daemon_keeps_delivering() {
    let rx = Receiver::start().await;
    let env = std::collections::HashMap::from([
        ("TOKEN".to_owned(), TOKEN.to_owned()),
        ("SIG".to_owned(), "signing-key".to_owned()),
    ]);
    let d = start_daemon_with_env(
        &format!(
            r#"
server: {{ max_body: 64KiB }}
secrets: {{ token: {{ env: TOKEN }}, sig: {{ env: SIG }} }}
tokens: [ {{ name: app, secret: token, scopes: [events:write, deliveries:read, deliveries:write] }} ]
triggers:
  - id: open
    event: e.open
    verify: none
    mapping: {{ order.id: {{ path: "$.id", required: true }} }}
  - id: signed
    event: e.signed
    verify: {{ signature: {{ preset: hmac-sha256, secret: sig }} }}
subscriptions:
  - {{ id: rx, url: "{}", events: ["*"] }}
"#,
            rx.url("/in")
        ),
        env,
    )
    .await;
    let probes = corpus();
    assert!(probes.len() >= 200, "only {} probes", probes.len());
    let mut failures = Vec::new();
    for probe in &probes {
        let (status, body) = send(d.addr, &probe.raw).await;
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let error = parsed.as_ref().map(|v| &v["error"]);
        let well_formed = error.is_some_and(|e| e["code"].is_string() && e["message"].is_string());
        if !(400..500).contains(&status) || !well_formed {
            failures.push(format!(
                "{}: {status} {}",
                probe.what,
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} probes failed:\n{}",
        failures.len(),
        probes.len(),
        failures.join("\n")
    );
    // Still up, and still delivering.
    let (status, _) = send(d.addr, &request("GET", "/healthz", &[], b"")).await;
    assert_eq!(status, 200);
    let body = serde_json::to_vec(&json!({"id": "after-the-storm"})).unwrap();
    let (status, _) = send(d.addr, &request("POST", "/hooks/open", &[json_ct()], &body)).await;
    assert_eq!(status, 202);
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "only the one good event was delivered");
    let envelope = got[0].json();
    assert_eq!(envelope["data"]["order"]["id"], "after-the-storm");
}
