//! `hookyard run`: open the queue, serve the listeners, run the delivery
//! workers, and stop gracefully.
//!
//! Listeners (SPEC §2): `server.listen` serves `/hooks/*`, and `/v1/*` unless
//! `server.api_listen` is set, and `/metrics` unless `server.metrics_listen`
//! is set; `/healthz` and `/readyz` answer on every listener.
//!
//! Each listener is served by [`crate::serve`] with the connection limits of
//! SPEC §11 (header, body and idle timeouts, `max_connections`).
//!
//! Shutdown (SPEC §7, §11), when `shutdown` is cancelled: readiness turns
//! 503; after `server.shutdown_delay` the listeners stop accepting and
//! workers stop leasing new jobs; requests in progress and in-flight
//! deliveries then share ONE deadline, `server.shutdown_grace`. What is still
//! open at the deadline is closed (connections dropped, deliveries
//! abandoned: unfinished jobs stay in the queue, their lease lapses, or the
//! embedded backend returns them to ready at the next start), so `run`
//! returns by delay + grace.
//!
//! `/metrics` serves the queue gauges housekeeping refreshes every 5s (and
//! once before the listeners open): a scrape, which anyone who reaches the
//! listener can send, runs no queue query (SPEC §11).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, QueueBackend};
use crate::metrics::Metrics;
use crate::queue::{Queue, QueueError, StoreSettings};
use crate::runtime::App;
use crate::telemetry::Telemetry;

/// Longest the daemon waits, when it stops, for the last spans to be
/// exported (and for the console's last counts to be written).
const LAST_WRITES: Duration = Duration::from_secs(2);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {source}; is another process using that port?")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("cannot build the HTTP client: {0}")]
    Sender(String),
    #[error("a listener stopped unexpectedly: {0}")]
    Serve(String),
    #[error("{0}")]
    Telemetry(String),
}

impl DaemonError {
    /// The exit code of `hookyard run` (SPEC §9): 1 for a setting the
    /// operator must change, like an invalid config (an unsafe Redis,
    /// SPEC §11); 2 for a runtime failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Queue(QueueError::Unsafe(_)) => 1,
            _ => 2,
        }
    }
}

/// The bound listeners (tests bind `127.0.0.1:0` and read the ports).
pub struct Listeners {
    pub main: TcpListener,
    pub api: Option<TcpListener>,
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Bind the addresses of `server:`.
    pub async fn bind(server: &crate::config::Server) -> Result<Listeners, DaemonError> {
        async fn one(addr: SocketAddr) -> Result<TcpListener, DaemonError> {
            TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Bind { addr, source })
        }
        Ok(Listeners {
            main: one(server.listen).await?,
            api: match server.api_listen {
                Some(a) => Some(one(a).await?),
                None => None,
            },
            metrics: match server.metrics_listen {
                Some(a) => Some(one(a).await?),
                None => None,
            },
        })
    }
}

/// Each process needs its own consumer name: two replicas may share a host.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    format!("{host}-{}-{}", std::process::id(), ulid::Ulid::new())
}

/// Open the queue backend the config names.
pub async fn open_queue(config: &Config) -> Result<Queue, QueueError> {
    let settings = StoreSettings {
        lease: config.queue.lease,
        history_retention: config.history.retention,
        history_max_events: config.history.max_events,
        idempotency_window: config.idempotency_window,
        consumer_name: consumer_name(),
    };
    match config.queue.backend {
        QueueBackend::Embedded => Queue::open_embedded(&config.queue.path, settings).await,
        QueueBackend::Redis => {
            let options = redis_options(&config.queue);
            Queue::open_redis_with(&config.queue.url, &config.queue.prefix, settings, options).await
        }
    }
}

/// The Redis backend's own settings from `queue:`.
fn redis_options(q: &crate::config::Queue) -> crate::queue::redis::RedisOptions {
    crate::queue::redis::RedisOptions {
        allow_eviction: q.allow_eviction,
        replicas_ack: q.replicas_ack,
        replicas_ack_timeout: q.replicas_ack_timeout,
        partitions: q.partitions,
    }
}

/// How this process takes part (`hookyard run` flags).
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Run the delivery workers. Off (`--no-deliver`) makes an ingest-only
    /// replica: it accepts, routes and queues events, and replicas sharing
    /// its Redis queue deliver them (like the split API/delivery services
    /// of Convoy or Outpost).
    pub deliver: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { deliver: true }
    }
}

/// Run until `shutdown` is cancelled, then stop gracefully.
pub async fn run(
    config: Config,
    config_path: PathBuf,
    listeners: Listeners,
    shutdown: CancellationToken,
    opts: RunOptions,
) -> Result<(), DaemonError> {
    // Traces (SPEC §15), when configured, are exported from before the
    // first request to after the last delivery: `serve_until_stopped`
    // exports what is left once everything has drained, and this does it
    // on every other way out (it does nothing when already done).
    let telemetry = match &config.telemetry.otlp {
        Some(otlp) => {
            let t = Telemetry::start(otlp).map_err(DaemonError::Telemetry)?;
            tracing::info!(collector = %otlp.traces_url.host_str().unwrap_or_default(),
                "traces are on: spans are exported over OTLP/HTTP");
            Some(t)
        }
        None => None,
    };
    let result = serve_until_stopped(
        config,
        config_path,
        listeners,
        shutdown,
        opts,
        telemetry.clone(),
    )
    .await;
    if let Some(t) = &telemetry {
        t.shutdown(LAST_WRITES).await;
    }
    result
}

