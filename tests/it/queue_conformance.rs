//! The queue conformance suite: every behaviour of the queue contract
//! (SPEC §6, §8), written once against `hookyard::queue::Queue` and run for
//! each backend.
//!
//! A backend joins with one line, `conformance_tests!(name, factory);`, where
//! `factory(StoreSettings) -> impl Future<Output = Option<Harness>>` opens a
//! fresh, empty queue whose clock the test controls (`None` skips, e.g. when
//! Redis is unreachable outside CI; the factory prints why).
//!
//! The embedded backend's crash test (a real child process killed with
//! SIGKILL) is at the end of the file.

// A benchmark or test that meets an error should stop right there.
#![allow(clippy::unwrap_used)]

mod history;
mod ingest;
mod overview;
mod redis_backend;
mod worker;

use history::*;
use ingest::*;
use overview::*;
use redis_backend::*;
use worker::*;

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookyard::queue::{
    Attempt, Clock, DeliveryState, EmbeddedQueue, Event, HistoryQuery, Ingested, LeasedJob, NewJob,
    Queue, QueueError, StepResponse, StoreSettings, Target,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

/// A clock the test moves by hand.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    pub fn new() -> Self {
        // Whole seconds, so stored times compare exactly.
        let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
        ManualClock(Arc::new(Mutex::new(now)))
    }
    pub fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
    pub fn advance(&self, seconds: i64) {
        self.advance_by(Duration::from_secs(seconds as u64));
    }
    pub fn advance_by(&self, d: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += SignedDuration::try_from(d).unwrap();
    }
    pub fn clock(&self) -> Clock {
        let inner = self.0.clone();
        Arc::new(move || *inner.lock().unwrap())
    }
}

/// Opens a fresh, empty queue for one test (`None`: skip this backend).
pub type Make = fn(StoreSettings) -> Pin<Box<dyn Future<Output = Option<Harness>> + Send>>;

pub type Reopen = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Queue> + Send>> + Send + Sync>;

/// How a backend measures lease expiry.
#[derive(Clone, Copy, Debug)]
pub enum Leases {
    /// By its clock: moving the manual clock past the lease lapses it
    /// (embedded).
    Clock,
    /// By the backend in real time, whatever the clock says (Redis:
    /// XAUTOCLAIM compares Redis' own idle time of the entry), for a lease
    /// of this length. Tests of lease expiry open such a backend with
    /// [`short_lease_settings`] and really wait.
    RealTime(Duration),
}

impl Leases {
    /// Let `num/den` of a lease pass: the manual clock always moves by that
    /// part of `lease`; a real-time backend is also really waited for.
    pub async fn pass(&self, clock: &ManualClock, lease: Duration, num: u32, den: u32) {
        let part = lease * num / den;
        clock.advance_by(part);
        if let Leases::RealTime(real) = self {
            tokio::time::sleep(*real * num / den).await;
        }
    }
}

/// A queue under test.
pub struct Harness {
    pub queue: Queue,
    pub clock: ManualClock,
    pub leases: Leases,
    /// Opens the same store again; drop `queue` (and its clones) first.
    pub reopen: Reopen,
    /// Whatever must live as long as the test (a temp dir).
    pub _keep: Box<dyn Any + Send + Sync>,
}

pub fn settings() -> StoreSettings {
    StoreSettings {
        lease: Duration::from_secs(30),
        history_retention: Duration::from_secs(7 * 24 * 3600),
        history_max_events: 100_000,
        idempotency_window: Duration::from_secs(24 * 3600),
        consumer_name: format!("test-{}", ulid::Ulid::new()),
    }
}

/// The lease of tests that let leases lapse: short, because a backend that
/// measures leases in real time (`Leases::RealTime`) is really waited for.
pub const SHORT_LEASE: Duration = Duration::from_secs(2);

pub fn short_lease_settings() -> StoreSettings {
    StoreSettings {
        lease: SHORT_LEASE,
        ..settings()
    }
}

pub async fn make_embedded_queue(settings: StoreSettings) -> Option<Harness> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let clock = ManualClock::new();
    let queue = EmbeddedQueue::open_with_clock(&path, settings.clone(), clock.clock())
        .await
        .unwrap();
    let reopen_clock = clock.clone();
    let reopen: Reopen = Box::new(move || {
        let (path, settings, clock) = (path.clone(), settings.clone(), reopen_clock.clock());
        Box::pin(async move {
            Queue::Embedded(
                EmbeddedQueue::open_with_clock(&path, settings, clock)
                    .await
                    .unwrap(),
            )
        })
    });
    Some(Harness {
        queue: Queue::Embedded(queue),
        clock,
        reopen,
        leases: Leases::Clock,
        _keep: Box::new(dir),
    })
}

