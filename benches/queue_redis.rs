//! Throughput of the Redis queue against raw Redis Streams, in the same run
//! (SPEC §10: targets are ratios to ceilings measured alongside).
//!
//! Each side moves the same 1 KiB payloads with 64 concurrent tasks:
//! - queue, per job: `ingest` (event + 1 job + idempotency key) → `lease`
//!   → `complete`;
//! - queue, batched: `ingest_many` of 16 → `lease(16)` → 16 concurrent
//!   `complete`s;
//! - raw: pipelined XADD of 16 → XREADGROUP COUNT 16 → pipelined XACK+XDEL;
//! - floor: the queue's own records (idempotency key, event, delivery
//!   record, stream entry, indexes, counters) written with plain pipelined
//!   commands in batches of 16, without any of its checks: the most any
//!   implementation keeping those records could do; and a minimal floor
//!   with only the idempotency key and a stream entry carrying the event.
//!
//! Run: `cargo bench --bench queue_redis` (Redis at 127.0.0.1:6379, or
//! `REDIS_URL`; `BENCH_OPS` jobs per run). Prints ops/s (one op = one job through its whole life)
//! and the ratios.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hookyard::queue::redis::RedisQueue;
use hookyard::queue::{DeliveryState, Event, NewJob, StoreSettings, Target};

const TASKS: usize = 64;
const BATCH: usize = 16;

fn payload() -> serde_json::Value {
    serde_json::json!({ "blob": "x".repeat(1000) })
}

fn event(id: &str) -> Event {
    Event {
        id: id.to_string(),
        event_type: "bench".into(),
        timestamp: jiff::Timestamp::now(),
        source: "api:bench".into(),
        data: payload(),
    }
}

fn job(id: &str) -> NewJob {
    NewJob {
        delivery_id: format!("d{id}"),
        event_id: id.to_string(),
        target: Target::Subscription { id: "bench".into() },
        steps: Default::default(),
        ordering_key: None,
        not_before: None,
        traceparent: None,
        fifo_later: false,
    }
}

fn settings() -> StoreSettings {
    StoreSettings {
        lease: Duration::from_secs(60),
        history_retention: Duration::from_secs(3600),
        history_max_events: 1_000_000,
        idempotency_window: Duration::from_secs(3600),
        consumer_name: "bench".into(),
    }
}

