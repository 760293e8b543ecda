//! Per-target limits of one replica (SPEC §5): `max_in_flight`,
//! `rate_limit` and the circuit breaker. Each answers "go"
//! or "wait this long"; the worker then defers the job, which uses up no
//! attempt.
//!
//! `max_in_flight` and the circuit are per replica, in memory. `rate_limit`
//! is asked of the queue ([`Limits::rate_shared`] → `Queue::rate_limit`, a
//! GCRA shared by every replica on Redis); this replica's own in-memory
//! limit ([`crate::model::rate_limits`]) is only the fallback while the queue cannot
//! answer, so a Redis hiccup
//! never fails a delivery because of the limiter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Rate;
use crate::model::rate_limits::RateLimits;
use crate::queue::Queue;

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct CircuitSettings {
    /// Consecutive failures that open the circuit.
    pub threshold: u32,
    /// How long it stays open before one probe is let through.
    pub open_for: Duration,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        CircuitSettings {
            threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

#[derive(Default)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// The one request an open circuit lets through. Its outcome, passed to
/// [`Limits::record`], closes or reopens the circuit. A probe dropped
/// before it was [`Probe::sent`] (the request was never made: rendering or
/// signing failed and the job was dead-lettered) proved nothing, so it
/// frees the probe slot for the next job; otherwise `probing` would stay
/// set and the target would be held on this replica until a restart.
#[must_use = "drop the probe only when no request was sent"]
pub struct Probe<'a> {
    limits: &'a Limits,
    label: String,
    sent: bool,
}

impl Probe<'_> {
    /// The probe request was sent and its outcome recorded.
    pub fn sent(mut self) {
        self.sent = true;
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.limits.with(&self.label, |t| t.circuit.probing = false);
        }
    }
}

/// What a circuit transition means for the `hookyard_circuit_open` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitChange {
    Opened,
    Closed,
    Unchanged,
}

#[derive(Default)]
struct TargetState {
    in_flight: Option<(u32, Arc<Semaphore>)>,
    /// Jobs waiting in [`Limits::in_flight`] for a slot.
    waiting: Arc<AtomicUsize>,
    circuit: Circuit,
}

/// Answer of [`Limits::in_flight`].
#[derive(Debug)]
pub enum InFlight {
    /// The target sets no `max_in_flight`.
    Unlimited,
    /// A slot, freed when this drops.
    Slot(OwnedSemaphorePermit),
    /// Every slot is taken: wait.
    Full,
}

/// One job counted in a target's `waiting` until dropped.
struct Waiter(Arc<AtomicUsize>);

impl Drop for Waiter {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Limits of every target, by `Target::label()`.
#[derive(Default)]
pub struct Limits {
    settings: CircuitSettings,
    targets: Mutex<HashMap<String, TargetState>>,
    /// The fallback rate limits, by label.
    rates: RateLimits,
    /// The queue's rate limiter failed and the local limits are in use
    /// (logged once per outage).
    shared_rate_down: AtomicBool,
}

impl Limits {
    pub fn new(settings: CircuitSettings) -> Limits {
        Limits {
            settings,
            targets: Mutex::new(HashMap::new()),
            rates: RateLimits::new(),
            shared_rate_down: AtomicBool::new(false),
        }
    }

    fn with<R>(&self, label: &str, f: impl FnOnce(&mut TargetState) -> R) -> R {
        let mut map = match self.targets.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Known targets (nearly every call) need no key allocation.
        if let Some(t) = map.get_mut(label) {
            return f(t);
        }
        f(map.entry(label.to_owned()).or_default())
    }

    /// A slot under `max_in_flight`, held until the permit drops. When
    /// every slot is taken and fewer than `max_waiting` jobs already wait
    /// for this target, wait up to `wait` for one (first come, first
    /// served) before answering `Full`. A job already leased is cheaper to hold for a moment than to
    /// send back through the queue: deferred jobs return in clumps after a
    /// recheck delay, which held a `max_in_flight: 1` target to well under
    /// a hundred deliveries a second on Redis while its receiver was idle.
    /// Both bounds keep one busy target from holding the whole worker pool
    /// or a job's lease for long.
    pub async fn in_flight(
        &self,
        label: &str,
        max: Option<u32>,
        wait: Duration,
        max_waiting: usize,
    ) -> InFlight {
        let Some(max) = max else {
            return InFlight::Unlimited;
        };
        let (sem, waiting) = self.with(label, |t| {
            let sem = match &t.in_flight {
                Some((m, s)) if *m == max => Arc::clone(s),
                _ => {
                    // New target or the limit changed on reload: holders of
                    // the old semaphore finish under the old limit.
                    let s = Arc::new(Semaphore::new(max.max(1) as usize));
                    t.in_flight = Some((max, Arc::clone(&s)));
                    s
                }
            };
            (sem, Arc::clone(&t.waiting))
        });
        if let Ok(p) = Arc::clone(&sem).try_acquire_owned() {
            return InFlight::Slot(p);
        }
        if waiting.fetch_add(1, Ordering::AcqRel) >= max_waiting {
            waiting.fetch_sub(1, Ordering::AcqRel);
            return InFlight::Full;
        }
        // Counted out again however this ends (also when the caller's
        // future is dropped mid-wait, e.g. at shutdown).
        let _waiter = Waiter(waiting);
        match tokio::time::timeout(wait, sem.acquire_owned()).await {
            Ok(Ok(p)) => InFlight::Slot(p),
            _ => InFlight::Full,
        }
    }

