//! The Redis backend's conformance factories: a queue on a fresh key prefix
//! of the Redis at 127.0.0.1:6379 (deleted when the test ends, also when it
//! fails), on the test's manual clock, reached directly (`redis://`) or
//! through a sentinel of the test's own that watches that server
//! (`redis+sentinel://`, SPEC §16). Skipped with a visible message when
//! Redis is unreachable, except under CI=true where that is a failure.

#![allow(clippy::unwrap_used)]

use super::*;

use hookyard::queue::redis::RedisQueue;

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
