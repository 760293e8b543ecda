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
        let mut t = self.0.lock().unwrap();
        *t += SignedDuration::from_secs(seconds);
    }
    pub fn clock(&self) -> Clock {
        let inner = self.0.clone();
        Arc::new(move || *inner.lock().unwrap())
    }
}

pub type Reopen = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Queue> + Send>> + Send + Sync>;

/// A queue under test.
pub struct Harness {
    pub queue: Queue,
    pub clock: ManualClock,
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
                ingest_many_answers_in_order, delayed_retry_waits_for_its_time,
                defer_uses_no_attempt, lapsed_lease_is_reclaimed, renew_keeps_the_lease,
                dead_letter_then_redrive, next_step_enqueued_with_complete,
                history_shows_deliveries_and_attempts, events_pagination_and_filters,
                deliveries_pagination_and_filters, enqueue_and_job_of_for_replay,
                prune_by_max_events_keeps_unfinished, prune_by_retention_keeps_unfinished,
                idempotency_keys_expire, fifo_head_blocks_its_line, stats_counts,
                subscriptions_and_state_survive_reopen, reopen_loses_nothing_acknowledged,
            );
        }
    };
    (@each $make:path; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(|s| $make(s)).await
            }
        )*
    };
}

conformance_tests!(embedded, make_embedded_queue);

// ---- helpers ----

fn event(id: &str, event_type: &str, at: Timestamp) -> Event {
    Event {
        id: id.into(),
        event_type: event_type.into(),
        timestamp: at,
        source: "api:test".into(),
        data: json!({"n": id}),
    }
}

fn sub_job(event_id: &str, delivery_id: &str, sub: &str) -> NewJob {
    NewJob {
        delivery_id: delivery_id.into(),
        event_id: event_id.into(),
        target: Target::Subscription { id: sub.into() },
        steps: BTreeMap::new(),
        ordering_key: None,
        not_before: None,
    }
}

fn attempt(n: u32, at: Timestamp, status: Option<u16>) -> Attempt {
    Attempt {
        attempt: n,
        at,
        request: json!({"method": "POST", "url": "http://127.0.0.1:9/x", "headers": {}}),
        response: status.map(|s| json!({"status": s, "headers": {}, "body": ""})),
        duration_ms: 3,
        error: None,
    }
}

async fn lease_now(q: &Queue) -> Vec<LeasedJob> {
    q.lease(100, Duration::ZERO).await.unwrap()
}

fn ids(jobs: &[LeasedJob]) -> Vec<String> {
    let mut ids: Vec<String> = jobs.iter().map(|j| j.job.delivery_id.clone()).collect();
    ids.sort();
    ids
}

async fn harness<F, Fut>(make: &F, s: StoreSettings) -> Option<Harness>
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    make(s).await
}

macro_rules! open {
    ($make:expr) => {
        open!($make, settings())
    };
    ($make:expr, $settings:expr) => {
        match harness(&$make, $settings).await {
            Some(h) => h,
            None => return,
        }
    };
}

// ---- the tests ----

async fn ingest_lease_complete<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let answer = q
        .ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await;
    assert_eq!(
        answer.unwrap(),
        Ingested::Accepted {
            event_id: "e1".into()
        }
    );

    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["d1"]);
    assert_eq!(jobs[0].attempts, 0);
    assert_eq!(jobs[0].job, sub_job("e1", "d1", "s"));
    assert!(
        lease_now(q).await.is_empty(),
        "a leased job is not handed out twice"
    );

    let a = attempt(1, now, Some(200));
    q.complete(&jobs[0], Some(a.clone()), DeliveryState::Succeeded, None)
        .await
        .unwrap();
    assert!(lease_now(q).await.is_empty());
    let d = q.delivery("d1").await.unwrap().unwrap();
    assert_eq!(d.state, DeliveryState::Succeeded);
    assert_eq!(d.attempts, vec![a]);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.ready, stats.in_flight, stats.delayed), (0, 0, 0));
    q.ping().await.unwrap();
    assert_eq!(q.resets(), 0);
}

