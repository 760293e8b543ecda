//! The embedded backend: a redb file in `queue.path`, for a single instance.
//!
//! Writes go through one writer thread that commits many requests in one
//! durable transaction (group commit, `writer.rs`); the job operations
//! are in `ops.rs`, subscriptions, state and pruning in `store.rs`, the tables in `tables.rs`, the reads in `reads.rs`,
//! the console's counters in `tally.rs`.
//!
//! Being single-instance, the backend returns every leased job to ready when
//! it opens: whoever held those leases was this process before it stopped.
//! Leases that lapse while running (a stuck worker) are reclaimed by `lease`.

mod ops;
mod reads;
mod store;
mod tables;
mod tally;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use redb::{Database, ReadableDatabase};
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::model::gcra::{Gcra, gcra_ms};
use crate::queue::{
    Attempt, Clock, DeliveryRecord, DeliveryState, Event, HistoryQuery, IngestItem, Ingested,
    LeasedJob, MinuteCount, NewJob, Page, QueueError, QueueStats, StoreSettings, system_clock,
};
use writer::{Reply, Request};

/// File name inside `queue.path`.
const FILE_NAME: &str = "hookyard.redb";
/// Requests that may wait for the writer before senders are slowed down.
const CHANNEL_CAPACITY: usize = 8192;
/// Events and idempotency keys removed per prune transaction, so pruning a
/// large backlog never holds the writer for long.
const PRUNE_BUDGET: u64 = 2000;
/// Longest sleep of a waiting `lease` between checks, so lapsed leases and
/// jobs made due by a clock jump are noticed even without a write.
const MAX_IDLE_SLEEP: Duration = Duration::from_millis(500);
/// How long `open` retries while this process still holds the file (a
/// previous handle's writer thread is shutting down).
const OPEN_RETRY: Duration = Duration::from_secs(5);
/// redb's page cache. Its default (1 GiB) would let a large history file
/// grow RSS far past SPEC §10's memory budget; the hot queue tables are small
/// and history reads are rare, so a small cache suffices.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Handle to the embedded queue; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedQueue {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    tx: mpsc::Sender<Request>,
    clock: Clock,
    /// Notified after every commit, so waiting `lease` calls look again.
    wake: Arc<Notify>,
    /// Write transactions committed since open (group commit makes this
    /// grow much slower than the number of writes under load).
    commits: Arc<AtomicU64>,
    /// GCRA state of `rate_limit` per target (in memory: this backend is
    /// single-instance, so the process is the whole cluster).
    rates: Mutex<HashMap<String, f64>>,
    /// `queue.lease` as opened (the writer thread holds its own copy).
    lease: Duration,
}

impl EmbeddedQueue {
    /// Opens (or creates) the store in the directory `path`.
    pub async fn open(path: &Path, settings: StoreSettings) -> Result<Self, QueueError> {
        Self::open_with_clock(path, settings, system_clock()).await
    }

