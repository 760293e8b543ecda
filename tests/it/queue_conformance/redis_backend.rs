//! The Redis backend's conformance factories: a queue on a fresh key prefix
//! of the Redis at 127.0.0.1:6379 (deleted when the test ends, also when it
//! fails), on the test's manual clock, reached directly (`redis://`) or
//! through a sentinel of the test's own that watches that server
//! (`redis+sentinel://`, SPEC §16). Skipped with a visible message when
//! Redis is unreachable, except under CI=true where that is a failure.
//!
//! The cluster factory runs the suite on a Redis Cluster that is already
//! up, named by `HOOKYARD_TEST_REDIS_CLUSTER` (a `redis+cluster://` URL;
//! `tests/redis-cluster/start` makes one, and `.ci/run` sets it), with 16
//! partitions, so every test's keys spread over all the masters.

#![allow(clippy::unwrap_used)]

use super::*;

use hookyard::queue::redis::{RedisOptions, RedisQueue};

const URL: &str = "redis://127.0.0.1:6379/0";

/// Whether the shared Redis answers; in CI its absence is a failure.
fn redis_up() -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:6379".parse().unwrap(),
        Duration::from_millis(300),
    )
    .is_ok();
    if !up {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("Redis at 127.0.0.1:6379 is required in CI");
        }
        eprintln!("SKIPPED: Redis conformance tests: Redis at 127.0.0.1:6379 is unreachable");
    }
    up
}

pub async fn make_redis_queue(settings: StoreSettings) -> Option<Harness> {
    if !redis_up() {
        return None;
    }
    Some(make_queue(URL.to_string(), settings, Box::new(())).await)
}

/// The same Redis, found through a sentinel that watches it under a name
/// of this test's (quorum 1, no replica: it never fails over), so every
/// connection the backend makes is one the sentinel named.
pub async fn make_sentinel_queue(settings: StoreSettings) -> Option<Harness> {
    if !redis_up() || !crate::support::redis_server_installed() {
        return None;
    }
    let name = format!("hyc{}", ulid::Ulid::new().to_string().to_lowercase());
    let watched = name.clone();
    let sentinel = tokio::task::spawn_blocking(move || {
        crate::sentinel_support::RedisProc::sentinel_with(&watched, 6379, 1, 30_000)
    });
    let sentinel = sentinel.await.unwrap();
    let url = format!("redis+sentinel://127.0.0.1:{}/{name}/0", sentinel.port);
    Some(make_queue(url, settings, Box::new(sentinel)).await)
}

async fn make_queue(
    url: String,
    settings: StoreSettings,
    keep: Box<dyn Any + Send + Sync>,
) -> Harness {
    let prefix = format!("hyc-{}", ulid::Ulid::new());
    let keys = crate::support::RedisKeys::shared(&prefix);
    let clock = ManualClock::new();
    let lease = settings.lease;
    let queue = RedisQueue::open_with_clock(&url, &prefix, settings.clone(), clock.clock())
        .await
        .unwrap();
    let reopen_clock = clock.clone();
    let reopen: Reopen = Box::new(move || {
        let (url, prefix, settings, clock) = (
            url.clone(),
            prefix.clone(),
            settings.clone(),
            reopen_clock.clock(),
        );
        Box::pin(async move {
            Queue::Redis(
                RedisQueue::open_with_clock(&url, &prefix, settings, clock)
                    .await
                    .unwrap(),
            )
        })
    });
    Harness {
        queue: Queue::Redis(queue),
        clock,
        reopen,
        leases: Leases::RealTime(lease),
        // Keys first: they are deleted while the sentinel still runs.
        _keep: Box::new((keys, keep)),
    }
}

/// A queue on the Redis Cluster named by `HOOKYARD_TEST_REDIS_CLUSTER`,
/// under a fresh prefix whose keys are deleted from every master when the
/// test ends. Unset: skipped with a message, except under CI=true.
pub async fn make_cluster_queue(settings: StoreSettings) -> Option<Harness> {
    let Ok(url) = std::env::var("HOOKYARD_TEST_REDIS_CLUSTER") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "HOOKYARD_TEST_REDIS_CLUSTER is required in CI: start a cluster with \
                 `tests/redis-cluster/start DIR BASEPORT` and export the URL it prints"
            );
        }
        eprintln!(
            "SKIPPED: Redis Cluster conformance tests: set HOOKYARD_TEST_REDIS_CLUSTER \
             (tests/redis-cluster/start /tmp/hookyard-cluster 7101 prints it)"
        );
        return None;
    };
    let prefix = format!("hycl-{}", ulid::Ulid::new());
    let keys = crate::cluster_support::ClusterKeys::of_url(&url, &prefix);
    let clock = ManualClock::new();
    let lease = settings.lease;
    let options = || RedisOptions {
        partitions: 16,
        ..Default::default()
    };
    let queue = RedisQueue::open_with(&url, &prefix, settings.clone(), clock.clock(), options())
        .await
        .unwrap();
    let reopen_clock = clock.clone();
    let reopen: Reopen = Box::new(move || {
        let (url, prefix, settings, clock) = (
            url.clone(),
            prefix.clone(),
            settings.clone(),
            reopen_clock.clock(),
        );
        Box::pin(async move {
            Queue::Redis(
                RedisQueue::open_with(&url, &prefix, settings, clock, options())
                    .await
                    .unwrap(),
            )
        })
    });
    Some(Harness {
        queue: Queue::Redis(queue),
        clock,
        reopen,
        leases: Leases::RealTime(lease),
        _keep: Box::new(keys),
    })
}
