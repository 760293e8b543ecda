//! `hookyard-bench load`: a closed-loop (or fixed-rate) HTTP POST load
//! generator over keep-alive connections, bounded by time or count.
//!
//! Each of `--connections` workers owns one connection and keeps one
//! request in flight on it. The default client is a bare hyper HTTP/1.1
//! connection per worker, so the generator costs as little CPU as possible
//! (it shares the cores with the server it measures). `--client reqwest`
//! sends through one pooled reqwest client instead: that is the SPEC §10
//! "delivery ceiling" (reqwest with 64 requests in flight) when pointed at
//! `hookyard-bench receiver`.
//!
//! With `--rate`, request `n` is due at `start + n/rate`. When every worker
//! was busy past that time, its latency is measured from the due time, not
//! from when a worker got round to it, so queueing behind a slow server
//! shows in the percentiles (no coordinated omission); `--connections`
//! bounds the requests in flight, so give it headroom.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::histogram::LatencyHistogram;
use crate::request::{RequestSpec, Signer, Template, loopback_url, parse_header, sized_event_body};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// One bare hyper HTTP/1.1 connection per worker (lowest overhead).
    Hyper,
    /// One pooled reqwest client shared by all workers.
    Reqwest,
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Target URL; loopback hosts only (http://127.0.0.1:PORT/path).
    #[arg(long)]
    url: url::Url,
    /// Concurrent keep-alive connections (= requests in flight).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Stop after this long (`10s`, `1m`). Default 10s unless --requests.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Fixed request rate, `2000/s` or `2000`; default: as fast as possible.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Body from a file (`{{n}}` and `{{now}}` are substituted).
    #[arg(long, conflicts_with_all = ["body_template", "body_size"])]
    body_file: Option<std::path::PathBuf>,
    /// Body given inline; `{{n}}` becomes the request number, `{{now}}` the
    /// RFC 3339 time of sending.
    #[arg(long, conflicts_with = "body_size")]
    body_template: Option<String>,
    /// Size of the default body, a JSON event for POST /v1/events:
    /// {"type":"bench.event","data":{"n":N,"pad":"…"}}.
    #[arg(long, default_value_t = 1024)]
    body_size: usize,
    /// Extra header `Name: value` (repeatable; `{{n}}` substituted, e.g.
    /// `Idempotency-Key: k-{{n}}`).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Content-Type of the body.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Sign the body with HMAC-SHA256 using this secret.
    #[arg(long)]
    hmac_sha256: Option<String>,
    /// Header carrying the signature.
    #[arg(long, default_value = "X-Hmac-Signature")]
    hmac_header: String,
    /// Prefix of the signature value, e.g. `sha256=` (GitHub style).
    #[arg(long, default_value = "")]
    hmac_prefix: String,
    /// Encode the signature in base64 instead of hex.
    #[arg(long)]
    hmac_base64: bool,
    /// Give up on one request after this long (counted as an error; the
    /// connection is dropped), so a stuck server cannot hang the run.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    timeout: Duration,
    /// HTTP client used to send.
    #[arg(long, value_enum, default_value_t = ClientKind::Hyper)]
    client: ClientKind,
    /// Print one JSON line instead of the human report.
    #[arg(long)]
    json: bool,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches("/s");
    match number.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!(
            "rate {text:?} is not a positive number like 2000/s"
        )),
    }
}

/// Hands out request numbers and due times; shared by all workers.
struct Plan {
    start: Instant,
    deadline: Option<Instant>,
    max_requests: Option<u64>,
    rate: Option<f64>,
    next: AtomicU64,
}

/// One request to send.
#[derive(Debug, PartialEq)]
struct Ticket {
    n: u64,
    /// When it was due (`--rate`) or handed out.
    due: Instant,
    /// Where its latency counts from: the due time when the worker was
    /// late (busy with an earlier request: that wait is the server's fault
    /// and must show), or the actual wake-up when the worker had to sleep
    /// (tokio's timer wakes up to ~1 ms late; that slop is ours).
    since: Instant,
}

