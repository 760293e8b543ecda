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
