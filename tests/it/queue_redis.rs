//! Redis-specific behaviour of the Redis queue backend against the Redis at
//! 127.0.0.1:6379 (each test on its own key prefix, deleted at the end):
//! several consumers sharing a stream, lost leases, real TTLs, undecodable
//! jobs; plus fault tests that run their own redis-server (`faults`). What
//! both backends must do is in the conformance suite (`queue_conformance`),
//! which runs against Redis too. Skipped with a visible message when Redis
//! is unreachable, except in CI.

#![allow(clippy::unwrap_used)]

mod faults;
mod overview;
mod support;

use std::time::Duration;

use hookyard::queue::redis::RedisQueue;
use hookyard::queue::{DeliveryState, Ingested, QueueError, Target};
use support::*;

#[tokio::test]
async fn idempotency_keys_expire_after_the_window() {
    if !redis_up() {
        return;
    }
    let prefix = prefix();
    let _keys = Keys {
        url: URL.into(),
        prefix: prefix.clone(),
    };
    let mut s = settings("w1", Duration::from_secs(30));
    s.idempotency_window = Duration::from_millis(200);
    let q = hookyard::queue::redis::RedisQueue::open(URL, &prefix, s)
        .await
        .unwrap();
    let key = Some(("trigger:shop", "K1"));
    q.ingest(&event("E1", "t"), key, vec![]).await.unwrap();
    let dup = q.ingest(&event("E2", "t"), key, vec![]).await.unwrap();
    assert!(matches!(dup, Ingested::Duplicate { .. }));
    tokio::time::sleep(Duration::from_millis(350)).await;
    // The key is gone from Redis itself (its TTL bounds memory even when
    // prune never runs), not only judged expired.
    let client = redis::Client::open(URL).unwrap();
    let mut c = client.get_connection().unwrap();
    let left: u64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}:idem:trigger:shop:K1"))
        .query(&mut c)
        .unwrap();
    assert_eq!(left, 0, "the idempotency key expired in Redis");
    let again = q.ingest(&event("E2", "t"), key, vec![]).await.unwrap();
    assert!(matches!(again, Ingested::Accepted { .. }));
}

#[tokio::test]
async fn a_client_id_needs_no_idempotency_key() {
    let Some((q, keys)) = queue("c", Duration::from_secs(30)).await else {
        return;
    };
    let key = Some(("event", "C1"));
    q.ingest(&event("C1", "t"), key, vec![]).await.unwrap();
    let dup = q.ingest(&event("C1", "t"), key, vec![]).await.unwrap();
    assert_eq!(
        dup,
        Ingested::Duplicate {
            event_id: "C1".into()
        }
    );
    // The event record is the marker: ingestion wrote no key and no log
    // entry for prune to walk (one key less per event on the hot path).
    let client = redis::Client::open(URL).unwrap();
    let mut c = client.get_connection().unwrap();
    let idem: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:idem*", keys.prefix))
        .query(&mut c)
        .unwrap();
    assert!(idem.is_empty(), "{idem:?}");
}

/// Data of an older hookyard: it pruned an event within its window and left
/// the id as a key (logged in `<p>:idem`), but did not note that in
/// `<p>:idempruned`. Opening the queue on such data notes it, so the id is
/// still a duplicate, whether events are left in history or not. An empty
/// Redis gets no note (ingestion then skips those lookups).
#[tokio::test]
async fn a_client_id_pruned_by_an_older_version_stays_a_duplicate() {
    if !redis_up() {
        return;
    }
    let client = redis::Client::open(URL).unwrap();
    let mut c = client.get_connection().unwrap();
    for events_left in [true, false] {
        let prefix = prefix();
        let _keys = Keys {
            url: URL.into(),
            prefix: prefix.clone(),
        };
        let marker = format!("{prefix}:idempruned");
        let fresh = RedisQueue::open(URL, &prefix, settings("o", Duration::from_secs(30)))
            .await
            .unwrap();
        let noted: bool = redis::cmd("EXISTS").arg(&marker).query(&mut c).unwrap();
        assert!(!noted, "an empty Redis gets no note");
        drop(fresh);

        // What the older version left: the pruned id as a key and in the
        // log, and maybe other events still in history.
        let now = jiff::Timestamp::now().as_millisecond();
        if events_left {
            let _: () = redis::cmd("ZADD")
                .arg(format!("{prefix}:events"))
                .arg(1)
                .arg("OTHER")
                .query(&mut c)
                .unwrap();
        }
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}:idem:event:OLD"))
            .arg(format!("{now}|OLD"))
            .arg("PX")
            .arg(60_000)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("RPUSH")
            .arg(format!("{prefix}:idem"))
            .arg(format!("{now}|event:OLD"))
            .query(&mut c)
            .unwrap();
        let q = RedisQueue::open(URL, &prefix, settings("o", Duration::from_secs(30)))
            .await
            .unwrap();
        let again = q
            .ingest(&event("OLD", "t"), Some(("event", "OLD")), vec![])
            .await
            .unwrap();
        assert_eq!(
            again,
            Ingested::Duplicate {
                event_id: "OLD".into()
            },
            "events left in history: {events_left}"
        );
    }
}

