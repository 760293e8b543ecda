//! `hookyard health URL`: one GET, exit 0 on a 2xx answer, 1 otherwise.
//!
//! It exists for the container image's `HEALTHCHECK`: the runtime image has
//! no curl or wget, and the binary is already there. Docker reads a health
//! command's exit code as 0 healthy, 1 unhealthy (2 is reserved), so every
//! failed check, a malformed URL included, exits 1 with one line on stderr
//! (only clap's usage errors, such as a bad `--timeout`, exit 2).
//!
//! Deliberately not `send::Sender`: the egress policy that keeps deliveries
//! off internal addresses would refuse the loopback address this command
//! exists to reach. A plain client, no proxy (`HTTP_PROXY` in a container's
//! environment must not reroute a probe of itself), no redirects (a
//! redirect is not a 2xx), one total timeout.

use std::process::ExitCode;
use std::time::Duration;

/// At most this much of a failing answer's body goes into the reason: the
/// daemon's `/readyz` says why it is not ready in a short JSON body.
const BODY_SHOWN: usize = 200;

/// `url` without a user or password, for messages.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Run the check and print the reason for a failure to stderr.
pub fn check(url: &str, timeout: Duration) -> ExitCode {
    match probe(url, timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("hookyard health: {}: {reason}", shown(url));
            ExitCode::from(1)
        }
    }
}

/// `Ok` on a 2xx answer within `timeout`; otherwise a one-line reason.
fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "scheme `{}` is not supported; give an http:// or https:// URL",
            parsed.scheme()
        ));
    }
    // reqwest is built with `rustls-no-provider`: install `ring` before the
    // client is built, as `send` does for the daemon (Err = already there).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("hookyard-health/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            format!(
                "cannot build the HTTP client: {}",
                hookyard::send::error_chain(&e)
            )
        })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    rt.block_on(async {
        let response = client
            .get(parsed)
            .send()
            .await
            .map_err(|e| failure(e, timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // The body is only a hint; a timeout while reading it still fails
        // the check on the status alone.
        let body = response.text().await.unwrap_or_default();
        let hint: String = body
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(BODY_SHOWN)
            .collect();
        if hint.is_empty() {
            Err(format!("answered {status}"))
        } else {
            Err(format!("answered {status}: {hint}"))
        }
    })
}

/// A request error as the operator needs it: what failed, on one line.
fn failure(err: reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        format!(
            "no answer within {} (raise --timeout if the daemon is slow, \
             or check that it is running)",
            humantime::format_duration(timeout)
        )
    } else if err.is_connect() {
        format!(
            "cannot connect ({}); is hookyard running and listening there?",
            hookyard::send::error_chain(&err.without_url())
        )
    } else {
        format!(
            "request failed ({})",
            hookyard::send::error_chain(&err.without_url())
        )
    }
}