async fn duplicate_returns_first_id<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let key = Some(("trigger:shop", "k1"));
    let first = q
        .ingest(&event("e1", "t", now), key, vec![sub_job("e1", "d1", "s")])
        .await;
    assert_eq!(
        first.unwrap(),
        Ingested::Accepted {
            event_id: "e1".into()
        }
    );
    let again = q
        .ingest(&event("e2", "t", now), key, vec![sub_job("e2", "d2", "s")])
        .await;
    assert_eq!(
        again.unwrap(),
        Ingested::Duplicate {
            event_id: "e1".into()
        }
    );
    assert!(
        q.event("e2").await.unwrap().is_none(),
        "a duplicate writes nothing"
    );
    assert!(q.delivery("d2").await.unwrap().is_none());
    // The same key in another scope is another key.
    let other = q
        .ingest(&event("e3", "t", now), Some(("trigger:crm", "k1")), vec![])
        .await;
    assert_eq!(
        other.unwrap(),
        Ingested::Accepted {
            event_id: "e3".into()
        }
    );
    assert_eq!(ids(&lease_now(q).await), ["d1"]);
}

async fn concurrent_duplicates<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let now = h.clock.now();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let q = h.queue.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("e{i}");
            let job = sub_job(&id, &format!("d{i}"), "s");
            q.ingest(&event(&id, "t", now), Some(("event", "same")), vec![job])
                .await
                .unwrap()
        }));
    }
    let mut accepted = Vec::new();
    let mut answered = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ingested::Accepted { event_id } => {
                accepted.push(event_id.clone());
                answered.push(event_id);
            }
            Ingested::Duplicate { event_id } => answered.push(event_id),
        }
    }
    assert_eq!(accepted.len(), 1, "exactly one ingest wins");
    assert!(
        answered.iter().all(|id| *id == accepted[0]),
        "all answer the first id"
    );
    assert_eq!(
        lease_now(&h.queue).await.len(),
        1,
        "only the winner's job exists"
    );
}

async fn ingest_many_answers_in_order<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let key = |k: &str| Some(("event".to_string(), k.to_string()));
    let answers = q
        .ingest_many(vec![
            (
                event("a", "t", now),
                key("a"),
                vec![sub_job("a", "da", "s")],
            ),
            (
                event("b", "t", now),
                key("b"),
                vec![sub_job("b", "db", "s")],
            ),
            (
                event("a2", "t", now),
                key("a"),
                vec![sub_job("a2", "da2", "s")],
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            Ingested::Accepted {
                event_id: "a".into()
            },
            Ingested::Accepted {
                event_id: "b".into()
            },
            Ingested::Duplicate {
                event_id: "a".into()
            },
        ]
    );
    assert_eq!(ids(&lease_now(q).await), ["da", "db"]);
}

async fn delayed_retry_waits_for_its_time<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    let job = lease_now(q).await.remove(0);
    let at = now + SignedDuration::from_secs(60);
    q.retry_at(&job, attempt(1, now, Some(500)), at)
        .await
        .unwrap();
    assert!(lease_now(q).await.is_empty());
    assert_eq!(q.stats().await.unwrap().delayed, 1);
    h.clock.advance(59);
    assert!(lease_now(q).await.is_empty(), "not before its time");
    h.clock.advance(2);
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["d1"]);
    assert_eq!(jobs[0].attempts, 1, "the retry used an attempt");
    let d = q.delivery("d1").await.unwrap().unwrap();
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(d.attempts.len(), 1);
}

async fn defer_uses_no_attempt<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    let job = lease_now(q).await.remove(0);
    q.defer(&job, now + SignedDuration::from_secs(10), Some(now))
        .await
        .unwrap();
    assert!(lease_now(q).await.is_empty());
    h.clock.advance(11);
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["d1"]);
    assert_eq!(jobs[0].attempts, 0, "deferring is not an attempt");
    assert_eq!(jobs[0].orphaned_since, Some(now));
    assert!(q.delivery("d1").await.unwrap().unwrap().attempts.is_empty());
}

async fn lapsed_lease_is_reclaimed<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    let dead_worker = lease_now(q).await.remove(0);
    h.clock.advance(20);
    assert!(lease_now(q).await.is_empty(), "lease still held");
    h.clock.advance(11); // 31s > lease of 30s
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["d1"], "reclaimed from the dead consumer");
    let late = q
        .complete(&dead_worker, None, DeliveryState::Succeeded, None)
        .await;
    assert!(matches!(late, Err(QueueError::LeaseLost)), "{late:?}");
    assert!(matches!(
        q.renew(&dead_worker).await,
        Err(QueueError::LeaseLost)
    ));
    q.complete(&jobs[0], None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(
        q.delivery("d1").await.unwrap().unwrap().state,
        DeliveryState::Succeeded
    );
}

