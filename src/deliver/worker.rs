//! Delivery workers: lease jobs, resolve the target in the current config,
//! check the per-target gates, render, sign, send, record the attempt and
//! finish the lease (SPEC §5, §6).
//!
//! One leasing loop feeds up to `concurrency` deliveries (a semaphore of
//! slots; a batch is leased only for free slots, so leased jobs never wait
//! in memory while their lease runs). Each delivery runs as its own task
//! on the daemon's tracker; when `stop` is cancelled the loop stops
//! leasing and the daemon gives the in-flight ones `shutdown_grace`.
//! While a request is in flight its lease is renewed every lease/3, so a
//! slow delivery is never taken twice.
//!
//! One delivery runs as stages, lease → resolve → gate → render → send →
//! record (worker/stages.rs); the held lease's renewal and orphan handling
//! are in worker/lease.rs.
//!
//! Every lease ends in exactly one of: `complete` (success or test mode;
//! a workflow step enqueues the next step atomically), `retry_at`,
//! `dead_letter`, or `defer` (paused, pending verification, rate limit,
//! `max_in_flight`, open circuit, orphaned target: no attempt used).

mod lease;
mod stages;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::deliver::handshake::Handshakes;
use crate::deliver::limits::{CircuitSettings, Limits};
use crate::deliver::oauth2::Tokens;
use crate::deliver::render::Envs;
use crate::metrics::Outcome as Metric;
use crate::queue::{LeasedJob, QueueError};
use crate::runtime::App;

/// How long one `lease` call waits for work when the queue is empty.
const LEASE_WAIT: Duration = Duration::from_millis(500);
/// Fewer free slots than this: wait [`LEASE_GATHER_WAIT`] for more before
/// leasing (the pool is nearly full, so the wait costs no throughput).
const LEASE_GATHER: usize = 8;
const LEASE_GATHER_WAIT: Duration = Duration::from_millis(2);
/// Longest single wait of an orphaned job before it is looked at again.
const ORPHAN_RECHECK: Duration = Duration::from_secs(30);

/// Worker pool settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Most jobs leased per call.
    pub batch: usize,
    pub circuit: CircuitSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            concurrency: 64,
            batch: 32,
            circuit: CircuitSettings::default(),
        }
    }
}

/// Start the worker pool on `tracker`; workers stop leasing when `stop` is
/// cancelled and finish what they hold.
pub fn spawn(app: &App, tracker: &TaskTracker, stop: CancellationToken) {
    spawn_with(app, tracker, stop, Settings::default());
}

/// [`spawn`] with explicit settings (tests shorten the circuit breaker).
pub fn spawn_with(app: &App, tracker: &TaskTracker, stop: CancellationToken, settings: Settings) {
    let worker = Arc::new(Worker {
        app: app.clone(),
        settings,
        limits: Limits::new(settings.circuit),
        handshakes: Handshakes::default(),
        tokens: Tokens::default(),
        envs: Mutex::new(None),
        slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        store_asked: tokio::sync::Mutex::new(None),
    });
    tracker.spawn(lease_loop(worker, tracker.clone(), stop));
}

struct Worker {
    app: App,
    settings: Settings,
    limits: Limits,
    handshakes: Handshakes,
    /// OAuth2 access tokens of `auth: { oauth2 }` targets (process state,
    /// never stored).
    tokens: Tokens,
    /// Delivery template environments of the config snapshot last seen.
    envs: Mutex<Option<(Arc<Config>, Arc<Envs>)>>,
    slots: Arc<Semaphore>,
    /// When an unknown subscription last sent this process to the store.
    store_asked: tokio::sync::Mutex<Option<std::time::Instant>>,
}

async fn lease_loop(w: Arc<Worker>, tracker: TaskTracker, stop: CancellationToken) {
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            p = Arc::clone(&w.slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let mut permits = vec![first];
        take_free(&w, &mut permits);
        // Under load slots free up one at a time, and leasing for each alone
        // costs one lease call (a script on Redis, a commit when embedded)
        // per job. When few are free, the pool is nearly full: give the
        // in-flight deliveries a moment to free more. An idle or lightly
        // loaded pool has many free slots, so it never waits here.
        if permits.len() < LEASE_GATHER.min(w.settings.batch) {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(LEASE_GATHER_WAIT) => {}
            }
            take_free(&w, &mut permits);
        }
        if stop.is_cancelled() {
            break;
        }
        let jobs = match w.app.queue().lease(permits.len(), LEASE_WAIT).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!("leasing delivery jobs failed: {e}");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        for job in jobs {
            let Some(permit) = permits.pop() else { break };
            let w = Arc::clone(&w);
            tracker.spawn(async move {
                w.deliver(job).await;
                drop(permit);
            });
        }
    }
}

/// Add free slots to `permits`, up to the lease batch size.
fn take_free(w: &Worker, permits: &mut Vec<tokio::sync::OwnedSemaphorePermit>) {
    while permits.len() < w.settings.batch.max(1) {
        match Arc::clone(&w.slots).try_acquire_owned() {
            Ok(p) => permits.push(p),
            Err(_) => break,
        }
    }
}

fn later(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(now)
}

impl Worker {
    async fn deliver(&self, job: LeasedJob) {
        if let Err(e) = self.try_deliver(&job).await {
            tracing::warn!(
                target = %job.job.target.label(),
                delivery = %job.job.delivery_id,
                "delivery not finished: {e}; the job stays queued and is retried when its lease lapses"
            );
        }
    }

    /// The template environments of `config`, built once per snapshot.
    fn envs(&self, config: &Arc<Config>) -> Arc<Envs> {
        let mut guard = match self.envs.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((c, e)) = guard.as_ref() {
            if Arc::ptr_eq(c, config) {
                return Arc::clone(e);
            }
        }
        let e = Arc::new(Envs::new(&config.templates));
        *guard = Some((Arc::clone(config), Arc::clone(&e)));
        e
    }

    /// End the lease with `dead_letter` for `reason`, counted and logged.
    async fn dead(
        &self,
        job: &LeasedJob,
        attempt: Option<crate::queue::Attempt>,
        reason: &str,
    ) -> Result<(), QueueError> {
        self.app.queue().dead_letter(job, attempt, reason).await?;
        self.app
            .metrics()
            .delivery_outcome(&job.job.target.label(), Metric::DeadLetter);
        tracing::info!(target = %job.job.target.label(), delivery = %job.job.delivery_id, reason, "dead-lettered");
        Ok(())
    }
}
