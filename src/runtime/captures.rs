//! Trigger samples for the console (SPEC §13): the last `capture` (20)
//! requests each trigger received, as received (credentials redacted), with
//! the verification result and the event they were mapped to, kept for
//! `history.retention`.
//!
//! The inbound handler only hands a finished sample to [`Captures::add`]
//! (and asks [`Captures::wants`] first, which takes at most
//! [`PER_SECOND`] samples a second per trigger: under load the last samples
//! are the most recent second's, and no request pays for building a sample
//! that would be replaced at once). Samples wait in memory and are written
//! to the queue backend every few seconds by [`Captures::flush`], one state
//! document per trigger (`capture:<id>`, newest first), so every replica's
//! samples meet in one list and survive a restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::queue::{Queue, QueueError};

/// Most samples taken a second per trigger.
pub const PER_SECOND: usize = 20;

/// One captured request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at: Timestamp,
    pub method: String,
    /// The path as shown (a URL token is never in it).
    pub path: String,
    pub query: Option<String>,
    /// Credential headers and secret values redacted.
    pub headers: Vec<(String, String)>,
    /// As text, secret values redacted, cut at `history.request_body_limit`.
    pub body: String,
    #[serde(default)]
    pub body_truncated: bool,
    pub client_ip: String,
    /// `passed`, or why verification refused it.
    pub verification: String,
    /// The status hookyard answered with.
    pub status: u16,
    /// The event it was mapped to, when it got that far.
    pub event: Option<Value>,
    /// Why it was refused, when it was.
    pub error: Option<String>,
}

/// Samples waiting to be written, and the sampling budget per trigger.
#[derive(Default)]
pub struct Captures {
    pending: Mutex<HashMap<String, Vec<Sample>>>,
    /// Per trigger: the second's start and how many were taken in it.
    taken: Mutex<HashMap<String, (Instant, usize)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state document of trigger `id`'s samples.
pub fn key(id: &str) -> String {
    format!("capture:{id}")
}

impl Captures {
    /// Whether to sample this request to trigger `id` (keeping `keep`).
    pub fn wants(&self, id: &str, keep: usize, now: Instant) -> bool {
        if keep == 0 {
            return false;
        }
        let mut taken = lock(&self.taken);
        let entry = match taken.get_mut(id) {
            Some(e) => e,
            None => taken.entry(id.to_owned()).or_insert((now, 0)),
        };
        if now.duration_since(entry.0) >= Duration::from_secs(1) {
            *entry = (now, 0);
        }
        if entry.1 >= PER_SECOND.min(keep) {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// Keep a finished sample until the next flush (at most `keep` wait per
    /// trigger: if the store is slow, older ones make way).
    pub fn add(&self, id: &str, sample: Sample, keep: usize) {
        let mut pending = lock(&self.pending);
        let waiting = pending.entry(id.to_owned()).or_default();
        waiting.push(sample);
        if waiting.len() > keep {
            let extra = waiting.len() - keep;
            waiting.drain(..extra);
        }
    }

    /// Write waiting samples into each trigger's stored list: newest first,
    /// at most `keep(id)` of them, none older than `retention`.
    pub async fn flush(
        &self,
        queue: &Queue,
        keep: impl Fn(&str) -> usize,
        retention: Duration,
    ) -> Result<(), QueueError> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        let mut failed = None;
        for (id, new) in pending {
            if failed.is_some() {
                self.put_back(&id, new);
                continue;
            }
            let written = async {
                let stored = stored(queue, &id).await?;
                let merged = merge(stored, new.clone(), keep(&id), retention, Timestamp::now());
                let value = serde_json::to_value(&merged)
                    .map_err(|e| QueueError::Corrupt(format!("trigger samples: {e}")))?;
                queue.put_state(&key(&id), &value).await
            };
            if let Err(e) = written.await {
                // Kept for the next flush, as the counters are.
                self.put_back(&id, new);
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn put_back(&self, id: &str, mut samples: Vec<Sample>) {
        let mut pending = lock(&self.pending);
        let waiting = pending.entry(id.to_owned()).or_default();
        samples.append(waiting);
        *waiting = samples;
    }

    /// Trigger `id`'s samples, newest first: the stored ones and those not
    /// written yet.
    pub async fn samples(
        &self,
        queue: &Queue,
        id: &str,
        keep: usize,
        retention: Duration,
    ) -> Result<Vec<Sample>, QueueError> {
        let stored = stored(queue, id).await?;
        let waiting = lock(&self.pending).get(id).cloned().unwrap_or_default();
        Ok(merge(stored, waiting, keep, retention, Timestamp::now()))
    }
}

/// The stored list of trigger `id`; an unreadable one counts as empty.
async fn stored(queue: &Queue, id: &str) -> Result<Vec<Sample>, QueueError> {
    Ok(queue
        .state(&key(id))
        .await?
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default())
}

/// `old` and `new` together, newest first, the `keep` newest that are
/// younger than `retention` at `now`.
pub fn merge(
    old: Vec<Sample>,
    new: Vec<Sample>,
    keep: usize,
    retention: Duration,
    now: Timestamp,
) -> Vec<Sample> {
    let oldest = jiff::SignedDuration::try_from(retention)
        .ok()
        .and_then(|r| now.checked_sub(r).ok())
        .unwrap_or(Timestamp::MIN);
    let mut all: Vec<Sample> = old
        .into_iter()
        .chain(new)
        .filter(|s| s.at >= oldest)
        .collect();
    all.sort_by_key(|s| std::cmp::Reverse(s.at));
    all.dedup_by(|a, b| a == b);
    all.truncate(keep);
    all
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(second: i64) -> Sample {
        Sample {
            at: Timestamp::from_second(second).unwrap(),
            method: "POST".into(),
            path: "/hooks/t".into(),
            query: None,
            headers: vec![],
            body: format!("{{\"n\":{second}}}"),
            body_truncated: false,
            client_ip: "127.0.0.1".into(),
            verification: "passed".into(),
            status: 202,
            event: None,
            error: None,
        }
    }

    #[test]
    fn merging_keeps_the_newest_within_retention() {
        let now = Timestamp::from_second(1_000).unwrap();
        let old = vec![sample(900), sample(100)];
        let new = vec![sample(950), sample(990), sample(900)];
        let kept = merge(old, new, 3, Duration::from_secs(500), now);
        let seconds: Vec<i64> = kept.iter().map(|s| s.at.as_second()).collect();
        assert_eq!(
            seconds,
            [990, 950, 900],
            "newest first, the old one aged out, no twin"
        );
    }

    #[test]
    fn sampling_takes_at_most_the_budget_a_second() {
        let c = Captures::default();
        let start = Instant::now();
        let taken = (0..100).filter(|_| c.wants("t", 20, start)).count();
        assert_eq!(taken, PER_SECOND);
        assert_eq!((0..100).filter(|_| c.wants("small", 3, start)).count(), 3);
        assert!(!c.wants("off", 0, start));
        assert!(
            c.wants("t", 20, start + Duration::from_secs(1)),
            "a new second"
        );
    }
}
