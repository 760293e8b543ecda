//! GCRA (generic cell rate algorithm), the rate limiter behind
//! `Queue::rate_limit` and the in-memory limits of
//! [`super::rate_limits`] (per trigger, and a target's fallback). One number
//! per target — the theoretical arrival time (TAT) of the next request — is
//! all the state, which is what
//! lets the Redis backend keep it in one key and update it atomically in a
//! script (`redis/lua/rate_limit.lua` does the same arithmetic as
//! [`gcra_ms`]); the embedded backend and the inbound limits keep it in
//! memory.
//!
//! [`gcra`] is generic over the number type so each caller keeps its own
//! exact arithmetic: the queue works in unix ms as `f64` (like the Lua
//! script), the inbound limits in whole nanoseconds (like `Instant`).

use std::ops::{Add, Sub};
use std::time::Duration;

/// A rate limit: at most `count` events per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// How many requests/deliveries may pass per period (at least 1).
    pub count: u32,
    /// The period (1s, 1m or 1h).
    pub per: Duration,
}

impl Rate {
    /// The steady interval between two admissions (`per / count`).
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

/// Answer of [`gcra`], in the caller's time unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gcra<T> {
    /// Go; store this new TAT.
    Allowed { tat: T },
    /// Wait this long; the stored TAT is unchanged.
    Wait { wait: T },
}

/// Admit one request at `now` given the stored TAT (None: idle target), the
/// steady `interval` between requests and `burst_span`, the time a full
/// burst covers (burst × interval): a request passes once `now` is no more
/// than `burst_span - interval` behind the TAT.
pub fn gcra<T>(tat: Option<T>, now: T, interval: T, burst_span: T) -> Gcra<T>
where
    T: Copy + PartialOrd + Add<Output = T> + Sub<Output = T>,
{
    let tat = match tat {
        Some(tat) if tat > now => tat,
        _ => now,
    };
    let new_tat = tat + interval;
    let allow_at = new_tat - burst_span;
    if now < allow_at {
        Gcra::Wait {
            wait: allow_at - now,
        }
    } else {
        Gcra::Allowed { tat: new_tat }
    }
}

/// [`gcra`] in unix ms for a steady `per_second` rate and a `burst` of
/// requests allowed at once — the queue's form, the same arithmetic as
/// `redis/lua/rate_limit.lua`.
pub fn gcra_ms(tat_ms: Option<f64>, now_ms: f64, per_second: f64, burst: u32) -> Gcra<f64> {
    let interval = 1000.0 / per_second.max(1e-9);
    gcra(tat_ms, now_ms, interval, f64::from(burst.max(1)) * interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_spaces() {
        // 5/s with a burst of 5: five at once, then one every 200 ms.
        let mut tat = None;
        for _ in 0..5 {
            match gcra_ms(tat, 0.0, 5.0, 5) {
                Gcra::Allowed { tat: new } => tat = Some(new),
                w => panic!("{w:?}"),
            }
        }
        assert_eq!(tat, Some(1000.0));
        assert_eq!(gcra_ms(tat, 0.0, 5.0, 5), Gcra::Wait { wait: 200.0 });
        assert_eq!(gcra_ms(tat, 150.0, 5.0, 5), Gcra::Wait { wait: 50.0 });
        assert_eq!(gcra_ms(tat, 200.0, 5.0, 5), Gcra::Allowed { tat: 1200.0 });
        // Idle long enough: the burst is back, the TAT restarts from now.
        assert_eq!(
            gcra_ms(tat, 10_000.0, 5.0, 5),
            Gcra::Allowed { tat: 10_200.0 }
        );
    }

    #[test]
    fn burst_of_one_is_strict_spacing() {
        let Gcra::Allowed { tat } = gcra_ms(None, 0.0, 2.0, 1) else {
            panic!()
        };
        assert_eq!(tat, 500.0);
        assert_eq!(
            gcra_ms(Some(tat), 100.0, 2.0, 1),
            Gcra::Wait { wait: 400.0 }
        );
        assert_eq!(gcra_ms(Some(tat), 0.0, 2.0, 0), Gcra::Wait { wait: 500.0 });
    }

    #[test]
    fn whole_numbers_are_exact() {
        // 3 per 1000 ns: interval 333 ns (truncated), a burst spans 1000 ns.
        let (interval, span) = (333_i128, 1000_i128);
        let mut tat = None;
        for _ in 0..3 {
            match gcra(tat, 0, interval, span) {
                Gcra::Allowed { tat: new } => tat = Some(new),
                w => panic!("{w:?}"),
            }
        }
        assert_eq!(tat, Some(999));
        assert_eq!(gcra(tat, 0, interval, span), Gcra::Wait { wait: 332 });
        assert_eq!(gcra(tat, 332, interval, span), Gcra::Allowed { tat: 1332 });
    }
}
