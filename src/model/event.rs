//! Events, delivery jobs, their targets and attempts: the words every layer
//! speaks. The queue stores them, the router makes jobs, workers deliver
//! them and the history API shows them, so they sit at the bottom, below
//! all of those.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One item of `Queue::ingest_many`: the event, its idempotency
/// `(scope, key)` if any, and its routed jobs.
pub type IngestItem = (Event, Option<(String, String)>, Vec<NewJob>);

/// A job as a backend stores it. Versioned so jobs queued by an older
/// hookyard still decode after an upgrade: add `V2` next to `V1`, never change
/// `V1`'s fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum StoredJob {
    V1 {
        job: NewJob,
        /// Attempts already made.
        attempts: u32,
        orphaned_since: Option<Timestamp>,
        /// When the job (re)entered the queue; for `oldest_age_seconds`.
        enqueued_at: Timestamp,
    },
}

/// The idempotency scope of an event's own id (a client's `id` on the event
/// API, SPEC §3: global across tokens). Ingesting with the key
/// `(EVENT_ID_SCOPE, event.id)` lets a backend use the event record itself
/// as the marker (see `redis/ingest.rs`).
pub const EVENT_ID_SCOPE: &str = "event";

/// An event as stored and delivered: `{id, type, timestamp, source, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// A ULID, or the client's own id on the event API. Stable across
    /// retries and replays so receivers can be idempotent.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub timestamp: Timestamp,
    /// `trigger:<id>` or `api:<token name>`.
    pub source: String,
    pub data: Value,
}

/// Which configured target a job is for. Jobs name targets by id, never by
/// content, so a reload changes how queued jobs render (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    Subscription {
        id: String,
    },
    /// One step of a workflow. `step` is the 0-based index of the step in
    /// the workflow's `steps`; `action` is the action id (or the inline
    /// request's `<workflow>-<n>` id) at enqueue time.
    WorkflowStep {
        workflow: String,
        step: usize,
        action: String,
    },
}

impl Target {
    /// The name used in the `target` metric label and in history:
    /// `subscription/<id>` or `workflow/<workflow id>/<action id>`.
    pub fn label(&self) -> String {
        match self {
            Target::Subscription { id } => format!("subscription/{id}"),
            Target::WorkflowStep {
                workflow, action, ..
            } => format!("workflow/{workflow}/{action}"),
        }
    }
}

/// A delivery job to be enqueued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Same for every attempt of this delivery; a replay makes a new one.
    pub delivery_id: String,
    pub event_id: String,
    pub target: Target,
    /// Responses of earlier workflow steps, keyed by action id
    /// (`steps.<id>.response` in templates). Empty for subscriptions.
    pub steps: BTreeMap<String, StepResponse>,
    /// FIFO targets: jobs sharing a key are released one at a time, in
    /// enqueue order, across all replicas. `None` for unordered targets.
    pub ordering_key: Option<String>,
    /// Earliest time the job may run (`None` = now).
    pub not_before: Option<Timestamp>,
    /// The W3C `traceparent` of the inbound request's span (SPEC §15), so
    /// each attempt's span is its child wherever the job is delivered.
    /// Set only while traces are on; left out of the stored job when
    /// `None`, so jobs stored before traces existed read the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// A later step of this job's workflow is for a FIFO action. On a
    /// Redis Cluster such an event is kept where the FIFO lines are, so
    /// the later step joins its line in order (SPEC §16). Left out of the
    /// stored job when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fifo_later: bool,
}

/// A recorded HTTP response of a workflow step, for later steps' templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    /// Parsed JSON when the body was JSON, else the body as a string.
    pub body: Value,
}

/// A job as handed to a worker, with its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeasedJob {
    pub job: NewJob,
    /// Attempts already made (0 before the first one). The attempt about to
    /// be made is `attempts + 1`.
    pub attempts: u32,
    /// When the job's target was first found missing (orphan grace).
    pub orphaned_since: Option<Timestamp>,
    /// Backend-specific handle of this lease (stream entry id, row key).
    pub lease: String,
    /// The job's event, when the backend read it together with the lease
    /// (Redis does, saving the worker a round trip); `None`: read it with
    /// [`Queue::event_only`].
    pub event: Option<Event>,
}

/// One HTTP attempt, as recorded in history (SPEC §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub at: Timestamp,
    /// `{method, url, headers}` with secrets redacted.
    pub request: Value,
    /// `{status, headers, body}` or null when no response came.
    pub response: Option<Value>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// Delivery states of SPEC §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Succeeded,
    DeadLetter,
    Test,
}

/// A delivery with its attempts, as the history API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub id: String,
    pub event_id: String,
    /// `Target::label()`.
    pub target: String,
    pub state: DeliveryState,
    /// Why it was dead-lettered (`http_404`, `target_removed`, …).
    pub reason: Option<String>,
    pub attempts: Vec<Attempt>,
}

/// What ingestion answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Stored with its jobs.
    Accepted { event_id: String },
    /// The idempotency key (or client id) was seen within the window; nothing
    /// was written. The id is the first event's.
    Duplicate { event_id: String },
}

impl Ingested {
    /// The event id to answer with, and whether it was a duplicate.
    pub fn parts(&self) -> (&str, bool) {
        match self {
            Ingested::Accepted { event_id } => (event_id, false),
            Ingested::Duplicate { event_id } => (event_id, true),
        }
    }
}

/// Counts for `hookyard_queue_depth{state}` and friends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    pub ready: u64,
    pub delayed: u64,
    pub in_flight: u64,
    pub dead_letter: u64,
    /// Age of the oldest job not yet finished, in seconds.
    pub oldest_age_seconds: f64,
    /// Jobs waiting (ready, delayed or in flight) per `Target::label()`.
    pub pending_by_target: BTreeMap<String, u64>,
    /// Leased jobs per `Target::label()` (read from the leases, which are
    /// as many as the workers hold: never a scan of history).
    pub in_flight_by_target: BTreeMap<String, u64>,
    /// Dead letters per `Target::label()` (a counter each backend keeps as
    /// jobs enter and leave the dead-letter list).
    pub dead_by_target: BTreeMap<String, u64>,
}
