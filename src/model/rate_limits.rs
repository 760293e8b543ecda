//! In-memory rate limits per key (`rate_limit: 100/s`): a trigger's
//! inbound limit, and a target's `rate_limit` on a replica whose queue
//! cannot answer for the shared one (`deliver::limits`).
//!
//! GCRA ([`super::gcra`], the algorithm governor uses): each key
//! keeps a "theoretical arrival time" (TAT). A request at `now` passes when
//! `TAT - now` is within the burst tolerance (`per - interval`, i.e. a full
//! period's worth of requests may arrive at once), and moves TAT one
//! `interval` on. A refused request learns exactly how long to wait, which
//! becomes `Retry-After`.
//!
//! Limits are per process (one daemon's view). State is keyed by trigger id
//! or target label and remembers the rate it was made for, so a reload that
//! changes the rate starts a fresh bucket; keys removed by a reload keep a
//! few bytes until the process restarts (bounded by the ids ever served).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::gcra::Rate;
use super::gcra::{Gcra, gcra};

/// GCRA state of one key.
#[derive(Debug, Clone, Copy)]
struct Cell {
    rate: (u32, Duration),
    tat: Instant,
}

/// The rate limiters of every key.
#[derive(Debug, Default)]
pub struct RateLimits {
    cells: Mutex<HashMap<String, Cell>>,
}

impl RateLimits {
    pub fn new() -> RateLimits {
        RateLimits::default()
    }

    /// Forget every key once more than `max` are kept (a limiter keyed by
    /// something a client chooses, such as its address, must stay bounded).
    pub fn forget_if_over(&self, max: usize) {
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        if cells.len() > max {
            cells.clear();
        }
    }

    /// Admit one request for `key` under `rate` at `now`: `Ok(())`, or
    /// `Err(wait)` until one would pass.
    pub fn check(&self, key: &str, rate: &Rate, now: Instant) -> Result<(), Duration> {
        let made_for = (rate.count, rate.per);
        let fresh = Cell {
            rate: made_for,
            tat: now,
        };
        // A poisoned lock only means another request panicked mid-update of
        // plain numbers; the data is still usable.
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        // Look up before inserting: a known key costs no allocation.
        let cell = match cells.get_mut(key) {
            Some(cell) => cell,
            None => cells.entry(key.to_owned()).or_insert(fresh),
        };
        if cell.rate != made_for {
            *cell = fresh;
        }
        // GCRA on a time line in whole nanoseconds that starts at `now`, so
        // the arithmetic stays exact; a TAT already past counts as idle.
        let ahead = cell.tat.checked_duration_since(now).map(nanos);
        match gcra(ahead, 0, nanos(rate.interval()), nanos(rate.per)) {
            Gcra::Allowed { tat } => {
                cell.tat = now + duration(tat);
                Ok(())
            }
            Gcra::Wait { wait } => Err(duration(wait)),
        }
    }
}

fn nanos(d: Duration) -> i128 {
    // Lossless: a Duration holds fewer than 2^94 nanoseconds.
    d.as_nanos() as i128
}

/// Back from [`nanos`]; [`gcra`] only hands out spans of at least zero and at
/// most a few periods.
fn duration(nanos: i128) -> Duration {
    u64::try_from(nanos).map_or(Duration::MAX, Duration::from_nanos)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rate(count: u32, secs: u64) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_full_period_passes_as_a_burst_then_one_per_interval() {
        let limits = RateLimits::new();
        let r = rate(2, 1);
        let t0 = Instant::now();
        assert!(limits.check("a", &r, t0).is_ok());
        assert!(limits.check("a", &r, t0).is_ok());
        let wait = limits.check("a", &r, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // After the wait, exactly one more passes.
        let t1 = t0 + wait;
        assert!(limits.check("a", &r, t1).is_ok());
        assert!(limits.check("a", &r, t1).is_err());
    }

    #[test]
    fn triggers_have_separate_buckets() {
        let limits = RateLimits::new();
        let r = rate(1, 60);
        let t0 = Instant::now();
        assert!(limits.check("a", &r, t0).is_ok());
        assert!(limits.check("a", &r, t0).is_err());
        assert!(limits.check("b", &r, t0).is_ok());
    }

    #[test]
    fn a_changed_rate_starts_a_fresh_bucket() {
        let limits = RateLimits::new();
        let t0 = Instant::now();
        assert!(limits.check("a", &rate(1, 60), t0).is_ok());
        assert!(limits.check("a", &rate(1, 60), t0).is_err());
        assert!(limits.check("a", &rate(5, 60), t0).is_ok());
    }

    #[test]
    fn refused_requests_do_not_consume_capacity() {
        let limits = RateLimits::new();
        let r = rate(1, 10);
        let t0 = Instant::now();
        assert!(limits.check("a", &r, t0).is_ok());
        for _ in 0..100 {
            assert!(limits.check("a", &r, t0).is_err());
        }
        assert!(limits.check("a", &r, t0 + Duration::from_secs(10)).is_ok());
    }
}
