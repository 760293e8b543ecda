//! The redb tables of the embedded backend and the records stored in them.
//!
//! Hot queue tables (`jobs`, `ready`, `leases`, `fifo_*`, `dead`, counters)
//! stay small: they hold only unfinished work, so a recovery scan after an
//! unclean stop stays cheap. Bulky history (`events`, `deliveries` with their
//! attempts) lives in separate tables that only ingestion, finishing a job and
//! pruning touch.
//!
//! Records are JSON: the tree already depends on serde_json, the records are
//! small, and JSON stays readable when debugging a data file. Times are stored
//! as microseconds since the Unix epoch so they sort as keys.

use jiff::Timestamp;
use redb::{Table, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::queue::{DeliveryRecord, Event, NewJob, QueueError, StoredJob};

// ---- hot queue ----

/// Unfinished jobs (ready, delayed, leased or waiting behind a FIFO head):
/// job seq → `StoredJob`.
pub const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
/// Jobs that may be leased once their due time has come: (due µs, job seq).
pub const READY: TableDefinition<(i64, u64), ()> = TableDefinition::new("ready");
/// Leased jobs: job seq → (lease generation, lease expiry µs).
pub const LEASES: TableDefinition<u64, (u64, i64)> = TableDefinition::new("leases");
/// Leases by expiry: (expiry µs, job seq), to find lapsed ones in order.
pub const LEASE_EXPIRY: TableDefinition<(i64, u64), ()> = TableDefinition::new("lease_expiry");
/// FIFO: the one job per ordering key that is in `ready`/`leases` now.
pub const FIFO_HEAD: TableDefinition<&str, u64> = TableDefinition::new("fifo_head");
/// FIFO: jobs waiting behind their key's head, in enqueue order.
pub const FIFO_WAITING: TableDefinition<(&str, u64), ()> = TableDefinition::new("fifo_waiting");
/// Dead letters: job seq → `StoredDead`.
pub const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead");
/// Unfinished jobs per `Target::label()` (for `hookyard_target_pending`).
pub const TARGET_PENDING: TableDefinition<&str, u64> = TableDefinition::new("target_pending");
/// Unfinished jobs per event id; an event with a count is never pruned.
pub const EVENT_LIVE: TableDefinition<&str, u64> = TableDefinition::new("event_live");
/// Dead letters per `Target::label()` (for the console's Overview).
pub const TARGET_DEAD: TableDefinition<&str, u64> = TableDefinition::new("target_dead");
/// Counters that must survive restarts (`seq`, `gen`), and markers of
/// one-time upgrades of the store.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The console's per-minute counters ([`crate::model::tally`]): (minute,
/// counter name) → count, pruned of minutes past `KEEP_MINUTES`.
pub const TALLY: TableDefinition<(i64, &str), u64> = TableDefinition::new("tally");

// ---- history ----

/// Event id → `StoredEvent`.
pub const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
/// Ingest order (newest last) → event id, for pagination and pruning.
pub const EVENTS_BY_SEQ: TableDefinition<u64, &str> = TableDefinition::new("events_by_seq");
/// Delivery id → `StoredDelivery`.
pub const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("deliveries");
/// Creation order → delivery id, for pagination.
pub const DELIVERIES_BY_SEQ: TableDefinition<u64, &str> = TableDefinition::new("deliveries_by_seq");
/// (event id, delivery id): the deliveries of an event.
pub const EVENT_DELIVERIES: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("event_deliveries");

// ---- idempotency, subscriptions, state ----

/// `scope \0 key` → `StoredKey`.
pub const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
/// (first seen µs, `scope \0 key`), to expire keys oldest first.
pub const IDEMPOTENCY_BY_TIME: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("idempotency_by_time");
/// Subscription id → JSON document as given.
pub const SUBSCRIPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscriptions");
/// State key → JSON value.
pub const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

/// An event and when it was ingested (retention counts from ingestion, not
/// from the client-supplied `timestamp`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum StoredEvent {
    V1 {
        seq: u64,
        ingested_at: Timestamp,
        event: Event,
    },
}

