//! Conformance: history (events, deliveries, attempts), pagination,
//! replay, and pruning by count, age and idempotency window.

#![allow(clippy::unwrap_used)]

use super::*;

pub async fn history_shows_deliveries_and_attempts(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let e = event("e1", "contact.created", now);
    q.ingest(
        &e,
        None,
        vec![sub_job("e1", "d1", "a"), sub_job("e1", "d2", "b")],
    )
    .await
    .unwrap();
    let jobs = lease_now(q).await;
    let (a1, a2) = (attempt(1, now, Some(503)), attempt(2, now, Some(200)));
    for job in &jobs {
        if job.job.delivery_id == "d1" {
            q.retry_at(job, a1.clone(), now).await.unwrap();
        } else {
            q.complete(job, None, DeliveryState::Test, None)
                .await
                .unwrap();
        }
    }
    let job = lease_now(q).await.remove(0);
    q.complete(&job, Some(a2.clone()), DeliveryState::Succeeded, None)
        .await
        .unwrap();

    let (stored, deliveries) = q.event("e1").await.unwrap().unwrap();
    assert_eq!(stored, e);
    let by_id: BTreeMap<_, _> = deliveries.iter().map(|d| (d.id.as_str(), d)).collect();
    assert_eq!(by_id["d1"].attempts, vec![a1, a2]);
    assert_eq!(by_id["d1"].state, DeliveryState::Succeeded);
    assert_eq!(by_id["d1"].event_id, "e1");
    assert_eq!(by_id["d1"].target, "subscription/a");
    assert_eq!(by_id["d2"].state, DeliveryState::Test);
    assert!(q.event("nope").await.unwrap().is_none());
    assert!(q.delivery("nope").await.unwrap().is_none());
}

