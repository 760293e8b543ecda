//! The Redis backend's conformance factory: a queue on a fresh key prefix of
//! the Redis at 127.0.0.1:6379 (deleted when the test ends, also when it
//! fails), on the test's manual clock. Skipped with a visible message when
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
    let prefix = format!("hyc-{}", ulid::Ulid::new());
    let keys = crate::support::RedisKeys::shared(&prefix);
    let clock = ManualClock::new();
    let lease = settings.lease;
    let queue = RedisQueue::open_with_clock(URL, &prefix, settings.clone(), clock.clock())
        .await
        .unwrap();
    let reopen_clock = clock.clone();
    let reopen: Reopen = Box::new(move || {
        let (prefix, settings, clock) = (prefix.clone(), settings.clone(), reopen_clock.clock());
        Box::pin(async move {
            Queue::Redis(
                RedisQueue::open_with_clock(URL, &prefix, settings, clock)
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