    /// Like [`EmbeddedQueue::open`] with a clock of the caller's (tests).
    pub async fn open_with_clock(
        path: &Path,
        settings: StoreSettings,
        clock: Clock,
    ) -> Result<Self, QueueError> {
        std::fs::create_dir_all(path).map_err(|e| {
            QueueError::Unavailable(format!("cannot create queue.path {}: {e}", path.display()))
        })?;
        let file = path.join(FILE_NAME);
        let db = open_file(&file).await?;
        let db = Arc::new(db);
        let now = clock();
        let counters = {
            let db = db.clone();
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || recover(&db, &settings, now))
                .await
                .map_err(|e| QueueError::Unavailable(e.to_string()))??
        };
        let lease = settings.lease;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let wake = Arc::new(Notify::new());
        let commits = Arc::new(AtomicU64::new(0));
        {
            let db = db.clone();
            let clock = clock.clone();
            let (wake, commits) = (wake.clone(), commits.clone());
            std::thread::Builder::new()
                .name("hookyard-queue-writer".into())
                .spawn(move || writer::run(db, rx, counters, settings, clock, wake, commits))
                .map_err(|e| QueueError::Unavailable(format!("cannot start writer thread: {e}")))?;
        }
        Ok(EmbeddedQueue {
            inner: Arc::new(Inner {
                db,
                tx,
                clock,
                wake,
                commits,
                rates: Mutex::new(HashMap::new()),
                lease,
            }),
        })
    }

    /// How long a lease lasts before the job may be leased again.
    pub fn lease_duration(&self) -> Duration {
        self.inner.lease
    }

    async fn write<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .tx
            .send(make(reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| QueueError::Unavailable(format!("read task failed: {e}")))?
    }

    fn now(&self) -> Timestamp {
        (self.inner.clock)()
    }

    pub async fn ingest(
        &self,
        event: &Event,
        idempotency: Option<(&str, &str)>,
        jobs: Vec<NewJob>,
    ) -> Result<Ingested, QueueError> {
        let key = idempotency.map(|(s, k)| (s.to_owned(), k.to_owned()));
        let mut answers = self.ingest_many(vec![(event.clone(), key, jobs)]).await?;
        answers
            .pop()
            .ok_or_else(|| QueueError::Corrupt("ingest returned no answer".into()))
    }

    /// The whole batch is one atomic write; answers in input order.
    pub async fn ingest_many(&self, items: Vec<IngestItem>) -> Result<Vec<Ingested>, QueueError> {
        self.write(|r| Request::Ingest(items, r)).await
    }

    pub async fn lease(&self, max: usize, wait: Duration) -> Result<Vec<LeasedJob>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.inner.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = self.read(reads::next_wake).await?;
            let now = self.now();
            if next.is_some_and(|at| at <= now) {
                let jobs = self.write(|r| Request::Lease(max, r)).await?;
                if !jobs.is_empty() {
                    return Ok(jobs);
                }
                continue; // another worker took them; look again
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Ok(Vec::new());
            }
            let until_next = next
                .map(|at| at.duration_since(now).unsigned_abs())
                .unwrap_or(MAX_IDLE_SLEEP);
            let sleep = remaining.min(until_next).min(MAX_IDLE_SLEEP);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    pub async fn renew(&self, job: &LeasedJob) -> Result<(), QueueError> {
        let job = job.clone();
        self.write(|r| Request::Renew(job, r)).await
    }

    pub async fn complete(
        &self,
        job: &LeasedJob,
        attempt: Option<Attempt>,
        state: DeliveryState,
        next: Option<NewJob>,
    ) -> Result<(), QueueError> {
        let job = job.clone();
        self.write(|r| Request::Complete(job, attempt, state, next, r))
            .await
    }

    pub async fn retry_at(
        &self,
        job: &LeasedJob,
        attempt: Attempt,
        at: Timestamp,
    ) -> Result<(), QueueError> {
        let job = job.clone();
        self.write(|r| Request::RetryAt(job, attempt, at, r)).await
    }

    pub async fn defer(
        &self,
        job: &LeasedJob,
        at: Timestamp,
        orphaned_since: Option<Timestamp>,
    ) -> Result<(), QueueError> {
        let job = job.clone();
        self.write(|r| Request::Defer(job, at, orphaned_since, r))
            .await
    }

    pub async fn dead_letter(
        &self,
        job: &LeasedJob,
        attempt: Option<Attempt>,
        reason: &str,
    ) -> Result<(), QueueError> {
        let job = job.clone();
        let reason = reason.to_owned();
        self.write(|r| Request::DeadLetter(job, attempt, reason, r))
            .await
    }

    /// The event alone, without its delivery records.
    pub async fn event_only(&self, id: &str) -> Result<Option<Event>, QueueError> {
        let id = id.to_owned();
        self.read(move |db| reads::event_only(db, &id)).await
    }

    pub async fn event(
        &self,
        id: &str,
    ) -> Result<Option<(Event, Vec<DeliveryRecord>)>, QueueError> {
        let id = id.to_owned();
        self.read(move |db| reads::event(db, &id)).await
    }

    pub async fn events(&self, q: &HistoryQuery) -> Result<Page<Event>, QueueError> {
        let q = q.clone();
        self.read(move |db| reads::events(db, &q)).await
    }

    pub async fn deliveries(&self, q: &HistoryQuery) -> Result<Page<DeliveryRecord>, QueueError> {
        let q = q.clone();
        self.read(move |db| reads::deliveries(db, &q)).await
    }

    pub async fn delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, QueueError> {
        let id = id.to_owned();
        self.read(move |db| reads::delivery(db, &id)).await
    }

    pub async fn job_of(&self, delivery_id: &str) -> Result<Option<NewJob>, QueueError> {
        let id = delivery_id.to_owned();
        self.read(move |db| reads::job_of(db, &id)).await
    }

    /// New jobs for existing events; `NotFound` if an event is unknown.
    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<(), QueueError> {
        self.write(|r| Request::Enqueue(jobs, r)).await
    }

    pub async fn redrive(&self, target: Option<&str>) -> Result<u64, QueueError> {
        let target = target.map(str::to_owned);
        self.write(|r| Request::Redrive(target, r)).await
    }

    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let now = self.now();
        self.read(move |db| reads::stats(db, now)).await
    }

    pub async fn ping(&self) -> Result<(), QueueError> {
        if self.inner.tx.is_closed() {
            return Err(stopped());
        }
        self.read(|db| db.begin_read().map(drop).map_err(QueueError::from))
            .await
    }

    pub async fn add_counts(&self, counts: &[MinuteCount]) -> Result<(), QueueError> {
        let counts = counts.to_vec();
        self.write(|r| Request::AddCounts(counts, r)).await
    }

    pub async fn counts(&self, since: i64) -> Result<Vec<MinuteCount>, QueueError> {
        let now = crate::model::tally::minute_of(self.now().as_second());
        self.read(move |db| tally::counts(db, since, now)).await
    }

    /// Write transactions committed since open.
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Admit one request to `key` (see [`crate::model::gcra`]): None = go,
    /// Some(wait) = defer that long.
    pub async fn rate_limit(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>, QueueError> {
        let now_ms = (self.inner.clock)().as_millisecond() as f64;
        let mut rates = match self.inner.rates.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        match gcra_ms(rates.get(key).copied(), now_ms, per_second, burst) {
            Gcra::Allowed { tat: tat_ms } => {
                rates.insert(key.to_owned(), tat_ms);
                Ok(None)
            }
            Gcra::Wait { wait: ms } => Ok(Some(Duration::from_secs_f64(ms / 1000.0))),
        }
    }

    /// The embedded store cannot be reset behind our back.
    pub fn resets(&self) -> u64 {
        0
    }

    pub async fn put_subscription(&self, id: &str, doc: &Value) -> Result<bool, QueueError> {
        let (id, doc) = (id.to_owned(), doc.clone());
        self.write(|r| Request::PutSubscription(id, doc, r)).await
    }

    pub async fn delete_subscription(&self, id: &str) -> Result<bool, QueueError> {
        let id = id.to_owned();
        self.write(|r| Request::DeleteSubscription(id, r)).await
    }

    pub async fn subscriptions(&self) -> Result<Vec<Value>, QueueError> {
        self.read(reads::subscriptions).await
    }

    pub async fn put_state(&self, key: &str, value: &Value) -> Result<(), QueueError> {
        let (key, value) = (key.to_owned(), value.clone());
        self.write(|r| Request::PutState(key, value, r)).await
    }

    pub async fn state(&self, key: &str) -> Result<Option<Value>, QueueError> {
        let key = key.to_owned();
        self.read(move |db| reads::state(db, &key)).await
    }

    /// Prunes in transactions of bounded size so ingestion keeps flowing.
    pub async fn prune(&self, now: Timestamp) -> Result<u64, QueueError> {
        let mut total = 0;
        loop {
            let removed = self.write(|r| Request::Prune(now, PRUNE_BUDGET, r)).await?;
            total += removed;
            if removed < PRUNE_BUDGET {
                return Ok(total);
            }
        }
    }
}