async fn renew_keeps_the_lease<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    let job = lease_now(q).await.remove(0);
    h.clock.advance(20);
    q.renew(&job).await.unwrap();
    h.clock.advance(20); // 40s after lease, 20s after renew
    assert!(
        lease_now(q).await.is_empty(),
        "a renewed lease is not reclaimed"
    );
    assert_eq!(q.stats().await.unwrap().in_flight, 1);
    q.complete(&job, None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
}

async fn dead_letter_then_redrive<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let jobs = vec![sub_job("e1", "da", "a"), sub_job("e1", "db", "b")];
    q.ingest(&event("e1", "t", now), None, jobs).await.unwrap();
    for job in lease_now(q).await {
        q.retry_at(&job, attempt(1, now, Some(500)), now)
            .await
            .unwrap();
    }
    for job in lease_now(q).await {
        assert_eq!(job.attempts, 1);
        q.dead_letter(&job, Some(attempt(2, now, Some(404))), "http_404")
            .await
            .unwrap();
    }
    assert!(lease_now(q).await.is_empty());
    assert_eq!(q.stats().await.unwrap().dead_letter, 2);
    let d = q.delivery("da").await.unwrap().unwrap();
    assert_eq!(
        (d.state, d.reason.as_deref()),
        (DeliveryState::DeadLetter, Some("http_404"))
    );
    assert_eq!(d.attempts.len(), 2);

    assert_eq!(q.redrive(Some("subscription/a")).await.unwrap(), 1);
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["da"]);
    assert_eq!(jobs[0].attempts, 0, "redrive resets attempts");
    assert_eq!(
        q.delivery("da").await.unwrap().unwrap().state,
        DeliveryState::Pending
    );
    assert_eq!(q.stats().await.unwrap().dead_letter, 1);
    assert_eq!(q.redrive(None).await.unwrap(), 1);
    assert_eq!(ids(&lease_now(q).await), ["db"]);
    assert_eq!(q.redrive(None).await.unwrap(), 0);
}

fn step_job(event_id: &str, delivery_id: &str, step: usize) -> NewJob {
    NewJob {
        delivery_id: delivery_id.into(),
        event_id: event_id.into(),
        target: Target::WorkflowStep {
            workflow: "w".into(),
            step,
            action: format!("act{step}"),
        },
        steps: BTreeMap::new(),
        ordering_key: None,
        not_before: None,
    }
}

async fn next_step_enqueued_with_complete<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![step_job("e1", "s0", 0)])
        .await
        .unwrap();
    let job = lease_now(q).await.remove(0);
    let mut next = step_job("e1", "s1", 1);
    let response = StepResponse {
        status: 201,
        headers: BTreeMap::new(),
        body: json!({"id": 7}),
    };
    next.steps.insert("act0".into(), response);
    q.complete(
        &job,
        Some(attempt(1, now, Some(201))),
        DeliveryState::Succeeded,
        Some(next.clone()),
    )
    .await
    .unwrap();
    let jobs = lease_now(q).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job, next, "step 2 carries step 1's response");
    let (_, deliveries) = q.event("e1").await.unwrap().unwrap();
    let states: Vec<_> = deliveries
        .iter()
        .map(|d| (d.id.as_str(), d.state))
        .collect();
    assert_eq!(
        states,
        [
            ("s0", DeliveryState::Succeeded),
            ("s1", DeliveryState::Pending)
        ]
    );
    assert_eq!(deliveries[1].target, "workflow/w/act1");
}

async fn history_shows_deliveries_and_attempts<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let e = event("e1", "contact.created", now);
    q.ingest(
        &e,
        None,
        vec![sub_job("e1", "d1", "a"), sub_job("e1", "d2", "b")],
    )
    .await
    .unwrap();
    let jobs = lease_now(q).await;
    let (a1, a2) = (attempt(1, now, Some(503)), attempt(2, now, Some(200)));
    for job in &jobs {
        if job.job.delivery_id == "d1" {
            q.retry_at(job, a1.clone(), now).await.unwrap();
        } else {
            q.complete(job, None, DeliveryState::Test, None)
                .await
                .unwrap();
        }
    }
    let job = lease_now(q).await.remove(0);
    q.complete(&job, Some(a2.clone()), DeliveryState::Succeeded, None)
        .await
        .unwrap();

    let (stored, deliveries) = q.event("e1").await.unwrap().unwrap();
    assert_eq!(stored, e);
    let by_id: BTreeMap<_, _> = deliveries.iter().map(|d| (d.id.as_str(), d)).collect();
    assert_eq!(by_id["d1"].attempts, vec![a1, a2]);
    assert_eq!(by_id["d1"].state, DeliveryState::Succeeded);
    assert_eq!(by_id["d1"].event_id, "e1");
    assert_eq!(by_id["d1"].target, "subscription/a");
    assert_eq!(by_id["d2"].state, DeliveryState::Test);
    assert!(q.event("nope").await.unwrap().is_none());
    assert!(q.delivery("nope").await.unwrap().is_none());
}

