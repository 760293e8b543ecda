//! The last two stages of a delivery, send and record: make the one HTTP
//! request, then let its outcome decide how the lease ends (SPEC §5, §6,
//! §8). A test-mode step skips the send and records what it rendered.
//! Split from stages.rs only to keep files short; this is a child module
//! so it reads the stages' private types ([`Delivery`], [`Held`]) directly.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::{Delivery, Held};
use crate::config::{Config, OAuth2, OutboundAuth, Transport};
use crate::deliver::limits::CircuitChange;
use crate::deliver::render::Rendered;
use crate::deliver::retry::{self, Decision, Outcome};
use crate::deliver::target::{self, Resolved};
use crate::deliver::worker::{Worker, later};
use crate::deliver::{attempt, auth};
use crate::metrics::Outcome as Metric;
use crate::queue::{DeliveryState, NewJob, QueueError, Target};
use crate::send::{OutboundRequest, REDACTED, Response, SendError, Trust};
use crate::telemetry::{AttemptSpan, TRACEPARENT};

/// What the send stage brings back for the record.
pub(super) struct Sent {
    /// The request as history shows it (redacted, without the body).
    request: serde_json::Value,
    /// When the request went out.
    at: Timestamp,
    elapsed: Duration,
    result: Result<Response, SendError>,
    /// The attempt's span (traces on), ended once the outcome is known.
    span: Option<AttemptSpan>,
}

impl Worker {
    /// Record, test mode: the rendered request (its body too, unless
    /// `history.request_body: never`) is the attempt; the job completes as `test` and the workflow goes on to
    /// its next step. Nothing is sent.
    pub(super) async fn record_test(
        &self,
        job: &Delivery<'_>,
        target: &Resolved,
        rendered: &Rendered,
    ) -> Result<(), QueueError> {
        let config = &job.snapshot.config;
        let request = attempt::request_json(
            &rendered.method,
            &rendered.url_display,
            &rendered.headers,
            &secret_values(config, target),
            attempt::kept_body(&config.history, true, &rendered.body),
        );
        let record = attempt::record(job.attempt_no, job.now, request, None, 0, None);
        let next = match &job.lease.job.target {
            Target::WorkflowStep {
                workflow, action, ..
            } => target::next_step(
                config,
                workflow,
                action,
                &job.lease.job,
                job.lease.job.steps.clone(),
            ),
            Target::Subscription { .. } => None,
        };
        self.app
            .queue()
            .complete(job.lease, Some(record), DeliveryState::Test, next)
            .await?;
        self.app
            .metrics()
            .delivery_outcome(&job.label, Metric::Test);
        if let Some(span) = self.attempt_span(job) {
            span.end("test", None, None);
        }
        Ok(())
    }

    /// Send: make the request under lease renewal (a slow endpoint must
    /// not let the lease lapse) and time it. An `oauth2` target gets its
    /// bearer token here (see [`Worker::exchange`]).
    pub(super) async fn send(
        &self,
        job: &Delivery<'_>,
        target: &Resolved,
        mut rendered: Rendered,
    ) -> Sent {
        let config = &job.snapshot.config;
        let opts = target.opts();
        // Traces on: the request names its attempt's span (and history
        // shows the header, as sent).
        let mut span = self.attempt_span(job);
        if let Some(span) = span.as_mut() {
            span.method(rendered.method.as_str());
            if let Some(traceparent) = span.traceparent() {
                rendered
                    .headers
                    .retain(|(k, _)| !k.eq_ignore_ascii_case(TRACEPARENT));
                rendered.headers.push((TRACEPARENT.to_owned(), traceparent));
            }
        }
        let grant = match opts.auth {
            Some(OutboundAuth::OAuth2(grant)) => {
                // History shows the header (redacted by name); the token
                // replaces this value just before sending.
                auth::set(&mut rendered.headers, REDACTED.to_owned());
                Some(grant.as_ref())
            }
            _ => None,
        };
        let request = attempt::request_json(
            &rendered.method,
            &rendered.url_display,
            &rendered.headers,
            &secret_values(config, target),
            attempt::kept_body(&config.history, false, &rendered.body),
        );
        let req = OutboundRequest {
            method: rendered.method,
            url: rendered.url,
            headers: rendered.headers,
            body: rendered.body,
        };
        let limit = usize::try_from(config.history.response_body_limit).unwrap_or(usize::MAX);
        let started = Instant::now();
        let at = Timestamp::now();
        let result = self
            .with_renewal(
                job.lease,
                self.app.queue().lease_duration(),
                self.exchange(
                    job,
                    grant,
                    req,
                    (opts.trust, opts.transport),
                    opts.timeout,
                    limit,
                ),
            )
            .await;
        let elapsed = started.elapsed();
        self.app
            .metrics()
            .attempt_duration(&job.label, elapsed.as_secs_f64());
        Sent {
            request,
            at,
            elapsed,
            result,
            span,
        }
    }

    /// The request, with a bearer token when the target has `oauth2`. A
    /// 401 drops that token and the request is made once more at once with
    /// a new one, inside the same attempt (not counted as another); what
    /// that second request gets is the attempt's outcome. A failed token
    /// request fails the attempt like a failed connection.
    async fn exchange(
        &self,
        job: &Delivery<'_>,
        grant: Option<&OAuth2>,
        mut req: OutboundRequest,
        (trust, transport): (Trust, Option<&Transport>),
        timeout: Duration,
        limit: usize,
    ) -> Result<Response, SendError> {
        let sender = &job.snapshot.sender;
        let Some(grant) = grant else {
            return sender.send(req, trust, transport, timeout, limit).await;
        };
        let token = self.tokens.get(grant, sender, transport, timeout).await?;
        auth::set(&mut req.headers, token.bearer());
        let first = sender
            .send(req.clone(), trust, transport, timeout, limit)
            .await;
        if !matches!(&first, Ok(r) if r.status == 401) {
            return first;
        }
        self.tokens.reject(grant, &token).await;
        tracing::info!(
            target = %job.label,
            delivery = %job.lease.job.delivery_id,
            "target answered 401: dropped its OAuth2 token; sending once more with a new one"
        );
        let token = self.tokens.get(grant, sender, transport, timeout).await?;
        auth::set(&mut req.headers, token.bearer());
        sender.send(req, trust, transport, timeout, limit).await
    }

