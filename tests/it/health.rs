//! `hookyard health URL` (the container image's HEALTHCHECK), run as the
//! real binary against a real daemon on loopback: exit 0 on a 2xx answer,
//! exit 1 with a one-line reason on stderr for anything else.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::time::{Duration, Instant};

use crate::support::{free_port, start_daemon};

/// Run `hookyard health ARGS…`; (exit code, stderr). Async, because the
/// daemon under test runs on this test's runtime and must keep answering.
async fn health(args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .arg("health")
        .args(args)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap(), stderr)
}

#[tokio::test]
async fn ready_daemon_is_healthy_and_draining_one_is_not() {
    let d = start_daemon("server: { listen: \"127.0.0.1:0\", shutdown_delay: 3s }\n").await;
    let (code, stderr) = health(&[&d.url("/readyz")]).await;
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(
        stderr.is_empty(),
        "a healthy check prints nothing: {stderr}"
    );

    // Shutdown begun: /readyz answers 503 during shutdown_delay.
    d.shutdown.cancel();
    let (code, stderr) = health(&[&d.url("/readyz")]).await;
    assert_eq!(code, 1, "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("503"), "{stderr}");
    assert!(
        stderr.contains("shutting down"),
        "names the reason: {stderr}"
    );
    d.stop().await;
}

#[tokio::test]
async fn closed_port_is_unhealthy_with_a_clear_message() {
    let url = format!("http://127.0.0.1:{}/readyz", free_port());
    let (code, stderr) = health(&[&url]).await;
    assert_eq!(code, 1, "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(&url), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
}

#[tokio::test]
async fn silent_server_is_unhealthy_after_the_timeout() {
    // Accepts connections (the kernel does, from the backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/readyz", silent.local_addr().unwrap());
    let started = Instant::now();
    let (code, stderr) = health(&["--timeout", "300ms", &url]).await;
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(stderr.contains("no answer within 300ms"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout bounds the check: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn not_a_url_is_unhealthy_not_a_usage_error() {
    // Docker reserves exit code 2 of a health command; a typo must read as
    // unhealthy with the reason, not as "reserved".
    let (code, stderr) = health(&["127.0.0.1:8080/readyz"]).await;
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(stderr.contains("not a URL"), "{stderr}");
}
