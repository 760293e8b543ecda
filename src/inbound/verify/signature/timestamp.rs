//! Signed timestamps, the replay window of timestamped presets: how a
//! timestamp is read (whole seconds in a header for Stripe, Slack and
//! Standard Webhooks; seconds, milliseconds or RFC 3339 where a sender is
//! less strict) and the check that it is within `tolerance` of our clock,
//! in either direction.

use std::time::Duration;

use jiff::Timestamp;

use super::{VerifyError, malformed};

/// A signed timestamp value as unix seconds: an RFC 3339 string, or unix
/// seconds or milliseconds (told apart by size) as a number or a string of
/// digits.
pub(super) fn timestamp_value(v: &serde_json::Value) -> Result<i64, &'static str> {
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(seconds)
            .ok_or("is not whole unix seconds or milliseconds"),
        serde_json::Value::String(s) => timestamp_text(s),
        _ => Err("is neither a date-time string nor a number"),
    }
}

/// [`timestamp_value`] of text (a header, or a string in the body).
pub(super) fn timestamp_text(s: &str) -> Result<i64, &'static str> {
    let s = s.trim();
    if !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map(seconds)
            .map_err(|_| "is not whole unix seconds or milliseconds");
    }
    s.parse::<Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| "is neither unix seconds nor an RFC 3339 date-time with an offset")
}

/// Unix seconds from seconds or milliseconds: no sender means the year
/// 5138, so anything from 10^11 on is milliseconds.
fn seconds(n: i64) -> i64 {
    if n.unsigned_abs() >= 100_000_000_000 {
        n / 1000
    } else {
        n
    }
}

/// A signed unix timestamp, checked against `now` within `tolerance`.
pub(super) fn check_timestamp(
    header: &str,
    text: &str,
    tolerance: Duration,
    now: Timestamp,
) -> Result<(), VerifyError> {
    // Digits only (no sign, no fraction): what every provider sends, and it
    // keeps `t.body` byte-identical to what was signed.
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(header, "timestamp is not whole unix seconds"));
    }
    let signed: i64 = text
        .parse()
        .map_err(|_| malformed(header, "timestamp is not whole unix seconds"))?;
    check_age(header, signed, tolerance, now)
}

/// `signed` (unix seconds, read from `at`) within `tolerance` of `now`.
pub(super) fn check_age(
    at: &str,
    signed: i64,
    tolerance: Duration,
    now: Timestamp,
) -> Result<(), VerifyError> {
    let header = at;
    let age_secs = now.as_second().saturating_sub(signed);
    if age_secs.unsigned_abs() > tolerance.as_secs() {
        return Err(VerifyError::TimestampOutOfTolerance {
            header: header.to_owned(),
            age_secs,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    Ok(())
}
