//! The durable queue and store: events, delivery jobs, attempt history,
//! idempotency keys and API-created subscriptions, behind one contract with
//! two backends (SPEC §6).
//!
//! Everything the rest of the daemon needs from storage goes through
//! [`Queue`]. Ingestion calls [`Queue::ingest`], which writes the idempotency
//! key, the event and every delivery job the router produced in one atomic
//! step, so a 2xx means the event and its jobs survive a `kill -9`. Workers
//! lease jobs with [`Queue::lease`], keep the lease alive with
//! [`Queue::renew`] while the HTTP request is in flight, and finish each
//! lease with exactly one of [`Queue::complete`], [`Queue::retry_at`],
//! [`Queue::defer`] or [`Queue::dead_letter`].
//!
//! Backends: `redis` (Redis Streams, consumer group, sorted set for delays,
//! reclaim of lapsed leases, dead-letter stream) and `embedded` (redb file in
//! `queue.path`, single instance, group commit). Both pass the same
//! conformance suite.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

pub mod embedded;
pub mod redis;

pub use crate::model::event::*;
pub use crate::model::tally::MinuteCount;

pub use embedded::EmbeddedQueue;

/// Where a backend reads "now" from. Production uses [`system_clock`]; tests
/// pass a clock they can move so delayed jobs and lease expiry are tested
/// without real sleeps.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// Filters of `GET /v1/events` and `GET /v1/deliveries`.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub event_type: Option<String>,
    /// Events only: `trigger:<id>` or `api:<token>`.
    pub source: Option<String>,
    pub since: Option<Timestamp>,
    /// Events only: no later than this.
    pub until: Option<Timestamp>,
    pub state: Option<DeliveryState>,
    pub target: Option<String>,
    pub limit: usize,
    /// Opaque cursor returned by the previous page.
    pub cursor: Option<String>,
}

/// One page of results and the cursor of the next page, if any.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Storage errors. `Unavailable` and `Unsafe` map to HTTP 503 at
/// ingestion.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis runs with settings that lose data (SPEC §11): at open the
    /// daemon exits 1 with this message; later, ingestion is refused with
    /// it until the setting is safe again (`redis/safety.rs`).
    #[error("{0}")]
    Unsafe(String),
    #[error(
        "queue backend unavailable: {0}; check that Redis is reachable or that the queue path is writable"
    )]
    Unavailable(String),
    /// The event was written, but fewer Redis replicas than
    /// `queue.replicas_ack` acknowledged it in time (SPEC §16): answered
    /// as "queue unavailable", and the event stays queued, so a retry is a
    /// duplicate, not a loss.
    #[error(
        "the event was stored but not copied to enough Redis replicas in time: {0}; check the replicas (INFO replication on the master)"
    )]
    NotReplicated(String),
    #[error("stored data could not be decoded: {0}")]
    Corrupt(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("lease is no longer held (it lapsed and was reclaimed)")]
    LeaseLost,
}

/// Settings every backend takes, from `queue`, `history` and `idempotency`.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub lease: Duration,
    pub history_retention: Duration,
    pub history_max_events: u64,
    pub idempotency_window: Duration,
    /// Unique per process: two replicas may share a host.
    pub consumer_name: String,
}

/// A stream of "the API-created subscriptions changed" announcements.
pub struct SubscriptionChanges(::redis::aio::PubSubStream);

impl SubscriptionChanges {
    /// Wait for the next announcement; false once the connection is lost
    /// (subscribe again).
    pub async fn next(&mut self) -> bool {
        use futures_util::StreamExt as _;
        self.0.next().await.is_some()
    }

    /// Take every announcement already received, without waiting (one
    /// reload covers them all).
    pub fn drain_ready(&mut self) {
        use futures_util::{FutureExt as _, StreamExt as _};
        while let Some(Some(_)) = self.0.next().now_or_never() {}
    }
}

/// The queue the daemon uses: one of the two backends, chosen by
/// `queue.backend`. A cheap handle (each backend is an `Arc` inside), so clone
/// it freely. Every method forwards to the backend; see the backends for how.
#[derive(Clone)]
pub enum Queue {
    Embedded(EmbeddedQueue),
    Redis(redis::RedisQueue),
}

/// Forwards one async method to whichever backend this is.
macro_rules! forward {
    ($self:ident . $m:ident ( $($a:expr),* )) => {
        match $self {
            Queue::Embedded(q) => q.$m($($a),*).await,
            Queue::Redis(q) => q.$m($($a),*).await,
        }
    };
}