/// Ingestion writes no delivery record for a job that goes straight into
/// the stream (one key less per job); the first lease writes it, and a
/// reclaimed lease of the same entry keeps what the record holds.
#[tokio::test]
async fn a_delivery_record_is_written_at_first_lease() {
    let lease = Duration::from_millis(300);
    let Some((q, keys)) = queue("a", lease).await else {
        return;
    };
    let client = redis::Client::open(URL).unwrap();
    let mut c = client.get_connection().unwrap();
    let record = format!("{}:d:D1", keys.prefix);
    let mut exists = || -> bool { redis::cmd("EXISTS").arg(&record).query(&mut c).unwrap() };
    q.ingest(&event("E1", "t"), None, vec![job("D1", "E1", "s")])
        .await
        .unwrap();
    assert!(!exists(), "ingestion wrote the delivery record");
    let first = q.lease(1, NO_WAIT).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(exists(), "the first lease writes the record");
    assert_eq!(
        q.delivery("D1").await.unwrap().unwrap().state,
        DeliveryState::Pending
    );

    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let again = q.lease(1, NO_WAIT).await.unwrap();
    assert_eq!(again.len(), 1, "the lapsed lease is reclaimed");
    q.complete(
        &again[0],
        Some(attempt(1, 200)),
        DeliveryState::Succeeded,
        None,
    )
    .await
    .unwrap();
    let d = q.delivery("D1").await.unwrap().unwrap();
    assert_eq!(
        (d.event_id.as_str(), d.target.as_str()),
        ("E1", "subscription/s")
    );
    assert_eq!((d.state, d.attempts.len()), (DeliveryState::Succeeded, 1));
    let queued: u64 = redis::cmd("HLEN")
        .arg(format!("{}:dq", keys.prefix))
        .query(&mut client.get_connection().unwrap())
        .unwrap();
    assert_eq!(queued, 0, "nothing is left in the queued list");
}

/// A job queued at ingestion adds no member to `<p>:unfinished`: while it
/// is in the stream its entry gives the oldest age; it joins the set only
/// when it leaves the stream unfinished (a retry), under its enqueue time.
#[tokio::test]
async fn the_oldest_age_counts_jobs_still_in_the_stream() {
    let Some((q, keys)) = queue("a", Duration::from_secs(30)).await else {
        return;
    };
    let client = redis::Client::open(URL).unwrap();
    let mut c = client.get_connection().unwrap();
    let unfinished = format!("{}:unfinished", keys.prefix);
    let mut members = || -> u64 { redis::cmd("ZCARD").arg(&unfinished).query(&mut c).unwrap() };
    q.ingest(&event("E1", "t"), None, vec![job("D1", "E1", "s")])
        .await
        .unwrap();
    assert_eq!(members(), 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let age = q.stats().await.unwrap().oldest_age_seconds;
    assert!(age >= 1.0, "the queued job is {age} s old");

    let leased = q.lease(1, NO_WAIT).await.unwrap();
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600);
    q.retry_at(&leased[0], attempt(1, 503), later)
        .await
        .unwrap();
    assert_eq!(members(), 1, "a retried job is counted in the set");
    let age = q.stats().await.unwrap().oldest_age_seconds;
    assert!(
        age >= 1.0,
        "under its enqueue time, not the retry's: {age} s"
    );
}

