//! Conformance: ingestion, idempotency, subscriptions and state, reopen.

#![allow(clippy::unwrap_used)]

use super::*;

pub async fn ingest_lease_complete(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let answer = q
        .ingest(&event("e1", "t", now), None, vec![sub_job("e1", "d1", "s")])
        .await;
    assert_eq!(
        answer.unwrap(),
        Ingested::Accepted {
            event_id: "e1".into()
        }
    );

    let jobs = lease_now(q).await;
    assert_eq!(ids(&jobs), ["d1"]);
    assert_eq!(jobs[0].attempts, 0);
    assert_eq!(jobs[0].job, sub_job("e1", "d1", "s"));
    assert!(
        lease_now(q).await.is_empty(),
        "a leased job is not handed out twice"
    );

    let a = attempt(1, now, Some(200));
    q.complete(&jobs[0], Some(a.clone()), DeliveryState::Succeeded, None)
        .await
        .unwrap();
    let twice = q
        .complete(&jobs[0], None, DeliveryState::Succeeded, None)
        .await;
    assert!(
        matches!(twice, Err(QueueError::LeaseLost)),
        "a finished lease cannot finish again: {twice:?}"
    );
    assert!(lease_now(q).await.is_empty());
    let d = q.delivery("d1").await.unwrap().unwrap();
    assert_eq!(d.state, DeliveryState::Succeeded);
    assert_eq!(d.attempts, vec![a]);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.ready, stats.in_flight, stats.delayed), (0, 0, 0));
    q.ping().await.unwrap();
    assert_eq!(q.resets(), 0);
}

pub async fn duplicate_returns_first_id(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let key = Some(("trigger:shop", "k1"));
    let first = q
        .ingest(&event("e1", "t", now), key, vec![sub_job("e1", "d1", "s")])
        .await;
    assert_eq!(
        first.unwrap(),
        Ingested::Accepted {
            event_id: "e1".into()
        }
    );
    let again = q
        .ingest(&event("e2", "t", now), key, vec![sub_job("e2", "d2", "s")])
        .await;
    assert_eq!(
        again.unwrap(),
        Ingested::Duplicate {
            event_id: "e1".into()
        }
    );
    assert!(
        q.event("e2").await.unwrap().is_none(),
        "a duplicate writes nothing"
    );
    assert!(q.delivery("d2").await.unwrap().is_none());
    // The same key in another scope is another key.
    let other = q
        .ingest(&event("e3", "t", now), Some(("trigger:crm", "k1")), vec![])
        .await;
    assert_eq!(
        other.unwrap(),
        Ingested::Accepted {
            event_id: "e3".into()
        }
    );
    assert_eq!(ids(&lease_now(q).await), ["d1"]);
}

pub async fn concurrent_duplicates(make: Make) {
    let h = open!(make);
    let now = h.clock.now();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let q = h.queue.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("e{i}");
            let job = sub_job(&id, &format!("d{i}"), "s");
            q.ingest(&event(&id, "t", now), Some(("event", "same")), vec![job])
                .await
                .unwrap()
        }));
    }
    let mut accepted = Vec::new();
    let mut answered = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ingested::Accepted { event_id } => {
                accepted.push(event_id.clone());
                answered.push(event_id);
            }
            Ingested::Duplicate { event_id } => answered.push(event_id),
        }
    }
    assert_eq!(accepted.len(), 1, "exactly one ingest wins");
    assert!(
        answered.iter().all(|id| *id == accepted[0]),
        "all answer the first id"
    );
    assert_eq!(
        lease_now(&h.queue).await.len(),
        1,
        "only the winner's job exists"
    );
}

