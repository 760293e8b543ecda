//! Queue throughput benchmark: `cargo bench --bench queue` (release).
//!
//! For each backend: 64 concurrent producers each ingest events (1 KiB of
//! data, one job each, durable before the call returns) while 64 workers
//! lease, and complete them with a recorded attempt. Prints ingests/s and
//! end-to-end (ingest → completed) events/s. A plain `main` rather than
//! criterion: this measures a whole pipeline under concurrency, not a hot
//! function.
//!
//! Sections are functions taking a `Queue`; `main` runs them for the
//! embedded backend, then for Redis (127.0.0.1:6379 or `REDIS_URL`; skipped
//! with a message when unreachable). `benches/queue_redis.rs` compares the
//! Redis backend with raw Redis Streams.

// A benchmark or test that meets an error should stop right there.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hookyard::queue::{
    Attempt, DeliveryState, EmbeddedQueue, Event, NewJob, Queue, StoreSettings, Target,
};
use jiff::Timestamp;
use serde_json::json;

const PRODUCERS: usize = 64;
const WORKERS: usize = 64;
const EVENTS: u64 = 40_000;

fn settings() -> StoreSettings {
    StoreSettings {
        lease: Duration::from_secs(60),
        history_retention: Duration::from_secs(7 * 24 * 3600),
        history_max_events: 1_000_000,
        idempotency_window: Duration::from_secs(24 * 3600),
        consumer_name: "bench".into(),
    }
}

fn event(i: u64) -> (Event, NewJob) {
    let id = format!("ev-{i:08}");
    let event = Event {
        id: id.clone(),
        event_type: "bench.event".into(),
        timestamp: Timestamp::now(),
        source: "api:bench".into(),
        data: json!({ "pad": "x".repeat(1024) }),
    };
    let job = NewJob {
        delivery_id: format!("dl-{i:08}"),
        event_id: id,
        target: Target::Subscription { id: "bench".into() },
        steps: BTreeMap::new(),
        ordering_key: None,
        not_before: None,
        traceparent: None,
        fifo_later: false,
    };
    (event, job)
}

/// Producers alone: durable ingests per second.
async fn ingest_only(q: &Queue, count: u64) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..PRODUCERS {
        let (q, next) = (q.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let (event, job) = event(i);
                let key = format!("k{i}");
                q.ingest(&event, Some(("event", &key)), vec![job])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// Workers alone: lease + complete (with an attempt) per second, draining
/// `count` jobs. With `concurrent`, each worker completes its leased batch
/// concurrently (as the daemon does: many deliveries in flight); without,
/// one after the other (at most `WORKERS` writes in flight).
async fn drain(q: &Queue, count: u64, concurrent: bool) -> (u64, f64) {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let (q, done) = (q.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < count {
                let jobs = q.lease(16, Duration::from_millis(100)).await.unwrap();
                let finish = |job: hookyard::queue::LeasedJob| {
                    let (q, done) = (q.clone(), done.clone());
                    async move {
                        let attempt = Attempt {
                            attempt: job.attempts + 1,
                            at: Timestamp::now(),
                            request: json!({"method": "POST", "url": "http://127.0.0.1:9/", "headers": {}}),
                            response: Some(json!({"status": 200, "headers": {}, "body": "ok"})),
                            duration_ms: 1,
                            error: None,
                        };
                        q.complete(&job, Some(attempt), DeliveryState::Succeeded, None)
                            .await
                            .unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                };
                if concurrent {
                    futures_util::future::join_all(jobs.into_iter().map(finish)).await;
                } else {
                    for job in jobs {
                        finish(job).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Workers may overshoot `count` by what they had leased.
    let done = done.load(Ordering::Relaxed);
    (done, done as f64 / start.elapsed().as_secs_f64())
}

/// Producers and workers together: events/s ingested and delivered.
async fn end_to_end(q: &Queue, offset: u64, count: u64, concurrent: bool) -> f64 {
    let start = Instant::now();
    let producers = {
        let q = q.clone();
        tokio::spawn(async move {
            let next = Arc::new(AtomicU64::new(offset));
            let mut tasks = Vec::new();
            for _ in 0..PRODUCERS {
                let (q, next) = (q.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= offset + count {
                            return;
                        }
                        let (event, job) = event(i);
                        q.ingest(&event, None, vec![job]).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    drain(q, count, concurrent).await;
    producers.await.unwrap();
    count as f64 / start.elapsed().as_secs_f64()
}

async fn run_backend(name: &str, q: Queue) {
    let n = EVENTS;
    let ingest = ingest_only(&q, n).await;
    println!("{name}: ingest (1 KiB event, 1 job, {PRODUCERS} producers): {ingest:.0} events/s");
    let (first, serial) = drain(&q, n / 2, false).await;
    println!("{name}: lease + complete, {WORKERS} workers, serial completes: {serial:.0} jobs/s");
    let (_, conc) = drain(&q, n - first, true).await;
    println!("{name}: lease + complete, {WORKERS} workers, concurrent completes: {conc:.0} jobs/s");
    let e2e = end_to_end(&q, n, n, false).await;
    println!("{name}: end to end (ingest → completed), serial completes: {e2e:.0} events/s");
    let e2e = end_to_end(&q, 2 * n, n, true).await;
    println!("{name}: end to end (ingest → completed), concurrent completes: {e2e:.0} events/s");
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let q = EmbeddedQueue::open(dir.path(), settings())
        .await
        .expect("open embedded queue");
    run_backend("embedded", Queue::Embedded(q)).await;

    // Redis at 127.0.0.1:6379 (or REDIS_URL), on a unique key prefix that
    // is deleted afterwards.
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let prefix = format!("hyq-{}", ulid::Ulid::new());
    match hookyard::queue::redis::RedisQueue::open(&url, &prefix, settings()).await {
        Ok(q) => {
            run_backend("redis", Queue::Redis(q)).await;
            delete_prefix(&url, &prefix).await;
        }
        Err(e) => eprintln!("SKIPPED redis: {e}"),
    }
}

async fn delete_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: Result<u64, _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}