impl Plan {
    /// The next request to send, or `None` when the run is over.
    async fn next(&self) -> Option<Ticket> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.max_requests.is_some_and(|max| n >= max) {
            return None;
        }
        let now = Instant::now();
        match self.rate {
            Some(rate) => {
                let due = self.start + Duration::from_secs_f64(n as f64 / rate);
                if self.deadline.is_some_and(|d| due >= d) {
                    return None;
                }
                if due > now {
                    tokio::time::sleep_until(due).await;
                    return Some(Ticket {
                        n,
                        due,
                        since: Instant::now(),
                    });
                }
                Some(Ticket { n, due, since: due })
            }
            None => {
                if self.deadline.is_some_and(|d| now >= d) {
                    return None;
                }
                Some(Ticket {
                    n,
                    due: now,
                    since: now,
                })
            }
        }
    }
}

/// What one worker saw; merged at the end.
#[derive(Default)]
struct Tally {
    latency: LatencyHistogram,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, err: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(err.to_string());
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency.merge(&other.latency);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Shared, read-only inputs of every worker.
struct Shared {
    plan: Plan,
    spec: RequestSpec,
    url: url::Url,
    addr: SocketAddr,
    content_type: String,
    timeout: Duration,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    if args.url.scheme() != "http" {
        bail!("--url must be http:// (loopback benchmarks need no TLS)");
    }
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let addr = loopback_url(&args.url).await?;
    let body = match (&args.body_file, &args.body_template) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --body-file {}", path.display()))?,
        (None, Some(template)) => template.clone(),
        (None, None) => sized_event_body(args.body_size),
    };
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let signer = args.hmac_sha256.as_ref().map(|secret| Signer {
        secret: secret.as_bytes().to_vec(),
        header: args.hmac_header.clone(),
        prefix: args.hmac_prefix.clone(),
        base64: args.hmac_base64,
    });
    let duration = match (args.duration, args.requests) {
        (None, None) => Some(Duration::from_secs(10)),
        (duration, _) => duration,
    };
    let start = Instant::now();
    let shared = Arc::new(Shared {
        plan: Plan {
            start,
            deadline: duration.map(|d| start + d),
            max_requests: args.requests,
            rate: args.rate,
            next: AtomicU64::new(0),
        },
        spec: RequestSpec {
            body: Template::parse(&body),
            headers,
            signer,
        },
        url: args.url.clone(),
        addr,
        content_type: args.content_type.clone(),
        timeout: args.timeout,
    });

    let reqwest_client = match args.client {
        ClientKind::Hyper => None,
        ClientKind::Reqwest => Some(
            reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(args.connections)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("cannot build the reqwest client")?,
        ),
    };
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let shared = shared.clone();
        match &reqwest_client {
            None => workers.spawn(hyper_worker(shared)),
            Some(client) => workers.spawn(reqwest_worker(shared, client.clone())),
        };
    }
    let mut total = Tally::default();
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("a load worker panicked")?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    report(&args, &total, elapsed);
    Ok(())
}

async fn hyper_worker(shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let path = match shared.url.query() {
        Some(q) => format!("{}?{q}", shared.url.path()),
        None => shared.url.path().to_string(),
    };
    let host = match shared.url.port() {
        Some(port) => format!("{}:{port}", shared.url.host_str().unwrap_or("localhost")),
        None => shared.url.host_str().unwrap_or("localhost").to_string(),
    };
    let mut sender: Option<http1::SendRequest<Full<Bytes>>> = None;
    while let Some(Ticket { n, since, .. }) = shared.plan.next().await {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            match connect(shared.addr).await {
                Ok(s) => sender = Some(s),
                Err(err) => {
                    tally.error(format!("connect: {err}"));
                    // Do not spin on a refused port.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(conn) = sender.as_mut() else {
            continue;
        };
        let built = shared.spec.build(n);
        let mut request = hyper::Request::post(path.as_str())
            .header(hyper::header::HOST, host.as_str())
            .header(hyper::header::CONTENT_TYPE, shared.content_type.as_str());
        for (name, value) in &built.headers {
            request = request.header(name.as_str(), value.as_ref());
        }
        let request = match request.body(Full::new(built.body)) {
            Ok(r) => r,
            Err(err) => {
                tally.error(format!("bad request: {err}"));
                continue;
            }
        };
        let exchange = async {
            conn.ready().await?;
            let response = conn.send_request(request).await?;
            let status = response.status().as_u16();
            response.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        };
        let outcome = match tokio::time::timeout(shared.timeout, exchange).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no response within {:?}", shared.timeout)),
        };
        match outcome {
            Ok(status) => {
                tally.latency.record(micros_since(since));
                *tally.statuses.entry(status).or_default() += 1;
            }
            Err(err) => {
                tally.error(err);
                sender = None;
            }
        }
    }
    tally
}