/// A delivery's history record plus the job as enqueued (for `job_of`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum StoredDelivery {
    V1 {
        seq: u64,
        record: DeliveryRecord,
        job: NewJob,
    },
}

/// A dead-lettered job, kept so it can be redriven.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum StoredDead {
    V1 { job: StoredJob, reason: String },
}

/// What an idempotency key points at.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum StoredKey {
    V1 { event_id: String, at: Timestamp },
}

/// Every table, opened once per batch.
pub struct Tables<'t> {
    pub(super) jobs: Table<'t, u64, &'static [u8]>,
    pub(super) ready: Table<'t, (i64, u64), ()>,
    pub(super) leases: Table<'t, u64, (u64, i64)>,
    pub(super) lease_expiry: Table<'t, (i64, u64), ()>,
    pub(super) fifo_head: Table<'t, &'static str, u64>,
    pub(super) fifo_waiting: Table<'t, (&'static str, u64), ()>,
    pub(super) dead: Table<'t, u64, &'static [u8]>,
    pub(super) target_pending: Table<'t, &'static str, u64>,
    pub(super) event_live: Table<'t, &'static str, u64>,
    pub(super) target_dead: Table<'t, &'static str, u64>,
    pub(super) meta: Table<'t, &'static str, u64>,
    pub(super) tally: Table<'t, (i64, &'static str), u64>,
    pub(super) events: Table<'t, &'static str, &'static [u8]>,
    pub(super) events_by_seq: Table<'t, u64, &'static str>,
    pub(super) deliveries: Table<'t, &'static str, &'static [u8]>,
    pub(super) deliveries_by_seq: Table<'t, u64, &'static str>,
    pub(super) event_deliveries: Table<'t, (&'static str, &'static str), ()>,
    pub(super) idempotency: Table<'t, &'static str, &'static [u8]>,
    pub(super) idempotency_by_time: Table<'t, (i64, &'static str), ()>,
    pub(super) subscriptions: Table<'t, &'static str, &'static [u8]>,
    pub(super) state: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, QueueError> {
        Ok(Tables {
            jobs: txn.open_table(JOBS)?,
            ready: txn.open_table(READY)?,
            leases: txn.open_table(LEASES)?,
            lease_expiry: txn.open_table(LEASE_EXPIRY)?,
            fifo_head: txn.open_table(FIFO_HEAD)?,
            fifo_waiting: txn.open_table(FIFO_WAITING)?,
            dead: txn.open_table(DEAD)?,
            target_pending: txn.open_table(TARGET_PENDING)?,
            event_live: txn.open_table(EVENT_LIVE)?,
            target_dead: txn.open_table(TARGET_DEAD)?,
            meta: txn.open_table(META)?,
            tally: txn.open_table(TALLY)?,
            events: txn.open_table(EVENTS)?,
            events_by_seq: txn.open_table(EVENTS_BY_SEQ)?,
            deliveries: txn.open_table(DELIVERIES)?,
            deliveries_by_seq: txn.open_table(DELIVERIES_BY_SEQ)?,
            event_deliveries: txn.open_table(EVENT_DELIVERIES)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            idempotency_by_time: txn.open_table(IDEMPOTENCY_BY_TIME)?,
            subscriptions: txn.open_table(SUBSCRIPTIONS)?,
            state: txn.open_table(STATE)?,
        })
    }
}

