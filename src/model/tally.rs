//! Per-minute counters behind the console's Overview and `GET /v1/stats`
//! (SPEC §13): what the delivery workers and the trigger handler count, how
//! a counter is named in the store, and how an hour of them is summed into
//! success rates, p95 latencies and rejections by reason.
//!
//! A counter is `(minute, name) += n`, where `minute` is Unix seconds / 60
//! and `name` is `<what>:<subject>`: the subject (a target label or trigger
//! id) comes last, after the first `:`, so it may hold any character.
//!
//! | name | counts |
//! |---|---|
//! | `attempt.ok:<target label>` | attempts that delivered |
//! | `attempt.failed:<target label>` | attempts that failed (retried or dead-lettered) |
//! | `attempt.le.<ms>:<target label>` | attempts that took at most `<ms>` (and more than the bucket below); `le.inf` for the rest |
//! | `hook.requests:<trigger id>` | requests answered on `/hooks/…` |
//! | `hook.rejected.<code>:<trigger id>` | of those, refused with the JSON error `code` |
//!
//! The names are shared by every replica on one Redis and kept in the store
//! for [`KEEP_MINUTES`], so they are a stored format: add names, never
//! change what one means.

use std::collections::BTreeMap;
use std::fmt;

/// Upper bounds (ms) of the attempt latency buckets; one more bucket holds
/// everything slower.
pub const LATENCY_BOUNDS_MS: [u64; 13] = [
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000,
];

/// Latency buckets: one per bound, and the overflow.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Minutes the Overview sums ("the last hour", the current minute included).
pub const WINDOW_MINUTES: i64 = 60;

/// Minutes a store keeps counters for: the window and a margin, so a
/// replica whose clock is a little off still finds what it wrote.
pub const KEEP_MINUTES: i64 = 120;

/// One counter of one minute, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteCount {
    /// Unix seconds / 60.
    pub minute: i64,
    pub name: String,
    pub n: u64,
}

/// The minute of a Unix time in seconds.
pub fn minute_of(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(60)
}

/// The bucket an attempt of `ms` milliseconds falls in.
pub fn latency_bucket(ms: u64) -> usize {
    LATENCY_BOUNDS_MS
        .iter()
        .position(|&bound| ms <= bound)
        .unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// A counter name, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name<'a> {
    AttemptOk(&'a str),
    AttemptFailed(&'a str),
    /// A target's latency bucket (an index into [`LATENCY_BOUNDS_MS`], or
    /// its length for the overflow).
    Latency(&'a str, usize),
    Requests(&'a str),
    /// A trigger and the error code it answered with.
    Rejected(&'a str, &'a str),
}

impl<'a> Name<'a> {
    /// Parse a stored name; `None` for a name this version does not know
    /// (a newer replica's), which readers skip.
    pub fn parse(name: &'a str) -> Option<Name<'a>> {
        let (what, subject) = name.split_once(':')?;
        Some(match what {
            "attempt.ok" => Name::AttemptOk(subject),
            "attempt.failed" => Name::AttemptFailed(subject),
            "hook.requests" => Name::Requests(subject),
            _ => {
                if let Some(bound) = what.strip_prefix("attempt.le.") {
                    let bucket = if bound == "inf" {
                        LATENCY_BOUNDS_MS.len()
                    } else {
                        let ms: u64 = bound.parse().ok()?;
                        LATENCY_BOUNDS_MS.iter().position(|&b| b == ms)?
                    };
                    Name::Latency(subject, bucket)
                } else {
                    let code = what.strip_prefix("hook.rejected.")?;
                    Name::Rejected(subject, code)
                }
            }
        })
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::AttemptOk(t) => write!(f, "attempt.ok:{t}"),
            Name::AttemptFailed(t) => write!(f, "attempt.failed:{t}"),
            Name::Latency(t, bucket) => match LATENCY_BOUNDS_MS.get(*bucket) {
                Some(ms) => write!(f, "attempt.le.{ms}:{t}"),
                None => write!(f, "attempt.le.inf:{t}"),
            },
            Name::Requests(id) => write!(f, "hook.requests:{id}"),
            Name::Rejected(id, code) => write!(f, "hook.rejected.{code}:{id}"),
        }
    }
}

/// A target's attempts over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetWindow {
    pub ok: u64,
    pub failed: u64,
    pub latency: [u64; LATENCY_BUCKETS],
}

impl TargetWindow {
    pub fn attempts(&self) -> u64 {
        self.ok.saturating_add(self.failed)
    }

    /// Delivered attempts / all attempts; `None` without attempts.
    pub fn success_rate(&self) -> Option<f64> {
        match self.attempts() {
            0 => None,
            n => Some(self.ok as f64 / n as f64),
        }
    }

    /// The p95 attempt latency in ms: see [`p95_ms`].
    pub fn p95_ms(&self) -> Option<u64> {
        p95_ms(&self.latency)
    }
}

/// The bound of the first bucket where the cumulative count reaches 95% of
/// all: at least 95% of attempts took at most that long. `None` without
/// attempts, or when more than 5% were slower than the largest bound.
pub fn p95_ms(buckets: &[u64; LATENCY_BUCKETS]) -> Option<u64> {
    let total: u64 = buckets.iter().fold(0, |a, &b| a.saturating_add(b));
    if total == 0 {
        return None;
    }
    let mut seen: u64 = 0;
    for (i, &n) in buckets.iter().enumerate() {
        seen = seen.saturating_add(n);
        // seen / total >= 0.95, in integers.
        if u128::from(seen) * 100 >= u128::from(total) * 95 {
            return LATENCY_BOUNDS_MS.get(i).copied();
        }
    }
    None
}

/// A trigger's requests over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerWindow {
    pub requests: u64,
    /// Refused requests by error code.
    pub rejections: BTreeMap<String, u64>,
}

/// Every target's and trigger's counters over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub targets: BTreeMap<String, TargetWindow>,
    pub triggers: BTreeMap<String, TriggerWindow>,
}

/// Sum the counters of minutes `since..=until`; names this version does not
/// know are skipped.
pub fn summarize(rows: &[MinuteCount], since: i64, until: i64) -> Window {
    let mut w = Window::default();
    for row in rows.iter().filter(|r| (since..=until).contains(&r.minute)) {
        let Some(name) = Name::parse(&row.name) else {
            continue;
        };
        let n = row.n;
        match name {
            Name::AttemptOk(t) => target(&mut w, t).ok += n,
            Name::AttemptFailed(t) => target(&mut w, t).failed += n,
            Name::Latency(t, bucket) => {
                if let Some(slot) = target(&mut w, t).latency.get_mut(bucket) {
                    *slot += n;
                }
            }
            Name::Requests(id) => trigger(&mut w, id).requests += n,
            Name::Rejected(id, code) => {
                *trigger(&mut w, id)
                    .rejections
                    .entry(code.to_owned())
                    .or_default() += n;
            }
        }
    }
    w
}

fn target<'w>(w: &'w mut Window, label: &str) -> &'w mut TargetWindow {
    w.targets.entry(label.to_owned()).or_default()
}

