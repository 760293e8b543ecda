//! The Redis backend of the queue (SPEC §6): Redis Streams with a consumer
//! group for ready work, a sorted set for delays, reclaim of lapsed leases,
//! a dead-letter set, and the event/delivery history next to them.
//!
//! # Design
//!
//! Every key lives under the configured prefix `<p>` (e.g. `hookyard`), so
//! several deployments (or tests) can share one Redis.
//!
//! - `<p>:ready` — a stream with consumer group `<p>:workers`. An entry
//!   carries everything a worker needs: delivery id (`d`), the stored job
//!   (`j`), attempts made (`n`), orphaned_since (`o`) and the event id
//!   (`e`), so leasing reads no other key but the event, whose JSON comes
//!   back with the lease (entries of older versions with only `d` are still
//!   read: the job then comes from the delivery record, and the worker
//!   reads the event itself). Each process reads with its own consumer name
//!   (`StoreSettings::consumer_name`), so replicas spread the work and every
//!   entry is held by one consumer at a time. A leased entry sits in the
//!   group's pending list (PEL) until it is finished (XACK + XDEL).
//! - Leases: the lease handle is `<entry id>/<delivery count>`. `renew` is
//!   XCLAIM by the same consumer with min-idle 0 and JUSTID, which resets
//!   the idle time without bumping the count. `lease` reclaims entries idle
//!   longer than `StoreSettings::lease` with XAUTOCLAIM (which bumps the
//!   count), so a handle of the worker that lost its lease is refused
//!   (`LeaseLost`) by every finishing script.
//! - `<p>:delayed` — sorted set of delivery ids scored by due time (ms).
//!   Retries, deferrals and future `not_before` jobs wait here; the lease
//!   script moves due ones into the stream atomically. Due times use the
//!   queue's clock ([`RedisQueue::open_with_clock`]), lease idle time is Redis'
//!   own real time.
//! - `<p>:dead` — sorted set of dead-lettered delivery ids (score = when);
//!   the reason is in the delivery record. `redrive` moves them back.
//! - FIFO: `<p>:fifo:<ordering key>` is a list of delivery ids in enqueue
//!   order; only its head is ever in the stream or the delayed set.
//!   Finishing the head (complete or dead letter) pops it and places the
//!   next one; a redriven job is pushed at the back.
//! - Rate limits: `<p>:rl:<target label>` holds the target's GCRA
//!   theoretical arrival time (ms, server clock), expiring when idle.
//! - History: `<p>:ev:<id>` (hash: event JSON, ingest time,
//!   and `ds`: JSON list of the deliveries made at ingestion; whether an
//!   event still has unfinished jobs is read from its deliveries' states), `<p>:evd:<id>` (list of deliveries added later: replays,
//!   workflow steps),
//!   `<p>:d:<delivery id>` (hash: event, target label, ordering key, due,
//!   the job as a versioned [`StoredJob`], state, reason, attempts made,
//!   orphaned_since; a field not set yet is absent and reads as empty or
//!   0), `<p>:da:<delivery id>` (list of attempt JSON). A job that goes
//!   straight into the stream at ingestion gets its record at its first
//!   lease, from its stream entry (which then carries the target, `t`);
//!   until then `<p>:dq` (hash delivery id → `<target label>\n<event id>`)
//!   lists it, and readers take it as pending with no attempts. So
//!   ingestion writes one key per event plus the stream entries, and
//!   everything after the first lease finds the record in place.
//!   `<p>:events` and `<p>:deliveries` are sorted sets scored by a global
//!   sequence (`<p>:seq`) for newest-first cursor pagination.
//! - Idempotency: `<p>:idem:<scope>:<key>` = `<ingest ms>|<first event id>`,
//!   SET NX GET with PX = the window. The window is judged on the queue's
//!   clock (a key older than that is taken over); the TTL bounds memory in
//!   real time. `<p>:idem` (list of `<ingest ms>|<key>` in ingest order)
//!   lets `prune` drop and count expired keys like the embedded backend.
//!   A key that is the event's own id (a client id on the event API) has no
//!   key of its own: the event record is the marker, and while it exists
//!   the id is a duplicate however old (SPEC §11), so a stored event is
//!   never overwritten. `prune`
//!   writes the key only for an event it removes within its window
//!   (`history.max_events` on a busy gateway), so the id stays a duplicate
//!   for the whole window, and notes that event's ingest ms in
//!   `<p>:idempruned`: ingestion looks such keys up only while that is
//!   within the window (one read per batch instead of one per event).
//!   Opening the queue on history an older hookyard wrote sets it to now.
//! - Counters: `<p>:pending` (hash target label → unfinished jobs),
//!   `<p>:unfinished` (sorted set delivery id → enqueue ms, for the oldest
//!   age; a job queued at ingestion joins it only when it leaves the stream
//!   unfinished, until then its entry's `q` field gives its enqueue time),
//!   `<p>:counts` (FIFO jobs waiting behind their head), `<p>:deadby`
//!   (hash target label → dead letters). Per-minute counters of the
//!   console's Overview: `<p>:tally:<minute>` (`redis/tally.rs`).
//! - API-created subscriptions in hash `<p>:subs`, small state in `<p>:state`.
//!
//! Every multi-key change is one Lua script (`redis/lua/*.lua`, each
//! prefixed with `common.lua`): ingestion writes the idempotency key, the
//! event, every job and its delivery record together, so no key exists
//! without its event and a concurrent duplicate sees the first id; complete
//! acks the entry, records the attempt and enqueues the next workflow step
//! in one step. Scripts declare the partition's fixed keys (`KEYS`) and
//! make per-record keys from the partition's prefix, which carries the
//! same hash tag. On a cluster the batched scripts (ingest, complete,
//! lease) take the partitions of one master in one call: they declare the
//! first one's keys and reach the others by prefix (`redis/nodes.rs`).
//!
//! Partitions (`redis/partition.rs`, SPEC §16): on a Redis Cluster all of
//! the above exists once per partition, under `<p>:{<tag>}` instead of
//! `<p>`; an event, its idempotency key, jobs, deliveries and stream
//! entries live in the partition of its dedupe key, and every script runs
//! in one partition. A lease handle then starts with its partition
//! (`<i>@<entry>/<count>`), and workers poll the partitions in turn
//! (`redis/lease.rs`). Events routed to a FIFO target all go to partition
//! 0, where the FIFO lines are, so a target's order and its one job in
//! flight hold across the cluster. One server and Sentinel have one
//! partition, `<p>` itself: the layout of earlier versions, unchanged.
//!
//! Throughput: per job the scripts run only the commands that must be per
//! job (idempotency SET, event HSET, XADD at ingestion; the event read and
//! record HSET at lease; the attempt RPUSH and record HSET at completion),
//! and pass values
//! they write as strings (Lua's number formatting costs about as much as a
//! small command); the lease check
//! of a batch of completions is one XPENDING, and sequence numbers, index
//! ZADDs/ZREMs, counters and XACK/XDEL are written once per script call
//! with variadic commands. `ingest_many`
//! is one call per batch, `lease` one call per batch, and concurrent
//! `complete`s of a process are finished together in one call, and so are
//! concurrent ingestions (`redis/batch.rs`). BENCHMARKS.md has the figures.
//!
//! Memory stays bounded: `prune` drops history beyond `history.retention` /
//! `history.max_events` (never an event with unfinished jobs), idempotency
//! keys expire by TTL (and are pruned), finished stream entries are deleted.
//!
//! Redis restarted empty: the stream and group are gone. The next `lease`
//! (NOGROUP) or `ingest` (stream missing) recreates them (XGROUP CREATE ...
//! 0 MKSTREAM, so entries added meanwhile are still read), logs that queued
//! work was lost and counts it in [`RedisQueue::resets`]. Unreachable Redis
//! is `QueueError::Unavailable`.
//!
//! Blocking reads (XREADGROUP BLOCK) use their own connections without a
//! response timeout, from a small pool; everything else goes through one
//! shared multiplexed connection, which reconnects by itself: to the same
//! server for `redis://`, to whichever server the sentinels name as master
//! for `redis+sentinel://` (`redis/source.rs`, SPEC §16). With
//! `queue.replicas_ack`, ingestion has a connection of its own and waits
//! for the replicas (`WAIT`) before it answers (`redis/batch.rs`).
//!
//! A server that would lose data (a `maxmemory-policy` other than
//! `noeviction`, a version older than 7.0) is refused at open and checked
//! again every few seconds (`redis/safety.rs`, SPEC §11).

