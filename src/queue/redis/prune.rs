//! Pruning the Redis backend's history (SPEC §6): retention,
//! `history.max_events` and expired idempotency keys, by `lua/prune.lua` in
//! each partition. On a cluster `max_events` counts the events of all
//! partitions together, as on one server.

use jiff::Timestamp;

use super::history::SCAN_BATCH;
use super::{RedisQueue, Result, unavailable};

impl RedisQueue {
    /// Drop old history (never events with unfinished jobs) and idempotency
    /// keys older than the window; returns how many events and keys were
    /// removed (keys also expire by their TTL, a memory bound in real time).
    /// On a cluster `history.max_events` holds for all partitions together
    /// (see `prune_cluster`).
    pub async fn prune(&self, now: Timestamp) -> Result<u64> {
        if self.partitions() > 1 {
            return self.prune_cluster(now).await;
        }
        self.prune_part(0, now, self.inner.settings.history_max_events, -1)
            .await
    }

    /// Prune one partition: retention, `max_events` of its own, and the
    /// events at or below `seq_cut` (-1: none).
    async fn prune_part(
        &self,
        part: usize,
        now: Timestamp,
        max_events: u64,
        seq_cut: i64,
    ) -> Result<u64> {
        let s = &self.inner.settings;
        let mut removed = 0;
        let mut offset: u64 = 0;
        loop {
            let args = [
                s.history_retention.as_millis().to_string(),
                max_events.to_string(),
                offset.to_string(),
                SCAN_BATCH.to_string(),
                s.idempotency_window.as_millis().to_string(),
                crate::queue::EVENT_ID_SCOPE.to_string(),
                seq_cut.to_string(),
            ];
            let (got, next, done): (u64, u64, u64) = self
                .run_at(part, now, &self.inner.scripts.prune, &args)
                .await
                .map_err(unavailable)?;
            removed += got;
            offset = next;
            if done == 1 {
                return Ok(removed);
            }
        }
    }

    /// `max_events` over all partitions: the oldest events of all go first,
    /// as on one server. Sequences follow ingest time across partitions
    /// (`lua/common.lua`), so the newest `max_events` of all are those above
    /// a sequence found by a binary search, counting with ZCOUNT in every
    /// partition. An event with unfinished jobs stays; the events it
    /// holds back are made up for by raising the cut, round by round.
    async fn prune_cluster(&self, now: Timestamp) -> Result<u64> {
        let max = self.inner.settings.history_max_events;
        let mut removed = 0;
        let (mut cut, mut stuck) = (-1i64, 0u64);
        for _ in 0..64 {
            let total = self.count_events(None).await?;
            let next = if total > max {
                self.sequence_cut(total - max + stuck).await?
            } else {
                -1
            };
            for part in 0..self.partitions() {
                removed += self.prune_part(part, now, u64::MAX / 2, next).await?;
            }
            if next < 0 || next == cut {
                break;
            }
            cut = next;
            // What is left at or below the cut has unfinished jobs.
            stuck = self.count_events(Some(cut)).await?;
        }
        Ok(removed)
    }

    /// Events in all partitions (at or below sequence `upto`).
    async fn count_events(&self, upto: Option<i64>) -> Result<u64> {
        let top = upto.map_or("+inf".to_string(), |u| u.to_string());
        let mut total = 0;
        for part in 0..self.partitions() {
            total += redis::cmd("ZCOUNT")
                .arg(self.pkey(part, "events"))
                .arg("-inf")
                .arg(&top)
                .query_async::<u64>(&mut self.conn())
                .await
                .map_err(unavailable)?;
        }
        Ok(total)
    }

    /// The smallest sequence with at least `n` events at or below it.
    async fn sequence_cut(&self, n: u64) -> Result<i64> {
        let (mut lo, mut hi) = (0i64, 1i64 << 53);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.count_events(Some(mid)).await? >= n {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }
}