#[tokio::test]
async fn lapsed_lease_is_reclaimed_by_another_consumer() {
    let lease = Duration::from_millis(300);
    let Some((a, keys)) = queue("a", lease).await else {
        return;
    };
    let b = hookyard::queue::redis::RedisQueue::open(URL, &keys.prefix, settings("b", lease))
        .await
        .unwrap();
    a.ingest(&event("E1", "t"), None, vec![job("D1", "E1", "s")])
        .await
        .unwrap();
    let held = a.lease(1, SHORT).await.unwrap().pop().unwrap();
    assert!(
        b.lease(1, NO_WAIT).await.unwrap().is_empty(),
        "held leases are not reclaimed"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let taken = b.lease(1, NO_WAIT).await.unwrap().pop().expect("reclaimed");
    assert_eq!(taken.job.delivery_id, "D1");
    assert_ne!(taken.lease, held.lease);
    assert!(matches!(a.renew(&held).await, Err(QueueError::LeaseLost)));
    let late = a
        .complete(&held, None, DeliveryState::Succeeded, None)
        .await;
    assert!(matches!(late, Err(QueueError::LeaseLost)));
    b.complete(
        &taken,
        Some(attempt(1, 200)),
        DeliveryState::Succeeded,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        b.delivery("D1").await.unwrap().unwrap().state,
        DeliveryState::Succeeded
    );
}

#[tokio::test]
async fn renewing_keeps_the_lease() {
    let lease = Duration::from_millis(300);
    let Some((a, keys)) = queue("a", lease).await else {
        return;
    };
    let b = hookyard::queue::redis::RedisQueue::open(URL, &keys.prefix, settings("b", lease))
        .await
        .unwrap();
    a.ingest(&event("E1", "t"), None, vec![job("D1", "E1", "s")])
        .await
        .unwrap();
    let held = a.lease(1, SHORT).await.unwrap().pop().unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        a.renew(&held).await.unwrap();
        assert!(b.lease(1, NO_WAIT).await.unwrap().is_empty());
    }
    a.complete(&held, None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn complete_enqueues_the_next_step_atomically() {
    let lease = Duration::from_millis(300);
    let Some((a, keys)) = queue("a", lease).await else {
        return;
    };
    let step = |d: &str, n: usize| hookyard::queue::NewJob {
        target: Target::WorkflowStep {
            workflow: "wf".into(),
            step: n,
            action: format!("act{n}"),
        },
        ..job(d, "E1", "unused")
    };
    a.ingest(&event("E1", "t"), None, vec![step("S0", 0)])
        .await
        .unwrap();
    let j0 = a.lease(1, SHORT).await.unwrap().pop().unwrap();
    a.complete(
        &j0,
        Some(attempt(1, 200)),
        DeliveryState::Succeeded,
        Some(step("S1", 1)),
    )
    .await
    .unwrap();
    let j1 = a.lease(1, SHORT).await.unwrap().pop().unwrap();
    assert_eq!(j1.job.target, step("S1", 1).target);

    // A lost lease writes nothing: no next step appears.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = hookyard::queue::redis::RedisQueue::open(URL, &keys.prefix, settings("b", lease))
        .await
        .unwrap();
    let taken = b.lease(1, NO_WAIT).await.unwrap().pop().unwrap();
    let lost = a
        .complete(&j1, None, DeliveryState::Succeeded, Some(step("S2", 2)))
        .await;
    assert!(matches!(lost, Err(QueueError::LeaseLost)));
    assert!(a.delivery("S2").await.unwrap().is_none());
    b.complete(&taken, None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    let (_, ds) = a.event("E1").await.unwrap().unwrap();
    let ids: Vec<_> = ds.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, vec!["S0", "S1"]);
    assert_eq!(ds[1].target, "workflow/wf/act1");
}

#[tokio::test]
async fn undecodable_jobs_are_dead_lettered_not_stuck() {
    let Some((q, keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    q.ingest(
        &event("E1", "t"),
        None,
        vec![job("D1", "E1", "a"), job("D2", "E1", "a")],
    )
    .await
    .unwrap();
    let leased = q.lease(10, SHORT).await.unwrap();
    assert_eq!(leased.len(), 2);
    let d1 = leased.iter().find(|j| j.job.delivery_id == "D1").unwrap();
    // Retried, D1 goes back into the stream from its delivery record, which
    // is damaged meanwhile.
    q.retry_at(d1, attempt(1, 500), jiff::Timestamp::now())
        .await
        .unwrap();
    let client = redis::Client::open(URL).unwrap();
    let mut c = client.get_connection().unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{}:d:D1", keys.prefix))
        .arg("job")
        .arg("{\"V9\":{}}")
        .query(&mut c)
        .unwrap();
    assert!(q.lease(10, SHORT).await.unwrap().is_empty());
    let rec = q.delivery("D1").await.unwrap().unwrap();
    assert_eq!(rec.state, DeliveryState::DeadLetter);
    assert_eq!(rec.reason.as_deref(), Some("undecodable_job"));
    assert_eq!(q.stats().await.unwrap().in_flight, 1, "D2 is still leased");
}

#[tokio::test]
async fn entries_of_an_older_version_still_lease() {
    let Some((q, keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    // D1 and D2 exist but wait far in the future; entries as older
    // hookyards wrote them (delivery id only, job in the record) are put in
    // the stream by hand.
    let far = jiff::Timestamp::now() + Duration::from_secs(3600);
    let mut jobs = vec![job("D1", "E1", "a"), job("D2", "E1", "a")];
    for j in &mut jobs {
        j.not_before = Some(far);
    }
    q.ingest(&event("E1", "t"), None, jobs.clone())
        .await
        .unwrap();
    let old_entry = |did: &str| {
        let client = redis::Client::open(URL).unwrap();
        let mut c = client.get_connection().unwrap();
        let _: String = redis::cmd("XADD")
            .arg(format!("{}:ready", keys.prefix))
            .arg("*")
            .arg("d")
            .arg(did)
            .query(&mut c)
            .unwrap();
    };
    // Read by the lease script.
    old_entry("D1");
    let got = q.lease(10, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, jobs[0]);
    // Read by the blocking XREADGROUP.
    let q2 = q.clone();
    let waiter = tokio::spawn(async move { q2.lease(10, Duration::from_secs(3)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    old_entry("D2");
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, jobs[1]);
    q.complete(&got[0], None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(
        q.delivery("D2").await.unwrap().unwrap().state,
        DeliveryState::Succeeded
    );
}

#[tokio::test]
async fn concurrent_completes_each_get_their_own_answer() {
    let Some((q, _keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    let jobs: Vec<_> = (0..20)
        .map(|i| job(&format!("D{i}"), "E1", if i % 2 == 0 { "a" } else { "b" }))
        .collect();
    q.ingest(&event("E1", "t"), None, jobs).await.unwrap();
    let leased = q.lease(20, SHORT).await.unwrap();
    assert_eq!(leased.len(), 20);
    // Every lease once, and the first one a second time in the same burst:
    // coalesced into one script call or not, it finishes exactly once.
    let mut calls: Vec<_> = leased.iter().collect();
    calls.push(&leased[0]);
    let answers = futures_util::future::join_all(
        calls
            .iter()
            .map(|l| q.complete(l, Some(attempt(1, 200)), DeliveryState::Succeeded, None)),
    )
    .await;
    let lost = answers
        .iter()
        .filter(|a| matches!(a, Err(QueueError::LeaseLost)))
        .count();
    assert_eq!(lost, 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 20);
    let (_, ds) = q.event("E1").await.unwrap().unwrap();
    assert!(ds.iter().all(|d| d.state == DeliveryState::Succeeded));
    assert!(ds.iter().all(|d| d.attempts.len() == 1), "one attempt each");
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.ready, stats.in_flight, stats.delayed), (0, 0, 0));
    assert!(stats.pending_by_target.is_empty());
}

#[tokio::test]
async fn idempotency_keys_of_an_older_version_still_count() {
    let Some((q, keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    // Older hookyards stored the first event id alone, with the window as TTL.
    let client = redis::Client::open(URL).unwrap();
    let mut c = client.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{}:idem:event:k1", keys.prefix))
        .arg("E0")
        .arg("PX")
        .arg(60_000)
        .query(&mut c)
        .unwrap();
    let again = q
        .ingest(&event("E1", "t"), Some(("event", "k1")), vec![])
        .await
        .unwrap();
    assert_eq!(
        again,
        Ingested::Duplicate {
            event_id: "E0".into()
        }
    );
}