mod batch;
mod documents;
mod history;
mod index;
mod ingest;
mod lease;
mod nodes;
mod open;
mod partition;
mod prune;
mod rate;
mod safety;
mod scripts;
mod source;
mod tally;

pub use crate::config::redis_address::{Address, ClusterAddress, SENTINEL_PORT, SentinelAddress};
pub use open::RedisOptions;
pub use safety::{Unsafe, check as check_settings};

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, RedisError, Script, Value};
use serde::{Deserialize, Serialize};

use super::{Attempt, Clock, DeliveryState, LeasedJob, NewJob, QueueError, StoreSettings};
use ingest::job_args;
use scripts::Scripts;

type Result<T> = std::result::Result<T, QueueError>;

/// A job as stored in its delivery record and stream entry. Versioned so
/// jobs queued by an older hookyard still decode after an upgrade: add `V2`
/// next to `V1`, never change `V1`'s fields. Read as `StoredJob` (owning its
/// [`NewJob`]); written as `StoredJob<&NewJob>`, which serde writes with the
/// same bytes, so writing needs no copy of the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum StoredJob<J = NewJob> {
    V1 { job: J },
}

/// Handle to the Redis queue; cheap to clone.
#[derive(Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
}

/// How long a command's answer is awaited on the shared connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

struct Inner {
    /// The connections: one server, or the master Sentinel names
    /// (`redis/source.rs`). Its shared multiplexed connection serves
    /// everything that does not block; its client opens the blocking-read
    /// and pub/sub connections.
    source: source::Source,
    /// Idle connections for XREADGROUP BLOCK: a blocked command holds its
    /// whole connection, so each concurrent `lease` needs its own.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    /// The prefix of the keys shared by all partitions (subscriptions,
    /// state, rate limits, tallies).
    prefix: String,
    /// The partitions: one (`prefix` itself) or `queue.partitions` on a
    /// cluster (`redis/partition.rs`).
    parts: Arc<Vec<partition::Partition>>,
    /// Which master holds each partition (`redis/nodes.rs`).
    nodes: Arc<nodes::Nodes>,
    /// Where the next partitioned `lease` starts, so every partition is
    /// served in turn.
    next_part: AtomicUsize,
    /// Woken when this process ingests, so a polling `lease` need not wait
    /// for its next round.
    work: tokio::sync::Notify,
    /// How long a polling `lease` now pauses between empty rounds (ms).
    idle_ms: AtomicU64,
    settings: StoreSettings,
    scripts: Scripts,
    /// Where "now" comes from (the system clock, or a test's).
    clock: Clock,
    /// Ingestions and completions, each run together by a task of
    /// `batch.rs`.
    ingests: tokio::sync::mpsc::UnboundedSender<batch::Call>,
    completions: tokio::sync::mpsc::UnboundedSender<batch::Call>,
    /// Times the stream/group were found missing (Redis restarted empty).
    resets: AtomicU64,
    /// Whether the server's settings lose data (SPEC §11), as last checked.
    safety: safety::Safety,
    /// XAUTOCLAIM cursor per partition, so reclaim walks each whole
    /// pending list over time.
    reclaim_cursor: Vec<Mutex<String>>,
    /// When this process last looked for lapsed leases, per partition.
    last_reclaim: Vec<Mutex<Option<std::time::Instant>>>,
}

