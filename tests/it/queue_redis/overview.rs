//! Redis-specific parts of the console's Overview: replicas sharing one
//! Redis add to the same per-minute counters, and a store written before
//! dead letters were counted per target is counted once, at open.

#![allow(clippy::unwrap_used)]

use hookyard::model::tally::minute_of;
use hookyard::queue::MinuteCount;

use super::*;

#[tokio::test]
async fn replicas_add_to_the_same_counters() {
    let Some((a, keys)) = queue("replica-a", Duration::from_secs(30)).await else {
        return;
    };
    let b = RedisQueue::open(
        URL,
        &keys.prefix,
        settings("replica-b", Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let now = minute_of(jiff::Timestamp::now().as_second());
    let count = |n| MinuteCount {
        minute: now,
        name: "attempt.ok:subscription/s".into(),
        n,
    };
    a.add_counts(&[count(2)]).await.unwrap();
    b.add_counts(&[count(3)]).await.unwrap();
    for q in [&a, &b] {
        assert_eq!(q.counts(now - 59).await.unwrap(), [count(5)]);
    }
    // The minute's hash expires by itself (nothing prunes it).
    let client = redis::Client::open(URL).unwrap();
    let mut c = client.get_connection().unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{}:tally:{now}", keys.prefix))
        .query(&mut c)
        .unwrap();
    assert!((3600..=7300).contains(&ttl), "TTL {ttl}");
}

#[tokio::test]
async fn dead_letters_of_an_older_store_are_counted_once_at_open() {
    let Some((q, keys)) = queue("old", Duration::from_secs(30)).await else {
        return;
    };
    let jobs = vec![
        job("d1", "e1", "a"),
        job("d2", "e1", "a"),
        job("d3", "e1", "b"),
    ];
    q.ingest(&event("e1", "t"), None, jobs).await.unwrap();
    for leased in q.lease(10, NO_WAIT).await.unwrap() {
        q.dead_letter(&leased, None, "http_404").await.unwrap();
    }
    // As an older hookyard left it: dead letters, no count of them.
    let client = redis::Client::open(URL).unwrap();
    let mut c = client.get_connection().unwrap();
    let p = &keys.prefix;
    let _: () = redis::cmd("DEL")
        .arg(format!("{p}:deadby"))
        .arg(format!("{p}:deadby:counted"))
        .query(&mut c)
        .unwrap();
    assert!(q.stats().await.unwrap().dead_by_target.is_empty());
    for _ in 0..2 {
        // Counted at the first open, not again at the second.
        let q = RedisQueue::open(URL, p, settings("new", Duration::from_secs(30)))
            .await
            .unwrap();
        let dead = q.stats().await.unwrap().dead_by_target;
        assert_eq!(dead.get("subscription/a"), Some(&2), "{dead:?}");
        assert_eq!(dead.get("subscription/b"), Some(&1), "{dead:?}");
    }
}
