//! The runtime layer: the daemon's shared state, one cheap-to-clone [`App`]
//! that every HTTP handler and delivery worker holds, and the only two
//! things that change it while the daemon runs:
//! - [`reload`]: the config reloader (file watch, SIGHUP, admin API);
//! - [`subscriptions`]: the store-change signal for API-created
//!   subscriptions (a change on any replica reaches every replica).
//!
//! It also holds this process's [`counters`] for the console's Overview
//! until housekeeping writes them to the queue.
//!
//! Everything a request or job needs is one immutable snapshot behind an
//! `ArcSwap`: a writer builds the next snapshot and swaps it in whole, and a
//! reader loads it once per request or job and keeps it, so it never sees
//! half of a change. Writers take [`App::writer`] in turn, because each
//! builds on the snapshot before it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::send::{EgressPolicy, Sender};
use crate::telemetry::Telemetry;

pub mod captures;
pub mod counters;
pub mod reload;
pub mod snapshot;
pub mod subscriptions;

pub use snapshot::{ApiTarget, Snapshot};

/// The snapshot writers' lock, held.
struct Writer(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

/// Shared state of one running daemon.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    /// What requests and jobs read; replaced whole by the writers.
    snapshot: ArcSwap<Snapshot>,
    /// Where the config was loaded from (reloads read it again).
    config_path: PathBuf,
    queue: Queue,
    metrics: Metrics,
    /// This process's counts for the console's Overview, not yet written.
    counters: counters::Counters,
    /// Held by the snapshot's writers, one at a time.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Trigger samples waiting to be written (the console shows them).
    captures: captures::Captures,
    /// What the last reload did (the console shows it).
    last_reload: std::sync::Mutex<Option<reload::LastReload>>,
    /// `/readyz` needs the file watcher armed (or watching disabled).
    watcher_armed: AtomicBool,
    /// Cancelled when the daemon stops (first thing on SIGTERM, so `/readyz`
    /// answers 503 from then on); long-running tasks watch it.
    shutdown: CancellationToken,
    /// The trace exporter, when `telemetry.otlp` is set (fixed at start).
    telemetry: Option<Telemetry>,
}

impl App {
    pub fn new(
        config: Config,
        config_path: PathBuf,
        queue: Queue,
        metrics: Metrics,
        sender: Sender,
        shutdown: CancellationToken,
        telemetry: Option<Telemetry>,
    ) -> App {
        let watcher_armed = !config.reload.watch;
        App {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot {
                    config: Arc::new(config),
                    subscriptions: Arc::from(Vec::new()),
                    sender: Arc::new(sender),
                }),
                config_path,
                queue,
                metrics,
                counters: counters::Counters::new(),
                writer: Arc::new(tokio::sync::Mutex::new(())),
                captures: captures::Captures::default(),
                last_reload: std::sync::Mutex::new(None),
                watcher_armed: AtomicBool::new(watcher_armed),
                shutdown,
                telemetry,
            }),
        }
    }

    /// The snapshot serving now: load it once per request or job and use
    /// it to the end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// The config of the snapshot serving now (for code that needs nothing
    /// else from it).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.inner.snapshot.load().config)
    }

    /// Swap in the snapshot `next` builds from the current one. Only a
    /// writer holding the lock ([`App::writer`]) can call it.
    fn replace(&self, _held: &Writer, next: impl FnOnce(&Snapshot) -> Snapshot) {
        let current = self.inner.snapshot.load_full();
        self.inner.snapshot.store(Arc::new(next(&current)));
    }

    pub fn config_path(&self) -> &std::path::Path {
        &self.inner.config_path
    }

    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The per-minute counters of the console's Overview (SPEC §13).
    pub fn counters(&self) -> &counters::Counters {
        &self.inner.counters
    }

    /// Taken by whoever builds the next snapshot, so writers go one at a
    /// time (a reload and a subscription change must not lose each other's
    /// change). The guard is owned, so a writer that moves its work to a
    /// blocking thread takes the lock along: a cancelled caller cannot
    /// release it while that work still runs.
    async fn writer(&self) -> Writer {
        Writer(Arc::clone(&self.inner.writer).lock_owned().await)
    }

    /// Trigger samples for the console.
    pub fn captures(&self) -> &captures::Captures {
        &self.inner.captures
    }

    /// What the last reload did, if there was one since the start.
    pub fn last_reload(&self) -> Option<reload::LastReload> {
        self.inner
            .last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_last_reload(&self, last: reload::LastReload) {
        *self
            .inner
            .last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(last);
    }

    pub fn set_watcher_armed(&self) {
        self.inner.watcher_armed.store(true, Ordering::SeqCst);
    }

    pub fn watcher_armed(&self) -> bool {
        self.inner.watcher_armed.load(Ordering::SeqCst)
    }

    /// True once the daemon has begun to stop.
    pub fn shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Cancelled when the daemon stops.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The trace exporter; `None` while traces are off (then nothing
    /// about traces is done at all).
    pub fn telemetry(&self) -> Option<&Telemetry> {
        self.inner.telemetry.as_ref()
    }
}

/// The HTTP sender for a config's egress policy, `egress.proxy` and the
/// YAML targets' own `tls:`/`proxy:`.
pub fn sender_for(config: &Config) -> Result<Sender, String> {
    Sender::with_transports(
        EgressPolicy {
            allow: config.egress.allow.clone(),
            deny: config.egress.deny.clone(),
        },
        config.egress.proxy.as_ref(),
        &config.transports(),
    )
    .map_err(|e| e.to_string())
}
