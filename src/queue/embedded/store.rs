//! Subscriptions, state and bounded storage: the write operations outside
//! the job life cycle, applied in the writer's shared transaction like the
//! rest (`ops.rs`).
//!
//! Pruning removes, oldest first, idempotency keys older than the window,
//! and events older than `history.retention` or beyond `history.max_events`
//! together with their delivery records and dead letters, but never an
//! event that still has unfinished jobs.

use jiff::Timestamp;
use redb::{ReadableTable, ReadableTableMetadata};
use serde_json::Value;

use super::ops::{Batch, add};
use super::tables::*;
use crate::queue::{QueueError, StoredJob};

impl Batch<'_, '_> {
    // ---- subscriptions and state ----

    pub fn put_subscription(&mut self, id: &str, doc: &Value) -> Result<bool, QueueError> {
        if self.t.subscriptions.get(id)?.is_some() {
            return Ok(false);
        }
        self.t.subscriptions.insert(id, encode(doc)?.as_slice())?;
        Ok(true)
    }

    pub fn delete_subscription(&mut self, id: &str) -> Result<bool, QueueError> {
        Ok(self.t.subscriptions.remove(id)?.is_some())
    }

    pub fn put_state(&mut self, key: &str, value: &Value) -> Result<(), QueueError> {
        self.t.state.insert(key, encode(value)?.as_slice())?;
        Ok(())
    }

    // ---- bounded storage ----

    /// Removes up to `budget` expired idempotency keys and old or surplus
    /// events (with their delivery records and dead letters), oldest first.
    /// Returns how many were removed; the caller loops while it is `budget`.
    pub fn prune(&mut self, now: Timestamp, budget: u64) -> Result<u64, QueueError> {
        let mut removed = 0;
        let key_cutoff = micros(now) - window_micros(self.settings.idempotency_window);
        let mut expired = Vec::new();
        for row in self.t.idempotency_by_time.range(..(key_cutoff, ""))? {
            if expired.len() as u64 >= budget {
                break;
            }
            let (k, _) = row?;
            let (at, key) = k.value();
            expired.push((at, key.to_owned()));
        }
        for (at, key) in &expired {
            self.t.idempotency_by_time.remove((*at, key.as_str()))?;
            self.t.idempotency.remove(key.as_str())?;
            removed += 1;
        }

        let retention_cutoff = micros(now) - window_micros(self.settings.history_retention);
        let mut count = self.t.events_by_seq.len()?;
        let mut victims = Vec::new();
        for row in self.t.events_by_seq.iter()? {
            if removed + victims.len() as u64 >= budget {
                break;
            }
            let (seq, id) = row?;
            let id = id.value().to_owned();
            let over_count = count > self.settings.history_max_events;
            let Some(raw) = self.t.events.get(id.as_str())? else {
                continue;
            };
            let StoredEvent::V1 { ingested_at, .. } = decode(raw.value())?;
            let too_old = micros(ingested_at) < retention_cutoff;
            if !over_count && !too_old {
                break; // everything after this one is newer
            }
            let live = self
                .t
                .event_live
                .get(id.as_str())?
                .map(|v| v.value())
                .unwrap_or(0);
            if live > 0 {
                continue; // still being delivered: keep it
            }
            victims.push((seq.value(), id));
            count = count.saturating_sub(1);
        }
        for (seq, id) in &victims {
            self.remove_event(*seq, id)?;
            removed += 1;
        }
        self.remove_dead_of(&victims)?;
        Ok(removed)
    }

    fn remove_event(&mut self, seq: u64, id: &str) -> Result<(), QueueError> {
        self.t.events_by_seq.remove(seq)?;
        self.t.events.remove(id)?;
        self.t.event_live.remove(id)?;
        let mut deliveries = Vec::new();
        for row in self.t.event_deliveries.range((id, "")..)? {
            let (k, _) = row?;
            let (event_id, delivery_id) = k.value();
            if event_id != id {
                break;
            }
            deliveries.push(delivery_id.to_owned());
        }
        for delivery_id in &deliveries {
            self.t.event_deliveries.remove((id, delivery_id.as_str()))?;
            if let Some(raw) = self.t.deliveries.remove(delivery_id.as_str())? {
                let StoredDelivery::V1 { seq, .. } = decode(raw.value())?;
                self.t.deliveries_by_seq.remove(seq)?;
            }
        }
        Ok(())
    }

    /// Dead letters of pruned events cannot be redriven (the event is
    /// gone), so they go too; this keeps dead letters bounded as well. One
    /// scan of `dead` per prune transaction.
    /// Take delivery `id` off the dead-letter list (a scan of that list: only
    /// a manual retry of a dead letter does this).
    pub(super) fn remove_dead_delivery(&mut self, id: &str) -> Result<(), QueueError> {
        let mut found = Vec::new();
        for row in self.t.dead.iter()? {
            let (seq, raw) = row?;
            let StoredDead::V1 { job, .. } = decode(raw.value())?;
            let StoredJob::V1 { job, .. } = job;
            if job.delivery_id == id {
                found.push((seq.value(), job.target.label()));
            }
        }
        for (seq, label) in found {
            self.t.dead.remove(seq)?;
            add(&mut self.t.target_dead, &label, -1)?;
        }
        Ok(())
    }

    fn remove_dead_of(&mut self, victims: &[(u64, String)]) -> Result<(), QueueError> {
        if victims.is_empty() {
            return Ok(());
        }
        let pruned: std::collections::HashSet<&str> =
            victims.iter().map(|(_, id)| id.as_str()).collect();
        let mut dead = Vec::new();
        for row in self.t.dead.iter()? {
            let (seq, raw) = row?;
            let StoredDead::V1 { job, .. } = decode(raw.value())?;
            let StoredJob::V1 { job, .. } = job;
            if pruned.contains(job.event_id.as_str()) {
                dead.push((seq.value(), job.target.label()));
            }
        }
        for (seq, label) in dead {
            self.t.dead.remove(seq)?;
            add(&mut self.t.target_dead, &label, -1)?;
        }
        Ok(())
    }
}

fn window_micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2)
}
