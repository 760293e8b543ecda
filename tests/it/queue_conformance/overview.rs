//! Conformance: what the console's Overview reads from the queue (SPEC §13):
//! the per-minute counters (`add_counts` / `counts`) and the per-target
//! in-flight and dead-letter counts of `stats`, which follow every way a
//! job enters or leaves a lease or the dead-letter list.

#![allow(clippy::unwrap_used)]

use super::*;

use hookyard::model::tally::{KEEP_MINUTES, minute_of};
use hookyard::queue::MinuteCount;

fn count(minute: i64, name: &str, n: u64) -> MinuteCount {
    MinuteCount {
        minute,
        name: name.into(),
        n,
    }
}

/// `(minute, name) → n` of everything `counts(since)` returns.
async fn read(q: &Queue, since: i64) -> BTreeMap<(i64, String), u64> {
    let mut out = BTreeMap::new();
    for c in q.counts(since).await.unwrap() {
        let was = out.insert((c.minute, c.name.clone()), c.n);
        assert!(was.is_none(), "{c:?} is listed twice");
    }
    out
}

pub async fn counts_add_up_by_minute(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = minute_of(h.clock.now().as_second());
    assert!(read(q, now - 59).await.is_empty(), "a new store has none");
    let ok = "attempt.ok:subscription/a";
    let req = "hook.requests:gh:eu";
    q.add_counts(&[count(now - 1, ok, 2), count(now, ok, 1), count(now, req, 5)])
        .await
        .unwrap();
    // A second writer (another flush, another replica) adds to the same.
    q.add_counts(&[count(now, ok, 3), count(now - 30, req, 1)])
        .await
        .unwrap();
    q.add_counts(&[]).await.unwrap();
    let got = read(q, now - 59).await;
    let want = BTreeMap::from([
        ((now - 30, req.to_owned()), 1),
        ((now - 1, ok.to_owned()), 2),
        ((now, ok.to_owned()), 4),
        ((now, req.to_owned()), 5),
    ]);
    assert_eq!(got, want);
    // Minutes before `since` are left out.
    let recent = read(q, now - 1).await;
    assert_eq!(recent.len(), 3, "{recent:?}");
    assert!(!recent.contains_key(&(now - 30, req.to_owned())));

    // Counters are kept for KEEP_MINUTES: two hours later, these are gone
    // (however far back one asks), and new minutes count from zero.
    h.clock.advance((KEEP_MINUTES + 5) * 60);
    let later = minute_of(h.clock.now().as_second());
    q.add_counts(&[count(later, ok, 1)]).await.unwrap();
    let got = read(q, now - 59).await;
    assert_eq!(got, BTreeMap::from([((later, ok.to_owned()), 1)]));
}

pub async fn stats_count_in_flight_and_dead_letters_by_target(make: Make) {
    let settings = StoreSettings {
        history_retention: Duration::from_secs(3600),
        ..settings()
    };
    let h = open!(make, settings);
    let q = &h.queue;
    let now = h.clock.now();
    let (a, b) = ("subscription/a", "subscription/b");
    let jobs = vec![
        sub_job("e1", "a1", "a"),
        sub_job("e1", "a2", "a"),
        sub_job("e1", "b1", "b"),
    ];
    q.ingest(&event("e1", "t", now), None, jobs).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert!(stats.in_flight_by_target.is_empty(), "nothing leased yet");
    assert!(stats.dead_by_target.is_empty());

    let leased = lease_now(q).await;
    assert_eq!(leased.len(), 3);
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.in_flight_by_target.get(a), Some(&2));
    assert_eq!(stats.in_flight_by_target.get(b), Some(&1));
    let job = |id: &str| leased.iter().find(|j| j.job.delivery_id == id).unwrap();

    // Each way out of a lease: dead letter, retry, complete.
    q.dead_letter(job("a1"), Some(attempt(1, now, Some(500))), "http_500")
        .await
        .unwrap();
    q.dead_letter(job("b1"), None, "http_404").await.unwrap();
    q.retry_at(job("a2"), attempt(1, now, Some(503)), now)
        .await
        .unwrap();
    let stats = q.stats().await.unwrap();
    assert!(stats.in_flight_by_target.is_empty(), "{stats:?}");
    assert_eq!(stats.dead_by_target.get(a), Some(&1));
    assert_eq!(stats.dead_by_target.get(b), Some(&1));
    let again = lease_now(q).await;
    assert_eq!(ids(&again), ["a2"]);
    assert_eq!(
        q.stats().await.unwrap().in_flight_by_target.get(a),
        Some(&1),
        "a retried job leased again is in flight again"
    );
    q.complete(&again[0], None, DeliveryState::Succeeded, None)
        .await
        .unwrap();

    // Out of the dead-letter list: a retry by hand, a redrive of a target.
    q.enqueue(vec![q.job_of("a1").await.unwrap().unwrap()])
        .await
        .unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.dead_by_target.get(a), None, "{stats:?}");
    assert_eq!(stats.dead_by_target.get(b), Some(&1));
    assert_eq!(q.redrive(Some(b)).await.unwrap(), 1);
    assert!(q.stats().await.unwrap().dead_by_target.is_empty());

    // Dead again, then pruned with its event: no longer counted.
    for job in lease_now(q).await {
        q.dead_letter(&job, None, "http_410").await.unwrap();
    }
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.dead_by_target.get(a), Some(&1));
    assert_eq!(stats.dead_by_target.get(b), Some(&1));
    assert_eq!(stats.dead_letter, 2);
    // The count survives a reopen (it is kept in the store).
    drop(again);
    drop(leased);
    let Harness {
        queue,
        clock,
        reopen,
        _keep,
        ..
    } = h;
    drop(queue);
    let q = &reopen().await;
    assert_eq!(q.stats().await.unwrap().dead_by_target.len(), 2);
    clock.advance(2 * 3600);
    assert_eq!(q.prune(clock.now()).await.unwrap(), 1);
    let stats = q.stats().await.unwrap();
    assert!(stats.dead_by_target.is_empty(), "{stats:?}");
    assert_eq!(stats.dead_letter, 0);
}
