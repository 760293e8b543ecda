//! History, pruning, manual enqueue and stored documents of the Redis
//! queue backend (see `queue_redis.rs` for the setup).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hookyard::queue::{DeliveryState, HistoryQuery, QueueError};

use super::support::*;

#[tokio::test]
async fn history_pages_newest_first_with_filters() {
    let Some((q, _keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    let base = jiff::Timestamp::now();
    for i in 1..=5 {
        let mut e = event(&format!("E{i}"), if i % 2 == 0 { "even" } else { "odd" });
        e.timestamp = base + Duration::from_secs(i);
        q.ingest(
            &e,
            None,
            vec![job(&format!("D{i}"), &e.id, if i <= 2 { "a" } else { "b" })],
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = q
            .events(&HistoryQuery {
                limit: 2,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|e| e.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, vec!["E5", "E4", "E3", "E2", "E1"]);

    let odd = q
        .events(&HistoryQuery {
            event_type: Some("odd".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let odd: Vec<_> = odd.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(odd, vec!["E5", "E3", "E1"]);
    let since = q
        .events(&HistoryQuery {
            since: Some(base + Duration::from_secs(4)),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(since.items.len(), 2);

    let j = q.lease(10, SHORT).await.unwrap();
    let d1 = j.iter().find(|j| j.job.delivery_id == "D1").unwrap();
    q.dead_letter(d1, None, "http_404").await.unwrap();
    let dead = q
        .deliveries(&HistoryQuery {
            state: Some(DeliveryState::DeadLetter),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.items.len(), 1);
    assert_eq!(dead.items[0].id, "D1");
    let b = q
        .deliveries(&HistoryQuery {
            target: Some("subscription/b".into()),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = b.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, vec!["D5", "D4"]);
    let rest = q
        .deliveries(&HistoryQuery {
            target: Some("subscription/b".into()),
            limit: 2,
            cursor: b.next_cursor.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].id, "D3");
    assert!(rest.next_cursor.is_none());
}

#[tokio::test]
async fn prune_bounds_history_but_keeps_unfinished_events() {
    if !redis_up() {
        return;
    }
    let prefix = prefix();
    let _keys = Keys {
        url: URL.into(),
        prefix: prefix.clone(),
    };
    let mut s = settings("w1", Duration::from_secs(30));
    s.history_max_events = 2;
    s.history_retention = Duration::from_secs(600);
    let q = hookyard::queue::redis::RedisQueue::open(URL, &prefix, s)
        .await
        .unwrap();
    let clock = TestClock::install(&q);
    for i in 1..=4 {
        let e = format!("E{i}");
        q.ingest(&event(&e, "t"), None, vec![job(&format!("D{i}"), &e, "a")])
            .await
            .unwrap();
    }
    for l in q.lease(10, SHORT).await.unwrap() {
        if l.job.delivery_id != "D1" {
            q.complete(&l, None, DeliveryState::Succeeded, None)
                .await
                .unwrap();
        }
    }
    // Over max_events: oldest finished go first; E1 is unfinished and stays.
    assert_eq!(q.prune(clock.now()).await.unwrap(), 2);
    assert!(q.event("E1").await.unwrap().is_some());
    assert!(q.event("E2").await.unwrap().is_none());
    assert!(q.delivery("D3").await.unwrap().is_none());
    assert!(q.event("E4").await.unwrap().is_some());
    // Past the retention everything finished goes.
    let later = clock.now() + Duration::from_secs(601);
    assert_eq!(q.prune(later).await.unwrap(), 1);
    assert!(q.event("E1").await.unwrap().is_some());
    let all = q
        .events(&HistoryQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);
    assert_eq!(
        q.deliveries(&HistoryQuery::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn enqueue_adds_jobs_to_existing_events_only() {
    let Some((q, _keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    q.ingest(&event("E1", "t"), None, vec![]).await.unwrap();
    let missing = q.enqueue(vec![job("R1", "nope", "a")]).await;
    assert!(matches!(missing, Err(QueueError::NotFound(_))));
    q.enqueue(vec![job("R1", "E1", "a")]).await.unwrap();
    q.enqueue(vec![job("R1", "E1", "a")]).await.unwrap(); // still pending: no second copy
    let j = q.lease(10, SHORT).await.unwrap();
    assert_eq!(j.len(), 1);
    q.complete(&j[0], Some(attempt(1, 200)), DeliveryState::Succeeded, None)
        .await
        .unwrap();
    // Retrying a finished delivery keeps its id and its attempts.
    q.enqueue(vec![q.job_of("R1").await.unwrap().unwrap()])
        .await
        .unwrap();
    assert_eq!(q.lease(10, SHORT).await.unwrap().len(), 1);
    let (_, ds) = q.event("E1").await.unwrap().unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].attempts.len(), 1);
}

#[tokio::test]
async fn subscriptions_and_state_persist() {
    let Some((q, _keys)) = queue("w1", Duration::from_secs(30)).await else {
        return;
    };
    let doc = serde_json::json!({"id": "s1", "url": "http://127.0.0.1:9/"});
    assert!(q.put_subscription("s1", &doc).await.unwrap());
    assert!(
        !q.put_subscription("s1", &serde_json::json!({}))
            .await
            .unwrap()
    );
    assert_eq!(q.subscriptions().await.unwrap(), vec![doc]);
    assert!(q.delete_subscription("s1").await.unwrap());
    assert!(!q.delete_subscription("s1").await.unwrap());
    assert!(q.subscriptions().await.unwrap().is_empty());
    assert_eq!(q.state("v").await.unwrap(), None);
    q.put_state("v", &serde_json::json!({"ok": true}))
        .await
        .unwrap();
    assert_eq!(
        q.state("v").await.unwrap(),
        Some(serde_json::json!({"ok": true}))
    );
}
