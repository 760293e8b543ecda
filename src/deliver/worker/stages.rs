//! One delivery, stage by stage, in the order a job travels:
//! lease → resolve → gate → render → send → record (SPEC §5, §6).
//!
//! [`Worker::try_deliver`] is the list of stages; each stage either hands
//! the next one what it needs ([`Step::Go`]) or has already ended the lease
//! itself ([`Step::Ended`]: deferred or dead-lettered). Kept apart from
//! worker.rs so that file stays the pool and its leasing loop, and so each
//! decision about a job can be read on its own.
//!
//! The whole job sees one config snapshot (SPEC §12): the lease stage loads
//! it, resolve may swap it once for a fresher one from the store, and every
//! later stage reads it from [`Delivery`], never from the app again.
//!
//! The stages up to render are here; send and record, what happens once a
//! request is made, are in stages/record.rs.
//!
//! With traces on (SPEC §15) every attempt, the ones that fail to render
//! or sign included, has a span: the child of the inbound context stored
//! with the job; the request it sends carries a `traceparent` naming it.

mod record;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::json;

use super::{Worker, later};
use crate::deliver::attempt;
use crate::deliver::handshake::Gate;
use crate::deliver::limits::{InFlight, Probe};
use crate::deliver::render::{self, RenderError, Rendered};
use crate::deliver::sign;
use crate::deliver::target::{self, Resolved};
use crate::model::Event;
use crate::queue::{LeasedJob, QueueError};
use crate::runtime::Snapshot;
use crate::telemetry::{Attempt, AttemptSpan};

/// How soon a paused target's jobs are looked at again (each look
/// rewrites the job, so not too often: a paused backlog is polled).
const PAUSED_RECHECK: Duration = Duration::from_secs(5);
/// Longest a leased job waits for a free `max_in_flight` slot before it is
/// deferred (see `Limits::in_flight`).
const SLOT_WAIT: Duration = Duration::from_secs(1);
/// How soon a job held back by `max_in_flight` is tried again.
const IN_FLIGHT_RECHECK: Duration = Duration::from_millis(50);

/// What a stage decided.
enum Step<T> {
    /// Go on to the next stage with this.
    Go(T),
    /// The stage ended the lease itself (deferred or dead-lettered); the
    /// job is finished on this worker.
    Ended,
}

/// One leased job as the stages after the lease see it.
struct Delivery<'a> {
    lease: &'a LeasedJob,
    /// The job's one snapshot (SPEC §12).
    snapshot: Arc<Snapshot>,
    event: Cow<'a, Event>,
    /// `lease.job.target.label()`, the key of limits and metrics.
    label: String,
    /// When the worker took the job up: the time of its defers and of the
    /// attempts recorded before anything was sent.
    now: Timestamp,
    /// The number of the attempt about to be made (from 1).
    attempt_no: u32,
}

/// What the gates let through with the job, held until its attempt is
/// recorded. Fields drop in declaration order: the probe, then the slot.
struct Held<'w> {
    /// Set when this request is the open circuit's probe; dropped unsent
    /// (render or signing failed) it lets the next job probe.
    probe: Option<Probe<'w>>,
    /// The target's `max_in_flight` slot, freed when this drops.
    slot: Option<InFlight>,
}

impl Worker {
    /// Deliver one leased job and end its lease exactly once. An error
    /// means the lease could not be ended; the job is retried when it
    /// lapses.
    pub(super) async fn try_deliver(&self, lease: &LeasedJob) -> Result<(), QueueError> {
        let Step::Go(mut job) = self.lease(lease).await? else {
            return Ok(());
        };
        let Step::Go(target) = self.resolve(&mut job).await? else {
            return Ok(());
        };
        // `held` lives to the end of this function: the slot and the probe
        // are kept until the attempt is recorded.
        let Step::Go(held) = self.gate(&job, &target).await? else {
            return Ok(());
        };
        let Step::Go(rendered) = self.render(&job, &target).await? else {
            return Ok(());
        };
        if target.test_mode() {
            return self.record_test(&job, &target, &rendered).await;
        }
        let sent = self.send(&job, &target, rendered).await;
        self.record(&job, &target, held, sent).await
    }