    /// Admit one request under this replica's own `rate_limit` for the
    /// target, or the wait until one would pass.
    pub fn rate(&self, label: &str, rate: Option<Rate>, now: Instant) -> Result<(), Duration> {
        match rate {
            None => Ok(()),
            Some(rate) => self.rates.check(label, &rate, now),
        }
    }

    /// The cluster-wide `rate_limit` gate: None = go, Some(wait) = defer.
    /// Targets without a `rate_limit` cost nothing (no queue call). When
    /// the queue errors, this replica's own limit decides instead.
    pub async fn rate_shared(
        &self,
        queue: &Queue,
        label: &str,
        rate: Option<Rate>,
    ) -> Option<Duration> {
        let rate = rate?;
        let burst = rate.count.max(1);
        let per_second = f64::from(burst) / rate.per.as_secs_f64().max(1e-9);
        match queue.rate_limit(label, per_second, burst).await {
            Ok(wait) => {
                if self.shared_rate_down.swap(false, Ordering::Relaxed) {
                    tracing::info!("shared rate limiter answers again");
                }
                wait
            }
            Err(e) => {
                if !self.shared_rate_down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "shared rate limiter failed: {e}; rate limits are enforced per replica until it answers again"
                    );
                }
                self.rate(label, Some(rate), Instant::now()).err()
            }
        }
    }

    /// Whether the circuit lets a request through now: closed (`None`), or
    /// open long enough that this request becomes the one probe
    /// (`Some(Probe)`, to be marked [`Probe::sent`] once recorded).
    pub fn circuit_allows(&self, label: &str, now: Instant) -> Result<Option<Probe<'_>>, Duration> {
        self.with(label, |t| {
            let c = &mut t.circuit;
            match c.open_until {
                None => Ok(None),
                Some(until) if now < until => Err(until - now),
                Some(_) if c.probing => Err(Duration::from_millis(500)),
                Some(_) => {
                    c.probing = true;
                    Ok(Some(Probe {
                        limits: self,
                        label: label.to_owned(),
                        sent: false,
                    }))
                }
            }
        })
    }

    /// Record the end of a request: `failed` is a connection error,
    /// timeout or retryable status.
    pub fn record(&self, label: &str, failed: bool, now: Instant) -> CircuitChange {
        let settings = self.settings;
        self.with(label, |t| {
            let c = &mut t.circuit;
            if !failed {
                let was_open = c.open_until.is_some();
                *c = Circuit::default();
                return if was_open {
                    CircuitChange::Closed
                } else {
                    CircuitChange::Unchanged
                };
            }
            c.failures = c.failures.saturating_add(1);
            if c.probing || (c.open_until.is_none() && c.failures >= settings.threshold) {
                let was_open = c.open_until.is_some();
                c.probing = false;
                c.open_until = Some(now + settings.open_for);
                if was_open {
                    CircuitChange::Unchanged
                } else {
                    CircuitChange::Opened
                }
            } else {
                CircuitChange::Unchanged
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bursts_then_spaces() {
        let l = Limits::default();
        let rate = Rate {
            count: 2,
            per: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        assert!(l.rate("t", Some(rate), t0).is_ok());
        assert!(l.rate("t", Some(rate), t0).is_ok());
        let wait = l.rate("t", Some(rate), t0).unwrap_err();
        assert!((wait.as_millis() as i64 - 500).abs() <= 1, "{wait:?}");
        assert!(
            l.rate("t", Some(rate), t0 + Duration::from_millis(500))
                .is_ok()
        );
        assert!(l.rate("other", Some(rate), t0).is_ok());
        assert!(l.rate("t", None, t0).is_ok());
    }

    /// A slot now or `Full`, without waiting.
    async fn slot(l: &Limits, label: &str, max: Option<u32>) -> InFlight {
        l.in_flight(label, max, Duration::ZERO, 0).await
    }

    #[tokio::test]
    async fn in_flight_slots() {
        let l = Limits::default();
        let a = slot(&l, "t", Some(2)).await;
        let _b = slot(&l, "t", Some(2)).await;
        assert!(matches!(a, InFlight::Slot(_)));
        assert!(matches!(slot(&l, "t", Some(2)).await, InFlight::Full));
        drop(a);
        assert!(matches!(slot(&l, "t", Some(2)).await, InFlight::Slot(_)));
        assert!(matches!(slot(&l, "t", None).await, InFlight::Unlimited));
    }

    #[tokio::test]
    async fn in_flight_takes_a_slot_freed_while_waiting() {
        let l = Arc::new(Limits::default());
        let held = slot(&l, "t", Some(1)).await;
        assert!(matches!(held, InFlight::Slot(_)));
        let waiter = {
            let l = Arc::clone(&l);
            tokio::spawn(async move { l.in_flight("t", Some(1), Duration::from_secs(30), 4).await })
        };
        // Free the slot once the waiter is counted as waiting.
        while l.with("t", |t| t.waiting.load(Ordering::Acquire)) == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let got = waiter.await.unwrap();
        assert!(matches!(got, InFlight::Slot(_)));
        assert_eq!(l.with("t", |t| t.waiting.load(Ordering::Acquire)), 0);
        // The slot is held by the waiter now.
        assert!(matches!(slot(&l, "t", Some(1)).await, InFlight::Full));
    }

    #[tokio::test]
    async fn in_flight_gives_up_after_its_wait_or_when_enough_wait() {
        let l = Limits::default();
        let _held = slot(&l, "t", Some(1)).await;
        let started = Instant::now();
        let r = l
            .in_flight("t", Some(1), Duration::from_millis(20), 4)
            .await;
        assert!(matches!(r, InFlight::Full));
        assert!(started.elapsed() >= Duration::from_millis(20));
        // With no room among the waiters, the answer is immediate.
        let r = l.in_flight("t", Some(1), Duration::from_secs(30), 0).await;
        assert!(matches!(r, InFlight::Full));
        assert_eq!(l.with("t", |t| t.waiting.load(Ordering::Acquire)), 0);
        assert!(matches!(
            l.in_flight("u", None, Duration::from_secs(30), 0).await,
            InFlight::Unlimited
        ));
    }

    #[tokio::test]
    async fn a_dropped_wait_is_no_longer_counted() {
        let l = Limits::default();
        let _held = slot(&l, "t", Some(1)).await;
        {
            let wait = l.in_flight("t", Some(1), Duration::from_secs(30), 4);
            let _ = tokio::time::timeout(Duration::from_millis(10), wait).await;
        }
        assert_eq!(l.with("t", |t| t.waiting.load(Ordering::Acquire)), 0);
    }

    #[test]
    fn circuit_opens_probes_and_closes() {
        let l = Limits::new(CircuitSettings {
            threshold: 3,
            open_for: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        assert_eq!(l.record("t", true, t0), CircuitChange::Unchanged);
        assert_eq!(l.record("t", true, t0), CircuitChange::Unchanged);
        assert_eq!(l.record("t", true, t0), CircuitChange::Opened);
        assert_eq!(
            l.circuit_allows("t", t0).err(),
            Some(Duration::from_secs(10))
        );
        let later = t0 + Duration::from_secs(10);
        let probe = l.circuit_allows("t", later).unwrap().expect("the probe");
        assert!(l.circuit_allows("t", later).is_err(), "one probe only");
        // A failed probe reopens for another period.
        assert_eq!(l.record("t", true, later), CircuitChange::Unchanged);
        probe.sent();
        assert!(l.circuit_allows("t", later).is_err());
        let later2 = later + Duration::from_secs(10);
        let probe = l.circuit_allows("t", later2).unwrap().expect("a probe");
        assert_eq!(l.record("t", false, later2), CircuitChange::Closed);
        probe.sent();
        assert!(l.circuit_allows("t", later2).unwrap().is_none(), "closed");
        // A success resets the failure count.
        assert_eq!(l.record("t", true, later2), CircuitChange::Unchanged);
    }

    #[test]
    fn unsent_probe_frees_the_slot() {
        let l = Limits::new(CircuitSettings {
            threshold: 1,
            open_for: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        assert_eq!(l.record("t", true, t0), CircuitChange::Opened);
        let later = t0 + Duration::from_secs(10);
        let probe = l.circuit_allows("t", later).unwrap().expect("the probe");
        assert!(l.circuit_allows("t", later).is_err(), "one probe only");
        // Dropped without a request (render failed): the next job probes.
        drop(probe);
        let next = l.circuit_allows("t", later).unwrap();
        assert!(next.is_some(), "the next job is the probe");
    }
}