/// Creates every table so read transactions never meet a missing one.
pub fn create_all(txn: &WriteTransaction) -> Result<(), QueueError> {
    txn.open_table(JOBS)?;
    txn.open_table(READY)?;
    txn.open_table(LEASES)?;
    txn.open_table(LEASE_EXPIRY)?;
    txn.open_table(FIFO_HEAD)?;
    txn.open_table(FIFO_WAITING)?;
    txn.open_table(DEAD)?;
    txn.open_table(TARGET_PENDING)?;
    txn.open_table(EVENT_LIVE)?;
    txn.open_table(TARGET_DEAD)?;
    txn.open_table(META)?;
    txn.open_table(TALLY)?;
    txn.open_table(EVENTS)?;
    txn.open_table(EVENTS_BY_SEQ)?;
    txn.open_table(DELIVERIES)?;
    txn.open_table(DELIVERIES_BY_SEQ)?;
    txn.open_table(EVENT_DELIVERIES)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(IDEMPOTENCY_BY_TIME)?;
    txn.open_table(SUBSCRIPTIONS)?;
    txn.open_table(STATE)?;
    Ok(())
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, QueueError> {
    serde_json::to_vec(value).map_err(|e| QueueError::Corrupt(format!("encoding a record: {e}")))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(bytes)
        .map_err(|e| QueueError::Corrupt(format!("decoding a record: {e}")))
}

pub fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub fn from_micros(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::MAX)
}

/// The idempotency table key: scope and key cannot contain NUL in practice
/// (they come from config ids and HTTP headers), so NUL separates them.
pub fn idempotency_key(scope: &str, key: &str) -> String {
    format!("{scope}\0{key}")
}

/// The lease handle given to workers: job seq and lease generation. The
/// generation changes on every lease, so a worker whose lease lapsed and was
/// handed to another worker gets `LeaseLost` instead of finishing it twice.
pub fn lease_handle(seq: u64, generation: u64) -> String {
    format!("{seq}.{generation}")
}

pub fn parse_lease(handle: &str) -> Result<(u64, u64), QueueError> {
    let (seq, generation) = handle.split_once('.').ok_or(QueueError::LeaseLost)?;
    let seq = seq.parse().map_err(|_| QueueError::LeaseLost)?;
    let generation = generation.parse().map_err(|_| QueueError::LeaseLost)?;
    Ok((seq, generation))
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(format!("embedded store (queue.path): {e}"))
}

impl From<redb::StorageError> for QueueError {
    fn from(e: redb::StorageError) -> Self {
        unavailable(e)
    }
}

impl From<redb::TableError> for QueueError {
    fn from(e: redb::TableError) -> Self {
        unavailable(e)
    }
}

impl From<redb::TransactionError> for QueueError {
    fn from(e: redb::TransactionError) -> Self {
        unavailable(e)
    }
}

impl From<redb::CommitError> for QueueError {
    fn from(e: redb::CommitError) -> Self {
        unavailable(e)
    }
}

impl From<redb::DatabaseError> for QueueError {
    fn from(e: redb::DatabaseError) -> Self {
        unavailable(e)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lease_handles_round_trip_and_reject_garbage() {
        assert_eq!(parse_lease(&lease_handle(42, 7)).unwrap(), (42, 7));
        assert!(matches!(parse_lease("42"), Err(QueueError::LeaseLost)));
        assert!(matches!(parse_lease("a.b"), Err(QueueError::LeaseLost)));
    }

    #[test]
    fn micros_round_trip() {
        let t: Timestamp = "2026-11-26T18:00:00.123456Z".parse().unwrap();
        assert_eq!(micros(t), 1_795_716_000_123_456);
        assert_eq!(from_micros(micros(t)), t);
    }

    #[test]
    fn stored_job_v1_shape_is_stable() {
        // Jobs on disk must keep decoding after upgrades: pin the V1 shape.
        let raw = r#"{"v":"V1","job":{"delivery_id":"d","event_id":"e","target":{"kind":"subscription","id":"s"},"steps":{},"ordering_key":null,"not_before":null},"attempts":2,"orphaned_since":null,"enqueued_at":"2026-11-26T18:00:00Z"}"#;
        let StoredJob::V1 { job, attempts, .. } = decode::<StoredJob>(raw.as_bytes()).unwrap();
        assert_eq!(attempts, 2);
        assert_eq!(job.delivery_id, "d");
    }
}
