//! The gauges that mirror the queue backend: depth per state, oldest age,
//! pending per target, resets ([`Metrics::observe_queue`], from one
//! [`QueueStats`] snapshot), and the backend's unsafe settings
//! ([`Metrics::queue_unsafe`], SPEC §11).

use std::sync::atomic::Ordering;

use super::{
    Metrics, QUEUE_UNSAFE_REASONS, ReasonLabels, StateLabels, TargetLabels, saturating_i64,
};
use crate::model::QueueStats;

impl Metrics {
    /// Mirror a snapshot of the queue backend: depth per state, oldest age,
    /// pending jobs per target, and the backend's count of queue resets
    /// (monotonic; the counter follows its maximum).
    ///
    /// `hookyard_target_pending` lists exactly the targets present in
    /// `stats.pending_by_target`: a target that drained since the last call
    /// has its series *removed* rather than set to 0, so targets deleted
    /// from the config (or API subscriptions) do not pile up as zero series
    /// forever. Alert on `hookyard_target_pending > N`, which an absent
    /// series never fires.
    pub fn observe_queue(&self, stats: &QueueStats, resets: u64) {
        let inner = &self.inner;
        let depth = [
            ("ready", stats.ready),
            ("delayed", stats.delayed),
            ("in_flight", stats.in_flight),
            ("dead_letter", stats.dead_letter),
        ];
        for (state, count) in depth {
            inner
                .queue_depth
                .get_or_create(&StateLabels { state })
                .set(saturating_i64(count));
        }
        inner.queue_oldest_age.set(stats.oldest_age_seconds);
        inner
            .queue_resets
            .inner()
            .fetch_max(resets, Ordering::Relaxed);

        // A poisoned lock only means another observe_queue panicked midway;
        // the set is still a usable record of what was exported.
        let mut exported = inner
            .pending_targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for gone in exported.iter() {
            if !stats.pending_by_target.contains_key(gone) {
                inner.target_pending.remove(&TargetLabels {
                    target: gone.clone(),
                });
            }
        }
        exported.clear();
        for (target, count) in &stats.pending_by_target {
            inner
                .target_pending
                .get_or_create(&TargetLabels {
                    target: target.clone(),
                })
                .set(saturating_i64(*count));
            exported.insert(target.clone());
        }
    }

    /// `hookyard_queue_unsafe{reason}`: 1 for each reason in `reasons`
    /// (the unsafe settings the queue runs with, allowed by
    /// `queue.allow_eviction`), 0 for the others. Reasons outside
    /// [`QUEUE_UNSAFE_REASONS`] are ignored, so the label stays bounded.
    pub fn queue_unsafe(&self, reasons: &[&str]) {
        for reason in QUEUE_UNSAFE_REASONS {
            self.inner
                .queue_unsafe
                .get_or_create(&ReasonLabels { reason })
                .set(i64::from(reasons.contains(&reason)));
        }
    }
}
