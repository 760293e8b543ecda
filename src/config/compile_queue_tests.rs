//! `queue:` at config load: Sentinel and Cluster URLs, `replicas_ack` and
//! `partitions` (SPEC §16).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use crate::config::{LoadOptions, load_str};

fn load(yaml: &str) -> Result<crate::config::Config, String> {
    let options = LoadOptions {
        no_env: false,
        env: Some(Default::default()),
    };
    load_str(yaml, Path::new("c.yaml"), options).map_err(|e| e.to_string())
}

fn redis(extra: &str) -> String {
    format!("queue: {{ backend: redis, url: \"redis://127.0.0.1:6379\"{extra} }}\n")
}

#[test]
fn a_sentinel_url_loads() {
    let url = "redis+sentinel://app:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/2";
    let yaml = format!("queue: {{ backend: redis, url: \"{url}\" }}\n");
    assert_eq!(load(&yaml).unwrap().queue.url, url);
}

#[test]
fn a_bad_queue_url_is_named_without_its_password() {
    for (url, says) in [
        ("redis+sentinel://:hunter2@s1:26379", "names no master"),
        ("redis+sentinel://:hunter2@s1:x/m", "no valid port"),
        ("redis+sentinel://:hunter2@s1/m/db", "not a number"),
        ("http://:hunter2@s1:6379", "must start with redis://"),
    ] {
        let yaml = format!("queue: {{ backend: redis, url: \"{url}\" }}\n");
        let err = load(&yaml).unwrap_err();
        assert!(
            err.contains("c.yaml:1:") && err.contains("queue.url") && err.contains(says),
            "{url}: {err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}

#[test]
fn replicas_ack_defaults_to_none_within_a_second() {
    let q = load(&redis("")).unwrap().queue;
    assert_eq!(q.replicas_ack, 0);
    assert_eq!(q.replicas_ack_timeout, Duration::from_secs(1));
    let q = load(&redis(", replicas_ack: 2, replicas_ack_timeout: 250ms"))
        .unwrap()
        .queue;
    assert_eq!(q.replicas_ack, 2);
    assert_eq!(q.replicas_ack_timeout, Duration::from_millis(250));
}

#[test]
fn replicas_ack_timeout_is_from_1ms_to_2s() {
    for bad in ["0s", "0ms", "3s"] {
        let err = load(&redis(&format!(
            ", replicas_ack: 1, replicas_ack_timeout: {bad}"
        )))
        .unwrap_err();
        assert!(
            err.contains("queue.replicas_ack_timeout must be from 1ms to 2s"),
            "{bad}: {err}"
        );
    }
    assert!(load(&redis(", replicas_ack: 1, replicas_ack_timeout: 2s")).is_ok());
    assert!(load(&redis(", replicas_ack: 1, replicas_ack_timeout: 1ms")).is_ok());
}

#[test]
fn replicas_ack_is_an_error_on_the_embedded_queue() {
    for key in ["replicas_ack: 1", "replicas_ack_timeout: 1s"] {
        let yaml = format!("queue: {{ backend: embedded, {key} }}\n");
        let err = load(&yaml).unwrap_err();
        assert!(
            err.contains("c.yaml:1:")
                && err.contains("is for `backend: redis`")
                && err.contains("no replicas"),
            "{key}: {err}"
        );
    }
}

fn cluster(extra: &str) -> String {
    format!(
        "queue: {{ backend: redis, url: \"redis+cluster://127.0.0.1:7001,127.0.0.1:7002\"{extra} }}\n"
    )
}

#[test]
fn a_cluster_has_16_partitions_unless_told_and_one_server_has_one() {
    assert_eq!(load(&cluster("")).unwrap().queue.partitions, 16);
    assert_eq!(
        load(&cluster(", partitions: 3")).unwrap().queue.partitions,
        3
    );
    assert_eq!(load(&redis("")).unwrap().queue.partitions, 1);
    let sentinel = "queue: { backend: redis, url: \"redis+sentinel://s1/m\" }\n";
    assert_eq!(load(sentinel).unwrap().queue.partitions, 1);
}

#[test]
fn partitions_are_for_a_cluster_only_and_within_bounds() {
    for (yaml, says) in [
        (redis(", partitions: 4"), "is for a `redis+cluster://` url"),
        (
            "queue: { backend: embedded, partitions: 4 }\n".to_string(),
            "the embedded queue is one file",
        ),
        (cluster(", partitions: 0"), "from 1 to 1024"),
        (cluster(", prefix: \"{hy}\""), "may not hold `{` or `}`"),
        (cluster(", partitions: 5000"), "from 1 to 1024"),
    ] {
        let err = load(&yaml).unwrap_err();
        assert!(
            err.contains("c.yaml:1:") && err.contains(says),
            "{yaml}: {err}"
        );
    }
}
