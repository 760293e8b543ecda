//! A delivery's lease while its worker holds it: renewed while a request
//! (or a verification handshake) is in flight, so a slow endpoint never
//! lets it lapse and hand the job to a second worker; and a job whose
//! target is gone, held for `reload.orphan_grace` before it is
//! dead-lettered as `target_removed` (SPEC §6, §7).

use std::time::Duration;

use jiff::Timestamp;

use super::{ORPHAN_RECHECK, Worker, later};
use crate::config::Config;
use crate::queue::{LeasedJob, QueueError};

impl Worker {
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
