//! Traces (SPEC §15) on the real `hookyard` binary, exported to a local
//! OTLP/HTTP receiver that decodes the protobuf with the OpenTelemetry
//! project's own `opentelemetry-proto` package (tests/otlp/receiver.py):
//! the inbound span is the child of the request's `traceparent` (or a new
//! trace's root), every delivery attempt's span is the inbound span's child,
//! also across a retry and a workflow's second step, and each delivered
//! request carries a `traceparent` naming its attempt's span. The spans of
//! the last requests arrive because SIGTERM exports them. With traces off,
//! nothing is sent outbound.
//!
//! Under CI=true a missing Python package fails the test (`.ci/run`
//! installs it); elsewhere the test is skipped with a note.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::inbound::{JsonReq, JsonResp};
use crate::support::{Answer, Received, Receiver, free_port, http, start_daemon};

const T: Duration = Duration::from_secs(20);
const TOKEN: &str = "traces-token-value";
/// The inbound contexts the tests send (W3C Trace Context examples).
const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_A: &str = "00f067aa0ba902b7";
const TRACE_B: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_B: &str = "b7ad6b7169203331";
const TRACE_C: &str = "5c3a0f2e7d1b4a6c9e8f7a6b5c4d3e2f";

/// OTLP span kinds.
const SERVER: i64 = 2;
const CLIENT: i64 = 3;

/// True when python3 can import `opentelemetry.proto`. Under CI=true a
/// missing package is a failure, not a skip.
pub fn python_has_otlp_proto() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "python3 with the `opentelemetry-proto` package is needed to decode exported spans: \
             `python3 -m pip install opentelemetry-proto` (.ci/run does this)"
        );
    }
    if !ok {
        eprintln!("note: python3 `opentelemetry-proto` missing; skipping the OTLP trace test");
    }
    ok
}

/// tests/otlp/receiver.py on a free loopback port; killed on drop.
pub struct Collector {
    child: Child,
    pub port: u16,
    spans: PathBuf,
}