impl HistoryQuery {
    /// Whether `event` passes the event filters (type, source, time).
    pub fn admits(&self, event: &Event) -> bool {
        self.event_type
            .as_ref()
            .is_none_or(|t| *t == event.event_type)
            && self.source.as_ref().is_none_or(|s| *s == event.source)
            && self.since.is_none_or(|s| event.timestamp >= s)
            && self.until.is_none_or(|u| event.timestamp <= u)
    }
}

impl Queue {
    /// Opens the embedded backend in `path` (a directory).
    pub async fn open_embedded(path: &Path, settings: StoreSettings) -> Result<Queue, QueueError> {
        Ok(Queue::Embedded(EmbeddedQueue::open(path, settings).await?))
    }

    /// Opens the Redis backend at `url`, keys under `prefix`. A server that
    /// would lose data is refused (`QueueError::Unsafe`, SPEC §11).
    pub async fn open_redis(
        url: &str,
        prefix: &str,
        settings: StoreSettings,
    ) -> Result<Queue, QueueError> {
        Self::open_redis_with(url, prefix, settings, redis::RedisOptions::default()).await
    }

    /// [`Queue::open_redis`] with the backend's own settings
    /// (`queue.allow_eviction`, `queue.replicas_ack`…).
    pub async fn open_redis_with(
        url: &str,
        prefix: &str,
        settings: StoreSettings,
        options: redis::RedisOptions,
    ) -> Result<Queue, QueueError> {
        Ok(Queue::Redis(
            redis::RedisQueue::open_with(url, prefix, settings, system_clock(), options).await?,
        ))
    }

    pub async fn ingest(
        &self,
        event: &Event,
        idempotency: Option<(&str, &str)>,
        jobs: Vec<NewJob>,
    ) -> Result<Ingested, QueueError> {
        forward!(self.ingest(event, idempotency, jobs))
    }

    pub async fn ingest_many(&self, items: Vec<IngestItem>) -> Result<Vec<Ingested>, QueueError> {
        forward!(self.ingest_many(items))
    }

    pub async fn lease(&self, max: usize, wait: Duration) -> Result<Vec<LeasedJob>, QueueError> {
        forward!(self.lease(max, wait))
    }

    pub async fn renew(&self, job: &LeasedJob) -> Result<(), QueueError> {
        forward!(self.renew(job))
    }

    pub async fn complete(
        &self,
        job: &LeasedJob,
        attempt: Option<Attempt>,
        state: DeliveryState,
        next: Option<NewJob>,
    ) -> Result<(), QueueError> {
        forward!(self.complete(job, attempt, state, next))
    }

    pub async fn retry_at(
        &self,
        job: &LeasedJob,
        attempt: Attempt,
        at: Timestamp,
    ) -> Result<(), QueueError> {
        forward!(self.retry_at(job, attempt, at))
    }

    pub async fn defer(
        &self,
        job: &LeasedJob,
        at: Timestamp,
        orphaned_since: Option<Timestamp>,
    ) -> Result<(), QueueError> {
        forward!(self.defer(job, at, orphaned_since))
    }

    pub async fn dead_letter(
        &self,
        job: &LeasedJob,
        attempt: Option<Attempt>,
        reason: &str,
    ) -> Result<(), QueueError> {
        forward!(self.dead_letter(job, attempt, reason))
    }

    /// The event alone, without its delivery records: the delivery
    /// worker's per-job read (one HGET / one table lookup).
    pub async fn event_only(&self, id: &str) -> Result<Option<Event>, QueueError> {
        forward!(self.event_only(id))
    }

    pub async fn event(
        &self,
        id: &str,
    ) -> Result<Option<(Event, Vec<DeliveryRecord>)>, QueueError> {
        forward!(self.event(id))
    }

    pub async fn events(&self, q: &HistoryQuery) -> Result<Page<Event>, QueueError> {
        forward!(self.events(q))
    }

    pub async fn deliveries(&self, q: &HistoryQuery) -> Result<Page<DeliveryRecord>, QueueError> {
        forward!(self.deliveries(q))
    }

    pub async fn delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, QueueError> {
        forward!(self.delivery(id))
    }

    pub async fn job_of(&self, delivery_id: &str) -> Result<Option<NewJob>, QueueError> {
        forward!(self.job_of(delivery_id))
    }

    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<(), QueueError> {
        forward!(self.enqueue(jobs))
    }

    pub async fn redrive(&self, target: Option<&str>) -> Result<u64, QueueError> {
        forward!(self.redrive(target))
    }

    /// Admit one request to the rate-limited target `key` (its label):
    /// None = go, Some(wait) = defer that long. GCRA at `per_second` with
    /// `burst` requests at once; on Redis the state is shared by every
    /// replica (SPEC §5 `rate_limit`), on the embedded backend it is in
    /// memory.
    pub async fn rate_limit(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>, QueueError> {
        forward!(self.rate_limit(key, per_second, burst))
    }

    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        forward!(self.stats())
    }