/// A delivery still waiting for its first lease is in every view of the
/// history: under its event, by id, in the pending listing, and a repeat
/// enqueue of it changes nothing.
pub async fn queued_delivery_shows_before_its_first_lease(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let jobs = vec![sub_job("e1", "d1", "a"), sub_job("e1", "d2", "b")];
    q.ingest(&event("e1", "t", now), None, jobs).await.unwrap();

    let (_, deliveries) = q.event("e1").await.unwrap().unwrap();
    let seen: Vec<_> = deliveries
        .iter()
        .map(|d| (d.id.as_str(), d.target.as_str(), d.state, d.attempts.len()))
        .collect();
    assert_eq!(
        seen,
        [
            ("d1", "subscription/a", DeliveryState::Pending, 0),
            ("d2", "subscription/b", DeliveryState::Pending, 0)
        ]
    );
    let d1 = q.delivery("d1").await.unwrap().unwrap();
    assert_eq!(
        (d1.event_id.as_str(), d1.state),
        ("e1", DeliveryState::Pending)
    );
    let pending = q
        .deliveries(&HistoryQuery {
            state: Some(DeliveryState::Pending),
            target: Some("subscription/b".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed: Vec<&str> = pending.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(listed, ["d2"]);

    q.enqueue(vec![sub_job("e1", "d1", "a")]).await.unwrap();
    let leased = lease_now(q).await;
    assert_eq!(
        ids(&leased),
        ["d1", "d2"],
        "a pending delivery is not queued twice"
    );
    for job in &leased {
        q.complete(
            job,
            Some(attempt(1, now, Some(200))),
            DeliveryState::Succeeded,
            None,
        )
        .await
        .unwrap();
    }
    let (_, deliveries) = q.event("e1").await.unwrap().unwrap();
    for d in &deliveries {
        assert_eq!(
            (d.state, d.attempts.len()),
            (DeliveryState::Succeeded, 1),
            "{}",
            d.id
        );
        assert_eq!(d.event_id, "e1");
    }
    assert_eq!(deliveries[1].target, "subscription/b");
}

pub async fn events_pagination_and_filters(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let t0 = h.clock.now();
    for i in 1..=5 {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        let at = t0 + SignedDuration::from_secs(i);
        q.ingest(&event(&format!("e{i}"), kind, at), None, vec![])
            .await
            .unwrap();
    }
    let mut query = HistoryQuery {
        limit: 2,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = q.events(&query).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|e| e.id.clone()));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(
        seen,
        ["e5", "e4", "e3", "e2", "e1"],
        "newest first, each once"
    );

    let odd = HistoryQuery {
        event_type: Some("odd".into()),
        limit: 10,
        ..Default::default()
    };
    let page = q.events(&odd).await.unwrap();
    let odd_ids: Vec<_> = page.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(odd_ids, ["e5", "e3", "e1"]);
    assert!(page.next_cursor.is_none());

    let since = t0 + SignedDuration::from_secs(4);
    let recent = HistoryQuery {
        since: Some(since),
        limit: 10,
        ..Default::default()
    };
    let ids: Vec<_> = q
        .events(&recent)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["e5", "e4"]);

    // A time range, and a source.
    let range = HistoryQuery {
        since: Some(t0 + SignedDuration::from_secs(2)),
        until: Some(t0 + SignedDuration::from_secs(3)),
        limit: 10,
        ..Default::default()
    };
    let ids: Vec<_> = q
        .events(&range)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["e3", "e2"]);
    let other_source = HistoryQuery {
        source: Some("trigger:elsewhere".into()),
        limit: 10,
        ..Default::default()
    };
    assert!(q.events(&other_source).await.unwrap().items.is_empty());
    let this_source = HistoryQuery {
        source: Some("api:test".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(q.events(&this_source).await.unwrap().items.len(), 5);
}

pub async fn deliveries_pagination_and_filters(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    for i in 1..=4 {
        let (e, d) = (format!("e{i}"), format!("d{i}"));
        let sub = if i <= 2 { "a" } else { "b" };
        q.ingest(&event(&e, "t", now), None, vec![sub_job(&e, &d, sub)])
            .await
            .unwrap();
    }
    for job in lease_now(q).await {
        if job.job.delivery_id == "d1" || job.job.delivery_id == "d3" {
            q.complete(&job, None, DeliveryState::Succeeded, None)
                .await
                .unwrap();
        } else {
            q.dead_letter(&job, None, "http_410").await.unwrap();
        }
    }
    let mut query = HistoryQuery {
        limit: 3,
        ..Default::default()
    };
    let first = q.deliveries(&query).await.unwrap();
    let ids: Vec<_> = first.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["d4", "d3", "d2"]);
    query.cursor = first.next_cursor;
    let second = q.deliveries(&query).await.unwrap();
    let ids: Vec<_> = second.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["d1"]);
    assert!(second.next_cursor.is_none());

    let dead = HistoryQuery {
        state: Some(DeliveryState::DeadLetter),
        limit: 10,
        ..Default::default()
    };
    let ids: Vec<_> = q
        .deliveries(&dead)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["d4", "d2"]);
    let of_a = HistoryQuery {
        target: Some("subscription/a".into()),
        limit: 10,
        ..Default::default()
    };
    let ids: Vec<_> = q
        .deliveries(&of_a)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["d2", "d1"]);
}

pub async fn enqueue_and_job_of_for_replay(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    let job = lease_now(q).await.remove(0);
    q.complete(&job, None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    let original = q.job_of("d1").await.unwrap().unwrap();
    assert_eq!(original, sub_job("e1", "d1", "s"));
    assert!(q.job_of("nope").await.unwrap().is_none());

    let mut replay = original.clone();
    replay.delivery_id = "d1-replay".into();
    q.enqueue(vec![replay]).await.unwrap();
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["d1-replay"]);
    assert_eq!(jobs[0].job.event_id, "e1", "same event id on replay");
    let (_, deliveries) = q.event("e1").await.unwrap().unwrap();
    assert_eq!(deliveries.len(), 2);
}

pub async fn enqueue_rules(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(&event("e1", "t", now), None, vec![])
        .await
        .unwrap();
    let missing = q.enqueue(vec![sub_job("nope", "r1", "s")]).await;
    assert!(
        matches!(missing, Err(QueueError::NotFound(_))),
        "{missing:?}"
    );
    assert!(q.delivery("r1").await.unwrap().is_none(), "nothing written");
    q.enqueue(vec![sub_job("e1", "r1", "s")]).await.unwrap();
    q.enqueue(vec![sub_job("e1", "r1", "s")]).await.unwrap();
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["r1"], "a pending delivery is not queued twice");
    q.complete(
        &jobs[0],
        Some(attempt(1, now, Some(200))),
        DeliveryState::Succeeded,
        None,
    )
    .await
    .unwrap();
    // Retrying a finished delivery keeps its id and its attempts.
    q.enqueue(vec![q.job_of("r1").await.unwrap().unwrap()])
        .await
        .unwrap();
    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["r1"]);
    let (_, deliveries) = q.event("e1").await.unwrap().unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].state, DeliveryState::Pending);
    assert_eq!(deliveries[0].attempts.len(), 1);
}

