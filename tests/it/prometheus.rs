//! A real Prometheus server (Debian package `prometheus`) scrapes the
//! daemon: its target must be `up` with no scrape error, and every query of
//! the shipped Grafana dashboard must be valid PromQL, the ones over series
//! that exist without traffic (config reloads, queue depth, build info)
//! returning data. Skipped with a message when `prometheus` is not on PATH,
//! except in CI (`CI=true`), where it is required.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::admin_support::*;
use crate::support::http;

fn prometheus_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// Every `expr` of the dashboard, with Grafana's variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/grafana/hookyard.json"
    );
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m");
            out.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    out
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_daemon_and_the_dashboard_queries_work() {
    let Some(bin) = prometheus_binary() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("`prometheus` must be on PATH in CI (apt-get install prometheus)");
        }
        eprintln!("SKIPPED: `prometheus` is not on PATH (apt-get install prometheus)");
        return;
    };
    let unwatched = "reload: { watch: false }";
    let d = start("", unwatched).await;
    // One failed reload so the failure series exists.
    let path = config_path(&d);
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{good}\nbogus_key: 1\n")).unwrap();
    let r = authed(http().post(d.url("/v1/admin/reload")), &token("operator"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    std::fs::write(&path, good).unwrap();

    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = work.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n  - job_name: hookyard\n    static_configs:\n      - targets: [\"{}\"]\n",
            d.addr
        ),
    )
    .unwrap();
    let log = work.path().join("prometheus.log");
    let child = std::process::Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Killed (by its id) however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(child);
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let client = http();
    let prom_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{api}/targets")).send().await {
            if let v @ Value::Object(_) = body_json(r).await {
                let t = &v["data"]["activeTargets"][0];
                if t["health"] == "up" && t["lastError"] == "" {
                    break;
                }
                last = v;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "target never up without error: {last}\n{}",
            prom_log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let query = |expr: String| {
        let client = client.clone();
        let api = api.clone();
        async move {
            let url =
                url::Url::parse_with_params(&format!("{api}/query"), [("query", expr.as_str())])
                    .unwrap();
            body_json(client.get(url).send().await.unwrap()).await
        }
    };
    let must_have_data = [
        "hookyard_config_reloads_total",
        "hookyard_config_last_reload_success_timestamp_seconds",
        "hookyard_queue_depth",
        "hookyard_queue_oldest_age_seconds",
        "hookyard_build_info",
    ];
    let queries = dashboard_queries();
    assert!(queries.len() >= 12, "{queries:?}");
    for (title, expr) in queries {
        let needs_data = must_have_data.iter().any(|m| expr.contains(m));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v = query(expr.clone()).await;
            assert_eq!(v["status"], "success", "{title}: {expr}: {v}");
            let has = v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
            if has || !needs_data {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{title}: {expr} returned no data: {v}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let v = query("hookyard_config_reloads_total{result=\"failure\"}".to_owned()).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
    d.stop().await;
}