/// Jobs per run (`BENCH_OPS`, default 40,000).
fn ops() -> u64 {
    std::env::var("BENCH_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40_000)
}

/// Run `TASKS` copies of `body` until `OPS` jobs are done; ops/s.
async fn drive<F, Fut>(body: F) -> f64
where
    F: Fn(Arc<AtomicU64>, usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| tokio::spawn(body(done.clone(), t)))
        .collect();
    for t in tasks {
        t.await.expect("bench task");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn queue_single(q: RedisQueue) -> f64 {
    drive(move |done, t| {
        let q = q.clone();
        async move {
            let mut i = 0u64;
            while done.load(Ordering::Relaxed) < ops() {
                let id = format!("s{t}-{i}");
                i += 1;
                q.ingest(&event(&id), Some(("event", &id)), vec![job(&id)])
                    .await
                    .expect("ingest");
                for l in q.lease(1, Duration::from_millis(50)).await.expect("lease") {
                    q.complete(&l, None, DeliveryState::Succeeded, None)
                        .await
                        .expect("complete");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
    .await
}

async fn queue_batched(q: RedisQueue) -> f64 {
    drive(move |done, t| {
        let q = q.clone();
        async move {
            let mut i = 0u64;
            while done.load(Ordering::Relaxed) < ops() {
                let items = (0..BATCH)
                    .map(|_| {
                        let id = format!("b{t}-{i}");
                        i += 1;
                        let key = Some(("event".to_string(), id.clone()));
                        (event(&id), key, vec![job(&id)])
                    })
                    .collect();
                q.ingest_many(items).await.expect("ingest_many");
                let leased = q
                    .lease(BATCH, Duration::from_millis(50))
                    .await
                    .expect("lease");
                // Workers finish jobs independently; concurrent calls share
                // the multiplexed connection's pipeline.
                let completes = leased
                    .iter()
                    .map(|l| q.complete(l, None, DeliveryState::Succeeded, None));
                for r in futures_util::future::join_all(completes).await {
                    r.expect("complete");
                }
                done.fetch_add(leased.len() as u64, Ordering::Relaxed);
            }
        }
    })
    .await
}

async fn raw(conn: redis::aio::ConnectionManager, stream: String) -> f64 {
    let group = format!("{stream}-g");
    create_group(&conn, &stream, &group).await;
    let body = serde_json::to_string(&event("raw")).expect("json");
    drive(move |done, t| {
        let (mut conn, stream, group, body) =
            (conn.clone(), stream.clone(), group.clone(), body.clone());
        async move {
            while done.load(Ordering::Relaxed) < ops() {
                let mut pipe = redis::pipe();
                for _ in 0..BATCH {
                    pipe.cmd("XADD")
                        .arg(&stream)
                        .arg("*")
                        .arg("e")
                        .arg(&body)
                        .ignore();
                }
                let _: () = pipe.query_async(&mut conn).await.expect("xadd");
                let ids = read_group(&mut conn, &stream, &group, t).await;
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("XACK").arg(&stream).arg(&group).arg(id).ignore();
                    pipe.cmd("XDEL").arg(&stream).arg(id).ignore();
                }
                let _: () = pipe.query_async(&mut conn).await.expect("xack");
                done.fetch_add(ids.len() as u64, Ordering::Relaxed);
            }
        }
    })
    .await
}

/// The floor: the records the queue keeps per job (SPEC §6: idempotency
/// key, event, delivery record, stream entry, history indexes, counters),
/// written with plain pipelined commands, batches of `BATCH`, with none of
/// the queue's checks (no lease check, no duplicate handling, no
/// atomicity). No implementation that keeps the same records can beat it,
/// so its distance from `raw` is the cost of the records themselves.
/// `minimal` writes only the idempotency key and a stream entry carrying
/// the event: the least any queue with idempotency can do, and far less
/// than SPEC §6 asks for (no history, no delivery state, no indexes).
async fn floor(conn: redis::aio::ConnectionManager, p: String, minimal: bool) -> f64 {
    let (ready, group) = (format!("{p}:ready"), format!("{p}:workers"));
    create_group(&conn, &ready, &group).await;
    drive(move |done, t| {
        let (mut conn, p, ready, group) = (conn.clone(), p.clone(), ready.clone(), group.clone());
        async move {
            let mut i = 0u64;
            while done.load(Ordering::Relaxed) < ops() {
                let now = jiff::Timestamp::now().as_millisecond().to_string();
                let mut ingest = redis::pipe();
                let (mut events, mut deliveries, mut unfinished) = (vec![], vec![], vec![]);
                for _ in 0..BATCH {
                    i += 1;
                    let id = format!("f{t}-{i}");
                    let did = format!("d{id}");
                    let seq = (t as u64) << 32 | i;
                    let body = serde_json::to_string(&event(&id)).expect("json");
                    let stored = serde_json::to_string(&job(&id)).expect("json");
                    ingest
                        .cmd("SET")
                        .arg(format!("{p}:idem:event:{id}"))
                        .arg(format!("{now}|{id}"))
                        .arg("NX")
                        .arg("PX")
                        .arg(3_600_000)
                        .arg("GET")
                        .ignore();
                    if minimal {
                        ingest
                            .cmd("XADD")
                            .arg(&ready)
                            .arg("*")
                            .arg(&["d", &did, "j", &stored, "e", &id, "v", &body])
                            .ignore();
                    } else {
                        ingest
                            .cmd("HSET")
                            .arg(format!("{p}:ev:{id}"))
                            .arg(&["json", &body, "at", &now, "seq", &seq.to_string()])
                            .arg(&["ds", &format!("[\"{did}\"]")])
                            .ignore();
                        ingest
                            .cmd("HSET")
                            .arg(format!("{p}:d:{did}"))
                            .arg(&["ev", &id, "tg", "subscription:bench", "job", &stored])
                            .arg(&["st", "pending", "seq", &seq.to_string()])
                            .ignore();
                        ingest
                            .cmd("XADD")
                            .arg(&ready)
                            .arg("*")
                            .arg(&["d", &did, "j", &stored, "n", "0", "o", "", "e", &id])
                            .ignore();
                    }
                    events.push((seq, id.clone()));
                    deliveries.push((seq, did.clone()));
                    unfinished.push((now.clone(), did));
                }
                if !minimal {
                    ingest
                        .cmd("ZADD")
                        .arg(format!("{p}:events"))
                        .arg(&events)
                        .ignore();
                    ingest
                        .cmd("ZADD")
                        .arg(format!("{p}:deliveries"))
                        .arg(&deliveries)
                        .ignore();
                    ingest
                        .cmd("ZADD")
                        .arg(format!("{p}:unfinished"))
                        .arg(&unfinished)
                        .ignore();
                    ingest
                        .cmd("HINCRBY")
                        .arg(format!("{p}:pending"))
                        .arg("subscription:bench")
                        .arg(BATCH)
                        .ignore();
                }
                let _: () = ingest.query_async(&mut conn).await.expect("ingest");
                let ids = read_group(&mut conn, &ready, &group, t).await;
                // The lease reads each job's event; completion marks the
                // record and drops the entry, the index and the counter.
                let mut lease = redis::pipe();
                let mut complete = redis::pipe();
                for (_, did) in &unfinished {
                    lease
                        .cmd("HGET")
                        .arg(format!("{p}:ev:{}", &did[1..]))
                        .arg("json");
                    if !minimal {
                        complete
                            .cmd("HSET")
                            .arg(format!("{p}:d:{did}"))
                            .arg(&["st", "succeeded"])
                            .ignore();
                    }
                }
                let _: Vec<Option<String>> = lease.query_async(&mut conn).await.expect("events");
                complete
                    .cmd("XACK")
                    .arg(&ready)
                    .arg(&group)
                    .arg(&ids)
                    .ignore();
                complete.cmd("XDEL").arg(&ready).arg(&ids).ignore();
                if !minimal {
                    let dids: Vec<&String> = unfinished.iter().map(|(_, d)| d).collect();
                    complete
                        .cmd("ZREM")
                        .arg(format!("{p}:unfinished"))
                        .arg(&dids)
                        .ignore();
                    complete
                        .cmd("HINCRBY")
                        .arg(format!("{p}:pending"))
                        .arg("subscription:bench")
                        .arg(-(BATCH as i64))
                        .ignore();
                }
                let _: () = complete.query_async(&mut conn).await.expect("complete");
                done.fetch_add(ids.len() as u64, Ordering::Relaxed);
            }
        }
    })
    .await
}

/// The stream and its consumer group (an existing one is fine).
async fn create_group(conn: &redis::aio::ConnectionManager, stream: &str, group: &str) {
    let _: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn.clone())
        .await;
}

/// XREADGROUP of up to `BATCH` new entries for task `t`'s consumer; their ids.
async fn read_group(
    conn: &mut redis::aio::ConnectionManager,
    stream: &str,
    group: &str,
    t: usize,
) -> Vec<String> {
    let reply: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(format!("c{t}"))
        .arg("COUNT")
        .arg(BATCH)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(conn)
        .await
        .expect("xreadgroup");
    entry_ids(reply)
}

fn entry_ids(v: redis::Value) -> Vec<String> {
    use redis::Value::*;
    let mut out = Vec::new();
    if let Array(streams) = v {
        for s in streams {
            if let Array(kv) = s
                && let Some(Array(entries)) = kv.into_iter().nth(1)
            {
                for e in entries {
                    if let Array(parts) = e
                        && let Some(BulkString(id)) = parts.first()
                    {
                        out.push(String::from_utf8_lossy(id).into_owned());
                    }
                }
            }
        }
    }
    out
}

async fn cleanup(conn: &mut redis::aio::ConnectionManager, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: Result<u64, _> = redis::cmd("DEL").arg(chunk).query_async(conn).await;
    }
}

#[tokio::main]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let Ok(mut conn) = client.get_connection_manager().await else {
        eprintln!("SKIPPED: Redis at {url} is unreachable");
        return;
    };
    let run = ulid::Ulid::new();
    let p_raw = format!("hyb-{run}-raw");
    let p_single = format!("hyb-{run}-single");
    let p_batch = format!("hyb-{run}-batch");

    let raw_ops = raw(conn.clone(), p_raw.clone()).await;
    cleanup(&mut conn, &p_raw).await;
    let p_floor = format!("hyb-{run}-floor");
    let floor_ops = floor(conn.clone(), p_floor.clone(), false).await;
    cleanup(&mut conn, &p_floor).await;
    let minimal_ops = floor(conn.clone(), p_floor.clone(), true).await;
    cleanup(&mut conn, &p_floor).await;
    let q = RedisQueue::open(&url, &p_single, settings())
        .await
        .expect("open");
    let single = queue_single(q).await;
    cleanup(&mut conn, &p_single).await;
    let q = RedisQueue::open(&url, &p_batch, settings())
        .await
        .expect("open");
    let batched = queue_batched(q).await;
    cleanup(&mut conn, &p_batch).await;

    println!("jobs of 1 KiB, {TASKS} tasks, {} jobs per run", ops());
    println!("raw XADD/XREADGROUP/XACK+XDEL, batches of {BATCH}: {raw_ops:>9.0} jobs/s");
    println!(
        "floor, minimal: idempotency key + stream entry carrying the event, batches of {BATCH}: {minimal_ops:>9.0} jobs/s ({:.0}% of raw)",
        100.0 * minimal_ops / raw_ops
    );
    println!(
        "floor: the queue's records as plain pipelined commands, batches of {BATCH}: {floor_ops:>9.0} jobs/s ({:.0}% of raw)",
        100.0 * floor_ops / raw_ops
    );
    println!(
        "queue ingest+lease+complete, one at a time: {single:>9.0} jobs/s ({:.0}% of raw)",
        100.0 * single / raw_ops
    );
    println!(
        "queue ingest_many+lease+complete, batches of {BATCH}: {batched:>9.0} jobs/s ({:.0}% of raw)",
        100.0 * batched / raw_ops
    );
}