    /// Lease: load what the job needs before anything is decided, the
    /// config snapshot and the event. An event no longer stored ends the
    /// job, dead-lettered as `event_missing`.
    async fn lease<'a>(&self, lease: &'a LeasedJob) -> Result<Step<Delivery<'a>>, QueueError> {
        let snapshot = self.app.snapshot();
        let label = lease.job.target.label();
        let now = Timestamp::now();
        // The Redis lease usually brings the event along; otherwise read it.
        let event = match &lease.event {
            Some(e) => Cow::Borrowed(e),
            None => match self.app.queue().event_only(&lease.job.event_id).await? {
                Some(e) => Cow::Owned(e),
                None => {
                    self.dead(lease, None, "event_missing").await?;
                    return Ok(Step::Ended);
                }
            },
        };
        Ok(Step::Go(Delivery {
            lease,
            snapshot,
            event,
            label,
            now,
            attempt_no: lease.attempts.saturating_add(1),
        }))
    }

    /// Resolve: the job's target in its snapshot. A target not there may
    /// have just been made by another replica, so the store is asked once
    /// and its fresher snapshot replaces the job's; still missing, the job
    /// is an orphan (held for `reload.orphan_grace`, then dead-lettered).
    async fn resolve(&self, job: &mut Delivery<'_>) -> Result<Step<Resolved>, QueueError> {
        let wanted = &job.lease.job.target;
        let mut found = target::resolve(&job.snapshot, wanted);
        if found.is_none() {
            if let Some(fresh) = self.ask_store(wanted).await {
                found = target::resolve(&fresh, wanted);
                job.snapshot = fresh;
            }
        }
        match found {
            Some(resolved) => Ok(Step::Go(resolved)),
            None => {
                self.orphan(job.lease, &job.snapshot.config, job.now)
                    .await?;
                Ok(Step::Ended)
            }
        }
    }

    /// Gate: may the job be sent now? A paused target, a subscription not
    /// yet verified, a full `max_in_flight`, the shared rate limit or an
    /// open circuit hold it: its lease ends with `defer` and no attempt is
    /// used. A test-mode step sends nothing, so the per-target limits
    /// (slot, rate, circuit) do not apply to it.
    async fn gate<'w>(
        &'w self,
        job: &Delivery<'_>,
        target: &Resolved,
    ) -> Result<Step<Held<'w>>, QueueError> {
        let queue = self.app.queue();
        let opts = target.opts();
        if opts.paused {
            return self.hold(job, later(job.now, PAUSED_RECHECK)).await;
        }
        if let Resolved::Subscription(s) = target {
            if s.verify {
                // The handshake is an HTTP request like a delivery (up to
                // the subscription's timeout), so it runs under the same
                // lease renewal: a slow endpoint must not let the lease
                // lapse and hand the job to another worker meanwhile.
                let gate = self
                    .handshakes
                    .gate(&self.app, &job.snapshot, s, &self.tokens);
                let gate = self
                    .with_renewal(job.lease, queue.lease_duration(), gate)
                    .await?;
                if let Gate::Wait(at) = gate {
                    return self.hold(job, at).await;
                }
            }
        }
        if target.test_mode() {
            return Ok(Step::Go(Held {
                probe: None,
                slot: None,
            }));
        }
        // Hold the leased job for a slot a little while (never longer than
        // a quarter of its lease) before deferring it.
        let wait = SLOT_WAIT.min(queue.lease_duration() / 4);
        let max_waiting = (self.settings.concurrency / 4).max(1);
        let slot = match self
            .limits
            .in_flight(&job.label, opts.max_in_flight, wait, max_waiting)
            .await
        {
            InFlight::Full => {
                // Jitter spreads the waiting jobs' returns.
                let wait = IN_FLIGHT_RECHECK + Duration::from_millis(rand::random_range(0..100));
                return self.hold(job, later(job.now, wait)).await;
            }
            slot => slot,
        };
        // From here a defer returns early with `slot` still held, so the
        // slot is freed only once the lease has ended, as for a send.
        if let Some(wait) = self
            .limits
            .rate_shared(queue, &job.label, opts.rate_limit)
            .await
        {
            return self.hold(job, later(job.now, wait)).await;
        }
        let probe = match self.limits.circuit_allows(&job.label, Instant::now()) {
            Ok(probe) => probe,
            Err(wait) => return self.hold(job, later(job.now, wait)).await,
        };
        Ok(Step::Go(Held {
            probe,
            slot: Some(slot),
        }))
    }

    /// The span of the attempt about to be made, when traces are on.
    fn attempt_span(&self, job: &Delivery<'_>) -> Option<AttemptSpan> {
        let telemetry = self.app.telemetry()?;
        let about = Attempt {
            target: &job.label,
            event_id: &job.event.id,
            delivery_id: &job.lease.job.delivery_id,
            attempt: job.attempt_no,
        };
        Some(telemetry.attempt(job.lease.job.traceparent.as_deref(), about))
    }

    /// An attempt that ended before a request was made (dead-lettered
    /// with `error`), as a span of its own when traces are on.
    fn unsent_attempt_span(&self, job: &Delivery<'_>, error: &str) {
        if let Some(span) = self.attempt_span(job) {
            span.end("dead_letter", None, Some(error));
        }
    }

    /// End the lease with `defer` until `at`: a gate holds the job, no
    /// attempt used.
    async fn hold<T>(&self, job: &Delivery<'_>, at: Timestamp) -> Result<Step<T>, QueueError> {
        self.app.queue().defer(job.lease, at, None).await?;
        Ok(Step::Ended)
    }

    /// Render: the request from the target's templates and the event, with
    /// the delivery headers and the signature added. A template or signing
    /// failure is recorded as a failed attempt and dead-letters the job at
    /// once (`template_error`, `render_limit`, `signing_error`).
    async fn render(
        &self,
        job: &Delivery<'_>,
        target: &Resolved,
    ) -> Result<Step<Rendered>, QueueError> {
        let config = &job.snapshot.config;
        let opts = target.opts();
        let event: &Event = &job.event;
        let envs = self.envs(config);
        let rendered = {
            let build = || render::context(event, &job.lease.job.steps, &config.secrets);
            let ctx = render::LazyContext::new(&build);
            match target {
                Resolved::Step { action, .. } => render::action(&envs, action, &ctx),
                Resolved::Subscription(s) => render::subscription(&envs, s, event, &ctx),
                Resolved::Api(a) => render::api_subscription(&a.subscription, event),
            }
        };
        let mut rendered = match rendered {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, RenderError::Missing(_)) {
                    self.app.metrics().template_missing(&job.label);
                }
                self.unsent_attempt_span(job, &e.to_string());
                let record = attempt::record(
                    job.attempt_no,
                    job.now,
                    json!({"method": null, "url": null, "headers": {}}),
                    None,
                    0,
                    Some(e.to_string()),
                );
                let reason = match e {
                    RenderError::Limit { .. } => "render_limit",
                    _ => "template_error",
                };
                self.dead(job.lease, Some(record), reason).await?;
                return Ok(Step::Ended);
            }
        };
        if rendered.missing {
            self.app.metrics().template_missing(&job.label);
        }

        // The delivery headers, except a User-Agent the target sets itself.
        let has_agent = rendered
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"));
        for (k, v) in sign::delivery_headers(
            &event.id,
            &event.event_type,
            &job.lease.job.delivery_id,
            job.attempt_no,
        ) {
            if !(has_agent && k == "User-Agent") {
                rendered.headers.push((k.to_owned(), v));
            }
        }
        if let Some(signing) = &opts.signing {
            match sign::sign(signing, &event.id, Timestamp::now(), &rendered.body) {
                Ok(sig) => rendered
                    .headers
                    .extend(sig.into_iter().map(|(k, v)| (k.to_owned(), v))),
                Err(e) => {
                    self.unsent_attempt_span(job, &e.to_string());
                    let record = attempt::record(
                        job.attempt_no,
                        job.now,
                        json!({"method": rendered.method.as_str(), "url": null, "headers": {}}),
                        None,
                        0,
                        Some(e.to_string()),
                    );
                    self.dead(job.lease, Some(record), "signing_error").await?;
                    return Ok(Step::Ended);
                }
            }
        }
        Ok(Step::Go(rendered))
    }
}