async fn events_pagination_and_filters<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let t0 = h.clock.now();
    for i in 1..=5 {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        let at = t0 + SignedDuration::from_secs(i);
        q.ingest(&event(&format!("e{i}"), kind, at), None, vec![])
            .await
            .unwrap();
    }
    let mut query = HistoryQuery {
        limit: 2,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = q.events(&query).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|e| e.id.clone()));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(
        seen,
        ["e5", "e4", "e3", "e2", "e1"],
        "newest first, each once"
    );

    let odd = HistoryQuery {
        event_type: Some("odd".into()),
        limit: 10,
        ..Default::default()
    };
    let page = q.events(&odd).await.unwrap();
    let odd_ids: Vec<_> = page.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(odd_ids, ["e5", "e3", "e1"]);
    assert!(page.next_cursor.is_none());

    let since = t0 + SignedDuration::from_secs(4);
    let recent = HistoryQuery {
        since: Some(since),
        limit: 10,
        ..Default::default()
    };
    let ids: Vec<_> = q
        .events(&recent)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["e5", "e4"]);
}

async fn deliveries_pagination_and_filters<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    for i in 1..=4 {
        let (e, d) = (format!("e{i}"), format!("d{i}"));
        let sub = if i <= 2 { "a" } else { "b" };
        q.ingest(&event(&e, "t", now), None, vec![sub_job(&e, &d, sub)])
            .await
            .unwrap();
    }
    for job in lease_now(q).await {
        if job.job.delivery_id == "d1" || job.job.delivery_id == "d3" {
            q.complete(&job, None, DeliveryState::Succeeded, None)
                .await
                .unwrap();
        } else {
            q.dead_letter(&job, None, "http_410").await.unwrap();
        }
    }
    let mut query = HistoryQuery {
        limit: 3,
        ..Default::default()
    };
    let first = q.deliveries(&query).await.unwrap();
    let ids: Vec<_> = first.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["d4", "d3", "d2"]);
    query.cursor = first.next_cursor;
    let second = q.deliveries(&query).await.unwrap();
    let ids: Vec<_> = second.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["d1"]);
    assert!(second.next_cursor.is_none());

    let dead = HistoryQuery {
        state: Some(DeliveryState::DeadLetter),
        limit: 10,
        ..Default::default()
    };
    let ids: Vec<_> = q
        .deliveries(&dead)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["d4", "d2"]);
    let of_a = HistoryQuery {
        target: Some("subscription/a".into()),
        limit: 10,
        ..Default::default()
    };
    let ids: Vec<_> = q
        .deliveries(&of_a)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["d2", "d1"]);
}

async fn enqueue_and_job_of_for_replay<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    let job = lease_now(q).await.remove(0);
    q.complete(&job, None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    let original = q.job_of("d1").await.unwrap().unwrap();
    assert_eq!(original, sub_job("e1", "d1", "s"));
    assert!(q.job_of("nope").await.unwrap().is_none());

    let mut replay = original.clone();
    replay.delivery_id = "d1-replay".into();
    q.enqueue(vec![replay]).await.unwrap();
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["d1-replay"]);
    assert_eq!(jobs[0].job.event_id, "e1", "same event id on replay");
    let (_, deliveries) = q.event("e1").await.unwrap().unwrap();
    assert_eq!(deliveries.len(), 2);
}