    /// Record: count the outcome in the target's circuit, then decide with
    /// the retry policy and end the lease: `complete` (enqueuing the next
    /// workflow step), `retry_at`, or `dead_letter`, and count the attempt
    /// for the console's Overview. The gates' `max_in_flight` slot is freed
    /// only once the lease has ended.
    pub(super) async fn record(
        &self,
        job: &Delivery<'_>,
        target: &Resolved,
        held: Held<'_>,
        sent: Sent,
    ) -> Result<(), QueueError> {
        let queue = self.app.queue();
        let label = &job.label;
        let outcome = match &sent.result {
            Ok(r) => Outcome::from_status(r.status),
            Err(e) => attempt::transport_outcome(e),
        };
        let retryable = matches!(outcome, Outcome::Retryable(_));
        self.count_in_circuit(label, retryable);
        if let Some(p) = held.probe {
            p.sent();
        }
        let error = match (&outcome, &sent.result) {
            (Outcome::Success, _) => None,
            (_, Err(e)) => Some(e.to_string()),
            (Outcome::Retryable(m) | Outcome::Permanent(m), Ok(_)) => Some(m.clone()),
        };
        let retry_after = sent
            .result
            .as_ref()
            .ok()
            .and_then(|r| r.retry_after.as_deref())
            .and_then(|v| retry::parse_retry_after(v, Timestamp::now()));
        let policy = target.opts().retry;
        let decision = policy.decide(outcome, job.attempt_no, retry_after, &mut rand::rng());
        let record = attempt::record(
            job.attempt_no,
            sent.at,
            sent.request,
            sent.result.as_ref().ok(),
            millis(sent.elapsed),
            error,
        );
        let delivered = matches!(decision, Decision::Delivered);
        if let Some(span) = sent.span {
            let outcome = match decision {
                Decision::Delivered => "success",
                Decision::Retry { .. } => "retry",
                Decision::DeadLetter(_) => "dead_letter",
            };
            let status = sent.result.as_ref().ok().map(|r| r.status);
            span.end(outcome, status, record.error.as_deref());
        }
        match decision {
            Decision::Delivered => {
                let next = next_after_success(job, &sent.result);
                queue
                    .complete(job.lease, Some(record), DeliveryState::Succeeded, next)
                    .await?;
                let metrics = self.app.metrics();
                metrics.delivery_outcome(label, Metric::Success);
                let age = Timestamp::now().duration_since(job.event.timestamp);
                metrics.end_to_end(age.as_secs_f64().max(0.0));
            }
            Decision::Retry { after, .. } => {
                queue
                    .retry_at(job.lease, record, later(Timestamp::now(), after))
                    .await?;
                self.app.metrics().delivery_outcome(label, Metric::Retry);
            }
            Decision::DeadLetter(_) => {
                let reason = if retryable {
                    "attempts_exhausted".to_owned()
                } else {
                    attempt::permanent_reason(&sent.result)
                };
                self.dead(job.lease, Some(record), &reason).await?;
            }
        }
        // Counted once recorded, as history shows it: the Overview's
        // success rate and p95 (SPEC §13).
        self.app.counters().attempt(label, delivered, sent.elapsed);
        // The `max_in_flight` slot is freed only now, with the lease ended.
        drop(held.slot);
        Ok(())
    }

    /// Count a sent request's outcome in the target's circuit breaker and
    /// report a change on the `hookyard_circuit_open` gauge.
    fn count_in_circuit(&self, label: &str, failed: bool) {
        match self.limits.record(label, failed, Instant::now()) {
            CircuitChange::Opened => {
                tracing::warn!(target = %label, "circuit opened after consecutive failures");
                self.app.metrics().circuit(label, true);
            }
            CircuitChange::Closed => self.app.metrics().circuit(label, false),
            CircuitChange::Unchanged => {}
        }
    }
}

/// Every secret value a recorded request must not show: the config's
/// secrets, and an API subscription's own signing secrets.
fn secret_values<'a>(config: &'a Config, target: &'a Resolved) -> Vec<&'a [u8]> {
    config
        .secrets
        .values()
        .map(|s| s.expose())
        .chain(match target {
            Resolved::Api(a) => a
                .subscription
                .secrets
                .iter()
                .map(|s| s.as_bytes())
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The job of the workflow's next step after a delivered step, which sees
/// this step's response; `None` for a subscription or at the chain's end.
fn next_after_success(job: &Delivery<'_>, result: &Result<Response, SendError>) -> Option<NewJob> {
    let (
        Target::WorkflowStep {
            workflow, action, ..
        },
        Ok(resp),
    ) = (&job.lease.job.target, result)
    else {
        return None;
    };
    let mut steps = job.lease.job.steps.clone();
    steps.insert(action.clone(), attempt::step_response(resp));
    let next = target::next_step(
        &job.snapshot.config,
        workflow,
        action,
        &job.lease.job,
        steps,
    );
    if next.is_none() {
        tracing::debug!(workflow = %workflow, "workflow chain finished");
    }
    next
}

/// An attempt's duration as history records it.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
