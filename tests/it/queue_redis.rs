//! Behaviour of the Redis queue backend against the Redis at 127.0.0.1:6379
//! (each test on its own key prefix, deleted at the end), plus fault tests
//! that run their own redis-server (`faults`). Skipped with a visible
//! message when Redis is unreachable, except in CI.

#![allow(clippy::unwrap_used)]

mod faults;
mod history;
mod support;

use std::time::Duration;

use hookyard::queue::{DeliveryState, Ingested, QueueError, Target};
use support::*;

#[tokio::test]
async fn ingest_lease_complete_records_history_and_stats() {
    let Some((q, _keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    let e = event("E1", "contact.created");
    let jobs = vec![job("D1", "E1", "a"), job("D2", "E1", "b")];
    let got = q.ingest(&e, None, jobs).await.unwrap();
    assert_eq!(
        got,
        Ingested::Accepted {
            event_id: "E1".into()
        }
    );

    let stats = q.stats().await.unwrap();
    assert_eq!((stats.ready, stats.in_flight), (2, 0));
    assert_eq!(stats.pending_by_target.get("subscription/a"), Some(&1));

    let mut leased = q.lease(10, SHORT).await.unwrap();
    leased.sort_by(|a, b| a.job.delivery_id.cmp(&b.job.delivery_id));
    assert_eq!(leased.len(), 2);
    assert_eq!(leased[0].job, job("D1", "E1", "a"));
    assert_eq!(leased[0].attempts, 0);
    assert_eq!(q.stats().await.unwrap().in_flight, 2);

    q.complete(
        &leased[0],
        Some(attempt(1, 200)),
        DeliveryState::Succeeded,
        None,
    )
    .await
    .unwrap();
    q.complete(&leased[1], None, DeliveryState::Test, None)
        .await
        .unwrap();
    // Finishing twice is refused: the lease is gone.
    let again = q
        .complete(&leased[1], None, DeliveryState::Test, None)
        .await;
    assert!(matches!(again, Err(QueueError::LeaseLost)));

    let (ev, deliveries) = q.event("E1").await.unwrap().unwrap();
    assert_eq!(ev, e);
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].state, DeliveryState::Succeeded);
    assert_eq!(deliveries[0].attempts.len(), 1);
    assert_eq!(deliveries[0].attempts[0].attempt, 1);
    assert_eq!(deliveries[0].target, "subscription/a");
    assert_eq!(deliveries[1].state, DeliveryState::Test);
    assert!(q.event("nope").await.unwrap().is_none());

    let stats = q.stats().await.unwrap();
    assert_eq!((stats.ready, stats.in_flight, stats.delayed), (0, 0, 0));
    assert!(stats.pending_by_target.is_empty());
    assert!(q.lease(10, SHORT).await.unwrap().is_empty());
    assert_eq!(q.job_of("D2").await.unwrap(), Some(job("D2", "E1", "b")));
    assert_eq!(q.job_of("nope").await.unwrap(), None);
    q.ping().await.unwrap();
    assert_eq!(q.resets(), 0);
}