fn trigger<'w>(w: &'w mut Window, id: &str) -> &'w mut TriggerWindow {
    w.triggers.entry(id.to_owned()).or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(usize, u64)]) -> [u64; LATENCY_BUCKETS] {
        let mut b = [0; LATENCY_BUCKETS];
        for &(i, n) in pairs {
            b[i] = n;
        }
        b
    }

    #[test]
    fn p95_is_the_bound_where_the_cumulative_count_reaches_95_percent() {
        assert_eq!(p95_ms(&[0; LATENCY_BUCKETS]), None);
        // 100 attempts: 94 at ≤10 ms, 1 at ≤25 ms, 5 at ≤250 ms.
        let b = buckets(&[(1, 94), (2, 1), (5, 5)]);
        assert_eq!(p95_ms(&b), Some(25));
        // 95 of 100 at ≤5 ms: exactly 95% is enough.
        assert_eq!(p95_ms(&buckets(&[(0, 95), (12, 5)])), Some(5));
        // One attempt: its own bucket.
        assert_eq!(p95_ms(&buckets(&[(7, 1)])), Some(1000));
        // More than 5% over the largest bound: no finite answer.
        assert_eq!(p95_ms(&buckets(&[(0, 90), (13, 10)])), None);
    }

    #[test]
    fn latencies_fall_in_the_bucket_of_their_upper_bound() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(5), 0);
        assert_eq!(latency_bucket(6), 1);
        assert_eq!(latency_bucket(250), 5);
        assert_eq!(latency_bucket(60_000), 12);
        assert_eq!(latency_bucket(60_001), 13);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn names_round_trip_with_any_subject() {
        let names = [
            Name::AttemptOk("subscription/crm"),
            Name::AttemptFailed("workflow/a:b/c"),
            Name::Latency("subscription/x", 0),
            Name::Latency("subscription/x", 12),
            Name::Latency("subscription/x", 13),
            Name::Requests("github"),
            Name::Rejected("stripe:eu", "invalid_signature"),
        ];
        for name in names {
            let text = name.to_string();
            assert_eq!(Name::parse(&text), Some(name), "{text}");
        }
        assert_eq!(
            Name::Latency("s", 5).to_string(),
            "attempt.le.250:s",
            "stored names must not change"
        );
        assert_eq!(
            Name::Rejected("gh", "rate_limited").to_string(),
            "hook.rejected.rate_limited:gh"
        );
        assert_eq!(Name::parse("attempt.le.7:s"), None, "unknown bound");
        assert_eq!(Name::parse("something.new:s"), None);
        assert_eq!(Name::parse("no subject"), None);
    }

    #[test]
    fn a_window_sums_its_minutes_only() {
        let row = |minute, name: Name<'_>, n| MinuteCount {
            minute,
            name: name.to_string(),
            n,
        };
        let rows = vec![
            row(100, Name::AttemptOk("t"), 3),
            row(101, Name::AttemptOk("t"), 1),
            row(101, Name::AttemptFailed("t"), 1),
            row(101, Name::Latency("t", 2), 5),
            row(99, Name::AttemptFailed("t"), 50), // before the window
            row(100, Name::Requests("gh"), 4),
            row(101, Name::Rejected("gh", "invalid_signature"), 2),
            row(101, Name::Rejected("gh", "rate_limited"), 1),
            MinuteCount {
                minute: 100,
                name: "from.a.newer:version".into(),
                n: 9,
            },
        ];
        let w = summarize(&rows, 100, 101);
        let t = &w.targets["t"];
        assert_eq!((t.ok, t.failed, t.attempts()), (4, 1, 5));
        assert_eq!(t.success_rate(), Some(0.8));
        assert_eq!(t.p95_ms(), Some(25));
        let gh = &w.triggers["gh"];
        assert_eq!(gh.requests, 4);
        assert_eq!(gh.rejections["invalid_signature"], 2);
        assert_eq!(gh.rejections["rate_limited"], 1);
        assert_eq!(w.targets.len(), 1);
        assert_eq!(TargetWindow::default().success_rate(), None);
    }

    #[test]
    fn minutes_are_floored() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(59), 0);
        assert_eq!(minute_of(60), 1);
        assert_eq!(minute_of(-1), -1);
    }
}