pub async fn ingest_many_answers_in_order(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let key = |k: &str| Some(("trigger:shop".to_string(), k.to_string()));
    let answers = q
        .ingest_many(vec![
            (
                event("a", "t", now),
                key("ka"),
                vec![sub_job("a", "da", "s")],
            ),
            (
                event("b", "t", now),
                key("kb"),
                vec![sub_job("b", "db", "s")],
            ),
            (
                event("a2", "t", now),
                key("ka"),
                vec![sub_job("a2", "da2", "s")],
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            Ingested::Accepted {
                event_id: "a".into()
            },
            Ingested::Accepted {
                event_id: "b".into()
            },
            Ingested::Duplicate {
                event_id: "a".into()
            },
        ]
    );
    assert_eq!(ids(&lease_now(q).await), ["da", "db"]);
}

/// A client's own event id as its idempotency key (the event API): a repeat
/// is a duplicate that changes nothing.
pub async fn client_id_is_its_own_key(make: Make) {
    let h = open!(make);
    let q = &h.queue;
    let key = Some(("event", "c1"));
    let mut first = event("c1", "t", h.clock.now());
    first.data = json!({"v": 1});
    let answer = q
        .ingest(&first, key, vec![sub_job("c1", "d1", "s")])
        .await
        .unwrap();
    assert_eq!(
        answer,
        Ingested::Accepted {
            event_id: "c1".into()
        }
    );

    let mut again = event("c1", "t", h.clock.now());
    again.data = json!({"v": 2});
    let answer = q
        .ingest(&again, key, vec![sub_job("c1", "d2", "s")])
        .await
        .unwrap();
    assert_eq!(
        answer,
        Ingested::Duplicate {
            event_id: "c1".into()
        }
    );
    let (stored, deliveries) = q.event("c1").await.unwrap().unwrap();
    assert_eq!(stored.data, json!({"v": 1}), "a duplicate changes nothing");
    assert_eq!(deliveries.len(), 1);
    assert!(q.delivery("d2").await.unwrap().is_none());
}

/// An event id names one event (SPEC §11): while the event's record exists,
/// its id is a duplicate however old, past the idempotency window too. The
/// stored event never changes and nothing is enqueued (no pending retry can
/// send a second payload under the first id).
pub async fn client_id_past_its_window_is_still_a_duplicate(make: Make) {
    let window = Duration::from_secs(1);
    let s = StoreSettings {
        idempotency_window: window,
        ..settings()
    };
    let h = open!(make, s);
    let q = &h.queue;
    let key = Some(("event", "c1"));
    let mut first = event("c1", "t", h.clock.now());
    first.data = json!({"v": 1});
    q.ingest(&first, key, vec![sub_job("c1", "d1", "s")])
        .await
        .unwrap();

    // Past the window on the queue's clock and in real time (a backend's
    // real TTLs run out too).
    h.clock.advance(3600);
    tokio::time::sleep(window + Duration::from_millis(200)).await;
    let mut again = event("c1", "t2", h.clock.now());
    again.data = json!({"v": 2});
    let answer = q
        .ingest(&again, key, vec![sub_job("c1", "d2", "s")])
        .await
        .unwrap();
    assert_eq!(
        answer,
        Ingested::Duplicate {
            event_id: "c1".into()
        }
    );
    let many = q
        .ingest_many(vec![(
            again.clone(),
            Some(("event".into(), "c1".into())),
            vec![sub_job("c1", "d3", "s")],
        )])
        .await
        .unwrap();
    assert_eq!(
        many,
        [Ingested::Duplicate {
            event_id: "c1".into()
        }]
    );

    let (stored, deliveries) = q.event("c1").await.unwrap().unwrap();
    assert_eq!(stored, first, "the stored event never changes");
    let listed: Vec<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(listed, ["d1"]);
    assert!(q.delivery("d2").await.unwrap().is_none());
    assert!(q.delivery("d3").await.unwrap().is_none());
    assert_eq!(ids(&lease_now(q).await), ["d1"], "no new delivery job");
}

/// A client id stays a duplicate for the whole window even when its event
/// left history sooner (`history.max_events` on a busy gateway).
pub async fn client_id_outlives_its_pruned_event(make: Make) {
    let s = StoreSettings {
        history_max_events: 1,
        ..settings()
    };
    let h = open!(make, s);
    let q = &h.queue;
    let key = Some(("event", "c1"));
    q.ingest(&event("c1", "t", h.clock.now()), key, vec![])
        .await
        .unwrap();
    q.ingest(
        &event("c2", "t", h.clock.now()),
        Some(("event", "c2")),
        vec![],
    )
    .await
    .unwrap();
    h.clock.advance(60);
    assert!(q.prune(h.clock.now()).await.unwrap() >= 1);
    assert!(q.event("c1").await.unwrap().is_none(), "c1 left history");
    let again = q
        .ingest(&event("c1", "t", h.clock.now()), key, vec![])
        .await
        .unwrap();
    assert_eq!(
        again,
        Ingested::Duplicate {
            event_id: "c1".into()
        }
    );
    assert!(
        q.event("c1").await.unwrap().is_none(),
        "a duplicate stores nothing"
    );

    h.clock.advance(25 * 3600);
    let later = q
        .ingest(&event("c1", "t", h.clock.now()), key, vec![])
        .await
        .unwrap();
    assert_eq!(
        later,
        Ingested::Accepted {
            event_id: "c1".into()
        }
    );
}

pub async fn subscriptions_and_state_survive_reopen(make: Make) {
    let h = open!(make);
    let doc = json!({"id": "s1", "url": "http://127.0.0.1:9/hook", "events": ["a.*"]});
    assert!(h.queue.put_subscription("s1", &doc).await.unwrap());
    let other = json!({"id": "s1", "url": "http://127.0.0.1:9/other"});
    assert!(
        !h.queue.put_subscription("s1", &other).await.unwrap(),
        "ids are not overwritten"
    );
    assert!(
        h.queue
            .put_subscription("s2", &json!({"id": "s2"}))
            .await
            .unwrap()
    );
    assert!(h.queue.delete_subscription("s2").await.unwrap());
    assert!(!h.queue.delete_subscription("s2").await.unwrap());
    h.queue
        .put_state("verify/s1", &json!({"verified": true}))
        .await
        .unwrap();
    assert!(h.queue.state("missing").await.unwrap().is_none());

    let Harness {
        queue,
        reopen,
        _keep,
        ..
    } = h;
    drop(queue);
    let q = reopen().await;
    assert_eq!(q.subscriptions().await.unwrap(), vec![doc]);
    assert_eq!(
        q.state("verify/s1").await.unwrap(),
        Some(json!({"verified": true}))
    );
    drop(_keep);
}

pub async fn reopen_loses_nothing_acknowledged(make: Make) {
    let h = open!(make, short_lease_settings());
    let now = h.clock.now();
    for i in 1..=3 {
        let (e, d) = (format!("e{i}"), format!("d{i}"));
        h.queue
            .ingest(&event(&e, "t", now), None, vec![sub_job(&e, &d, "s")])
            .await
            .unwrap();
    }
    let leased = h.queue.lease(1, Duration::ZERO).await.unwrap();
    assert_eq!(leased.len(), 1);
    let Harness {
        queue,
        reopen,
        clock,
        leases,
        _keep,
    } = h;
    drop(queue); // the worker never finished its lease
    let q = reopen().await;
    // Embedded returns leases at open, Redis once they lapse: past the
    // lease, both must hand out every job again.
    leases.pass(&clock, SHORT_LEASE, 31, 30).await;
    let jobs = lease_now(&q).await;
    assert_eq!(ids(&jobs), ["d1", "d2", "d3"]);
    for i in 1..=3 {
        assert!(q.event(&format!("e{i}")).await.unwrap().is_some());
    }
    drop(_keep);
}

/// A job's trace context (SPEC §15) is stored with it and comes back with
/// every lease: from `ingest`, `ingest_many`, after a retry, and on the
/// next workflow step enqueued by `complete`.
pub async fn trace_context_survives_the_queue(make: Make) {
    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let h = open!(make);
    let q = &h.queue;
    let now = h.clock.now();
    let traced = |job: NewJob| NewJob {
        traceparent: Some(TP.into()),
        fifo_later: false,
        ..job
    };
    q.ingest(
        &event("e1", "t", now),
        None,
        vec![traced(step_job("e1", "s0", 0))],
    )
    .await
    .unwrap();
    q.ingest_many(vec![(
        event("e2", "t", now),
        None,
        vec![traced(sub_job("e2", "d2", "s"))],
    )])
    .await
    .unwrap();
    let mut jobs = lease_now(q).await;
    jobs.sort_by(|a, b| a.job.delivery_id.cmp(&b.job.delivery_id));
    assert_eq!(ids(&jobs), ["d2", "s0"]);
    for j in &jobs {
        assert_eq!(
            j.job.traceparent.as_deref(),
            Some(TP),
            "{}",
            j.job.delivery_id
        );
    }
    q.retry_at(
        &jobs[0],
        attempt(1, now, Some(500)),
        now + SignedDuration::from_secs(10),
    )
    .await
    .unwrap();
    let next = traced(step_job("e1", "s1", 1));
    q.complete(
        &jobs[1],
        Some(attempt(1, now, Some(200))),
        DeliveryState::Succeeded,
        Some(next.clone()),
    )
    .await
    .unwrap();
    h.clock.advance(11);
    let again = lease_now(q).await;
    assert_eq!(ids(&again), ["d2", "s1"]);
    for j in &again {
        assert_eq!(
            j.job.traceparent.as_deref(),
            Some(TP),
            "{}",
            j.job.delivery_id
        );
    }
}