pub async fn prune_by_max_events_keeps_unfinished(make: Make) {
    let s = StoreSettings {
        history_max_events: 3,
        ..settings()
    };
    let h = open!(make, s);
    let q = &h.queue;
    let now = h.clock.now();
    // e1 (oldest) still has an unfinished job; e2..e5 have none left.
    q.ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await
        .unwrap();
    q.ingest(&event("e2", "t", now), None, vec![sub_job("e2", "d2", "s")])
        .await
        .unwrap();
    for job in lease_now(q).await {
        if job.job.delivery_id == "d2" {
            q.complete(&job, None, DeliveryState::Succeeded, None)
                .await
                .unwrap();
        } else {
            q.retry_at(
                &job,
                attempt(1, now, None),
                now + SignedDuration::from_secs(3600),
            )
            .await
            .unwrap();
        }
    }
    for i in 3..=5 {
        q.ingest(&event(&format!("e{i}"), "t", now), None, vec![])
            .await
            .unwrap();
    }
    let removed = q.prune(h.clock.now()).await.unwrap();
    assert_eq!(removed, 2);
    assert!(
        q.event("e1").await.unwrap().is_some(),
        "unfinished jobs keep their event"
    );
    assert!(q.event("e2").await.unwrap().is_none());
    assert!(
        q.delivery("d2").await.unwrap().is_none(),
        "records go with their event"
    );
    assert!(q.event("e3").await.unwrap().is_none());
    assert!(q.event("e4").await.unwrap().is_some());
    assert!(q.event("e5").await.unwrap().is_some());
    assert_eq!(q.prune(h.clock.now()).await.unwrap(), 0);
}

pub async fn prune_by_retention_keeps_unfinished(make: Make) {
    let s = StoreSettings {
        history_retention: Duration::from_secs(3600),
        ..settings()
    };
    let h = open!(make, s);
    let q = &h.queue;
    let now = h.clock.now();
    q.ingest(
        &event("old-done", "t", now),
        None,
        vec![sub_job("old-done", "d1", "s")],
    )
    .await
    .unwrap();
    let job = lease_now(q).await.remove(0);
    q.complete(&job, None, DeliveryState::Succeeded, None)
        .await
        .unwrap();
    q.ingest(
        &event("old-busy", "t", now),
        None,
        vec![sub_job("old-busy", "d2", "s")],
    )
    .await
    .unwrap();
    h.clock.advance(2 * 3600);
    q.ingest(&event("new", "t", h.clock.now()), None, vec![])
        .await
        .unwrap();
    assert_eq!(q.prune(h.clock.now()).await.unwrap(), 1);
    assert!(q.event("old-done").await.unwrap().is_none());
    assert!(q.event("old-busy").await.unwrap().is_some());
    assert!(q.event("new").await.unwrap().is_some());
    // The job of the kept event still runs.
    assert_eq!(ids(&lease_now(q).await), ["d2"]);
}

pub async fn idempotency_keys_expire(make: Make) {
    let s = StoreSettings {
        idempotency_window: Duration::from_secs(3600),
        ..settings()
    };
    let h = open!(make, s);
    let q = &h.queue;
    let key = Some(("trigger:t", "k"));
    let first = q
        .ingest(&event("e1", "t", h.clock.now()), key, vec![])
        .await
        .unwrap();
    assert_eq!(
        first,
        Ingested::Accepted {
            event_id: "e1".into()
        }
    );
    h.clock.advance(1800);
    let dup = q
        .ingest(&event("e2", "t", h.clock.now()), key, vec![])
        .await
        .unwrap();
    assert_eq!(
        dup,
        Ingested::Duplicate {
            event_id: "e1".into()
        }
    );
    h.clock.advance(3600);
    assert!(
        q.prune(h.clock.now()).await.unwrap() >= 1,
        "the key was pruned"
    );
    let later = q
        .ingest(&event("e3", "t", h.clock.now()), key, vec![])
        .await
        .unwrap();
    assert_eq!(
        later,
        Ingested::Accepted {
            event_id: "e3".into()
        }
    );
}