#[tokio::test]
async fn lease_blocks_until_work_arrives() {
    let Some((q, _keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    let q2 = q.clone();
    let waiter = tokio::spawn(async move { q2.lease(5, Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.ingest(&event("E1", "t"), None, vec![job("D1", "E1", "a")])
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("lease woke up")
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn duplicates_answer_the_first_event_id() {
    let Some((q, _keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    let key = Some(("trigger:shop", "k1"));
    let first = q
        .ingest(&event("E1", "t"), key, vec![job("D1", "E1", "a")])
        .await
        .unwrap();
    assert_eq!(
        first,
        Ingested::Accepted {
            event_id: "E1".into()
        }
    );
    let dup = q
        .ingest(&event("E2", "t"), key, vec![job("D2", "E2", "a")])
        .await
        .unwrap();
    assert_eq!(
        dup,
        Ingested::Duplicate {
            event_id: "E1".into()
        }
    );
    assert!(
        q.event("E2").await.unwrap().is_none(),
        "nothing written for a duplicate"
    );
    // Another scope is another key space.
    let other = q
        .ingest(&event("E3", "t"), Some(("event", "k1")), vec![])
        .await
        .unwrap();
    assert_eq!(
        other,
        Ingested::Accepted {
            event_id: "E3".into()
        }
    );
    assert_eq!(q.lease(10, SHORT).await.unwrap().len(), 1);

    // Concurrent duplicates: exactly one wins, all see its id.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("C{i}");
            q.ingest(
                &event(&id, "t"),
                Some(("event", "same")),
                vec![job(&format!("CD{i}"), &id, "a")],
            )
            .await
            .unwrap()
        }));
    }
    let mut accepted = Vec::new();
    let mut dup_ids = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ingested::Accepted { event_id } => accepted.push(event_id),
            Ingested::Duplicate { event_id } => dup_ids.push(event_id),
        }
    }
    assert_eq!(accepted.len(), 1);
    assert_eq!(dup_ids.len(), 15);
    assert!(dup_ids.iter().all(|d| *d == accepted[0]));

    // A batch answers in order, duplicates inside the batch included.
    let items = vec![
        (
            event("B1", "t"),
            Some(("event".to_string(), "b".to_string())),
            vec![],
        ),
        (
            event("B2", "t"),
            Some(("event".to_string(), "b".to_string())),
            vec![],
        ),
        (event("B3", "t"), None, vec![]),
    ];
    let answers = q.ingest_many(items).await.unwrap();
    assert_eq!(
        answers,
        vec![
            Ingested::Accepted {
                event_id: "B1".into()
            },
            Ingested::Duplicate {
                event_id: "B1".into()
            },
            Ingested::Accepted {
                event_id: "B3".into()
            },
        ]
    );
}

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
    let key = Some(("event", "E1"));
    q.ingest(&event("E1", "t"), key, vec![]).await.unwrap();
    let dup = q.ingest(&event("E1", "t"), key, vec![]).await.unwrap();
    assert!(matches!(dup, Ingested::Duplicate { .. }));
    tokio::time::sleep(Duration::from_millis(350)).await;
    let again = q.ingest(&event("E1", "t"), key, vec![]).await.unwrap();
    assert!(matches!(again, Ingested::Accepted { .. }));
}

#[tokio::test]
async fn retry_and_defer_wait_on_the_clock() {
    let Some((q, _keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    let clock = TestClock::install(&q);
    let mut later = job("D2", "E1", "a");
    later.not_before = Some(clock.now() + Duration::from_secs(60));
    q.ingest(&event("E1", "t"), None, vec![job("D1", "E1", "a"), later])
        .await
        .unwrap();
    let j = q.lease(10, SHORT).await.unwrap();
    assert_eq!(j.len(), 1, "the not_before job waits");
    q.retry_at(
        &j[0],
        attempt(1, 500),
        clock.now() + Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(q.lease(10, SHORT).await.unwrap().is_empty());
    assert_eq!(q.stats().await.unwrap().delayed, 2);

    clock.advance(Duration::from_secs(11));
    let j = q.lease(10, SHORT).await.unwrap();
    assert_eq!(j.len(), 1);
    assert_eq!((j[0].job.delivery_id.as_str(), j[0].attempts), ("D1", 1));
    let since = clock.now();
    q.defer(&j[0], clock.now() + Duration::from_secs(5), Some(since))
        .await
        .unwrap();
    assert!(q.lease(10, SHORT).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(6));
    let j = q.lease(10, SHORT).await.unwrap();
    assert_eq!(j[0].attempts, 1, "defer uses no attempt");
    assert_eq!(j[0].orphaned_since, Some(since));
    let rec = q.delivery("D1").await.unwrap().unwrap();
    assert_eq!(rec.attempts.len(), 1);
    assert_eq!(rec.state, DeliveryState::Pending);

    clock.advance(Duration::from_secs(60));
    let j = q.lease(10, SHORT).await.unwrap();
    assert_eq!(j[0].job.delivery_id, "D2");
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
async fn dead_letter_and_redrive_reset_attempts() {
    let Some((q, _keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    q.ingest(
        &event("E1", "t"),
        None,
        vec![job("D1", "E1", "a"), job("D2", "E1", "b")],
    )
    .await
    .unwrap();
    let clock = TestClock::install(&q);
    let j = q.lease(10, SHORT).await.unwrap();
    for l in &j {
        q.retry_at(l, attempt(1, 500), clock.now()).await.unwrap();
    }
    for l in q.lease(10, SHORT).await.unwrap() {
        assert_eq!(l.attempts, 1);
        q.dead_letter(&l, Some(attempt(2, 404)), "http_404")
            .await
            .unwrap();
    }
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.dead_letter, stats.ready, stats.delayed), (2, 0, 0));
    assert!(stats.pending_by_target.is_empty());
    let rec = q.delivery("D1").await.unwrap().unwrap();
    assert_eq!(rec.state, DeliveryState::DeadLetter);
    assert_eq!(rec.reason.as_deref(), Some("http_404"));
    assert_eq!(rec.attempts.len(), 2);

    assert_eq!(q.redrive(Some("subscription/zzz")).await.unwrap(), 0);
    assert_eq!(q.redrive(Some("subscription/a")).await.unwrap(), 1);
    let j = q.lease(10, SHORT).await.unwrap();
    assert_eq!(j.len(), 1);
    assert_eq!((j[0].job.delivery_id.as_str(), j[0].attempts), ("D1", 0));
    assert_eq!(
        q.delivery("D1").await.unwrap().unwrap().state,
        DeliveryState::Pending
    );
    assert_eq!(q.redrive(None).await.unwrap(), 1);
    assert_eq!(q.stats().await.unwrap().dead_letter, 0);
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
async fn fifo_lines_release_one_job_at_a_time() {
    let Some((q, _keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    let clock = TestClock::install(&q);
    let fifo = |d: &str, e: &str| hookyard::queue::NewJob {
        ordering_key: Some("sub/k".into()),
        ..job(d, e, "f")
    };
    for i in 1..=3 {
        let e = format!("E{i}");
        q.ingest(&event(&e, "t"), None, vec![fifo(&format!("F{i}"), &e)])
            .await
            .unwrap();
    }
    q.ingest(&event("E9", "t"), None, vec![job("U1", "E9", "u")])
        .await
        .unwrap();
    assert_eq!(
        q.stats().await.unwrap().ready,
        4,
        "parked FIFO jobs count as ready"
    );
    let ids = |v: &Vec<hookyard::queue::LeasedJob>| {
        let mut ids: Vec<String> = v.iter().map(|j| j.job.delivery_id.clone()).collect();
        ids.sort();
        ids
    };
    let first = q.lease(10, SHORT).await.unwrap();
    assert_eq!(ids(&first), vec!["F1", "U1"]);
    let f1 = first.iter().find(|j| j.job.delivery_id == "F1").unwrap();
    q.complete(f1, None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    let f2 = q.lease(10, SHORT).await.unwrap();
    assert_eq!(ids(&f2), vec!["F2"]);
    // A retried head keeps its place.
    q.retry_at(
        &f2[0],
        attempt(1, 500),
        clock.now() + Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(q.lease(10, SHORT).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(6));
    let f2 = q.lease(10, SHORT).await.unwrap();
    assert_eq!(ids(&f2), vec!["F2"]);
    q.dead_letter(&f2[0], None, "http_410").await.unwrap();
    let f3 = q.lease(10, SHORT).await.unwrap();
    assert_eq!(ids(&f3), vec!["F3"]);
    // The redriven job joins the back of the line, behind the in-flight F3.
    assert_eq!(q.redrive(None).await.unwrap(), 1);
    assert!(q.lease(10, SHORT).await.unwrap().is_empty());
    q.complete(&f3[0], None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    let again = q.lease(10, SHORT).await.unwrap();
    assert_eq!(ids(&again), vec!["F2"]);
    assert_eq!(again[0].attempts, 0);
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
    let client = redis::Client::open(URL).unwrap();
    let mut c = client.get_connection().unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{}:d:D1", keys.prefix))
        .arg("job")
        .arg("{\"V9\":{}}")
        .query(&mut c)
        .unwrap();
    let got = q.lease(10, SHORT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job.delivery_id, "D2");
    let rec = q.delivery("D1").await.unwrap().unwrap();
    assert_eq!(rec.state, DeliveryState::DeadLetter);
    assert_eq!(rec.reason.as_deref(), Some("undecodable_job"));
    assert_eq!(q.stats().await.unwrap().in_flight, 1);
}