async fn prune_by_max_events_keeps_unfinished<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let s = StoreSettings {
        history_max_events: 3,
        ..settings()
    };
    let h = open!(make, s);
    let q = &h.queue;
    let now = h.clock.now();
    // e1 (oldest) still has an unfinished job; e2..e5 have none left.
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    q.ingest(&event("e2", "t", now), None, vec![sub_job("e2", "d2", "s")])
        .await
        .unwrap();
    for job in lease_now(q).await {
        if job.job.delivery_id == "d2" {
            q.complete(&job, None, DeliveryState::Succeeded, None)
                .await
                .unwrap();
        } else {
            q.retry_at(
                &job,
                attempt(1, now, None),
                now + SignedDuration::from_secs(3600),
            )
            .await
            .unwrap();
        }
    }
    for i in 3..=5 {
        q.ingest(&event(&format!("e{i}"), "t", now), None, vec![])
            .await
            .unwrap();
    }
    let removed = q.prune(h.clock.now()).await.unwrap();
    assert_eq!(removed, 2);
    assert!(
        q.event("e1").await.unwrap().is_some(),
        "unfinished jobs keep their event"
    );
    assert!(q.event("e2").await.unwrap().is_none());
    assert!(
        q.delivery("d2").await.unwrap().is_none(),
        "records go with their event"
    );
    assert!(q.event("e3").await.unwrap().is_none());
    assert!(q.event("e4").await.unwrap().is_some());
    assert!(q.event("e5").await.unwrap().is_some());
    assert_eq!(q.prune(h.clock.now()).await.unwrap(), 0);
}

async fn prune_by_retention_keeps_unfinished<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let s = StoreSettings {
        history_retention: Duration::from_secs(3600),
        ..settings()
    };
    let h = open!(make, s);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(
        &event("old-done", "t", now),
        None,
        vec![sub_job("old-done", "d1", "s")],
    )
    .await
    .unwrap();
    let job = lease_now(q).await.remove(0);
    q.complete(&job, None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    q.ingest(
        &event("old-busy", "t", now),
        None,
        vec![sub_job("old-busy", "d2", "s")],
    )
    .await
    .unwrap();
    h.clock.advance(2 * 3600);
    q.ingest(&event("new", "t", h.clock.now()), None, vec![])
        .await
        .unwrap();
    assert_eq!(q.prune(h.clock.now()).await.unwrap(), 1);
    assert!(q.event("old-done").await.unwrap().is_none());
    assert!(q.event("old-busy").await.unwrap().is_some());
    assert!(q.event("new").await.unwrap().is_some());
    // The job of the kept event still runs.
    assert_eq!(ids(&lease_now(q).await), ["d2"]);
}

async fn idempotency_keys_expire<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let s = StoreSettings {
        idempotency_window: Duration::from_secs(3600),
        ..settings()
    };
    let h = open!(make, s);
    let q = &h.queue;
    let key = Some(("trigger:t", "k"));
    let first = q
        .ingest(&event("e1", "t", h.clock.now()), key, vec![])
        .await
        .unwrap();
    assert_eq!(
        first,
        Ingested::Accepted {
            event_id: "e1".into()
        }
    );
    h.clock.advance(1800);
    let dup = q
        .ingest(&event("e2", "t", h.clock.now()), key, vec![])
        .await
        .unwrap();
    assert_eq!(
        dup,
        Ingested::Duplicate {
            event_id: "e1".into()
        }
    );
    h.clock.advance(3600);
    assert!(
        q.prune(h.clock.now()).await.unwrap() >= 1,
        "the key was pruned"
    );
    let later = q
        .ingest(&event("e3", "t", h.clock.now()), key, vec![])
        .await
        .unwrap();
    assert_eq!(
        later,
        Ingested::Accepted {
            event_id: "e3".into()
        }
    );
}

fn fifo_job(n: u32) -> NewJob {
    let mut job = sub_job(&format!("e{n}"), &format!("k{n}"), "ordered");
    job.ordering_key = Some("customer-1".into());
    job
}

