//! `hookyard-bench receiver`: the delivery endpoint of end-to-end runs.
//!
//! Answers every POST (any path) with `--status`, counts it, and records
//! the end-to-end latency: receipt time minus the `timestamp` of the
//! delivered envelope (`{id, type, timestamp, source, data}`, RFC 3339).
//! The daemon stamps `timestamp` at ingest, so this is ingest-to-delivery
//! as SPEC §10 defines it (both clocks are the same machine's).
//!
//! `GET /stats` returns `{count, no_timestamp, rate, p50_ms, p99_ms,
//! max_ms}` for scripts; `DELETE /stats` resets the figures (e.g. after a
//! warm-up). The same summary is printed every `--report-every` and on
//! Ctrl-C.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Json;
use axum::routing::get;
use serde::Deserialize;

use crate::histogram::LatencyHistogram;
use crate::request::loopback_listen;

#[derive(Debug, clap::Args)]
pub struct ReceiverArgs {
    /// Address to listen on (loopback only); 127.0.0.1:0 picks a free port.
    #[arg(long)]
    listen: SocketAddr,
    /// Status answered to every POST.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Print the summary this often (`5s`); default: only on Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    report_every: Option<Duration>,
}

#[derive(Default)]
struct Figures {
    latency: LatencyHistogram,
    first: Option<Instant>,
    last: Option<Instant>,
}

struct Shared {
    status: StatusCode,
    count: AtomicU64,
    no_timestamp: AtomicU64,
    figures: Mutex<Figures>,
}

/// The part of the delivered envelope we read.
#[derive(Deserialize)]
struct Envelope {
    timestamp: Option<jiff::Timestamp>,
}

pub async fn run(args: ReceiverArgs) -> anyhow::Result<()> {
    let listen = loopback_listen(args.listen)?;
    let status = StatusCode::from_u16(args.status)
        .ok()
        .with_context(|| format!("--status {} is not an HTTP status", args.status))?;
    let shared = Arc::new(Shared {
        status,
        count: AtomicU64::new(0),
        no_timestamp: AtomicU64::new(0),
        figures: Mutex::new(Figures::default()),
    });
    let app = Router::new()
        .route("/stats", get(get_stats).delete(reset_stats))
        .fallback(receive)
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!(
        "receiver listening on http://{}/ (answers {}); GET /stats; Ctrl-C to stop",
        listener.local_addr()?,
        args.status
    );
    if let Some(every) = args.report_every {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                println!("{}", summary(&shared));
            }
        });
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("receiver server failed")?;
    println!("{}", summary(&shared));
    Ok(())
}

async fn receive(State(shared): State<Arc<Shared>>, method: Method, body: Bytes) -> StatusCode {
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    let now = Instant::now();
    let latency = serde_json::from_slice::<Envelope>(&body)
        .ok()
        .and_then(|e| e.timestamp)
        .map(|ts| {
            let micros = jiff::Timestamp::now().duration_since(ts).as_micros();
            u64::try_from(micros.max(0)).unwrap_or(u64::MAX)
        });
    shared.count.fetch_add(1, Ordering::Relaxed);
    if latency.is_none() {
        shared.no_timestamp.fetch_add(1, Ordering::Relaxed);
    }
    let mut figures = lock(&shared.figures);
    figures.first.get_or_insert(now);
    figures.last = Some(now);
    if let Some(micros) = latency {
        figures.latency.record(micros);
    }
    shared.status
}

fn lock(figures: &Mutex<Figures>) -> std::sync::MutexGuard<'_, Figures> {
    // A poisoned lock only means a handler panicked mid-update; the figures
    // are still counters worth reporting.
    figures.lock().unwrap_or_else(|p| p.into_inner())
}

fn stats_json(shared: &Shared) -> serde_json::Value {
    let figures = lock(&shared.figures);
    let count = shared.count.load(Ordering::Relaxed);
    let span = match (figures.first, figures.last) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    let rate = if span > 0.0 { count as f64 / span } else { 0.0 };
    let h = &figures.latency;
    serde_json::json!({
        "count": count,
        "no_timestamp": shared.no_timestamp.load(Ordering::Relaxed),
        "rate": rate,
        "p50_ms": h.quantile_ms(0.5),
        "p90_ms": h.quantile_ms(0.9),
        "p99_ms": h.quantile_ms(0.99),
        "max_ms": h.max() as f64 / 1000.0,
    })
}

fn summary(shared: &Shared) -> String {
    let s = stats_json(shared);
    format!(
        "received {} ({} without timestamp), {:.0}/s; end-to-end ms p50 {} p90 {} p99 {} max {}",
        s["count"],
        s["no_timestamp"],
        s["rate"].as_f64().unwrap_or(0.0),
        s["p50_ms"],
        s["p90_ms"],
        s["p99_ms"],
        s["max_ms"]
    )
}

async fn get_stats(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(stats_json(&shared))
}

async fn reset_stats(State(shared): State<Arc<Shared>>) -> StatusCode {
    let mut figures = lock(&shared.figures);
    *figures = Figures::default();
    shared.count.store(0, Ordering::Relaxed);
    shared.no_timestamp.store(0, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_latency_from_envelope_timestamp() {
        let shared = Arc::new(Shared {
            status: StatusCode::OK,
            count: AtomicU64::new(0),
            no_timestamp: AtomicU64::new(0),
            figures: Mutex::new(Figures::default()),
        });
        let sent = jiff::Timestamp::now() - jiff::SignedDuration::from_millis(40);
        let body = format!(r#"{{"id":"e1","type":"t","timestamp":"{sent}","data":{{}}}}"#);
        let status = receive(State(shared.clone()), Method::POST, Bytes::from(body)).await;
        assert_eq!(status, StatusCode::OK);
        receive(State(shared.clone()), Method::POST, Bytes::from("not json")).await;
        let stats = stats_json(&shared);
        assert_eq!(stats["count"], 2);
        assert_eq!(stats["no_timestamp"], 1);
        let p50 = stats["p50_ms"].as_f64().unwrap();
        assert!((40.0..1000.0).contains(&p50), "{p50}");
        reset_stats(State(shared.clone())).await;
        assert_eq!(stats_json(&shared)["count"], 0);
    }
}
