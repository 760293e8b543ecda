//! This process's share of the console's per-minute counters
//! ([`crate::model::tally`]), gathered in memory and written to the queue
//! in one write per flush.
//!
//! The hot paths (each answered trigger request, each recorded attempt)
//! only add to a map under a short lock: no allocation once a target or
//! trigger has been seen this minute, and no store write. Housekeeping
//! calls [`Counters::flush`] every 5 s, and the daemon once more when it
//! stops; a flush that fails keeps its counts for the next one, so a queue
//! outage delays them instead of losing them (minutes past
//! [`KEEP_MINUTES`] are dropped then, which bounds the memory).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::tally::{
    KEEP_MINUTES, LATENCY_BUCKETS, MinuteCount, Name, latency_bucket, minute_of,
};
use crate::queue::{Queue, QueueError};

/// The current minute (Unix seconds / 60).
pub fn now_minute() -> i64 {
    minute_of(jiff::Timestamp::now().as_second())
}

/// The counts not yet written, by minute (rarely more than two minutes).
#[derive(Default)]
pub struct Counters {
    pending: Mutex<Vec<(i64, Minute)>>,
}

/// One minute's counts of this process.
#[derive(Debug, Default, PartialEq)]
struct Minute {
    targets: HashMap<String, Attempts>,
    triggers: HashMap<String, Requests>,
}

#[derive(Debug, Default, PartialEq)]
struct Attempts {
    ok: u64,
    failed: u64,
    latency: [u64; LATENCY_BUCKETS],
}

#[derive(Debug, Default, PartialEq)]
struct Requests {
    requests: u64,
    /// By error code (a handful at most, so a list).
    rejected: Vec<(&'static str, u64)>,
}

/// `f(map[key])`, inserting a default under an owned copy of `key` only
/// the first time (the usual lookup borrows, so it allocates nothing).
fn with_entry<T: Default>(map: &mut HashMap<String, T>, key: &str, f: impl FnOnce(&mut T)) {
    if let Some(v) = map.get_mut(key) {
        return f(v);
    }
    f(map.entry(key.to_owned()).or_default())
}

impl Counters {
    pub fn new() -> Counters {
        Counters::default()
    }

    fn with_minute(&self, minute: i64, f: impl FnOnce(&mut Minute)) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, m)) = pending.iter_mut().rev().find(|(at, _)| *at == minute) {
            return f(m);
        }
        let mut m = Minute::default();
        f(&mut m);
        pending.push((minute, m));
    }

    /// A sent attempt to `target` (a `Target::label()`) was recorded:
    /// delivered or not, and how long the request took.
    pub fn attempt(&self, target: &str, delivered: bool, took: Duration) {
        self.attempt_at(now_minute(), target, delivered, took);
    }

    /// A request on trigger `id` was answered; `rejected` is the JSON
    /// error code when it was refused.
    pub fn trigger_request(&self, id: &str, rejected: Option<&'static str>) {
        self.trigger_request_at(now_minute(), id, rejected);
    }

    fn attempt_at(&self, minute: i64, target: &str, delivered: bool, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.with_minute(minute, |m| {
            with_entry(&mut m.targets, target, |a| {
                if delivered {
                    a.ok += 1;
                } else {
                    a.failed += 1;
                }
                a.latency[latency_bucket(ms)] += 1;
            })
        });
    }

    fn trigger_request_at(&self, minute: i64, id: &str, rejected: Option<&'static str>) {
        self.with_minute(minute, |m| {
            with_entry(&mut m.triggers, id, |r| {
                r.requests += 1;
                if let Some(code) = rejected {
                    add_code(&mut r.rejected, code, 1);
                }
            })
        });
    }

    /// Take everything counted so far.
    fn take(&self) -> Vec<(i64, Minute)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Put counts back after a failed write, dropping minutes too old to
    /// be kept by the store anyway (`now` is the current minute).
    fn put_back(&self, taken: Vec<(i64, Minute)>, now: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let newer = std::mem::take(&mut *pending);
        for (minute, m) in taken.into_iter().chain(newer) {
            if minute < now - KEEP_MINUTES {
                continue;
            }
            match pending.iter_mut().find(|(at, _)| *at == minute) {
                Some((_, into)) => into.merge(m),
                None => pending.push((minute, m)),
            }
        }
    }

    /// Write everything counted so far in one `Queue::add_counts`; on
    /// failure the counts stay for the next flush.
    pub async fn flush(&self, queue: &Queue) -> Result<(), QueueError> {
        let taken = self.take();
        if taken.is_empty() {
            return Ok(());
        }
        let rows = rows(&taken);
        match queue.add_counts(&rows).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.put_back(taken, now_minute());
                Err(e)
            }
        }
    }
}

