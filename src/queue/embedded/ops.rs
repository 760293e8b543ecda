//! The write operations of the embedded backend, applied inside one redb
//! write transaction shared by a whole group-commit batch (see `writer.rs`).
//!
//! Each operation first checks everything that can refuse it (a lost lease,
//! a missing event) and only then writes, so a refused operation leaves no
//! partial writes in the shared transaction. A storage error, by contrast,
//! aborts the whole batch.

use jiff::Timestamp;
use redb::{ReadableTable, Table, WriteTransaction};

use super::tables::*;
use crate::queue::{
    Attempt, DeliveryRecord, DeliveryState, Event, Ingested, LeasedJob, NewJob, QueueError,
    StoreSettings, StoredJob,
};

/// Counters the writer keeps in memory and persists with each batch.
#[derive(Debug, Clone, Copy)]
pub struct Counters {
    /// Last sequence number handed out (jobs, events, deliveries share it).
    pub seq: u64,
    /// Last lease generation handed out.
    pub generation: u64,
}

impl Counters {
    pub fn load(txn: &WriteTransaction) -> Result<Self, QueueError> {
        let meta = txn.open_table(META)?;
        let seq = meta.get("seq")?.map(|v| v.value()).unwrap_or(0);
        let generation = meta.get("gen")?.map(|v| v.value()).unwrap_or(0);
        Ok(Counters { seq, generation })
    }
}

/// One batch: the open tables, the counters and the batch's "now".
pub struct Batch<'t, 's> {
    pub t: Tables<'t>,
    pub c: Counters,
    pub now: Timestamp,
    pub settings: &'s StoreSettings,
}

impl Batch<'_, '_> {
    pub(super) fn next_seq(&mut self) -> u64 {
        self.c.seq += 1;
        self.c.seq
    }

    /// Writes the counters; called once before commit.
    pub fn save_counters(&mut self) -> Result<(), QueueError> {
        self.t.meta.insert("seq", self.c.seq)?;
        self.t.meta.insert("gen", self.c.generation)?;
        Ok(())
    }

    // ---- ingestion ----

    pub fn ingest(
        &mut self,
        event: &Event,
        idempotency: Option<(&str, &str)>,
        jobs: Vec<NewJob>,
    ) -> Result<Ingested, QueueError> {
        let key = idempotency.map(|(scope, key)| idempotency_key(scope, key));
        if let Some(key) = &key {
            if let Some(raw) = self.t.idempotency.get(key.as_str())? {
                let StoredKey::V1 { event_id, at } = decode(raw.value())?;
                if self.now.duration_since(at) < window(self.settings) {
                    return Ok(Ingested::Duplicate { event_id });
                }
            }
        }
        // An event id names one event (SPEC §11): while its record exists,
        // the id is a duplicate however old, and the stored event never
        // changes. The window only bounds ids whose record was pruned.
        if self.t.events.get(event.id.as_str())?.is_some() {
            return Ok(Ingested::Duplicate {
                event_id: event.id.clone(),
            });
        }
        if let Some(key) = &key {
            // An expired entry for the same key: drop its time index entry.
            if let Some(raw) = self.t.idempotency.remove(key.as_str())? {
                let StoredKey::V1 { at, .. } = decode(raw.value())?;
                self.t
                    .idempotency_by_time
                    .remove((micros(at), key.as_str()))?;
            }
            let stored = StoredKey::V1 {
                event_id: event.id.clone(),
                at: self.now,
            };
            self.t
                .idempotency
                .insert(key.as_str(), encode(&stored)?.as_slice())?;
            self.t
                .idempotency_by_time
                .insert((micros(self.now), key.as_str()), ())?;
        }
        self.put_event(event)?;
        for job in jobs {
            self.enqueue_job(job)?;
        }
        Ok(Ingested::Accepted {
            event_id: event.id.clone(),
        })
    }

    /// Stores a new event (`ingest` has checked that its id is free).
    fn put_event(&mut self, event: &Event) -> Result<(), QueueError> {
        let seq = self.next_seq();
        let stored = StoredEvent::V1 {
            seq,
            ingested_at: self.now,
            event: event.clone(),
        };
        self.t
            .events
            .insert(event.id.as_str(), encode(&stored)?.as_slice())?;
        self.t.events_by_seq.insert(seq, event.id.as_str())?;
        Ok(())
    }

    /// New jobs for an existing event (replay, manual retry).
    pub fn enqueue(&mut self, jobs: Vec<NewJob>) -> Result<(), QueueError> {
        for job in &jobs {
            if self.t.events.get(job.event_id.as_str())?.is_none() {
                return Err(QueueError::NotFound(format!("event {}", job.event_id)));
            }
        }
        for job in jobs {
            self.enqueue_job(job)?;
        }
        Ok(())
    }

