//! Conformance: leasing, retries, deferral, lease expiry, dead letters,
//! workflow steps, FIFO lines and stats.

#![allow(clippy::unwrap_used)]

use super::*;
use hookyard::queue::HistoryQuery;

pub async fn delayed_retry_waits_for_its_time(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    let job = lease_now(q).await.remove(0);
    let at = now + SignedDuration::from_secs(60);
    q.retry_at(&job, attempt(1, now, Some(500)), at)
        .await
        .unwrap();
    assert!(lease_now(q).await.is_empty());
    assert_eq!(q.stats().await.unwrap().delayed, 1);
    h.clock.advance(59);
    assert!(lease_now(q).await.is_empty(), "not before its time");
    h.clock.advance(2);
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["d1"]);
    assert_eq!(jobs[0].attempts, 1, "the retry used an attempt");
    let d = q.delivery("d1").await.unwrap().unwrap();
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(d.attempts.len(), 1);
}

pub async fn not_before_delays_a_new_job(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let mut later = sub_job("e1", "d2", "s");
    later.not_before = Some(now + SignedDuration::from_secs(60));
    q.ingest(
        &event("e1", "t", now),
        None,
        vec![sub_job("e1", "d1", "s"), later],
    )
    .await
    .unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.ready, stats.delayed), (1, 1));
    let first = lease_now(q).await;
    assert_eq!(ids(&first), ["d1"], "d2 waits for its time");
    q.complete(&first[0], None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    h.clock.advance(59);
    assert!(lease_now(q).await.is_empty(), "not before its time");
    h.clock.advance(2);
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["d2"]);
    assert_eq!(jobs[0].attempts, 0);
}

pub async fn defer_uses_no_attempt(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    let job = lease_now(q).await.remove(0);
    q.defer(&job, now + SignedDuration::from_secs(10), Some(now))
        .await
        .unwrap();
    assert!(lease_now(q).await.is_empty());
    h.clock.advance(11);
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["d1"]);
    assert_eq!(jobs[0].attempts, 0, "deferring is not an attempt");
    assert_eq!(jobs[0].orphaned_since, Some(now));
    assert!(q.delivery("d1").await.unwrap().unwrap().attempts.is_empty());
}

pub async fn lapsed_lease_is_reclaimed(make: Make) {
    let h = open!(make, short_lease_settings());
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    let dead_worker = lease_now(q).await.remove(0);
    h.leases.pass(&h.clock, SHORT_LEASE, 2, 3).await;
    assert!(lease_now(q).await.is_empty(), "lease still held");
    h.leases.pass(&h.clock, SHORT_LEASE, 11, 30).await; // 31/30 of the lease
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["d1"], "reclaimed from the dead consumer");
    let late = q
        .complete(&dead_worker, None, DeliveryState::Succeeded, None)
        .await;
    assert!(matches!(late, Err(QueueError::LeaseLost)), "{late:?}");
    assert!(matches!(
        q.renew(&dead_worker).await,
        Err(QueueError::LeaseLost)
    ));
    q.complete(&jobs[0], None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(
        q.delivery("d1").await.unwrap().unwrap().state,
        DeliveryState::Succeeded
    );
}

pub async fn renew_keeps_the_lease(make: Make) {
    let h = open!(make, short_lease_settings());
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    let job = lease_now(q).await.remove(0);
    h.leases.pass(&h.clock, SHORT_LEASE, 2, 3).await;
    q.renew(&job).await.unwrap();
    // 4/3 of the lease after leasing, 2/3 after renewing.
    h.leases.pass(&h.clock, SHORT_LEASE, 2, 3).await;
    assert!(
        lease_now(q).await.is_empty(),
        "a renewed lease is not reclaimed"
    );
    assert_eq!(q.stats().await.unwrap().in_flight, 1);
    q.complete(&job, None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
}

pub async fn dead_letter_then_redrive(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let jobs = vec![sub_job("e1", "da", "a"), sub_job("e1", "db", "b")];
    q.ingest(&event("e1", "t", now), None, jobs).await.unwrap();
    for job in lease_now(q).await {
        q.retry_at(&job, attempt(1, now, Some(500)), now)
            .await
            .unwrap();
    }
    for job in lease_now(q).await {
        assert_eq!(job.attempts, 1);
        q.dead_letter(&job, Some(attempt(2, now, Some(404))), "http_404")
            .await
            .unwrap();
    }
    assert!(lease_now(q).await.is_empty());
    assert_eq!(q.stats().await.unwrap().dead_letter, 2);
    let d = q.delivery("da").await.unwrap().unwrap();
    assert_eq!(
        (d.state, d.reason.as_deref()),
        (DeliveryState::DeadLetter, Some("http_404"))
    );
    assert_eq!(d.attempts.len(), 2);

    assert_eq!(q.redrive(Some("subscription/zzz")).await.unwrap(), 0);
    assert_eq!(q.redrive(Some("subscription/a")).await.unwrap(), 1);
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["da"]);
    assert_eq!(jobs[0].attempts, 0, "redrive resets attempts");
    assert_eq!(
        q.delivery("da").await.unwrap().unwrap().state,
        DeliveryState::Pending
    );
    assert_eq!(q.stats().await.unwrap().dead_letter, 1);
    assert_eq!(q.redrive(None).await.unwrap(), 1);
    assert_eq!(ids(&lease_now(q).await), ["db"]);
    assert_eq!(q.redrive(None).await.unwrap(), 0);
}