/// Any Redis failure means the backend cannot serve right now.
fn unavailable(e: RedisError) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn is_nogroup(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Corrupt(format!("{what}: {e}"))
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn attempt_json(attempt: Option<&Attempt>) -> Result<String> {
    match attempt {
        Some(a) => serde_json::to_string(a).map_err(|e| corrupt("attempt", e)),
        None => Ok(String::new()),
    }
}

fn lease_answer(answer: &str) -> Result<()> {
    match answer {
        "ok" => Ok(()),
        _ => Err(QueueError::LeaseLost),
    }
}

impl RedisQueue {
    fn now(&self) -> Timestamp {
        (self.inner.clock)()
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{}", self.inner.prefix, name)
    }

    /// A key of partition `part`.
    fn pkey(&self, part: usize, name: &str) -> String {
        self.inner.parts[part].key(name)
    }

    /// Whether the queue is on a Redis Cluster (polling leases, hash-tagged
    /// shared keys), whatever its partition count.
    fn on_cluster(&self) -> bool {
        self.inner.source.is_cluster()
    }

    /// How many partitions there are (1 but on a cluster).
    fn partitions(&self) -> usize {
        self.inner.parts.len()
    }

    /// The partition a dedupe key or id hashes to.
    fn part_of(&self, key: &str) -> usize {
        partition::of(key, self.partitions())
    }

    /// A new event id for an event whose idempotency key is `key` in
    /// `scope` (a trigger's source): on a cluster, drawn again until it
    /// hashes to the same partition as the key, so the event is found from
    /// its id alone (SPEC §16). Elsewhere any new id, with nothing hashed.
    pub fn new_event_id(&self, scope: &str, key: &str) -> String {
        if self.partitions() == 1 {
            return ulid::Ulid::new().to_string();
        }
        let want = self.part_of(&ingest::dedupe_key(scope, key));
        loop {
            let id = ulid::Ulid::new().to_string();
            if self.part_of(&id) == want {
                return id;
            }
        }
    }

    /// A lease handle's partition and its handle within the partition
    /// (`<i>@<entry>/<count>` on a cluster, `<entry>/<count>` elsewhere).
    fn split_lease<'a>(&self, lease: &'a str) -> (usize, &'a str) {
        if let Some((part, rest)) = lease.split_once('@')
            && let Ok(part) = part.parse::<usize>()
            && part < self.partitions()
        {
            return (part, rest);
        }
        (0, lease)
    }

    fn conn(&self) -> source::Conn {
        self.inner.source.conn()
    }

    /// A client of the current master, for connections of their own.
    fn client(&self) -> redis::Client {
        self.inner.source.client()
    }

    /// Times the backend was found reset (Redis restarted empty).
    pub fn resets(&self) -> u64 {
        self.inner.resets.load(Ordering::Relaxed)
    }

    fn count_reset(&self) {
        self.inner.resets.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            prefix = %self.inner.prefix,
            "Redis lost the queue stream (restarted without its data?): queued work on the Redis side was lost; stream and consumer group recreated"
        );
    }

    /// XGROUP CREATE ... 0 MKSTREAM. Returns whether it was created (false:
    /// it already existed).
    async fn create_group(&self, part: usize) -> Result<bool> {
        let created: std::result::Result<Value, RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.pkey(part, "ready"))
            .arg(self.pkey(part, "workers"))
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match created {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("BUSYGROUP") || e.to_string().contains("BUSYGROUP") => {
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// After a NOGROUP answer: recreate the group, counting the reset once
    /// even when several workers notice it at the same time.
    async fn recover(&self, part: usize) -> Result<()> {
        if self.create_group(part).await? {
            self.count_reset();
        }
        Ok(())
    }

    /// Run a script in partition `part`: its keys, then the common
    /// arguments (the partition's prefix, now) first.
    async fn run<T: FromRedisValue>(
        &self,
        part: usize,
        script: &Script,
        args: &[String],
    ) -> std::result::Result<T, RedisError> {
        self.run_at(part, self.now(), script, args).await
    }

    /// [`RedisQueue::run`] with "now" given.
    async fn run_at<T: FromRedisValue>(
        &self,
        part: usize,
        now: Timestamp,
        script: &Script,
        args: &[String],
    ) -> std::result::Result<T, RedisError> {
        let mut inv = script.prepare_invoke();
        let part = &self.inner.parts[part];
        for k in &part.keys {
            inv.key(k);
        }
        inv.arg(&part.prefix).arg(ms(now));
        for a in args {
            inv.arg(a);
        }
        inv.invoke_async(&mut self.conn()).await
    }

    pub(super) async fn finishing(
        &self,
        part: usize,
        script: &Script,
        args: Vec<String>,
    ) -> Result<()> {
        let answer: String = self.run(part, script, &args).await.map_err(unavailable)?;
        lease_answer(&answer)
    }

    /// The job's partition and the arguments every finishing script starts
    /// with: consumer, lease handle (within the partition), delivery id.
    fn lease_args(&self, job: &LeasedJob) -> (usize, Vec<String>) {
        let (part, lease) = self.split_lease(&job.lease);
        let args = vec![
            self.inner.settings.consumer_name.clone(),
            lease.to_string(),
            job.job.delivery_id.clone(),
        ];
        (part, args)
    }

    /// How long a lease lasts before another replica may reclaim the job.
    pub fn lease_duration(&self) -> std::time::Duration {
        self.inner.settings.lease
    }

    /// Extend the lease by `settings.lease`; `LeaseLost` if it was reclaimed.
    pub async fn renew(&self, job: &LeasedJob) -> Result<()> {
        let (part, args) = self.lease_args(job);
        self.finishing(part, &self.inner.scripts.renew, args).await
    }

    /// Finish as succeeded/test, record the attempt and enqueue `next`, in
    /// one atomic step. Concurrent calls are finished together (see
    /// `redis/batch.rs`); each gets its own answer.
    pub async fn complete(
        &self,
        job: &LeasedJob,
        attempt: Option<Attempt>,
        state: DeliveryState,
        next: Option<NewJob>,
    ) -> Result<()> {
        let state = match state {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::DeadLetter => "dead_letter",
            DeliveryState::Test => "test",
        };
        // The job's target and FIFO line come from the lease, so the script
        // need not read the delivery record.
        // Attempts made counting this one: the lease carries the count, so
        // the script writes it instead of incrementing it.
        let attempts = job.attempts + u32::from(attempt.is_some());
        let (part, lease) = self.split_lease(&job.lease);
        let mut args = vec![
            lease.to_string(),
            job.job.delivery_id.clone(),
            job.job.target.label(),
            job.job.ordering_key.clone().unwrap_or_default(),
            state.to_string(),
            attempt_json(attempt.as_ref())?,
            attempts.to_string(),
        ];
        match &next {
            Some(n) => {
                args.push("1".into());
                job_args(n, &mut args, true)?;
            }
            None => args.push("0".into()),
        }
        let (_, answers) = batch::call(&self.inner.completions, part, 1, args).await?;
        lease_answer(answers.first().map(String::as_str).unwrap_or_default())
    }

    /// Record a failed attempt and run the job again at `at`.
    pub async fn retry_at(&self, job: &LeasedJob, attempt: Attempt, at: Timestamp) -> Result<()> {
        let (part, mut args) = self.lease_args(job);
        args.push(attempt_json(Some(&attempt))?);
        args.push(ms(at).to_string());
        self.finishing(part, &self.inner.scripts.retry, args).await
    }

    /// Wait until `at` without using an attempt.
    pub async fn defer(
        &self,
        job: &LeasedJob,
        at: Timestamp,
        orphaned_since: Option<Timestamp>,
    ) -> Result<()> {
        let (part, mut args) = self.lease_args(job);
        args.push(ms(at).to_string());
        args.push(orphaned_since.map(|t| t.to_string()).unwrap_or_default());
        self.finishing(part, &self.inner.scripts.defer, args).await
    }

    /// Give up on the job with its reason.
    pub async fn dead_letter(
        &self,
        job: &LeasedJob,
        attempt: Option<Attempt>,
        reason: &str,
    ) -> Result<()> {
        let (part, mut args) = self.lease_args(job);
        args.push(attempt_json(attempt.as_ref())?);
        args.push(reason.to_string());
        self.finishing(part, &self.inner.scripts.dead, args).await
    }

    /// Dead letters (of one target label, or all) back to ready, attempts
    /// reset to 0, oldest first. Returns how many.
    pub async fn redrive(&self, target: Option<&str>) -> Result<u64> {
        let mut total = 0;
        for part in 0..self.partitions() {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(self.pkey(part, "dead"))
                .arg(0)
                .arg(-1)
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            for chunk in ids.chunks(500) {
                let mut args = vec![target.unwrap_or_default().to_string()];
                args.extend(chunk.iter().cloned());
                let n: u64 = self
                    .run(part, &self.inner.scripts.redrive, &args)
                    .await
                    .map_err(unavailable)?;
                total += n;
            }
        }
        Ok(total)
    }

    /// Check that Redis answers, and that ingestion is not refused (an
    /// unsafe setting found after start makes readiness 503).
    pub async fn ping(&self) -> Result<()> {
        self.refusal()?;
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
