//! Resolving a job's target in the CURRENT snapshot (SPEC §7: queued jobs
//! name targets by id and render with the config current at delivery
//! time), and the delivery options that apply to it, borrowed from the
//! snapshot (compiled once there, never copied per job).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{
    self, Action, Config, Ordering, Rate, RetryPolicy, Subscription, Workflow, WorkflowMode,
};
use crate::deliver::sign;
use crate::model::{NewJob, StepResponse, Target};
use crate::runtime::{ApiTarget, Snapshot};
use crate::send::Trust;

/// What a job delivers to, as the current config defines it.
#[derive(Clone)]
pub enum Resolved {
    /// Step `index` of `workflow`, running `action`.
    Step {
        workflow: Arc<Workflow>,
        index: usize,
        action: Arc<Action>,
    },
    /// A YAML subscription.
    Subscription(Arc<Subscription>),
    /// A subscription created through the API (untrusted).
    Api(Arc<ApiTarget>),
}

/// The delivery options of a resolved target, borrowed from the snapshot
/// (API subscriptions have theirs compiled there: a 30s timeout, the default
/// retry schedule, Standard Webhooks signing with their own secrets).
pub struct Opts<'a> {
    pub timeout: Duration,
    pub retry: &'a RetryPolicy,
    pub signing: Option<&'a sign::Signing>,
    pub rate_limit: Option<Rate>,
    pub max_in_flight: Option<u32>,
    pub paused: bool,
    pub trust: Trust,
    /// `auth:` (YAML targets only).
    pub auth: Option<&'a config::OutboundAuth>,
    /// `tls:` and `proxy:` (YAML targets only).
    pub transport: Option<&'a config::Transport>,
}

fn from_options(d: &config::DeliveryOptions, trust: Trust) -> Opts<'_> {
    Opts {
        timeout: d.timeout,
        retry: &d.retry,
        signing: d.signing.as_ref().map(|s| &s.keys),
        rate_limit: d.rate_limit,
        max_in_flight: d.max_in_flight,
        paused: d.paused,
        trust,
        auth: d.auth.as_ref(),
        transport: d.transport.as_deref(),
    }
}

impl Resolved {
    pub fn opts(&self) -> Opts<'_> {
        match self {
            Resolved::Step { action, .. } => from_options(&action.delivery, Trust::Config),
            Resolved::Subscription(s) => from_options(&s.delivery, Trust::Config),
            Resolved::Api(a) => from_options(&a.delivery, Trust::Api),
        }
    }

    /// A step of a `mode: test` workflow: render and record, send nothing.
    pub fn test_mode(&self) -> bool {
        matches!(self, Resolved::Step { workflow, .. } if workflow.mode == WorkflowMode::Test)
    }
}

/// The job's target in `snapshot`, or `None` when it no longer exists (a
/// removed subscription, workflow or step, or a disabled workflow).
pub fn resolve(snapshot: &Snapshot, target: &Target) -> Option<Resolved> {
    let config = &snapshot.config;
    match target {
        Target::Subscription { id } => {
            if let Some(s) = config.subscription(id) {
                return Some(Resolved::Subscription(Arc::clone(s)));
            }
            snapshot
                .api_subscription(id)
                .map(|a| Resolved::Api(Arc::clone(a)))
        }
        Target::WorkflowStep {
            workflow,
            step,
            action,
        } => {
            let wf = config.workflow(workflow)?;
            if wf.mode == WorkflowMode::Disabled {
                return None;
            }
            // Same index and action, else the action wherever it moved.
            let index = match wf.steps.get(*step) {
                Some(s) if &s.action.id == action => *step,
                _ => wf.steps.iter().position(|s| &s.action.id == action)?,
            };
            Some(Resolved::Step {
                workflow: Arc::clone(wf),
                index,
                action: Arc::clone(&wf.steps[index].action),
            })
        }
    }
}

/// The job of the step after `index` in the workflow's current definition
/// (`None` at the end of the chain), seeing `steps`. It is for the same
/// event as `done`, the job of the step just made, and keeps its trace
/// context (its attempts are children of the same inbound span).
pub fn next_step(
    config: &Config,
    workflow_id: &str,
    action_id: &str,
    done: &NewJob,
    steps: BTreeMap<String, StepResponse>,
) -> Option<NewJob> {
    let wf = config.workflow(workflow_id)?;
    let i = wf.steps.iter().position(|s| s.action.id == action_id)?;
    let next = wf.steps.get(i + 1)?;
    let target = Target::WorkflowStep {
        workflow: wf.id.clone(),
        step: i + 1,
        action: next.action.id.clone(),
    };
    Some(NewJob {
        delivery_id: ulid::Ulid::new().to_string(),
        event_id: done.event_id.clone(),
        ordering_key: (next.action.delivery.ordering == Ordering::Fifo).then(|| target.label()),
        target,
        steps,
        not_before: None,
        traceparent: done.traceparent.clone(),
        fifo_later: wf.steps[i + 2..]
            .iter()
            .any(|s| s.action.delivery.ordering == Ordering::Fifo),
    })
}