/// A dead letter retried by hand (the API's and the console's retry: its
/// job enqueued again) leaves the dead-letter list, so a later redrive does
/// not send it a second time.
pub async fn retried_dead_letter_leaves_the_dead_letter_list(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let jobs = vec![sub_job("e1", "da", "a"), sub_job("e1", "db", "b")];
    q.ingest(&event("e1", "t", now), None, jobs).await.unwrap();
    for job in lease_now(q).await {
        q.dead_letter(&job, Some(attempt(1, now, Some(500))), "http_500")
            .await
            .unwrap();
    }
    assert_eq!(q.stats().await.unwrap().dead_letter, 2);
    let job = q.job_of("da").await.unwrap().unwrap();
    q.enqueue(vec![job]).await.unwrap();
    assert_eq!(q.stats().await.unwrap().dead_letter, 1);
    let leased = lease_now(q).await;
    assert_eq!(ids(&leased), ["da"]);
    q.complete(&leased[0], None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(q.redrive(None).await.unwrap(), 1, "only db is still dead");
    assert_eq!(ids(&lease_now(q).await), ["db"]);
}

/// Dead letters page by page (the console's dead-letter page), without a
/// delivery twice or left out, and only dead ones.
pub async fn dead_letters_page_through(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let jobs: Vec<NewJob> = ["d1", "d2", "d3", "ok"]
        .iter()
        .map(|id| sub_job("e1", id, "a"))
        .collect();
    q.ingest(&event("e1", "t", now), None, jobs).await.unwrap();
    for job in lease_now(q).await {
        if job.job.delivery_id == "ok" {
            q.complete(&job, None, DeliveryState::Succeeded, None)
                .await
                .unwrap();
        } else {
            q.dead_letter(&job, Some(attempt(1, now, Some(500))), "http_500")
                .await
                .unwrap();
        }
    }
    let mut query = HistoryQuery {
        state: Some(DeliveryState::DeadLetter),
        limit: 2,
        ..Default::default()
    };
    let first = q.deliveries(&query).await.unwrap();
    assert_eq!(first.items.len(), 2);
    query.cursor = first.next_cursor.clone();
    assert!(query.cursor.is_some());
    let second = q.deliveries(&query).await.unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.next_cursor, None);
    let mut seen: Vec<String> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|d| d.id.clone())
        .collect();
    seen.sort();
    assert_eq!(seen, ["d1", "d2", "d3"]);
    assert!(
        first
            .items
            .iter()
            .all(|d| d.state == DeliveryState::DeadLetter)
    );
}

pub fn step_job(event_id: &str, delivery_id: &str, step: usize) -> NewJob {
    NewJob {
        delivery_id: delivery_id.into(),
        event_id: event_id.into(),
        target: Target::WorkflowStep {
            workflow: "w".into(),
            step,
            action: format!("act{step}"),
        },
        steps: BTreeMap::new(),
        ordering_key: None,
        not_before: None,
        traceparent: None,
        fifo_later: false,
    }
}

pub async fn next_step_enqueued_with_complete(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![step_job("e1", "s0", 0)])
        .await
        .unwrap();
    let job = lease_now(q).await.remove(0);
    let mut next = step_job("e1", "s1", 1);
    let response = StepResponse {
        status: 201,
        headers: BTreeMap::new(),
        body: json!({"id": 7}),
    };
    next.steps.insert("act0".into(), response);
    q.complete(
        &job,
        Some(attempt(1, now, Some(201))),
        DeliveryState::Succeeded,
        Some(next.clone()),
    )
    .await
    .unwrap();
    let jobs = lease_now(q).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job, next, "step 2 carries step 1's response");
    let (_, deliveries) = q.event("e1").await.unwrap().unwrap();
    let states: Vec<_> = deliveries
        .iter()
        .map(|d| (d.id.as_str(), d.state))
        .collect();
    assert_eq!(
        states,
        [
            ("s0", DeliveryState::Succeeded),
            ("s1", DeliveryState::Pending)
        ]
    );
    assert_eq!(deliveries[1].target, "workflow/w/act1");
}