impl Minute {
    fn merge(&mut self, other: Minute) {
        for (label, a) in other.targets {
            let into = self.targets.entry(label).or_default();
            into.ok += a.ok;
            into.failed += a.failed;
            for (slot, n) in into.latency.iter_mut().zip(a.latency) {
                *slot += n;
            }
        }
        for (id, r) in other.triggers {
            let into = self.triggers.entry(id).or_default();
            into.requests += r.requests;
            for (code, n) in r.rejected {
                add_code(&mut into.rejected, code, n);
            }
        }
    }
}

fn add_code(list: &mut Vec<(&'static str, u64)>, code: &'static str, n: u64) {
    match list.iter_mut().find(|(c, _)| *c == code) {
        Some((_, m)) => *m += n,
        None => list.push((code, n)),
    }
}

/// The stored counters of `minutes` (zero counts left out).
fn rows(minutes: &[(i64, Minute)]) -> Vec<MinuteCount> {
    let mut out = Vec::new();
    for (minute, m) in minutes {
        let mut push = |name: Name<'_>, n: u64| {
            if n > 0 {
                out.push(MinuteCount {
                    minute: *minute,
                    name: name.to_string(),
                    n,
                });
            }
        };
        for (label, a) in &m.targets {
            push(Name::AttemptOk(label), a.ok);
            push(Name::AttemptFailed(label), a.failed);
            for (bucket, &n) in a.latency.iter().enumerate() {
                push(Name::Latency(label, bucket), n);
            }
        }
        for (id, r) in &m.triggers {
            push(Name::Requests(id), r.requests);
            for &(code, n) in &r.rejected {
                push(Name::Rejected(id, code), n);
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::tally::summarize;

    #[test]
    fn counts_become_rows_that_sum_back() {
        let c = Counters::new();
        c.attempt_at(10, "subscription/a", true, Duration::from_millis(4));
        c.attempt_at(10, "subscription/a", true, Duration::from_millis(40));
        c.attempt_at(11, "subscription/a", false, Duration::from_secs(120));
        c.trigger_request_at(10, "gh", None);
        c.trigger_request_at(10, "gh", Some("invalid_signature"));
        c.trigger_request_at(11, "gh", Some("invalid_signature"));
        let taken = c.take();
        assert_eq!(taken.len(), 2, "one entry per minute");
        let rows = rows(&taken);
        assert!(rows.iter().all(|r| r.n > 0));
        assert!(
            rows.iter()
                .any(|r| r.minute == 10 && r.name == "attempt.le.5:subscription/a" && r.n == 1)
        );
        let w = summarize(&rows, 10, 11);
        let a = &w.targets["subscription/a"];
        assert_eq!((a.ok, a.failed), (2, 1));
        assert_eq!(a.latency[0] + a.latency[3] + a.latency[13], 3);
        let gh = &w.triggers["gh"];
        assert_eq!(gh.requests, 3);
        assert_eq!(gh.rejections["invalid_signature"], 2);
        assert!(c.take().is_empty(), "taken once");
    }

    #[test]
    fn counts_put_back_merge_with_newer_ones_and_old_minutes_go() {
        let c = Counters::new();
        c.attempt_at(5, "t", true, Duration::ZERO);
        c.attempt_at(200, "t", true, Duration::ZERO);
        let taken = c.take();
        c.attempt_at(200, "t", false, Duration::ZERO);
        c.trigger_request_at(200, "gh", Some("rate_limited"));
        c.put_back(taken, 200);
        let rows = rows(&c.take());
        let w = summarize(&rows, 0, 300);
        assert_eq!((w.targets["t"].ok, w.targets["t"].failed), (1, 1));
        assert_eq!(w.triggers["gh"].rejections["rate_limited"], 1);
        assert!(rows.iter().all(|r| r.minute == 200), "minute 5 is too old");
    }
}