async fn fifo_head_blocks_its_line<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    for n in 1..=3 {
        let e = format!("e{n}");
        q.ingest(&event(&e, "t", now), None, vec![fifo_job(n)])
            .await
            .unwrap();
    }
    q.ingest(
        &event("free", "t", now),
        None,
        vec![sub_job("free", "u1", "other")],
    )
    .await
    .unwrap();
    let jobs = lease_now(q).await;
    assert_eq!(
        ids(&jobs),
        ["k1", "u1"],
        "only the head of the line is handed out"
    );
    let head = jobs.iter().find(|j| j.job.delivery_id == "k1").unwrap();

    // A retrying head still blocks its line.
    q.retry_at(
        head,
        attempt(1, now, Some(500)),
        now + SignedDuration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(lease_now(q).await.is_empty());
    h.clock.advance(6);
    let head = lease_now(q).await.remove(0);
    assert_eq!(head.job.delivery_id, "k1");
    q.complete(&head, None, DeliveryState::Succeeded, None)
        .await
        .unwrap();

    let second = lease_now(q).await;
    assert_eq!(
        ids(&second),
        ["k2"],
        "completing the head releases the next"
    );
    q.dead_letter(&second[0], None, "http_400").await.unwrap();
    let third = lease_now(q).await;
    assert_eq!(
        ids(&third),
        ["k3"],
        "dead-lettering the head releases the next"
    );

    // A redriven dead letter joins the back of the line.
    assert_eq!(q.redrive(None).await.unwrap(), 1);
    assert!(lease_now(q).await.is_empty(), "k2 waits behind k3");
    q.complete(&third[0], None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(ids(&lease_now(q).await), ["k2"]);
}

async fn stats_counts<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let jobs = vec![
        sub_job("e1", "d1", "a"),
        sub_job("e1", "d2", "a"),
        sub_job("e1", "d3", "b"),
        sub_job("e1", "d4", "b"),
    ];
    q.ingest(&event("e1", "t", now), None, jobs).await.unwrap();
    h.clock.advance(10);
    let leased = q.lease(3, Duration::ZERO).await.unwrap();
    assert_eq!(leased.len(), 3);
    q.retry_at(
        &leased[0],
        attempt(1, now, None),
        now + SignedDuration::from_secs(600),
    )
    .await
    .unwrap();
    q.dead_letter(&leased[1], None, "http_404").await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.ready, 1);
    assert_eq!(stats.delayed, 1);
    assert_eq!(stats.in_flight, 1);
    assert_eq!(stats.dead_letter, 1);
    assert!(
        (stats.oldest_age_seconds - 10.0).abs() < 1.0,
        "{}",
        stats.oldest_age_seconds
    );
    assert_eq!(stats.pending_by_target.values().sum::<u64>(), 3);
    let dead_target = q
        .delivery(&leased[1].job.delivery_id)
        .await
        .unwrap()
        .unwrap()
        .target;
    let other = if dead_target == "subscription/a" {
        "subscription/b"
    } else {
        "subscription/a"
    };
    assert_eq!(stats.pending_by_target.get(&dead_target), Some(&1));
    assert_eq!(stats.pending_by_target.get(other), Some(&2));
}

async fn subscriptions_and_state_survive_reopen<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let doc = json!({"id": "s1", "url": "http://127.0.0.1:9/hook", "events": ["a.*"]});
    assert!(h.queue.put_subscription("s1", &doc).await.unwrap());
    let other = json!({"id": "s1", "url": "http://127.0.0.1:9/other"});
    assert!(
        !h.queue.put_subscription("s1", &other).await.unwrap(),
        "ids are not overwritten"
    );
    assert!(
        h.queue
            .put_subscription("s2", &json!({"id": "s2"}))
            .await
            .unwrap()
    );
    assert!(h.queue.delete_subscription("s2").await.unwrap());
    assert!(!h.queue.delete_subscription("s2").await.unwrap());
    h.queue
        .put_state("verify/s1", &json!({"verified": true}))
        .await
        .unwrap();
    assert!(h.queue.state("missing").await.unwrap().is_none());

    let Harness {
        queue,
        reopen,
        _keep,
        ..
    } = h;
    drop(queue);
    let q = reopen().await;
    assert_eq!(q.subscriptions().await.unwrap(), vec![doc]);
    assert_eq!(
        q.state("verify/s1").await.unwrap(),
        Some(json!({"verified": true}))
    );
    drop(_keep);
}

async fn reopen_loses_nothing_acknowledged<F, Fut>(make: F)
where
    F: Fn(StoreSettings) -> Fut,
    Fut: Future<Output = Option<Harness>>,
{
    let h = open!(make);
    let now = h.clock.now();
    for i in 1..=3 {
        let (e, d) = (format!("e{i}"), format!("d{i}"));
        h.queue
            .ingest(&event(&e, "t", now), None, vec![sub_job(&e, &d, "s")])
            .await
            .unwrap();
    }
    let leased = h.queue.lease(1, Duration::ZERO).await.unwrap();
    assert_eq!(leased.len(), 1);
    let Harness {
        queue,
        reopen,
        clock,
        _keep,
    } = h;
    drop(queue); // the worker never finished its lease
    let q = reopen().await;
    // Embedded returns leases at open, Redis once they lapse: past the
    // lease, both must hand out every job again.
    clock.advance(31);
    let jobs = lease_now(&q).await;
    assert_eq!(ids(&jobs), ["d1", "d2", "d3"]);
    for i in 1..=3 {
        assert!(q.event(&format!("e{i}")).await.unwrap().is_some());
    }
    drop(_keep);
}

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
