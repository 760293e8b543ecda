//! Settings a reload cannot change (SPEC §7, §11 "reload says what it
//! cannot change").
//!
//! The listeners, the queue backend (opened once with its lease, prefix
//! and history limits), the shutdown timings, the file watcher and the
//! trace exporter are set up from the config at start. A reload swaps the config in, but these
//! keep their start values, so a reload that changes them would look
//! applied while nothing changed. [`restart_changes`] names each such
//! setting; the reloader logs one warning per name.
//!
//! Settings that are read from the current config on every request or
//! delivery apply at once and are not listed: `server.max_body`,
//! `server.trusted_proxies` and `history.response_body_limit`.

use super::Config;

/// The start-only settings that differ between `old` and `new`, as the
/// user writes them (`server.listen`, `history.retention`), in config
/// order. Pure: compares values, reads nothing else.
pub fn restart_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out: Vec<&'static str> = Vec::new();
    let mut changed = |name: &'static str, differs: bool| {
        if differs {
            out.push(name);
        }
    };
    let (o, n) = (&old.server, &new.server);
    changed("server.listen", o.listen != n.listen);
    changed("server.api_listen", o.api_listen != n.api_listen);
    changed(
        "server.metrics_listen",
        o.metrics_listen != n.metrics_listen,
    );
    changed(
        "server.shutdown_grace",
        o.shutdown_grace != n.shutdown_grace,
    );
    changed(
        "server.shutdown_delay",
        o.shutdown_delay != n.shutdown_delay,
    );
    // The connection limits are handed to the listeners when they start.
    changed(
        "server.header_timeout",
        o.header_timeout != n.header_timeout,
    );
    changed("server.body_timeout", o.body_timeout != n.body_timeout);
    changed("server.idle_timeout", o.idle_timeout != n.idle_timeout);
    changed(
        "server.max_connections",
        o.max_connections != n.max_connections,
    );
    let (o, n) = (&old.queue, &new.queue);
    changed("queue.backend", o.backend != n.backend);
    changed("queue.path", o.path != n.path);
    // Names only, never values: a Redis URL may hold a password.
    changed("queue.url", o.url != n.url);
    changed("queue.prefix", o.prefix != n.prefix);
    changed("queue.lease", o.lease != n.lease);
    changed("queue.allow_eviction", o.allow_eviction != n.allow_eviction);
    changed("queue.replicas_ack", o.replicas_ack != n.replicas_ack);
    changed(
        "queue.replicas_ack_timeout",
        o.replicas_ack_timeout != n.replicas_ack_timeout,
    );
    changed("queue.partitions", o.partitions != n.partitions);
    let (o, n) = (&old.history, &new.history);
    changed("history.retention", o.retention != n.retention);
    changed("history.max_events", o.max_events != n.max_events);
    changed(
        "idempotency.window",
        old.idempotency_window != new.idempotency_window,
    );
    changed("reload.watch", old.reload.watch != new.reload.watch);
    changed(
        "reload.debounce",
        old.reload.debounce != new.reload.debounce,
    );
    // The exporter is built once, at start.
    changed("telemetry.otlp", old.telemetry != new.telemetry);
    out.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{LoadOptions, load_str};

    fn config(text: &str) -> Config {
        let opts = LoadOptions {
            no_env: false,
            env: Some(Default::default()),
        };
        load_str(text, Path::new("c.yaml"), opts).unwrap()
    }

    const BASE: &str = "server: { listen: \"127.0.0.1:8080\", max_body: 1MiB }\n\
        queue: { backend: embedded, path: ./data, lease: 60s }\n\
        history: { retention: 7d, max_events: 1000, response_body_limit: 4KiB }\n\
        idempotency: { window: 24h }\n";

    #[test]
    fn the_same_settings_need_no_restart() {
        assert!(restart_changes(&config(BASE), &config(BASE)).is_empty());
    }

    #[test]
    fn each_start_only_setting_is_named() {
        let new = "server: { listen: \"127.0.0.1:9090\", max_body: 1MiB, shutdown_grace: 5s,\
                     header_timeout: 5s, max_connections: 10 }\n\
            queue: { backend: embedded, path: ./other, lease: 90s }\n\
            history: { retention: 1d, max_events: 1000, response_body_limit: 4KiB }\n\
            idempotency: { window: 1h }\n\
            reload: { debounce: 1s }\n\
            telemetry: { otlp: { endpoint: \"http://127.0.0.1:4318\" } }\n";
        assert_eq!(
            restart_changes(&config(BASE), &config(new)),
            [
                "server.listen",
                "server.shutdown_grace",
                "server.header_timeout",
                "server.max_connections",
                "queue.path",
                "queue.lease",
                "history.retention",
                "idempotency.window",
                "reload.debounce",
                "telemetry.otlp",
            ]
        );
    }

    #[test]
    fn settings_read_per_request_apply_without_restart() {
        let new = "server: { listen: \"127.0.0.1:8080\", max_body: 2MiB, trusted_proxies: [\"10.0.0.0/8\"] }\n\
            queue: { backend: embedded, path: ./data, lease: 60s }\n\
            history: { retention: 7d, max_events: 1000, response_body_limit: 8KiB }\n\
            idempotency: { window: 24h }\n";
        assert!(restart_changes(&config(BASE), &config(new)).is_empty());
    }

    #[test]
    fn a_new_redis_url_is_named_not_shown() {
        let old = "queue: { backend: redis, url: \"redis://:pw1@127.0.0.1:6379/0\" }\n";
        let new = "queue: { backend: redis, url: \"redis://:pw2@127.0.0.1:6379/0\" }\n";
        let changes = restart_changes(&config(old), &config(new));
        assert_eq!(changes, ["queue.url"]);
    }
}