/// Generates one `#[tokio::test]` per conformance test for a backend.
macro_rules! conformance_tests {
    ($backend:ident, $make:path) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            conformance_tests!(@each $make;
                ingest_lease_complete, duplicate_returns_first_id, concurrent_duplicates,
                ingest_many_answers_in_order, client_id_is_its_own_key,
                client_id_past_its_window_is_still_a_duplicate,
                client_id_outlives_its_pruned_event,
                delayed_retry_waits_for_its_time,
                not_before_delays_a_new_job, enqueue_rules,
                defer_uses_no_attempt, lapsed_lease_is_reclaimed, renew_keeps_the_lease,
                lease_waits_for_new_work,
                dead_letter_then_redrive, retried_dead_letter_leaves_the_dead_letter_list,
                dead_letters_page_through,
                next_step_enqueued_with_complete,
                history_shows_deliveries_and_attempts,
                queued_delivery_shows_before_its_first_lease, events_pagination_and_filters,
                deliveries_pagination_and_filters, enqueue_and_job_of_for_replay,
                prune_by_max_events_keeps_unfinished, prune_by_retention_keeps_unfinished,
                idempotency_keys_expire, fifo_head_blocks_its_line, stats_counts,
                subscriptions_and_state_survive_reopen, reopen_loses_nothing_acknowledged,
                counts_add_up_by_minute, stats_count_in_flight_and_dead_letters_by_target,
                trace_context_survives_the_queue,
            );
        }
    };
    (@each $make:path; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(|s| Box::pin($make(s))).await
            }
        )*
    };
}

conformance_tests!(embedded, make_embedded_queue);
conformance_tests!(redis, make_redis_queue);
conformance_tests!(sentinel, make_sentinel_queue);
conformance_tests!(cluster, make_cluster_queue);

// ---- helpers ----

pub fn event(id: &str, event_type: &str, at: Timestamp) -> Event {
    Event {
        id: id.into(),
        event_type: event_type.into(),
        timestamp: at,
        source: "api:test".into(),
        data: json!({"n": id}),
    }
}

pub fn sub_job(event_id: &str, delivery_id: &str, sub: &str) -> NewJob {
    NewJob {
        delivery_id: delivery_id.into(),
        event_id: event_id.into(),
        target: Target::Subscription { id: sub.into() },
        steps: BTreeMap::new(),
        ordering_key: None,
        not_before: None,
        traceparent: None,
        fifo_later: false,
    }
}

pub fn attempt(n: u32, at: Timestamp, status: Option<u16>) -> Attempt {
    Attempt {
        attempt: n,
        at,
        request: json!({"method": "POST", "url": "http://127.0.0.1:9/x", "headers": {}}),
        response: status.map(|s| json!({"status": s, "headers": {}, "body": ""})),
        duration_ms: 3,
        error: None,
    }
}

pub async fn lease_now(q: &Queue) -> Vec<LeasedJob> {
    q.lease(100, Duration::ZERO).await.unwrap()
}

pub fn ids(jobs: &[LeasedJob]) -> Vec<String> {
    let mut ids: Vec<String> = jobs.iter().map(|j| j.job.delivery_id.clone()).collect();
    ids.sort();
    ids
}

macro_rules! open {
    ($make:expr) => {
        open!($make, settings())
    };
    ($make:expr, $settings:expr) => {
        match $make($settings).await {
            Some(h) => h,
            None => return,
        }
    };
}

pub(crate) use open;

// ---- embedded only: a real crash ----

/// Env var that turns `crash_child` into the child of `embedded_survives_sigkill`.
const CHILD_ENV: &str = "HOOKYARD_QUEUE_CRASH_CHILD";

/// Child half of the crash test. Run normally it does nothing; with
/// `CHILD_ENV` set to a directory it ingests acknowledged events, leases
/// some, announces it on stdout and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let q = EmbeddedQueue::open(std::path::Path::new(&dir), settings())
        .await
        .unwrap();
    let now = Timestamp::now();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let (e, d) = (format!("e{i}"), format!("d{i}"));
            q.ingest(&event(&e, "t", now), None, vec![sub_job(&e, &d, "s")])
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!("ACKED 20");
    let leased = q.lease(5, Duration::ZERO).await.unwrap();
    println!("LEASED {}", leased.len());
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_survives_sigkill() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "queue_conformance::crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("LEASED") && tx.send(line).is_err() {
                return;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(line.unwrap(), "LEASED 5", "the child did not get to lease");

    let q = EmbeddedQueue::open(dir.path(), settings()).await.unwrap();
    let jobs = q.lease(100, Duration::ZERO).await.unwrap();
    assert_eq!(
        jobs.len(),
        20,
        "every acknowledged job is back, leased ones included"
    );
    for i in 0..20 {
        assert!(q.event(&format!("e{i}")).await.unwrap().is_some());
    }
}

/// Embedded: pruning an event also drops its dead letters (they could not be
/// redriven without their event), so dead letters stay bounded too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_prune_drops_dead_letters_of_pruned_events() {
    let s = StoreSettings {
        history_retention: Duration::from_secs(3600),
        ..settings()
    };
    let h = make_embedded_queue(s).await.unwrap();
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    let job = lease_now(q).await.remove(0);
    q.dead_letter(&job, None, "http_404").await.unwrap();
    assert_eq!(q.stats().await.unwrap().dead_letter, 1);
    h.clock.advance(2 * 3600);
    assert_eq!(q.prune(h.clock.now()).await.unwrap(), 1);
    assert!(q.event("e1").await.unwrap().is_none());
    assert_eq!(q.stats().await.unwrap().dead_letter, 0);
    assert_eq!(q.redrive(None).await.unwrap(), 0);
}