impl Collector {
    pub fn start(dir: &Path) -> Collector {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/receiver.py");
        let spans = dir.join("spans.jsonl");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&spans)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the OTLP receiver did not print its port: {line:?}")
        });
        Collector { child, port, spans }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.spans)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hookyard run` on a temp-dir config; killed on drop (panics included).
struct Daemon {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// `yaml` may use `{PORT}` and `{DATA}`.
    async fn start(yaml: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let text = yaml
            .replace("{PORT}", &port.to_string())
            .replace("{DATA}", &dir.path().join("data").display().to_string());
        let config = dir.path().join("hookyard.yaml");
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(dir.path().join("hookyard.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .args(["run", "-c"])
            .arg(&config)
            .env("TRACES_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut d = Daemon { child, port, dir };
        let client = http();
        for _ in 0..400 {
            if let Ok(r) = client.get(d.url("/readyz")).send().await {
                if r.status() == 200 {
                    return d;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = d.child.kill();
        panic!("hookyard not ready within 10s:\n{}", d.log());
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hookyard.log")).unwrap_or_default()
    }

    /// SIGTERM, and wait for exit 0.
    async fn stop(mut self) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit {status}:\n{}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST `body` to `url` with optional `traceparent`; the event id answered.
async fn post(url: &str, body: Value, traceparent: Option<&str>) -> String {
    let mut req = http().post(url).bearer_auth(TOKEN).json(&body);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 202);
    let answer: Value = JsonResp::json(res).await.unwrap();
    answer["event_id"].as_str().unwrap().to_owned()
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

/// The one inbound (server) span of `event_id`.
fn inbound_span<'a>(spans: &'a [Value], event_id: &str) -> &'a Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| s["kind"] == SERVER && attr(s, "hookyard.event_id") == event_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one inbound span for {event_id}: {spans:#?}"
    );
    found[0]
}

/// The attempt (client) spans of `event_id`.
fn attempt_spans<'a>(spans: &'a [Value], event_id: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s["kind"] == CLIENT && attr(s, "hookyard.event_id") == event_id)
        .collect()
}

/// Each request delivered for `event_id` carries `traceparent` naming the
/// span of its own attempt (same delivery id and attempt number), in the
/// trace `trace_id`; and each of those spans is the inbound span's child.
fn check_attempts(spans: &[Value], received: &[Received], event_id: &str, trace_id: &str) {
    let inbound = inbound_span(spans, event_id);
    let attempts = attempt_spans(spans, event_id);
    for span in &attempts {
        assert_eq!(span["trace_id"], trace_id, "{span:#}");
        assert_eq!(span["parent_span_id"], inbound["span_id"], "{span:#}");
        assert_eq!(span["service"], "hookyard");
    }
    let requests: Vec<&Received> = received
        .iter()
        .filter(|r| r.header("x-hookyard-event-id") == Some(event_id))
        .collect();
    assert_eq!(requests.len(), attempts.len(), "a span per attempt");
    for r in requests {
        let tp = r
            .header("traceparent")
            .expect("a delivered request has traceparent");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(
            (parts[0], parts[1], parts[3]),
            ("00", trace_id, "01"),
            "{tp}"
        );
        let attempt: i64 = r.header("x-hookyard-attempt").unwrap().parse().unwrap();
        let delivery = r.header("x-hookyard-delivery-id").unwrap();
        let span = attempts
            .iter()
            .find(|s| {
                attr(s, "hookyard.delivery_id") == delivery
                    && attr(s, "hookyard.attempt") == attempt
            })
            .unwrap_or_else(|| panic!("no span for attempt {attempt} of {delivery}"));
        assert_eq!(
            span["span_id"], parts[2],
            "the header names the attempt's span"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_tie_inbound_requests_to_attempts_and_outbound_traceparent() {
    if !python_has_otlp_proto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(dir.path());
    let rx = Receiver::start().await;
    let rx_all = Receiver::start().await;
    // The subscription's first request fails: its retry is a second
    // attempt, with a span of its own.
    rx_all.script([Answer::status(503)]);
    let yaml = format!(
        r#"
server: {{ listen: "127.0.0.1:{{PORT}}" }}
queue: {{ backend: embedded, path: "{{DATA}}" }}
reload: {{ watch: false }}
telemetry: {{ otlp: {{ endpoint: "http://127.0.0.1:{otlp}", protocol: http/protobuf }} }}
secrets: {{ app: {{ env: TRACES_TOKEN }} }}
tokens: [ {{ name: app, secret: app, scopes: [events:write] }} ]
triggers:
  - {{ id: shop, verify: none, event: order.created }}
actions:
  - {{ id: first, url: "{first}" }}
  - {{ id: second, url: "{second}" }}
workflows:
  - {{ id: chain, when: {{ event: order.created }}, steps: [ {{ action: first }}, {{ action: second }} ] }}
subscriptions:
  - {{ id: all, url: "{all}", events: ["*"], retry: {{ schedule: [1s] }} }}
"#,
        otlp = collector.port,
        first = rx.url("/first"),
        second = rx.url("/second"),
        all = rx_all.url("/all"),
    );
    let daemon = Daemon::start(&yaml).await;

    // A trigger request inside trace A.
    let tp_a = format!("00-{TRACE_A}-{PARENT_A}-01");
    let e1 = post(&daemon.url("/hooks/shop"), json!({"n": 1}), Some(&tp_a)).await;
    rx.wait_for(2, T).await;
    rx_all.wait_for(2, T).await;
    // The event API, inside trace B and outside any trace.
    let tp_b = format!("00-{TRACE_B}-{PARENT_B}-01");
    let event = json!({"type": "invoice.paid", "data": {"n": 2}});
    let e2 = post(&daemon.url("/v1/events"), event.clone(), Some(&tp_b)).await;
    let e3 = post(&daemon.url("/v1/events"), event.clone(), None).await;
    // A sampled-out parent (flags 00).
    let tp_c = format!("00-{TRACE_C}-{PARENT_B}-00");
    let e4 = post(&daemon.url("/v1/events"), event, Some(&tp_c)).await;
    rx_all.wait_for(5, T).await;
    // Stopped at once: these spans are still in the exporter's batch, and
    // arrive only because the stop exports them.
    daemon.stop().await;

    let spans = collector.spans();
    let received: Vec<Received> = rx.received().into_iter().chain(rx_all.received()).collect();

    let inbound = inbound_span(&spans, &e1);
    assert_eq!(inbound["trace_id"], TRACE_A);
    assert_eq!(inbound["parent_span_id"], PARENT_A);
    assert_eq!(inbound["name"], "POST /hooks/{trigger}");
    assert_eq!(inbound["service"], "hookyard");
    assert_eq!(attr(inbound, "hookyard.trigger"), "shop");
    assert_eq!(attr(inbound, "http.response.status_code"), 202);
    let attempts = attempt_spans(&spans, &e1);
    let mut seen: Vec<(String, i64, String)> = attempts
        .iter()
        .map(|s| {
            (
                attr(s, "hookyard.target").as_str().unwrap().to_owned(),
                attr(s, "hookyard.attempt").as_i64().unwrap(),
                attr(s, "hookyard.outcome").as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let expected = [
        ("subscription/all", 1, "retry"),
        ("subscription/all", 2, "success"),
        ("workflow/chain/first", 1, "success"),
        ("workflow/chain/second", 1, "success"),
    ]
    .map(|(t, n, o)| (t.to_owned(), n, o.to_owned()));
    assert_eq!(
        seen, expected,
        "one span per attempt, the retry's and the next step's too"
    );
    check_attempts(&spans, &received, &e1, TRACE_A);

    let inbound = inbound_span(&spans, &e2);
    assert_eq!(inbound["trace_id"], TRACE_B);
    assert_eq!(inbound["parent_span_id"], PARENT_B);
    assert_eq!(inbound["name"], "POST /v1/events");
    assert_eq!(attempt_spans(&spans, &e2).len(), 1);
    check_attempts(&spans, &received, &e2, TRACE_B);

    // No inbound traceparent: a new trace, still tying inbound → attempt.
    let inbound = inbound_span(&spans, &e3);
    assert_eq!(inbound["parent_span_id"], "");
    let trace = inbound["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(trace.len(), 32);
    assert!(trace != TRACE_A && trace != TRACE_B && trace.chars().any(|c| c != '0'));
    assert_eq!(attempt_spans(&spans, &e3).len(), 1);
    check_attempts(&spans, &received, &e3, &trace);

    // Sampled out: nothing of that trace is exported, and the delivery
    // still carries the trace onward, sampled out, from a span of its own.
    assert!(
        spans
            .iter()
            .all(|s| attr(s, "hookyard.event_id") != e4.as_str()),
        "{spans:#?}"
    );
    let r = received
        .iter()
        .find(|r| r.header("x-hookyard-event-id") == Some(e4.as_str()))
        .unwrap();
    let tp = r.header("traceparent").unwrap();
    assert!(
        tp.starts_with(&format!("00-{TRACE_C}-")) && tp.ends_with("-00"),
        "{tp}"
    );
    assert!(!tp.contains(PARENT_B), "{tp}");
}

#[tokio::test]
async fn with_traces_off_nothing_is_sent_outbound() {
    let rx = Receiver::start().await;
    let yaml = format!(
        r#"
triggers:
  - {{ id: shop, verify: none, event: order.created }}
subscriptions:
  - {{ id: all, url: "{}", events: ["*"] }}
"#,
        rx.url("/all")
    );
    let daemon = start_daemon(&yaml).await;
    let tp = format!("00-{TRACE_A}-{PARENT_A}-01");
    let res = http()
        .post(daemon.url("/hooks/shop"))
        .header("traceparent", &tp)
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let got = rx.wait_for(1, T).await;
    assert_eq!(got[0].header("traceparent"), None, "{:?}", got[0].headers);
    assert!(got[0].header("x-hookyard-event-id").is_some());
}