    /// Adds a job: its row, its place in `ready` (or behind its FIFO head),
    /// the counters, and its delivery record (pending).
    fn enqueue_job(&mut self, job: NewJob) -> Result<(), QueueError> {
        let record = match self.t.deliveries.get(job.delivery_id.as_str())? {
            Some(raw) => Some(decode::<StoredDelivery>(raw.value())?),
            None => None,
        };
        // A delivery that is still pending is already queued: enqueueing it
        // again does nothing, so one delivery never runs twice at once (the
        // same rule as the Redis backend).
        if let Some(StoredDelivery::V1 { record, .. }) = &record {
            if record.state == DeliveryState::Pending {
                return Ok(());
            }
            // A dead letter retried by hand leaves the dead-letter list (as
            // on Redis), or a redrive would send it again.
            if record.state == DeliveryState::DeadLetter {
                self.remove_dead_delivery(&job.delivery_id)?;
            }
        }
        let stored = StoredJob::V1 {
            job: job.clone(),
            attempts: 0,
            orphaned_since: None,
            enqueued_at: self.now,
        };
        self.insert_live(stored)?;
        match record {
            // Enqueued again under the same delivery id (manual retry):
            // keep its attempts, mark it pending again.
            Some(StoredDelivery::V1 {
                seq,
                mut record,
                job: _,
            }) => {
                record.state = DeliveryState::Pending;
                record.reason = None;
                let stored = StoredDelivery::V1 {
                    seq,
                    record,
                    job: job.clone(),
                };
                self.t
                    .deliveries
                    .insert(job.delivery_id.as_str(), encode(&stored)?.as_slice())?;
            }
            None => {
                let seq = self.next_seq();
                let stored = StoredDelivery::V1 {
                    seq,
                    record: DeliveryRecord {
                        id: job.delivery_id.clone(),
                        event_id: job.event_id.clone(),
                        target: job.target.label(),
                        state: DeliveryState::Pending,
                        reason: None,
                        attempts: Vec::new(),
                    },
                    job: job.clone(),
                };
                self.t
                    .deliveries
                    .insert(job.delivery_id.as_str(), encode(&stored)?.as_slice())?;
                self.t
                    .deliveries_by_seq
                    .insert(seq, job.delivery_id.as_str())?;
                self.t
                    .event_deliveries
                    .insert((job.event_id.as_str(), job.delivery_id.as_str()), ())?;
            }
        }
        Ok(())
    }

    /// Puts an unfinished job in the queue under a fresh seq (so a redriven
    /// job joins the back of its FIFO line) and counts it.
    fn insert_live(&mut self, stored: StoredJob) -> Result<(), QueueError> {
        let seq = self.next_seq();
        let StoredJob::V1 { job, .. } = &stored;
        self.t.jobs.insert(seq, encode(&stored)?.as_slice())?;
        let due = micros(job.not_before.unwrap_or(self.now));
        match &job.ordering_key {
            Some(key) if self.t.fifo_head.get(key.as_str())?.is_some() => {
                self.t.fifo_waiting.insert((key.as_str(), seq), ())?;
            }
            Some(key) => {
                self.t.fifo_head.insert(key.as_str(), seq)?;
                self.t.ready.insert((due, seq), ())?;
            }
            None => {
                self.t.ready.insert((due, seq), ())?;
            }
        }
        add(&mut self.t.target_pending, &job.target.label(), 1)?;
        add(&mut self.t.event_live, &job.event_id, 1)?;
        Ok(())
    }

    // ---- workers ----

    /// Reclaims lapsed leases, then leases up to `max` due jobs.
    pub fn lease(&mut self, max: usize) -> Result<Vec<LeasedJob>, QueueError> {
        let now = micros(self.now);
        let mut lapsed = Vec::new();
        for row in self.t.lease_expiry.range(..=(now, u64::MAX))? {
            lapsed.push(row?.0.value().1);
        }
        for seq in lapsed {
            self.drop_lease(seq)?;
            self.t.ready.insert((now, seq), ())?;
        }
        let mut due = Vec::new();
        for row in self.t.ready.range(..=(now, u64::MAX))? {
            if due.len() >= max {
                break;
            }
            due.push(row?.0.value());
        }
        let expiry = micros(later(self.now, self.settings.lease));
        let mut leased = Vec::with_capacity(due.len());
        for (at, seq) in due {
            self.t.ready.remove((at, seq))?;
            let Some(raw) = self.t.jobs.get(seq)? else {
                continue; // cannot happen: ready rows always have a job
            };
            let StoredJob::V1 {
                job,
                attempts,
                orphaned_since,
                ..
            } = decode(raw.value())?;
            drop(raw);
            self.c.generation += 1;
            self.t.leases.insert(seq, (self.c.generation, expiry))?;
            self.t.lease_expiry.insert((expiry, seq), ())?;
            leased.push(LeasedJob {
                job,
                attempts,
                orphaned_since,
                lease: lease_handle(seq, self.c.generation),
                event: None,
            });
        }
        Ok(leased)
    }

