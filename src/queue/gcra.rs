//! GCRA (generic cell rate algorithm), the rate limiter behind
//! [`crate::queue::Queue::rate_limit`]. One number per target — the
//! theoretical arrival time (TAT) of the next request — is all the state,
//! which is what lets the Redis backend keep it in one key and update it
//! atomically in a script (`redis/lua/rate_limit.lua` does the same
//! arithmetic as [`gcra`]); the embedded backend keeps it in memory.

/// Answer of [`gcra`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gcra {
    /// Go; store this new TAT (unix ms).
    Allowed { tat_ms: f64 },
    /// Wait this many ms; the stored TAT is unchanged.
    Wait { ms: f64 },
}

/// Admit one request at `now_ms` given the stored TAT (None: idle target),
/// a steady `per_second` rate and a `burst` of requests allowed at once.
pub fn gcra(tat_ms: Option<f64>, now_ms: f64, per_second: f64, burst: u32) -> Gcra {
    let interval = 1000.0 / per_second.max(1e-9);
    let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
    let new_tat = tat + interval;
    let allow_at = new_tat - f64::from(burst.max(1)) * interval;
    if now_ms < allow_at {
        Gcra::Wait {
            ms: allow_at - now_ms,
        }
    } else {
        Gcra::Allowed { tat_ms: new_tat }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_spaces() {
        // 5/s with a burst of 5: five at once, then one every 200 ms.
        let mut tat = None;
        for _ in 0..5 {
            match gcra(tat, 0.0, 5.0, 5) {
                Gcra::Allowed { tat_ms } => tat = Some(tat_ms),
                w => panic!("{w:?}"),
            }
        }
        assert_eq!(tat, Some(1000.0));
        assert_eq!(gcra(tat, 0.0, 5.0, 5), Gcra::Wait { ms: 200.0 });
        assert_eq!(gcra(tat, 150.0, 5.0, 5), Gcra::Wait { ms: 50.0 });
        assert_eq!(gcra(tat, 200.0, 5.0, 5), Gcra::Allowed { tat_ms: 1200.0 });
        // Idle long enough: the burst is back, the TAT restarts from now.
        assert_eq!(
            gcra(tat, 10_000.0, 5.0, 5),
            Gcra::Allowed { tat_ms: 10_200.0 }
        );
    }

    #[test]
    fn burst_of_one_is_strict_spacing() {
        let Gcra::Allowed { tat_ms } = gcra(None, 0.0, 2.0, 1) else {
            panic!()
        };
        assert_eq!(tat_ms, 500.0);
        assert_eq!(gcra(Some(tat_ms), 100.0, 2.0, 1), Gcra::Wait { ms: 400.0 });
        assert_eq!(gcra(Some(tat_ms), 0.0, 2.0, 0), Gcra::Wait { ms: 500.0 });
    }
}
