//! Every Prometheus metric of the daemon, defined in one place (SPEC §7).
//!
//! [`Metrics`] owns its own `prometheus_client` [`Registry`] (no global
//! registry, so each test and each in-process daemon has its own numbers)
//! and is a cheap-to-clone handle around an `Arc`. Callers never touch a
//! metric family directly: they call one method per thing that happened
//! (`inbound_request`, `event_ingested`, `delivery_outcome`, …). Those
//! methods are where label values are bounded: unknown triggers become
//! `_unknown` and event types outside the catalog become `_undeclared`, so a
//! stranger posting random paths or types cannot blow up the series count.
//!
//! Gauges that mirror the queue backend (depth per state, oldest age,
//! pending per target, resets) are set together by [`Metrics::observe_queue`]
//! from one [`crate::model::QueueStats`] snapshot, typically taken on a timer or just
//! before a scrape.
//!
//! Output is OpenMetrics text ([`Metrics::encode`], served with
//! [`OPENMETRICS_CONTENT_TYPE`]), which Prometheus scrapes natively; the
//! classic Prometheus text format is available too for plain `curl` users
//! ([`Metrics::encode_for_accept`] picks one from the `Accept` header).
//!
//! Naming: `prometheus_client` appends `_total` to counters, `_info` to info
//! metrics and a `.` to every HELP text, so counters are registered without
//! the suffix and HELP strings here have no final period. In OpenMetrics
//! text a counter family is named without `_total` (`# TYPE
//! hookyard_deliveries counter`, samples `hookyard_deliveries_total{…}`) and
//! the info family without `_info`; Prometheus stores the sample names. A
//! labelled family with no series yet is left out of the output entirely.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Content type of [`Metrics::encode`]'s output. Prometheus asks for it in
/// its `Accept` header and parses `# EOF` correctly when it is served so.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of [`Metrics::encode_prometheus`]'s output (text format
/// 0.0.4), for clients that do not ask for OpenMetrics.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `trigger` label of requests to a path that names no configured trigger.
pub const UNKNOWN_TRIGGER: &str = "_unknown";

/// `type` label of events whose type is not in the event catalog.
pub const UNDECLARED_TYPE: &str = "_undeclared";

/// Every `reason` of `hookyard_queue_unsafe` (SPEC §11): a Redis
/// `maxmemory-policy` other than `noeviction`, a Redis older than 7.0.
pub const QUEUE_UNSAFE_REASONS: [&str; 2] = ["eviction_policy", "redis_version"];