fn stopped() -> QueueError {
    QueueError::Unavailable("the embedded queue writer stopped (see earlier errors)".into())
}

/// Opens the file, waiting a little while a previous handle in this process
/// still holds it (its writer thread exits when the last clone is dropped).
async fn open_file(file: &Path) -> Result<Database, QueueError> {
    let deadline = tokio::time::Instant::now() + OPEN_RETRY;
    loop {
        let path = file.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            Database::builder().set_cache_size(CACHE_BYTES).create(path)
        })
        .await
        .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        match result {
            Ok(db) => return Ok(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                return Err(QueueError::Unavailable(format!(
                    "cannot open {} ({e}); is another hookyard using this queue.path?",
                    file.display()
                )));
            }
        }
    }
}

/// Creates missing tables, loads the counters and returns every leased job
/// to ready (single instance: the leases were ours, from before the stop).
fn recover(
    db: &Database,
    settings: &StoreSettings,
    now: Timestamp,
) -> Result<ops::Counters, QueueError> {
    let txn = db.begin_write()?;
    tables::create_all(&txn)?;
    tally::count_dead_once(&txn)?;
    let counters = ops::Counters::load(&txn)?;
    let mut batch = ops::Batch {
        t: tables::Tables::open(&txn)?,
        c: counters,
        now,
        settings,
    };
    let released = batch.release_all_leases()?;
    let counters = batch.c;
    drop(batch);
    txn.commit()?;
    if released > 0 {
        tracing::info!(
            released,
            "returned jobs leased before the last stop to the queue"
        );
    }
    Ok(counters)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::queue::Target;

    fn settings() -> StoreSettings {
        StoreSettings {
            lease: Duration::from_secs(30),
            history_retention: Duration::from_secs(3600),
            history_max_events: 1000,
            idempotency_window: Duration::from_secs(3600),
            consumer_name: "unit".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let q = EmbeddedQueue::open(dir.path(), settings()).await.unwrap();
        let before = q.commits();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("e{i}");
                let event = Event {
                    id: id.clone(),
                    event_type: "t".into(),
                    timestamp: Timestamp::now(),
                    source: "api:unit".into(),
                    data: Value::Null,
                };
                let job = NewJob {
                    delivery_id: format!("d{i}"),
                    event_id: id,
                    target: Target::Subscription { id: "s".into() },
                    steps: BTreeMap::new(),
                    ordering_key: None,
                    not_before: None,
                    traceparent: None,
                    fifo_later: false,
                };
                q.ingest(&event, None, vec![job]).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let commits = q.commits() - before;
        assert!(
            (1..32).contains(&commits),
            "64 ingests took {commits} commits"
        );
        assert_eq!(q.stats().await.unwrap().ready, 64);
    }
}