    pub async fn ping(&self) -> Result<(), QueueError> {
        forward!(self.ping())
    }

    /// Add to the per-minute counters of the console's Overview
    /// ([`crate::model::tally`]) in one write: Redis `HINCRBY`s into
    /// `<prefix>:tally:<minute>` hashes (shared by every replica, expiring
    /// after [`KEEP_MINUTES`](crate::model::tally::KEEP_MINUTES)), the
    /// embedded store a table pruned of older minutes as it is written.
    pub async fn add_counts(&self, counts: &[MinuteCount]) -> Result<(), QueueError> {
        if counts.is_empty() {
            return Ok(());
        }
        forward!(self.add_counts(counts))
    }

    /// Every counter of minutes `since` up to the queue's "now" (at most
    /// `KEEP_MINUTES` of them), summed over the writers.
    pub async fn counts(&self, since: i64) -> Result<Vec<MinuteCount>, QueueError> {
        forward!(self.counts(since))
    }

    /// The lease the queue was opened with. Workers renew by this, not by
    /// the current config's `queue.lease`: a reload cannot change how the
    /// queue reclaims, so renewing by a reloaded value could let a lease
    /// lapse mid-request and the job be sent twice.
    pub fn lease_duration(&self) -> Duration {
        match self {
            Queue::Embedded(q) => q.lease_duration(),
            Queue::Redis(q) => q.lease_duration(),
        }
    }

    /// A new id for an event with the idempotency key `key` in `scope` (a
    /// trigger's source). On a Redis Cluster it is drawn until it hashes to
    /// the key's partition, so the event is found by its id alone (SPEC
    /// §16); elsewhere any new id.
    pub fn new_event_id(&self, scope: &str, key: &str) -> String {
        match self {
            Queue::Embedded(_) => ulid::Ulid::new().to_string(),
            Queue::Redis(q) => q.new_event_id(scope, key),
        }
    }

    /// Times the backend was found reset (Redis restarted empty).
    pub fn resets(&self) -> u64 {
        match self {
            Queue::Embedded(q) => q.resets(),
            Queue::Redis(q) => q.resets(),
        }
    }

    /// Check the backend's settings again (Redis: version and eviction
    /// policy, SPEC §11; see `redis/safety.rs`). Housekeeping calls it.
    pub async fn recheck_safety(&self) -> Result<(), QueueError> {
        match self {
            Queue::Embedded(_) => Ok(()),
            Queue::Redis(q) => q.recheck_safety().await,
        }
    }

    /// The `reason`s of the unsafe backend settings found by the last
    /// check (for `hookyard_queue_unsafe`); empty when all is well.
    pub fn unsafe_reasons(&self) -> Vec<&'static str> {
        match self {
            Queue::Embedded(_) => Vec::new(),
            Queue::Redis(q) => q.unsafe_reasons(),
        }
    }

    pub async fn put_subscription(&self, id: &str, doc: &Value) -> Result<bool, QueueError> {
        forward!(self.put_subscription(id, doc))
    }

    pub async fn delete_subscription(&self, id: &str) -> Result<bool, QueueError> {
        forward!(self.delete_subscription(id))
    }

    /// A number that changes whenever any process changes the API-created
    /// subscriptions. The embedded backend serves one process, which
    /// refreshes its own copy on every change, so it is always 0 there.
    pub async fn subscriptions_version(&self) -> Result<u64, QueueError> {
        match self {
            Queue::Embedded(_) => Ok(0),
            Queue::Redis(q) => q.subscriptions_version().await,
        }
    }

    /// Announcements of changes to the API-created subscriptions made by any
    /// replica (Redis pub/sub). `None` on the embedded backend, which serves
    /// one process.
    pub async fn subscription_changes(&self) -> Result<Option<SubscriptionChanges>, QueueError> {
        match self {
            Queue::Embedded(_) => Ok(None),
            Queue::Redis(q) => Ok(Some(SubscriptionChanges(q.subscription_changes().await?))),
        }
    }

    pub async fn subscriptions(&self) -> Result<Vec<Value>, QueueError> {
        forward!(self.subscriptions())
    }

    pub async fn put_state(&self, key: &str, value: &Value) -> Result<(), QueueError> {
        forward!(self.put_state(key, value))
    }

    pub async fn state(&self, key: &str) -> Result<Option<Value>, QueueError> {
        forward!(self.state(key))
    }

    pub async fn prune(&self, now: Timestamp) -> Result<u64, QueueError> {
        forward!(self.prune(now))
    }
}
