//! Helpers of the Redis queue tests: a queue on a unique key prefix that is
//! deleted afterwards, and job/event builders.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hookyard::queue::redis::RedisQueue;
use hookyard::queue::{Attempt, Event, NewJob, StoreSettings, Target};
use jiff::Timestamp;

pub const URL: &str = "redis://127.0.0.1:6379/0";

/// Whether the shared Redis answers; in CI its absence is a failure.
pub fn redis_up() -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:6379".parse().unwrap(),
        Duration::from_millis(300),
    )
    .is_ok();
    if !up {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("Redis at 127.0.0.1:6379 is required in CI");
        }
        eprintln!("SKIPPED: Redis at 127.0.0.1:6379 is unreachable");
    }
    up
}

pub fn settings(consumer: &str, lease: Duration) -> StoreSettings {
    StoreSettings {
        lease,
        history_retention: Duration::from_secs(3600),
        history_max_events: 1000,
        idempotency_window: Duration::from_secs(60),
        consumer_name: consumer.to_string(),
    }
}

pub use crate::support::RedisKeys as Keys;

pub fn prefix() -> String {
    format!("hyt-{}", ulid::Ulid::new())
}

/// A queue on a fresh prefix of the shared Redis, with its cleanup guard.
pub async fn queue(consumer: &str, lease: Duration) -> Option<(RedisQueue, Keys)> {
    if !redis_up() {
        return None;
    }
    let prefix = prefix();
    let keys = Keys {
        url: URL.into(),
        prefix: prefix.clone(),
    };
    let q = RedisQueue::open(URL, &prefix, settings(consumer, lease))
        .await
        .unwrap();
    Some((q, keys))
}

pub fn event(id: &str, ty: &str) -> Event {
    Event {
        id: id.into(),
        event_type: ty.into(),
        timestamp: Timestamp::now(),
        source: "api:test".into(),
        data: serde_json::json!({"id": id}),
    }
}

pub fn job(delivery: &str, event: &str, sub: &str) -> NewJob {
    NewJob {
        delivery_id: delivery.into(),
        event_id: event.into(),
        target: Target::Subscription { id: sub.into() },
        steps: Default::default(),
        ordering_key: None,
        not_before: None,
        traceparent: None,
        fifo_later: false,
    }
}

pub fn attempt(n: u32, status: u16) -> Attempt {
    Attempt {
        attempt: n,
        at: Timestamp::now(),
        request: serde_json::json!({"method": "POST", "url": "http://127.0.0.1:9/x", "headers": {}}),
        response: Some(serde_json::json!({"status": status, "headers": {}, "body": ""})),
        duration_ms: 3,
        error: None,
    }
}

pub const NO_WAIT: Duration = Duration::from_millis(0);
pub const SHORT: Duration = Duration::from_millis(100);
