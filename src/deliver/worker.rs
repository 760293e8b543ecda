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
//! Every lease ends in exactly one of: `complete` (success or test mode;
//! a workflow step enqueues the next step atomically), `retry_at`,
//! `dead_letter`, or `defer` (paused, pending verification, rate limit,
//! `max_in_flight`, open circuit, orphaned target: no attempt used).

mod lease;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::deliver::attempt;
use crate::deliver::handshake::{Gate, Handshakes};
use crate::deliver::limits::{CircuitChange, CircuitSettings, InFlight, Limits};
use crate::deliver::render::{self, Envs, RenderError};
use crate::deliver::retry::{self, Decision, Outcome};
use crate::deliver::sign;
use crate::deliver::target::{self, Resolved};
use crate::metrics::Outcome as Metric;
use crate::queue::{DeliveryState, LeasedJob, QueueError, Target};
use crate::runtime::App;
use crate::send::OutboundRequest;

/// How long one `lease` call waits for work when the queue is empty.
const LEASE_WAIT: Duration = Duration::from_millis(500);
/// Fewer free slots than this: wait [`LEASE_GATHER_WAIT`] for more before
/// leasing (the pool is nearly full, so the wait costs no throughput).
const LEASE_GATHER: usize = 8;
const LEASE_GATHER_WAIT: Duration = Duration::from_millis(2);
/// How soon a paused target's jobs are looked at again (each look
/// rewrites the job, so not too often: a paused backlog is polled).
const PAUSED_RECHECK: Duration = Duration::from_secs(5);
/// Longest a leased job waits for a free `max_in_flight` slot before it is
/// deferred (see `Limits::in_flight`).
const SLOT_WAIT: Duration = Duration::from_secs(1);
/// How soon a job held back by `max_in_flight` is tried again.
const IN_FLIGHT_RECHECK: Duration = Duration::from_millis(50);
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

    async fn try_deliver(&self, job: &LeasedJob) -> Result<(), QueueError> {
        // One snapshot for the whole job (SPEC §12); replaced only by a
        // fresher one from the store when the target is not in it.
        let mut snapshot = self.app.snapshot();
        let queue = self.app.queue();
        let label = job.job.target.label();
        let now = Timestamp::now();
        // The Redis lease usually brings the event along; otherwise read it.
        let fetched;
        let event = match &job.event {
            Some(e) => e,
            None => match queue.event_only(&job.job.event_id).await? {
                Some(e) => {
                    fetched = e;
                    &fetched
                }
                None => return self.dead(job, None, "event_missing").await,
            },
        };
        let mut found = target::resolve(&snapshot, &job.job.target);
        if found.is_none() {
            if let Some(fresh) = self.ask_store(&job.job.target).await {
                found = target::resolve(&fresh, &job.job.target);
                snapshot = fresh;
            }
        }
        let config = &snapshot.config;
        let Some(resolved) = found else {
            return self.orphan(job, config, now).await;
        };
        let opts = resolved.opts();
        if opts.paused {
            return queue.defer(job, later(now, PAUSED_RECHECK), None).await;
        }
        let test_mode = resolved.test_mode();
        if let Resolved::Subscription(s) = &resolved {
            if s.verify {
                // The handshake is an HTTP request like a delivery (up to
                // the subscription's timeout), so it runs under the same
                // lease renewal: a slow endpoint must not let the lease
                // lapse and hand the job to another worker meanwhile.
                let gate = self.handshakes.gate(&self.app, &snapshot, s);
                let gate = self
                    .with_renewal(job, self.app.queue().lease_duration(), gate)
                    .await?;
                if let Gate::Wait(at) = gate {
                    return queue.defer(job, at, None).await;
                }
            }
        }
        // Per-target gates (a test-mode step sends nothing, so none apply).
        let _slot = if test_mode {
            None
        } else {
            // Hold the leased job for a slot a little while (never longer
            // than a quarter of its lease) before deferring it.
            let wait = SLOT_WAIT.min(self.app.queue().lease_duration() / 4);
            let max_waiting = (self.settings.concurrency / 4).max(1);
            match self
                .limits
                .in_flight(&label, opts.max_in_flight, wait, max_waiting)
                .await
            {
                InFlight::Full => {
                    // Jitter spreads the waiting jobs' returns.
                    let wait =
                        IN_FLIGHT_RECHECK + Duration::from_millis(rand::random_range(0..100));
                    return queue.defer(job, later(now, wait), None).await;
                }
                slot => Some(slot),
            }
        };
        // Set when this request is the open circuit's probe; dropped unsent
        // (render or signing fails below) it lets the next job probe.
        let mut probe = None;
        if !test_mode {
            if let Some(wait) = self
                .limits
                .rate_shared(queue, &label, opts.rate_limit)
                .await
            {
                return queue.defer(job, later(now, wait), None).await;
            }
            match self.limits.circuit_allows(&label, Instant::now()) {
                Ok(p) => probe = p,
                Err(wait) => return queue.defer(job, later(now, wait), None).await,
            }
        }

        let attempt_no = job.attempts.saturating_add(1);
        let secret_values: Vec<&[u8]> = config
            .secrets
            .values()
            .map(|s| s.expose())
            .chain(match &resolved {
                Resolved::Api(a) => a
                    .subscription
                    .secrets
                    .iter()
                    .map(|s| s.as_bytes())
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let envs = self.envs(config);
        let rendered = {
            let build = || render::context(event, &job.job.steps, &config.secrets);
            let ctx = render::LazyContext::new(&build);
            match &resolved {
                Resolved::Step { action, .. } => render::action(&envs, action, &ctx),
                Resolved::Subscription(s) => render::subscription(&envs, s, event, &ctx),
                Resolved::Api(a) => render::api_subscription(&a.subscription, event),
            }
        };
        let rendered = match rendered {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, RenderError::Missing(_)) {
                    self.app.metrics().template_missing(&label);
                }
                let record = attempt::record(
                    attempt_no,
                    now,
                    json!({"method": null, "url": null, "headers": {}}),
                    None,
                    0,
                    Some(e.to_string()),
                );
                let reason = match e {
                    RenderError::Limit { .. } => "render_limit",
                    _ => "template_error",
                };
                return self.dead(job, Some(record), reason).await;
            }
        };
        if rendered.missing {
            self.app.metrics().template_missing(&label);
        }

        let mut headers = rendered.headers.clone();
        let has_agent = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"));
        for (k, v) in sign::delivery_headers(
            &event.id,
            &event.event_type,
            &job.job.delivery_id,
            attempt_no,
        ) {
            if !(has_agent && k == "User-Agent") {
                headers.push((k.to_owned(), v));
            }
        }
        if let Some(signing) = &opts.signing {
            match sign::sign(signing, &event.id, Timestamp::now(), &rendered.body) {
                Ok(sig) => headers.extend(sig.into_iter().map(|(k, v)| (k.to_owned(), v))),
                Err(e) => {
                    let record = attempt::record(
                        attempt_no,
                        now,
                        json!({"method": rendered.method.as_str(), "url": null, "headers": {}}),
                        None,
                        0,
                        Some(e.to_string()),
                    );
                    return self.dead(job, Some(record), "signing_error").await;
                }
            }
        }

        if test_mode {
            let request = attempt::request_json(
                &rendered.method,
                &rendered.url_display,
                &headers,
                &secret_values,
                Some(&rendered.body),
            );
            let record = attempt::record(attempt_no, now, request, None, 0, None);
            let next = match &job.job.target {
                Target::WorkflowStep {
                    workflow, action, ..
                } => target::next_step(config, workflow, action, &event.id, job.job.steps.clone()),
                Target::Subscription { .. } => None,
            };
            queue
                .complete(job, Some(record), DeliveryState::Test, next)
                .await?;
            self.app.metrics().delivery_outcome(&label, Metric::Test);
            return Ok(());
        }

        let request_record = attempt::request_json(
            &rendered.method,
            &rendered.url_display,
            &headers,
            &secret_values,
            None,
        );
        let req = OutboundRequest {
            method: rendered.method.clone(),
            url: rendered.url.clone(),
            headers,
            body: rendered.body.clone(),
        };
        let limit = usize::try_from(config.history.response_body_limit).unwrap_or(usize::MAX);
        let started = Instant::now();
        let at = Timestamp::now();
        let result = self
            .with_renewal(
                job,
                self.app.queue().lease_duration(),
                snapshot.sender.send(req, opts.trust, opts.timeout, limit),
            )
            .await;
        let elapsed = started.elapsed();
        self.app
            .metrics()
            .attempt_duration(&label, elapsed.as_secs_f64());

        let outcome = match &result {
            Ok(r) => Outcome::from_status(r.status),
            Err(e) => attempt::transport_outcome(e),
        };
        let retryable = matches!(outcome, Outcome::Retryable(_));
        match self.limits.record(&label, retryable, Instant::now()) {
            CircuitChange::Opened => {
                tracing::warn!(target = %label, "circuit opened after consecutive failures");
                self.app.metrics().circuit(&label, true);
            }
            CircuitChange::Closed => self.app.metrics().circuit(&label, false),
            CircuitChange::Unchanged => {}
        }
        if let Some(p) = probe {
            p.sent();
        }
        let error = match (&outcome, &result) {
            (Outcome::Success, _) => None,
            (_, Err(e)) => Some(e.to_string()),
            (Outcome::Retryable(m) | Outcome::Permanent(m), Ok(_)) => Some(m.clone()),
        };
        let retry_after = result
            .as_ref()
            .ok()
            .and_then(|r| r.retry_after.as_deref())
            .and_then(|v| retry::parse_retry_after(v, Timestamp::now()));
        let decision = opts
            .retry
            .decide(outcome, attempt_no, retry_after, &mut rand::rng());
        let record = attempt::record(
            attempt_no,
            at,
            request_record,
            result.as_ref().ok(),
            millis(elapsed),
            error,
        );
        match decision {
            Decision::Delivered => {
                let next = match (&job.job.target, &result) {
                    (
                        Target::WorkflowStep {
                            workflow, action, ..
                        },
                        Ok(resp),
                    ) => {
                        let mut steps = job.job.steps.clone();
                        steps.insert(action.clone(), attempt::step_response(resp));
                        let next = target::next_step(config, workflow, action, &event.id, steps);
                        if next.is_none() {
                            tracing::debug!(workflow = %workflow, "workflow chain finished");
                        }
                        next
                    }
                    _ => None,
                };
                queue
                    .complete(job, Some(record), DeliveryState::Succeeded, next)
                    .await?;
                let metrics = self.app.metrics();
                metrics.delivery_outcome(&label, Metric::Success);
                let age = Timestamp::now().duration_since(event.timestamp);
                metrics.end_to_end(age.as_secs_f64().max(0.0));
            }
            Decision::Retry { after, .. } => {
                queue
                    .retry_at(job, record, later(Timestamp::now(), after))
                    .await?;
                self.app.metrics().delivery_outcome(&label, Metric::Retry);
            }
            Decision::DeadLetter(_) => {
                let reason = if retryable {
                    "attempts_exhausted".to_owned()
                } else {
                    attempt::permanent_reason(&result)
                };
                self.dead(job, Some(record), &reason).await?;
            }
        }
        Ok(())
    }
}
