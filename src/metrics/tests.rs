//! Known-answer tests of the metrics: record values, then assert exact
//! lines of the encoded text (names, `_total`, labels, buckets, HELP).

use super::*;
use crate::model::QueueStats;

/// Asserts that `text` has `line` as one whole line.
#[track_caller]
fn has_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line {line:?} in:\n{text}"
    );
}

#[track_caller]
fn lacks_prefix(text: &str, prefix: &str) {
    assert!(
        !text.lines().any(|l| l.starts_with(prefix)),
        "unexpected line starting {prefix:?} in:\n{text}"
    );
}

#[test]
fn every_family_has_help_type_and_prefix() {
    // Families without a series are left out of the output, so give
    // every labelled family one.
    let m = Metrics::new();
    m.inbound_request(Some("t"), 202);
    m.event_ingested("trigger:t", "x", true);
    m.delivery_outcome("subscription/a", Outcome::Success);
    m.attempt_duration("subscription/a", 0.1);
    m.circuit("subscription/a", false);
    m.template_missing("subscription/a");
    let mut stats = QueueStats::default();
    stats.pending_by_target.insert("subscription/a".into(), 1);
    m.observe_queue(&stats, 0);
    let text = m.encode();
    let families = [
        ("hookyard_inbound_requests", "counter"),
        ("hookyard_events_ingested", "counter"),
        ("hookyard_deliveries", "counter"),
        ("hookyard_delivery_attempt_duration_seconds", "histogram"),
        ("hookyard_end_to_end_latency_seconds", "histogram"),
        ("hookyard_queue_depth", "gauge"),
        ("hookyard_queue_oldest_age_seconds", "gauge"),
        ("hookyard_target_pending", "gauge"),
        ("hookyard_circuit_open", "gauge"),
        ("hookyard_template_missing", "counter"),
        ("hookyard_config_reloads", "counter"),
        (
            "hookyard_config_last_reload_success_timestamp_seconds",
            "gauge",
        ),
        ("hookyard_queue_resets", "counter"),
        ("hookyard_queue_unsafe", "gauge"),
        // OpenMetrics names the info family without `_info`; its
        // sample (and the Prometheus series) is `hookyard_build_info`.
        ("hookyard_build", "info"),
    ];
    for (name, kind) in families {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} "))),
            "no HELP for {name} in:\n{text}"
        );
        has_line(&text, &format!("# TYPE {name} {kind}"));
    }
    let declared = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(declared, families.len(), "unexpected extra family:\n{text}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("hookyard_"), "unprefixed line {line:?}");
    }
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn fresh_registry_exports_known_series_at_zero() {
    let text = Metrics::new().encode();
    for state in ["ready", "delayed", "in_flight", "dead_letter"] {
        has_line(
            &text,
            &format!("hookyard_queue_depth{{state=\"{state}\"}} 0"),
        );
    }
    has_line(&text, "hookyard_config_reloads_total{result=\"success\"} 0");
    has_line(&text, "hookyard_config_reloads_total{result=\"failure\"} 0");
    has_line(&text, "hookyard_queue_resets_total 0");
    has_line(
        &text,
        &format!(
            "hookyard_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    );
}

#[test]
fn inbound_requests_count_by_trigger_and_status_with_unknown_bucket() {
    let m = Metrics::new();
    m.inbound_request(Some("github"), 202);
    m.inbound_request(Some("github"), 202);
    m.inbound_request(Some("github"), 401);
    m.inbound_request(None, 404);
    let text = m.encode();
    has_line(
        &text,
        "hookyard_inbound_requests_total{trigger=\"github\",status=\"202\"} 2",
    );
    has_line(
        &text,
        "hookyard_inbound_requests_total{trigger=\"github\",status=\"401\"} 1",
    );
    has_line(
        &text,
        "hookyard_inbound_requests_total{trigger=\"_unknown\",status=\"404\"} 1",
    );
}

#[test]
fn undeclared_event_types_share_one_series() {
    let m = Metrics::new();
    m.event_ingested("trigger:github", "push", true);
    m.event_ingested("api:app", "whatever.1", false);
    m.event_ingested("api:app", "whatever.2", false);
    let text = m.encode();
    has_line(
        &text,
        "hookyard_events_ingested_total{source=\"trigger:github\",type=\"push\"} 1",
    );
    has_line(
        &text,
        "hookyard_events_ingested_total{source=\"api:app\",type=\"_undeclared\"} 2",
    );
    assert!(!text.contains("whatever"));
}

#[test]
fn delivery_outcomes_use_spec_label_values() {
    let m = Metrics::new();
    let target = "subscription/crm";
    m.delivery_outcome(target, Outcome::Success);
    m.delivery_outcome(target, Outcome::Retry);
    m.delivery_outcome(target, Outcome::Retry);
    m.delivery_outcome(target, Outcome::DeadLetter);
    m.delivery_outcome(target, Outcome::Test);
    let text = m.encode();
    for (outcome, n) in [
        ("success", 1),
        ("retry", 2),
        ("dead_letter", 1),
        ("test", 1),
    ] {
        has_line(
            &text,
            &format!("hookyard_deliveries_total{{target=\"{target}\",outcome=\"{outcome}\"}} {n}"),
        );
    }
}

#[test]
fn attempt_duration_histogram_buckets_count_and_sum() {
    let m = Metrics::new();
    m.attempt_duration("workflow/w/a", 0.003);
    m.attempt_duration("workflow/w/a", 0.2);
    m.attempt_duration("workflow/w/a", 45.0);
    let text = m.encode();
    let series = "hookyard_delivery_attempt_duration_seconds";
    let t = "target=\"workflow/w/a\"";
    has_line(&text, &format!("{series}_bucket{{le=\"0.005\",{t}}} 1"));
    has_line(&text, &format!("{series}_bucket{{le=\"0.1\",{t}}} 1"));
    has_line(&text, &format!("{series}_bucket{{le=\"0.25\",{t}}} 2"));
    has_line(&text, &format!("{series}_bucket{{le=\"30.0\",{t}}} 2"));
    has_line(&text, &format!("{series}_bucket{{le=\"+Inf\",{t}}} 3"));
    has_line(&text, &format!("{series}_count{{{t}}} 3"));
    has_line(&text, &format!("{series}_sum{{{t}}} 45.203"));
    let buckets = text
        .lines()
        .filter(|l| l.starts_with(&format!("{series}_bucket")))
        .count();
    assert_eq!(buckets, ATTEMPT_BUCKETS.len() + 1);
}

#[test]
fn end_to_end_histogram_resolves_below_50ms() {
    let m = Metrics::new();
    m.end_to_end(0.004);
    m.end_to_end(0.04);
    m.end_to_end(7200.0);
    let text = m.encode();
    let series = "hookyard_end_to_end_latency_seconds";
    has_line(&text, &format!("{series}_bucket{{le=\"0.005\"}} 1"));
    has_line(&text, &format!("{series}_bucket{{le=\"0.025\"}} 1"));
    has_line(&text, &format!("{series}_bucket{{le=\"0.05\"}} 2"));
    has_line(&text, &format!("{series}_bucket{{le=\"3600.0\"}} 2"));
    has_line(&text, &format!("{series}_bucket{{le=\"+Inf\"}} 3"));
    has_line(&text, &format!("{series}_count 3"));
}

#[test]
fn observe_queue_sets_gauges_and_drops_drained_targets() {
    let m = Metrics::new();
    let mut stats = QueueStats {
        ready: 5,
        delayed: 2,
        in_flight: 1,
        dead_letter: 7,
        oldest_age_seconds: 12.5,
        ..QueueStats::default()
    };
    stats.pending_by_target.insert("subscription/a".into(), 6);
    stats.pending_by_target.insert("subscription/b".into(), 2);
    m.observe_queue(&stats, 1);
    let text = m.encode();
    has_line(&text, "hookyard_queue_depth{state=\"ready\"} 5");
    has_line(&text, "hookyard_queue_depth{state=\"delayed\"} 2");
    has_line(&text, "hookyard_queue_depth{state=\"in_flight\"} 1");
    has_line(&text, "hookyard_queue_depth{state=\"dead_letter\"} 7");
    has_line(&text, "hookyard_queue_oldest_age_seconds 12.5");
    has_line(
        &text,
        "hookyard_target_pending{target=\"subscription/a\"} 6",
    );
    has_line(
        &text,
        "hookyard_target_pending{target=\"subscription/b\"} 2",
    );
    has_line(&text, "hookyard_queue_resets_total 1");

    stats.pending_by_target.remove("subscription/a");
    stats.pending_by_target.insert("subscription/b".into(), 1);
    stats.ready = 0;
    m.observe_queue(&stats, 3);
    let text = m.encode();
    has_line(&text, "hookyard_queue_depth{state=\"ready\"} 0");
    lacks_prefix(&text, "hookyard_target_pending{target=\"subscription/a\"}");
    has_line(
        &text,
        "hookyard_target_pending{target=\"subscription/b\"} 1",
    );
    has_line(&text, "hookyard_queue_resets_total 3");

    // The backend's count never makes the counter go backwards.
    m.observe_queue(&stats, 2);
    has_line(&m.encode(), "hookyard_queue_resets_total 3");
}

#[test]
fn circuit_gauge_flips_and_forget_target_removes_it() {
    let m = Metrics::new();
    assert!(!m.circuit_open("subscription/a"), "closed until it opens");
    m.circuit("subscription/a", true);
    assert!(m.circuit_open("subscription/a"));
    assert!(!m.circuit_open("subscription/b"));
    has_line(
        &m.encode(),
        "hookyard_circuit_open{target=\"subscription/a\"} 1",
    );
    m.circuit("subscription/a", false);
    assert!(!m.circuit_open("subscription/a"));
    has_line(
        &m.encode(),
        "hookyard_circuit_open{target=\"subscription/a\"} 0",
    );
    m.forget_target("subscription/a");
    lacks_prefix(&m.encode(), "hookyard_circuit_open{");
}

#[test]
fn template_missing_counts_per_target() {
    let m = Metrics::new();
    m.template_missing("subscription/a");
    m.template_missing("subscription/a");
    has_line(
        &m.encode(),
        "hookyard_template_missing_total{target=\"subscription/a\"} 2",
    );
}

#[test]
fn config_reload_counts_results_and_stamps_only_successes() {
    let m = Metrics::new();
    m.config_reload(true, 1_700_000_000);
    m.config_reload(false, 1_700_000_100);
    m.config_reload(false, 1_700_000_200);
    let text = m.encode();
    has_line(&text, "hookyard_config_reloads_total{result=\"success\"} 1");
    has_line(&text, "hookyard_config_reloads_total{result=\"failure\"} 2");
    has_line(
        &text,
        "hookyard_config_last_reload_success_timestamp_seconds 1700000000",
    );
}

#[test]
fn clones_share_one_registry() {
    let m = Metrics::new();
    let clone = m.clone();
    clone.template_missing("subscription/x");
    has_line(
        &m.encode(),
        "hookyard_template_missing_total{target=\"subscription/x\"} 1",
    );
}

#[test]
fn accept_header_selects_the_format() {
    let m = Metrics::new();
    m.inbound_request(Some("t"), 202);
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (ct, body) = m.encode_for_accept(Some(accept));
    assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
    assert!(body.ends_with("# EOF\n"));
    has_line(&body, "# TYPE hookyard_build info");

    let (ct, body) = m.encode_for_accept(None);
    assert_eq!(ct, PROMETHEUS_CONTENT_TYPE);
    assert!(!body.contains("# EOF"));
    has_line(
        &body,
        "hookyard_inbound_requests_total{trigger=\"t\",status=\"202\"} 1",
    );
    has_line(&body, "# TYPE hookyard_inbound_requests_total counter");
}

#[test]
fn queue_unsafe_is_one_per_reason_found_and_zero_otherwise() {
    let m = Metrics::new();
    let text = m.encode_prometheus();
    has_line(&text, "hookyard_queue_unsafe{reason=\"eviction_policy\"} 0");
    has_line(&text, "hookyard_queue_unsafe{reason=\"redis_version\"} 0");
    m.queue_unsafe(&["eviction_policy", "made_up"]);
    let text = m.encode_prometheus();
    has_line(&text, "hookyard_queue_unsafe{reason=\"eviction_policy\"} 1");
    has_line(&text, "hookyard_queue_unsafe{reason=\"redis_version\"} 0");
    lacks_prefix(&text, "hookyard_queue_unsafe{reason=\"made_up\"");
    m.queue_unsafe(&[]);
    has_line(
        &m.encode_prometheus(),
        "hookyard_queue_unsafe{reason=\"eviction_policy\"} 0",
    );
}