/// [`run`], with the trace exporter started.
async fn serve_until_stopped(
    config: Config,
    config_path: PathBuf,
    listeners: Listeners,
    shutdown: CancellationToken,
    opts: RunOptions,
    telemetry: Option<Telemetry>,
) -> Result<(), DaemonError> {
    let metrics = Metrics::new();
    metrics.config_reload(true, jiff::Timestamp::now().as_second());
    // A signal while starting ends the start: nothing serves yet, so there
    // is nothing to drain (and opening a Redis that does not answer must
    // not hold SIGTERM past the shutdown bound).
    let Some(queue) = unless_stopped(&shutdown, open_queue(&config)).await else {
        return Ok(());
    };
    let queue = queue?;
    let sender = crate::runtime::sender_for(&config).map_err(DaemonError::Sender)?;
    let (grace, delay) = (config.server.shutdown_grace, config.server.shutdown_delay);
    let app = App::new(
        config,
        config_path,
        queue,
        metrics,
        sender,
        shutdown.clone(),
        telemetry,
    );
    // API-created subscriptions live in the queue backend; the router and
    // workers read them from the snapshot, which the follower keeps current.
    let Some(follower) =
        unless_stopped(&shutdown, crate::runtime::subscriptions::start(&app)).await
    else {
        return Ok(());
    };
    let follower = follower?;

    let workers_stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    if opts.deliver {
        crate::deliver::worker::spawn(&app, &tracker, workers_stop.clone());
    } else {
        tracing::warn!(
            queue = ?app.config().queue.backend,
            "delivery workers are off (--no-deliver): events are queued here and delivered by replicas that share the queue"
        );
    }
    // Before the listeners open, so the first scrape has the queue gauges.
    unless_stopped(&shutdown, refresh_queue_gauges(&app)).await;
    // Housekeeping reports an unsafe Redis found after start here (SPEC §11).
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<DaemonError>(1);
    tracker.spawn(housekeeping(app.clone(), workers_stop.clone(), fatal_tx));
    tracker.spawn(follower.run(app.clone(), workers_stop.clone()));
    crate::runtime::reload::spawn(&app, &tracker, workers_stop.clone());

    let limits = crate::serve::Limits::of(&app.config().server);
    let listeners_stop = CancellationToken::new();
    let connections_kill = CancellationToken::new();
    let mut servers = tokio::task::JoinSet::new();
    let mut listen = |listener: TcpListener, routes: Router| {
        // Every answer is JSON, also for paths and methods no route serves.
        let router = routes
            .merge(health_routes(&app))
            .fallback(crate::serve::answer::no_route)
            .method_not_allowed_fallback(crate::serve::answer::method_not_allowed);
        servers.spawn(crate::serve::serve(
            listener,
            router,
            limits,
            listeners_stop.clone(),
            connections_kill.clone(),
        ));
    };
    let mut main = crate::inbound::routes(&app);
    if listeners.api.is_none() {
        main = main.merge(api_routes(&app));
    }
    if listeners.metrics.is_none() {
        main = main.merge(metrics_routes(&app));
    }
    listen(listeners.main, main);
    if let Some(l) = listeners.api {
        listen(l, api_routes(&app));
    }
    if let Some(l) = listeners.metrics {
        listen(l, metrics_routes(&app));
    }
    tracing::info!("hookyard ready");

    let mut failure = None;
    tokio::select! {
        _ = shutdown.cancelled() => {}
        Some(e) = fatal_rx.recv() => {
            tracing::error!("{e}: shutting down");
            failure = Some(e);
        }
        // A listener only ends on shutdown, unless its task panicked.
        Some(res) = servers.join_next() => {
            let why = match res {
                Ok(()) => "it ended".to_owned(),
                Err(e) => e.to_string(),
            };
            tracing::error!("a listener stopped unexpectedly ({why}): shutting down");
            failure = Some(DaemonError::Serve(why));
        }
    }
    // Cancelling (again, when a signal did it) is what turns readiness 503.
    shutdown.cancel();
    tracing::info!("shutting down: readiness is now 503");
    tokio::time::sleep(delay).await;
    let deadline = tokio::time::Instant::now() + grace;
    listeners_stop.cancel();
    workers_stop.cancel();
    tracker.close();
    let drained = tokio::time::timeout_at(deadline, async {
        while servers.join_next().await.is_some() {}
        tracker.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "shutdown grace of {grace:?} ran out: open connections are closed now; \
             unfinished deliveries stay queued and are retried"
        );
        connections_kill.cancel();
        while servers.join_next().await.is_some() {}
    }
    // The last few seconds of the console's counters and the last spans,
    // together and briefly: a queue or a collector that does not answer
    // must not hold the stop.
    let counts = async {
        match tokio::time::timeout(LAST_WRITES, app.counters().flush(app.queue())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("the console's last counts were not written: {e}"),
            Err(_) => tracing::warn!("the console's last counts were not written within 2s"),
        }
    };
    let spans = async {
        if let Some(t) = app.telemetry() {
            t.shutdown(LAST_WRITES).await;
        }
    };
    tokio::join!(counts, spans);
    tracing::info!("stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `fut`'s output, or `None` when `shutdown` comes first.
async fn unless_stopped<T>(
    shutdown: &CancellationToken,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        out = fut => Some(out),
    }
}

/// `/v1/*`: the event API (inbound) and the history/admin API.
fn api_routes(app: &App) -> Router {
    crate::inbound::api_routes(app)
        .merge(crate::admin::routes(app))
        .merge(crate::console::routes(app))
}

fn health_routes(app: &App) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json200("{\"status\":\"ok\"}") }))
        .route("/readyz", get(readyz))
        .with_state(app.clone())
}