    /// Checks that `job`'s lease is still held; returns the job seq.
    fn held(&self, job: &LeasedJob) -> Result<u64, QueueError> {
        let (seq, generation) = parse_lease(&job.lease)?;
        match self.t.leases.get(seq)? {
            Some(lease) if lease.value().0 == generation => Ok(seq),
            _ => Err(QueueError::LeaseLost),
        }
    }

    pub fn renew(&mut self, job: &LeasedJob) -> Result<(), QueueError> {
        let seq = self.held(job)?;
        let (_, generation) = parse_lease(&job.lease)?;
        let expiry = micros(later(self.now, self.settings.lease));
        self.drop_lease(seq)?;
        self.t.leases.insert(seq, (generation, expiry))?;
        self.t.lease_expiry.insert((expiry, seq), ())?;
        Ok(())
    }

    /// Removes a job's lease and its expiry index entry.
    fn drop_lease(&mut self, seq: u64) -> Result<(), QueueError> {
        if let Some(lease) = self.t.leases.remove(seq)? {
            let (_, expiry) = lease.value();
            self.t.lease_expiry.remove((expiry, seq))?;
        }
        Ok(())
    }

    pub fn complete(
        &mut self,
        job: &LeasedJob,
        attempt: Option<Attempt>,
        state: DeliveryState,
        next: Option<NewJob>,
    ) -> Result<(), QueueError> {
        let seq = self.held(job)?;
        self.drop_lease(seq)?;
        let stored = self.take_job(seq)?;
        self.finished(&stored)?;
        self.record(&job.job.delivery_id, attempt, Some(state), None)?;
        if let Some(next) = next {
            self.enqueue_job(next)?;
        }
        Ok(())
    }

    pub fn retry_at(
        &mut self,
        job: &LeasedJob,
        attempt: Attempt,
        at: Timestamp,
    ) -> Result<(), QueueError> {
        let seq = self.held(job)?;
        self.drop_lease(seq)?;
        let StoredJob::V1 {
            job: new_job,
            attempts,
            orphaned_since,
            enqueued_at,
        } = self.read_job(seq)?;
        let stored = StoredJob::V1 {
            job: new_job,
            attempts: attempts.saturating_add(1),
            orphaned_since,
            enqueued_at,
        };
        self.t.jobs.insert(seq, encode(&stored)?.as_slice())?;
        self.t.ready.insert((micros(at), seq), ())?;
        self.record(&job.job.delivery_id, Some(attempt), None, None)?;
        Ok(())
    }

    pub fn defer(
        &mut self,
        job: &LeasedJob,
        at: Timestamp,
        orphaned_since: Option<Timestamp>,
    ) -> Result<(), QueueError> {
        let seq = self.held(job)?;
        self.drop_lease(seq)?;
        let StoredJob::V1 {
            job: new_job,
            attempts,
            enqueued_at,
            ..
        } = self.read_job(seq)?;
        let stored = StoredJob::V1 {
            job: new_job,
            attempts,
            orphaned_since,
            enqueued_at,
        };
        self.t.jobs.insert(seq, encode(&stored)?.as_slice())?;
        self.t.ready.insert((micros(at), seq), ())?;
        Ok(())
    }

    pub fn dead_letter(
        &mut self,
        job: &LeasedJob,
        attempt: Option<Attempt>,
        reason: &str,
    ) -> Result<(), QueueError> {
        let seq = self.held(job)?;
        self.drop_lease(seq)?;
        let stored = self.take_job(seq)?;
        self.finished(&stored)?;
        self.count_dead(&stored, 1)?;
        let dead = StoredDead::V1 {
            job: stored,
            reason: reason.to_owned(),
        };
        self.t.dead.insert(seq, encode(&dead)?.as_slice())?;
        let state = Some(DeliveryState::DeadLetter);
        self.record(&job.job.delivery_id, attempt, state, Some(reason))?;
        Ok(())
    }