pub fn fifo_job(n: u32) -> NewJob {
    let mut job = sub_job(&format!("e{n}"), &format!("k{n}"), "ordered");
    job.ordering_key = Some("customer-1".into());
    job
}

pub async fn fifo_head_blocks_its_line(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    for n in 1..=3 {
        let e = format!("e{n}");
        q.ingest(&event(&e, "t", now), None, vec![fifo_job(n)])
            .await
            .unwrap();
    }
    q.ingest(
        &event("free", "t", now),
        None,
        vec![sub_job("free", "u1", "other")],
    )
    .await
    .unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.ready, stats.delayed),
        (2, 2),
        "jobs waiting behind their FIFO head count as delayed (not leasable now)"
    );
    let jobs = lease_now(q).await;
    assert_eq!(
        ids(&jobs),
        ["k1", "u1"],
        "only the head of the line is handed out"
    );
    let head = jobs.iter().find(|j| j.job.delivery_id == "k1").unwrap();

    // A retrying head still blocks its line.
    q.retry_at(
        head,
        attempt(1, now, Some(500)),
        now + SignedDuration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(lease_now(q).await.is_empty());
    h.clock.advance(6);
    let head = lease_now(q).await.remove(0);
    assert_eq!(head.job.delivery_id, "k1");
    q.complete(&head, None, DeliveryState::Succeeded, None)
        .await
        .unwrap();

    let second = lease_now(q).await;
    assert_eq!(
        ids(&second),
        ["k2"],
        "completing the head releases the next"
    );
    q.dead_letter(&second[0], None, "http_400").await.unwrap();
    let third = lease_now(q).await;
    assert_eq!(
        ids(&third),
        ["k3"],
        "dead-lettering the head releases the next"
    );

    // A redriven dead letter joins the back of the line.
    assert_eq!(q.redrive(None).await.unwrap(), 1);
    assert!(lease_now(q).await.is_empty(), "k2 waits behind k3");
    q.complete(&third[0], None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(ids(&lease_now(q).await), ["k2"]);
}

pub async fn stats_counts(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let jobs = vec![
        sub_job("e1", "d1", "a"),
        sub_job("e1", "d2", "a"),
        sub_job("e1", "d3", "b"),
        sub_job("e1", "d4", "b"),
    ];
    q.ingest(&event("e1", "t", now), None, jobs).await.unwrap();
    h.clock.advance(10);
    let leased = q.lease(3, Duration::ZERO).await.unwrap();
    assert_eq!(leased.len(), 3);
    q.retry_at(
        &leased[0],
        attempt(1, now, None),
        now + SignedDuration::from_secs(600),
    )
    .await
    .unwrap();
    q.dead_letter(&leased[1], None, "http_404").await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.ready, 1);
    assert_eq!(stats.delayed, 1);
    assert_eq!(stats.in_flight, 1);
    assert_eq!(stats.dead_letter, 1);
    assert!(
        (stats.oldest_age_seconds - 10.0).abs() < 1.0,
        "{}",
        stats.oldest_age_seconds
    );
    assert_eq!(stats.pending_by_target.values().sum::<u64>(), 3);
    let dead_target = q
        .delivery(&leased[1].job.delivery_id)
        .await
        .unwrap()
        .unwrap()
        .target;
    let other = if dead_target == "subscription/a" {
        "subscription/b"
    } else {
        "subscription/a"
    };
    assert_eq!(stats.pending_by_target.get(&dead_target), Some(&1));
    assert_eq!(stats.pending_by_target.get(other), Some(&2));
}

pub async fn lease_waits_for_new_work(make: Make) {
    let h = open!(make);
    let now = h.clock.now();
    let started = std::time::Instant::now();
    assert!(
        h.queue
            .lease(1, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "waits up to `wait`"
    );

    let q = h.queue.clone();
    let waiter = tokio::spawn(async move { q.lease(1, Duration::from_secs(10)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let job = sub_job("e1", "d1", "s");
    h.queue
        .ingest(&event("e1", "t", now), None, vec![job])
        .await
        .unwrap();
    let jobs = waiter.await.unwrap();
    assert_eq!(ids(&jobs), ["d1"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "woken by the new job"
    );
    // A job handed out by the waiting read finishes into a full record.
    let a = attempt(1, now, Some(200));
    h.queue
        .complete(&jobs[0], Some(a.clone()), DeliveryState::Succeeded, None)
        .await
        .unwrap();
    let d = h.queue.delivery("d1").await.unwrap().unwrap();
    assert_eq!(
        (d.event_id.as_str(), d.target.as_str(), d.state),
        ("e1", "subscription/s", DeliveryState::Succeeded)
    );
    assert_eq!(d.attempts, vec![a]);
}