/// Buckets of `hookyard_delivery_attempt_duration_seconds`: one HTTP
/// attempt, from a fast loopback receiver (5 ms) to the longest sensible
/// request timeout (30 s).
const ATTEMPT_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of `hookyard_end_to_end_latency_seconds`: fine below 50 ms (the
/// SPEC §10 p99 target), then wide enough to show deliveries that needed
/// retries spread over minutes or an hour.
const END_TO_END_BUCKETS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// How one delivery attempt ended, the `outcome` label of
/// `hookyard_deliveries_total` (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// 2xx (or whatever the target counts as success).
    Success,
    /// Failed, another attempt is scheduled.
    Retry,
    /// Failed for good: attempts exhausted, permanent error, target removed.
    DeadLetter,
    /// Test mode: the request was recorded, nothing was sent.
    Test,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Retry => "retry",
            Outcome::DeadLetter => "dead_letter",
            Outcome::Test => "test",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InboundLabels {
    trigger: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IngestedLabels {
    source: String,
    r#type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeliveryLabels {
    target: String,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn attempt_histogram() -> Histogram {
    Histogram::new(ATTEMPT_BUCKETS)
}

/// The metric families. Private: every recording goes through a method of
/// [`Metrics`], which is where labels get bounded.
struct Inner {
    registry: Registry,
    inbound_requests: Family<InboundLabels, Counter>,
    events_ingested: Family<IngestedLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    attempt_duration: HistogramFamily<TargetLabels>,
    end_to_end: Histogram,
    queue_depth: Family<StateLabels, Gauge>,
    queue_oldest_age: Gauge<f64, AtomicU64>,
    target_pending: Family<TargetLabels, Gauge>,
    circuit_open: Family<TargetLabels, Gauge>,
    template_missing: Family<TargetLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    config_last_reload_success: Gauge<i64, AtomicI64>,
    queue_resets: Counter,
    queue_unsafe: Family<ReasonLabels, Gauge>,
    /// Targets currently exported by `hookyard_target_pending`, so the next
    /// [`Metrics::observe_queue`] can remove the ones that drained. The lock
    /// also serialises concurrent `observe_queue` calls.
    pending_targets: Mutex<BTreeSet<String>>,
}

/// Handle to all metrics. Clone it freely: clones share the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family of SPEC §7. `hookyard_build_info` carries this
    /// crate's version. Series whose label values are known up front (queue
    /// states, reload results) start at 0 so `rate()` and dashboards see them
    /// before the first event.
    pub fn new() -> Self {
        let mut registry = Registry::default();

        let inbound_requests = Family::<InboundLabels, Counter>::default();
        registry.register(
            "hookyard_inbound_requests",
            "HTTP requests received on /hooks/{trigger}, by trigger (_unknown when no trigger matched) and response status",
            inbound_requests.clone(),
        );
        let events_ingested = Family::<IngestedLabels, Counter>::default();
        registry.register(
            "hookyard_events_ingested",
            "Events durably enqueued, by source and event type (_undeclared when outside the catalog)",
            events_ingested.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "hookyard_deliveries",
            "Delivery attempts by target and outcome (success, retry, dead_letter, test)",
            deliveries.clone(),
        );
        let attempt_duration: HistogramFamily<TargetLabels> =
            Family::new_with_constructor(attempt_histogram);
        registry.register(
            "hookyard_delivery_attempt_duration_seconds",
            "Duration of one outbound HTTP attempt, by target",
            attempt_duration.clone(),
        );
        let end_to_end = Histogram::new(END_TO_END_BUCKETS);
        registry.register(
            "hookyard_end_to_end_latency_seconds",
            "Time from ingestion of an event to its successful delivery",
            end_to_end.clone(),
        );
        let queue_depth = Family::<StateLabels, Gauge>::default();
        registry.register(
            "hookyard_queue_depth",
            "Delivery jobs in the queue by state (ready, delayed, in_flight, dead_letter)",
            queue_depth.clone(),
        );
        let queue_oldest_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "hookyard_queue_oldest_age_seconds",
            "Age of the oldest delivery job not yet finished",
            queue_oldest_age.clone(),
        );
        let target_pending = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "hookyard_target_pending",
            "Jobs waiting (ready, delayed or in flight) per target; targets with none are not listed",
            target_pending.clone(),
        );
        let circuit_open = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "hookyard_circuit_open",
            "1 while the circuit breaker of a target is open, else 0",
            circuit_open.clone(),
        );
        let template_missing = Family::<TargetLabels, Counter>::default();
        registry.register(
            "hookyard_template_missing",
            "Renders that referred to a missing field, by target",
            template_missing.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "hookyard_config_reloads",
            "Config loads by result (success, failure); the first load at start counts",
            config_reloads.clone(),
        );
        let config_last_reload_success = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "hookyard_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load",
            config_last_reload_success.clone(),
        );
        let queue_resets = Counter::default();
        registry.register(
            "hookyard_queue_resets",
            "Times the queue backend was found emptied under the daemon (e.g. Redis restarted without persistence)",
            queue_resets.clone(),
        );
        let queue_unsafe = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "hookyard_queue_unsafe",
            "1 while the Redis queue runs with a setting that can lose data (reason: eviction_policy, redis_version); new events are refused meanwhile unless queue.allow_eviction is true",
            queue_unsafe.clone(),
        );
        registry.register(
            "hookyard_build",
            "Build information; the value is always 1",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
        );

        for state in ["ready", "delayed", "in_flight", "dead_letter"] {
            let _ = queue_depth.get_or_create(&StateLabels { state });
        }
        for result in ["success", "failure"] {
            let _ = config_reloads.get_or_create(&ResultLabels { result });
        }
        for reason in QUEUE_UNSAFE_REASONS {
            let _ = queue_unsafe.get_or_create(&ReasonLabels { reason });
        }

        Metrics {
            inner: Arc::new(Inner {
                registry,
                inbound_requests,
                events_ingested,
                deliveries,
                attempt_duration,
                end_to_end,
                queue_depth,
                queue_oldest_age,
                target_pending,
                circuit_open,
                template_missing,
                config_reloads,
                config_last_reload_success,
                queue_resets,
                queue_unsafe,
                pending_targets: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// One request on `/hooks/{trigger}` answered with `status`. `trigger` is
    /// the configured trigger id, or `None` when the path matched none.
    pub fn inbound_request(&self, trigger: Option<&str>, status: u16) {
        let labels = InboundLabels {
            trigger: trigger.unwrap_or(UNKNOWN_TRIGGER).to_string(),
            status,
        };
        self.inner.inbound_requests.get_or_create(&labels).inc();
    }

    /// One event durably enqueued. `source` is `trigger:<id>` or
    /// `api:<token name>`; `declared` says whether `event_type` is in the
    /// event catalog (if not, it is counted as `_undeclared`).
    pub fn event_ingested(&self, source: &str, event_type: &str, declared: bool) {
        let labels = IngestedLabels {
            source: source.to_string(),
            r#type: if declared {
                event_type
            } else {
                UNDECLARED_TYPE
            }
            .to_string(),
        };
        self.inner.events_ingested.get_or_create(&labels).inc();
    }

    /// One delivery attempt for `target` (a `Target::label()`) ended so.
    pub fn delivery_outcome(&self, target: &str, outcome: Outcome) {
        let labels = DeliveryLabels {
            target: target.to_string(),
            outcome,
        };
        self.inner.deliveries.get_or_create(&labels).inc();
    }

    /// One HTTP attempt to `target` took `secs` seconds (response or error).
    pub fn attempt_duration(&self, target: &str, secs: f64) {
        let labels = TargetLabels {
            target: target.to_string(),
        };
        self.inner
            .attempt_duration
            .get_or_create(&labels)
            .observe(secs);
    }

    /// A delivery succeeded `secs` seconds after its event was ingested.
    pub fn end_to_end(&self, secs: f64) {
        self.inner.end_to_end.observe(secs);
    }

    /// The circuit breaker of `target` opened (`true`) or closed (`false`).
    pub fn circuit(&self, target: &str, open: bool) {
        let labels = TargetLabels {
            target: target.to_string(),
        };
        self.inner
            .circuit_open
            .get_or_create(&labels)
            .set(i64::from(open));
    }

    /// Whether this process's circuit breaker of `target` is open, as the
    /// `hookyard_circuit_open` gauge says (the console shows it).
    pub fn circuit_open(&self, target: &str) -> bool {
        let labels = TargetLabels {
            target: target.to_string(),
        };
        self.inner
            .circuit_open
            .get(&labels)
            .is_some_and(|g| g.get() > 0)
    }

    /// A render for `target` referred to a missing field.
    pub fn template_missing(&self, target: &str) {
        let labels = TargetLabels {
            target: target.to_string(),
        };
        self.inner.template_missing.get_or_create(&labels).inc();
    }

    /// A config load (the first one at start, or a reload) finished. On
    /// success the last-success timestamp becomes `now_unix` (seconds).
    pub fn config_reload(&self, ok: bool, now_unix: i64) {
        let result = if ok { "success" } else { "failure" };
        self.inner
            .config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
        if ok {
            self.inner.config_last_reload_success.set(now_unix);
        }
    }

    /// A target left the config (e.g. an API subscription was deleted): drop
    /// its `hookyard_circuit_open` series so gauges of gone targets do not
    /// linger. Counters and histograms keep their series (Prometheus handles
    /// counters that stop moving; removing them would lose the last increase).
    pub fn forget_target(&self, target: &str) {
        let labels = TargetLabels {
            target: target.to_string(),
        };
        self.inner.circuit_open.remove(&labels);
    }

    /// The whole registry as OpenMetrics text, ending with `# EOF`. Serve it
    /// with [`OPENMETRICS_CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; an Err could only come from a
        // label encoder, and ours only write strings and integers.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// The whole registry in the Prometheus text format 0.0.4. Serve it with
    /// [`PROMETHEUS_CONTENT_TYPE`].
    pub fn encode_prometheus(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let _ =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry);
        out
    }

    /// Content negotiation for `GET /metrics`: OpenMetrics when the client's
    /// `Accept` header names it (Prometheus does), else the classic text
    /// format. Returns `(content type, body)`.
    pub fn encode_for_accept(&self, accept: Option<&str>) -> (&'static str, String) {
        let wants_openmetrics =
            accept.is_some_and(|value| value.contains("application/openmetrics-text"));
        if wants_openmetrics {
            (OPENMETRICS_CONTENT_TYPE, self.encode())
        } else {
            (PROMETHEUS_CONTENT_TYPE, self.encode_prometheus())
        }
    }
}

/// Queue counts are u64; gauges are i64. Counts above i64::MAX cannot occur
/// in practice, but clamp rather than wrap to a negative number.
fn saturating_i64(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

mod queue;
#[cfg(test)]
mod tests;