    /// Dead letters of `target` (a `Target::label()`), or all, back to the
    /// queue with their attempts reset.
    pub fn redrive(&mut self, target: Option<&str>) -> Result<u64, QueueError> {
        let mut picked = Vec::new();
        for row in self.t.dead.iter()? {
            let (seq, raw) = row?;
            let StoredDead::V1 { job, .. } = decode(raw.value())?;
            let StoredJob::V1 { job: new_job, .. } = &job;
            if target.is_none_or(|t| t == new_job.target.label()) {
                picked.push((seq.value(), new_job.clone()));
            }
        }
        for (seq, job) in &picked {
            self.t.dead.remove(seq)?;
            add(&mut self.t.target_dead, &job.target.label(), -1)?;
            let mut job = job.clone();
            job.not_before = None;
            let delivery_id = job.delivery_id.clone();
            self.insert_live(StoredJob::V1 {
                job,
                attempts: 0,
                orphaned_since: None,
                enqueued_at: self.now,
            })?;
            self.record(&delivery_id, None, Some(DeliveryState::Pending), None)?;
        }
        Ok(picked.len() as u64)
    }

    fn read_job(&self, seq: u64) -> Result<StoredJob, QueueError> {
        match self.t.jobs.get(seq)? {
            Some(raw) => decode(raw.value()),
            None => Err(QueueError::Corrupt(format!(
                "leased job {seq} has no job row"
            ))),
        }
    }

    fn take_job(&mut self, seq: u64) -> Result<StoredJob, QueueError> {
        match self.t.jobs.remove(seq)? {
            Some(raw) => decode(raw.value()),
            None => Err(QueueError::Corrupt(format!(
                "leased job {seq} has no job row"
            ))),
        }
    }

    /// Bookkeeping when a job leaves the live queue (completed or dead):
    /// counters, and the release of the next job of its FIFO line.
    fn finished(&mut self, stored: &StoredJob) -> Result<(), QueueError> {
        let StoredJob::V1 { job, .. } = stored;
        add(&mut self.t.target_pending, &job.target.label(), -1)?;
        add(&mut self.t.event_live, &job.event_id, -1)?;
        let Some(key) = &job.ordering_key else {
            return Ok(());
        };
        let next = self
            .t
            .fifo_waiting
            .range((key.as_str(), 0)..=(key.as_str(), u64::MAX))?
            .next()
            .transpose()?
            .map(|(k, _)| k.value().1);
        match next {
            Some(seq) => {
                self.t.fifo_waiting.remove((key.as_str(), seq))?;
                self.t.fifo_head.insert(key.as_str(), seq)?;
                let StoredJob::V1 { job, .. } = self.read_job(seq)?;
                let due = job.not_before.unwrap_or(self.now).max(self.now);
                self.t.ready.insert((micros(due), seq), ())?;
            }
            None => {
                self.t.fifo_head.remove(key.as_str())?;
            }
        }
        Ok(())
    }

    /// Updates a delivery's history record: appends the attempt, sets the
    /// state (and reason) when given.
    fn record(
        &mut self,
        delivery_id: &str,
        attempt: Option<Attempt>,
        state: Option<DeliveryState>,
        reason: Option<&str>,
    ) -> Result<(), QueueError> {
        let Some(raw) = self.t.deliveries.get(delivery_id)? else {
            // History pruned under a live job cannot happen (events with
            // live jobs are kept); nothing to record if it did.
            return Ok(());
        };
        let StoredDelivery::V1 {
            seq,
            mut record,
            job,
        } = decode(raw.value())?;
        drop(raw);
        if let Some(attempt) = attempt {
            record.attempts.push(attempt);
        }
        if let Some(state) = state {
            record.state = state;
            record.reason = reason.map(str::to_owned);
        }
        let stored = StoredDelivery::V1 { seq, record, job };
        self.t
            .deliveries
            .insert(delivery_id, encode(&stored)?.as_slice())?;
        Ok(())
    }

    /// At open (single instance): every leased job goes back to ready.
    pub fn release_all_leases(&mut self) -> Result<u64, QueueError> {
        let now = micros(self.now);
        let mut released = 0;
        while let Some((seq, _)) = self.t.leases.pop_first()? {
            let seq = seq.value();
            self.t.ready.insert((now, seq), ())?;
            released += 1;
        }
        self.t.lease_expiry.retain(|_, ()| false)?;
        Ok(released)
    }
}

/// `t + d`, saturating instead of panicking on an absurd configured lease.
fn later(t: Timestamp, d: std::time::Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn window(settings: &StoreSettings) -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(settings.idempotency_window).unwrap_or(jiff::SignedDuration::MAX)
}

/// Adds `delta` to a per-name counter, removing it at zero.
pub(super) fn add(
    table: &mut Table<'_, &'static str, u64>,
    name: &str,
    delta: i64,
) -> Result<(), QueueError> {
    let current = table.get(name)?.map(|v| v.value()).unwrap_or(0);
    let next = current.saturating_add_signed(delta);
    if next == 0 {
        table.remove(name)?;
    } else {
        table.insert(name, next)?;
    }
    Ok(())
}
