//! The daemon starts, answers health checks and serves metrics.

use crate::support::{http, start_daemon};

#[tokio::test]
async fn daemon_starts_ready_and_serves_metrics() {
    let d = start_daemon("server: { listen: \"127.0.0.1:0\" }\n").await;
    let client = http();
    let health = client.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = client.get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("hookyard_build_info"), "{text}");
    assert!(
        text.contains("hookyard_config_reloads_total{result=\"success\"} 1"),
        "{text}"
    );
    d.stop().await;
}

/// SPEC §7: once shutdown begins, `/readyz` is 503 while the listeners keep
/// serving for `server.shutdown_delay`.
#[tokio::test]
async fn readiness_turns_503_when_shutdown_begins() {
    let d = start_daemon("server: { listen: \"127.0.0.1:0\", shutdown_delay: 2s }\n").await;
    d.shutdown.cancel();
    let ready = http().get(d.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(&ready.bytes().await.unwrap()).unwrap();
    assert_eq!(body["reason"], "shutting down", "{body}");
    d.stop().await;
}
