//! A delivery's lease while its worker holds it: renewed while a request
//! (or a verification handshake) is in flight, so a slow endpoint never
//! lets it lapse and hand the job to a second worker; and a job whose
//! target is gone, held for `reload.orphan_grace` before it is
//! dead-lettered as `target_removed`, once the store was asked whether
//! another replica just made it (SPEC §6, §7, §12).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::{ORPHAN_RECHECK, Worker, later};
use crate::config::Config;
use crate::queue::{LeasedJob, QueueError, Target};
use crate::runtime::Snapshot;

/// Least time between two store reads for unknown subscriptions: a backlog
/// of jobs for a removed target must not read the store once per job.
const STORE_ASK_EVERY: Duration = Duration::from_secs(1);

impl Worker {
    /// An API subscription another replica made a moment ago may not be in
    /// this process's snapshot yet (a missed change notification is caught
    /// by the version check within a second): read the store before the job
    /// counts as orphaned, at most once a second, and answer with the
    /// snapshot that read made. Jobs asking meanwhile wait for that read
    /// and get its snapshot, so a batch of jobs for a new subscription all
    /// find it.
    pub(super) async fn ask_store(&self, target: &Target) -> Option<Arc<Snapshot>> {
        if !matches!(target, Target::Subscription { .. }) {
            return None;
        }
        let mut asked = self.store_asked.lock().await;
        if asked.is_some_and(|at| at.elapsed() < STORE_ASK_EVERY) {
            return Some(self.app.snapshot());
        }
        *asked = Some(std::time::Instant::now());
        crate::runtime::subscriptions::load_into(&self.app)
            .await
            .ok()?;
        Some(self.app.snapshot())
    }

    /// Run `fut` while renewing the job's lease every `lease / 3`.
    pub(super) async fn with_renewal<F: std::future::Future>(
        &self,
        job: &LeasedJob,
        lease: Duration,
        fut: F,
    ) -> F::Output {
        let every = (lease / 3).max(Duration::from_millis(100));
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                _ = tokio::time::sleep(every) => {
                    if let Err(e) = self.app.queue().renew(job).await {
                        tracing::warn!(delivery = %job.job.delivery_id, "lease renewal failed: {e}");
                    }
                }
            }
        }
    }

    /// The job's target is gone: wait `reload.orphan_grace` from when that
    /// was first seen (a rename or half-applied `git pull` must not wipe a
    /// backlog), then dead-letter as `target_removed`.
    pub(super) async fn orphan(
        &self,
        job: &LeasedJob,
        config: &Config,
        now: Timestamp,
    ) -> Result<(), QueueError> {
        let since = job.orphaned_since.unwrap_or(now);
        let end = later(since, config.reload.orphan_grace);
        if now >= end {
            return self.dead(job, None, "target_removed").await;
        }
        let at = end.min(later(now, ORPHAN_RECHECK));
        self.app.queue().defer(job, at, Some(since)).await
    }
}
