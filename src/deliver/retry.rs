//! Retry policy (SPEC §5), as pure functions: what an attempt's result means,
//! how long to wait before the next attempt, and when to give up.
//!
//! - Success is any 2xx. Retried: connection errors, timeouts, 408, 425, 429
//!   and 5xx. Dead-lettered at once: other 4xx, and 3xx, because redirects
//!   are not followed (a target that moved must be reconfigured, and
//!   following redirects would let a receiver steer us elsewhere).
//! - After failed attempt n the wait is `schedule[n-1]` with ±20% jitter, so
//!   a burst of failures does not come back as a burst of retries; a longer
//!   `Retry-After` from the receiver wins, capped at `max_retry_after`.
//! - When the schedule is used up the delivery is dead-lettered: the default
//!   schedule of 7 steps means 8 attempts in all.
//!
//! Time and randomness are arguments (`now`, `rng`), so tests are exact.

use std::time::{Duration, UNIX_EPOCH};

use axum::http::StatusCode;
use jiff::Timestamp;
use rand::Rng;

pub use crate::config::{DEFAULT_MAX_RETRY_AFTER, DEFAULT_SCHEDULE, RetryPolicy};

/// Jitter applied to each schedule step, in percent either way.
pub const JITTER_PERCENT: u64 = 20;

/// What one attempt's result means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered (a 2xx).
    Success,
    /// Failed in a way that may pass later; the reason is for history.
    Retryable(String),
    /// Failed in a way that retrying will not fix: dead-letter now.
    Permanent(String),
}

/// How a request failed when no HTTP response came back. The sender maps
/// its client's error onto one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// DNS, TCP or TLS setup failed (refused, unreachable, bad certificate).
    Connect,
    /// No complete response within the target's `timeout`.
    Timeout,
    /// The connection broke after the request started (reset, closed early).
    Interrupted,
    /// The egress policy refused the address dialled (SPEC §5): retrying
    /// dials the same address, so this is permanent.
    EgressDenied,
    /// The request could not be built (invalid URL or header after
    /// rendering): the same input will fail the same way.
    InvalidRequest,
}

impl Outcome {
    /// The outcome of an HTTP response with status `status`.
    pub fn from_status(status: u16) -> Outcome {
        if (200..=299).contains(&status) {
            return Outcome::Success;
        }
        let label = match StatusCode::from_u16(status)
            .ok()
            .and_then(|code| code.canonical_reason())
        {
            Some(reason) => format!("HTTP {status} {reason}"),
            None => format!("HTTP {status}"),
        };
        match status {
            200..=299 => Outcome::Success,
            408 | 425 | 429 | 500..=599 => Outcome::Retryable(label),
            300..=399 => Outcome::Permanent(format!(
                "{label}: redirects are not followed; point the target at the final URL"
            )),
            400..=499 => Outcome::Permanent(format!(
                "{label}: the receiver refused the request, retrying would not help"
            )),
            _ => Outcome::Permanent(format!(
                "{label}: not a final HTTP status, treated as a failure"
            )),
        }
    }

    /// The outcome of a request that got no HTTP response.
    pub fn from_transport(error: TransportError) -> Outcome {
        match error {
            TransportError::Connect => Outcome::Retryable("connection failed".to_owned()),
            TransportError::Timeout => Outcome::Retryable("timed out".to_owned()),
            TransportError::Interrupted => {
                Outcome::Retryable("connection closed before the response".to_owned())
            }
            TransportError::EgressDenied => Outcome::Permanent(
                "the egress policy does not allow this address (see egress.allow)".to_owned(),
            ),
            TransportError::InvalidRequest => {
                Outcome::Permanent("the rendered request is invalid".to_owned())
            }
        }
    }
}

/// Parse a `Retry-After` value: delta-seconds or an HTTP date (RFC 9110
/// §10.2.3). A date in the past means "now" (zero); anything else is `None`.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too large for u64: a very long wait, which the
        // max_retry_after cap will bound anyway.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let date_secs = match date.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(_) => return Some(Duration::ZERO),
    };
    let ahead = date_secs.saturating_sub(now.as_second());
    Some(Duration::from_secs(u64::try_from(ahead).unwrap_or(0)))
}

/// `step` scaled by a uniformly random factor in [0.8, 1.2], at
/// millisecond resolution.
fn jittered<R: Rng + ?Sized>(step: Duration, rng: &mut R) -> Duration {
    let millis = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
    let spread = millis / 100 * JITTER_PERCENT + millis % 100 * JITTER_PERCENT / 100;
    let offset = rng.random_range(0..=spread.saturating_mul(2));
    Duration::from_millis((millis - spread).saturating_add(offset))
}

/// How long to wait before the next attempt, or `None` to dead-letter.
///
/// `attempts_made` is how many attempts have already happened (the first
/// failure calls this with 1; 0 is treated like 1). `retry_after` is the
/// failed response's `Retry-After`, if any: used instead of the jittered
/// step when longer, but never longer than `max_retry_after`.
pub fn next_delay<R: Rng + ?Sized>(
    schedule: &[Duration],
    attempts_made: u32,
    retry_after: Option<Duration>,
    max_retry_after: Duration,
    rng: &mut R,
) -> Option<Duration> {
    let index = usize::try_from(attempts_made.saturating_sub(1)).ok()?;
    let step = *schedule.get(index)?;
    let delay = jittered(step, rng);
    match retry_after {
        Some(asked) => Some(delay.max(asked.min(max_retry_after))),
        None => Some(delay),
    }
}

/// What the worker does after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Delivered; record success.
    Delivered,
    /// Schedule the next attempt after `after`; `reason` is this failure.
    Retry {
        /// Wait before the next attempt.
        after: Duration,
        /// Why this attempt failed.
        reason: String,
    },
    /// Give up; the reason goes into the dead letter.
    DeadLetter(String),
}

impl RetryPolicy {
    /// See [`next_delay`].
    pub fn next_delay<R: Rng + ?Sized>(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Option<Duration> {
        next_delay(
            &self.schedule,
            attempts_made,
            retry_after,
            self.max_retry_after,
            rng,
        )
    }

    /// Decide what follows attempt number `attempts_made` (from 1), which
    /// ended in `outcome`, with the response's `Retry-After` if any.
    pub fn decide<R: Rng + ?Sized>(
        &self,
        outcome: Outcome,
        attempts_made: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Decision {
        match outcome {
            Outcome::Success => Decision::Delivered,
            Outcome::Permanent(reason) => Decision::DeadLetter(reason),
            Outcome::Retryable(reason) => match self.next_delay(attempts_made, retry_after, rng) {
                Some(after) => Decision::Retry { after, reason },
                None => Decision::DeadLetter(format!(
                    "{reason} (gave up after {attempts_made} attempts)"
                )),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
#[path = "retry_tests.rs"]
mod tests;