struct Json200(&'static str);

impl IntoResponse for Json200 {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// 200 once the config is loaded, the watcher armed and the queue reachable;
/// 503 otherwise and during shutdown.
async fn readyz(State(app): State<App>) -> Response {
    let problem = if app.shutting_down() {
        Some("shutting down".to_owned())
    } else if !app.watcher_armed() {
        Some("config watcher not armed yet".to_owned())
    } else {
        match tokio::time::timeout(Duration::from_secs(2), app.queue().ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("queue did not answer within 2s".to_owned()),
        }
    };
    let (status, body) = match problem {
        None => (StatusCode::OK, serde_json::json!({"status": "ready"})),
        Some(p) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "not_ready", "reason": p}),
        ),
    };
    (status, axum::Json(body)).into_response()
}

/// `/metrics`: its state is the metrics registry alone, so a scrape cannot
/// reach the queue (SPEC §11: scrapes are cheap).
fn metrics_routes(app: &App) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(app.metrics().clone())
}

/// The registry as it is: housekeeping keeps the queue gauges fresh.
async fn metrics(State(metrics): State<Metrics>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = metrics.encode_for_accept(accept);
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn refresh_queue_gauges(app: &App) {
    // From the last safety check (housekeeping), no query here.
    app.metrics().queue_unsafe(&app.queue().unsafe_reasons());
    match tokio::time::timeout(Duration::from_secs(2), app.queue().stats()).await {
        Ok(Ok(stats)) => app.metrics().observe_queue(&stats, app.queue().resets()),
        Ok(Err(e)) => tracing::warn!("queue statistics unavailable: {e}"),
        Err(_) => tracing::warn!("queue statistics took longer than 2s"),
    }
}

/// Periodic upkeep: the backend's safety check (SPEC §11: after every
/// Redis reconnect, which only asking can notice; see `redis/safety.rs`),
/// the console's counters written (one queue write; SPEC §13)
/// and queue gauges every 5s (the only queue query behind `/metrics`),
/// history pruning every minute. `run` refreshed the gauges just before,
/// so the first tick comes one period after the start.
/// Write the trigger samples taken since the last flush (console).
async fn flush_captures(app: &App) {
    let config = app.config();
    let keep = |id: &str| config.trigger(id).map_or(0, |t| t.capture);
    if let Err(e) = app
        .captures()
        .flush(app.queue(), keep, config.history.retention)
        .await
    {
        tracing::debug!("trigger samples not written: {e}");
    }
}

async fn housekeeping(
    app: App,
    stop: CancellationToken,
    fatal: tokio::sync::mpsc::Sender<DaemonError>,
) {
    let allow_eviction = app.config().queue.allow_eviction;
    const PERIOD: Duration = Duration::from_secs(5);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PERIOD, PERIOD);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = app.queue().recheck_safety().await {
            tracing::debug!("queue safety check skipped: {e}");
        }
        let reasons = app.queue().unsafe_reasons();
        if !reasons.is_empty() && !allow_eviction {
            // As at open: exit 1 rather than run on a Redis that loses data.
            // New events are already refused (503) until the process ends.
            let _ = fatal
                .send(DaemonError::Queue(QueueError::Unsafe(format!(
                    "Redis changed under the daemon and now runs with settings that lose data \
                     ({}); fix them as the error above says and start hookyard again, or set \
                     `queue.allow_eviction: true`",
                    reasons.join(", ")
                ))))
                .await;
            return;
        }
        if let Err(e) = app.counters().flush(app.queue()).await {
            tracing::warn!("the console's counts were not written (kept for the next try): {e}");
        }
        refresh_queue_gauges(&app).await;
        flush_captures(&app).await;
        if n % 12 == 0 {
            match app.queue().prune(jiff::Timestamp::now()).await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "history pruned"),
                Err(e) => tracing::warn!("history pruning failed: {e}"),
            }
        }
        n += 1;
    }
}