async fn connect(addr: SocketAddr) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the peer closes; the worker sees it on its next send.
        let _ = connection.await;
    });
    Ok(sender)
}

async fn reqwest_worker(shared: Arc<Shared>, client: reqwest::Client) -> Tally {
    let mut tally = Tally::default();
    while let Some(Ticket { n, since, .. }) = shared.plan.next().await {
        let built = shared.spec.build(n);
        let mut request = client
            .post(shared.url.clone())
            .timeout(shared.timeout)
            .header(reqwest::header::CONTENT_TYPE, shared.content_type.as_str())
            .body(built.body);
        for (name, value) in built.headers {
            request = request.header(name, value.as_ref());
        }
        let outcome = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            response.bytes().await?;
            Ok::<u16, reqwest::Error>(status)
        }
        .await;
        match outcome {
            Ok(status) => {
                tally.latency.record(micros_since(since));
                *tally.statuses.entry(status).or_default() += 1;
            }
            Err(err) => tally.error(err),
        }
    }
    tally
}

fn micros_since(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn report(args: &LoadArgs, total: &Tally, elapsed: f64) {
    let done = total.latency.count();
    let rps = if elapsed > 0.0 {
        done as f64 / elapsed
    } else {
        0.0
    };
    let h = &total.latency;
    if args.json {
        let statuses: serde_json::Map<String, serde_json::Value> = total
            .statuses
            .iter()
            .map(|(s, n)| (s.to_string(), (*n).into()))
            .collect();
        let line = serde_json::json!({
            "url": args.url.as_str(),
            "client": format!("{:?}", args.client).to_lowercase(),
            "connections": args.connections,
            "requests": done,
            "duration_s": elapsed,
            "rps": rps,
            "statuses": statuses,
            "errors": total.errors,
            "first_error": total.first_error,
            "p50_ms": h.quantile_ms(0.5),
            "p90_ms": h.quantile_ms(0.9),
            "p99_ms": h.quantile_ms(0.99),
            "max_ms": h.max() as f64 / 1000.0,
            "mean_ms": h.mean() / 1000.0,
        });
        println!("{line}");
        return;
    }
    println!(
        "{done} requests in {elapsed:.2}s over {} connections ({:?} client): {rps:.0} req/s",
        args.connections, args.client
    );
    let statuses: Vec<String> = total
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    println!("status codes: {}", statuses.join(", "));
    println!(
        "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
        h.quantile_ms(0.5),
        h.quantile_ms(0.9),
        h.quantile_ms(0.99),
        h.max() as f64 / 1000.0,
        h.mean() / 1000.0
    );
    match &total.first_error {
        Some(first) => println!("errors: {} (first: {first})", total.errors),
        None => println!("errors: 0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("2000/s"), Ok(2000.0));
        assert_eq!(parse_rate("12.5"), Ok(12.5));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
    }

    // Due times are computed, not measured, so real time gives exact answers
    // (tokio's paused clock needs the `test-util` feature, not in the tree).
    #[tokio::test]
    async fn plan_stops_at_count_and_paces_at_rate() {
        let start = Instant::now();
        let plan = Plan {
            start,
            deadline: None,
            max_requests: Some(3),
            rate: Some(100.0),
            next: AtomicU64::new(0),
        };
        let mut dues = Vec::new();
        while let Some(ticket) = plan.next().await {
            assert!(ticket.since >= ticket.due);
            dues.push((ticket.n, ticket.due - start));
        }
        assert!(
            start.elapsed() >= Duration::from_millis(20),
            "requests were not paced"
        );
        assert_eq!(
            dues,
            vec![
                (0, Duration::ZERO),
                (1, Duration::from_millis(10)),
                (2, Duration::from_millis(20))
            ]
        );
    }

    #[tokio::test]
    async fn plan_stops_at_deadline() {
        let start = Instant::now();
        let plan = Plan {
            start,
            deadline: Some(start + Duration::from_millis(25)),
            max_requests: None,
            rate: Some(100.0),
            next: AtomicU64::new(0),
        };
        let mut count = 0;
        while plan.next().await.is_some() {
            count += 1;
        }
        assert_eq!(count, 3); // due at 0, 10, 20 ms
    }
}
