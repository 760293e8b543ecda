//! The Redis queue on a real Redis Cluster (SPEC §16): the real `hookyard`
//! binary on private clusters of `redis-server`s (`cluster_support.rs`),
//! delivering to a recording receiver.
//!
//! - A master killed with SIGKILL under load, `replicas_ack: 1`: its
//!   replica takes over, and every event hookyard acknowledged (202) is
//!   delivered; afterwards every partition takes events again.
//! - Two replicas, one killed while it holds leases: the other reclaims
//!   them once they lapse, and delivers everything.
//! - A `fifo` target across partitions and replicas: posting order, one
//!   delivery in flight at a time.
//! - A `rate_limit` across partitions and replicas: the two replicas
//!   together stay within the target's rate.
//!
//! Every event carries a client id, so events spread over the partitions
//! (the partition is a hash of the client id), and the receiver sees the
//! same id as the event id. Each daemon sends an `X-Replica` header of its
//! own, so the receiver knows who delivered what.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster_support::{Cluster, ClusterKeys, Daemon, Recorder};

/// A daemon's config: the cluster queue under `prefix` with more `queue`
/// keys in `queue`, and one subscription to `rx` that sends `X-Replica:
/// replica`, with more subscription keys in `target` (indented lines).
fn config(
    url: &str,
    prefix: &str,
    queue: &str,
    replica: &str,
    rx: &Recorder,
    target: &str,
) -> String {
    format!(
        r#"
queue: {{ backend: redis, url: "{url}", prefix: "{prefix}"{queue} }}
defaults: {{ timeout: 2s }}
subscriptions:
  - id: rx
    url: "{rx}"
    events: ["*"]
    headers: {{ X-Replica: "{replica}" }}
    retry: {{ schedule: [200ms, 200ms, 500ms, 1s, 1s, 2s, 2s, 5s, 5s, 5s] }}
{target}"#,
        rx = rx.url(),
    )
}

/// A fresh prefix on `cluster`, deleted from every master at the end.
fn fresh(cluster: &Cluster, name: &str) -> (String, ClusterKeys) {
    let prefix = format!("{name}-{}", ulid::Ulid::new());
    let keys = ClusterKeys::of_url(&cluster.url(), &prefix);
    (prefix, keys)
}

/// A private cluster, or `None` (skip) where the tools are missing.
async fn cluster(masters: usize, replicas: usize) -> Option<Cluster> {
    tokio::task::spawn_blocking(move || Cluster::start(masters, replicas))
        .await
        .unwrap()
}

/// Post `ids` in order, round-robin over `daemons`; each must be 202.
async fn post_all(daemons: &[&Daemon], ids: &[String]) {
    for (n, id) in ids.iter().enumerate() {
        let d = daemons[n % daemons.len()];
        let status = d.post(id, json!({"n": n})).await;
        assert_eq!(status, 202, "posting {id}; stderr:\n{}", d.stderr());
    }
}

/// Both daemons' stderr, for a failing test's message.
fn logs(daemons: &[&Daemon]) -> String {
    daemons
        .iter()
        .enumerate()
        .map(|(i, d)| format!("-- daemon {i} stderr:\n{}", d.stderr()))
        .collect()
}

/// One event of the load: its id, when it was posted, the answer.
struct Sent {
    id: String,
    at: Instant,
    status: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_killed_under_load_loses_no_acknowledged_event() {
    let Some(mut cluster) = cluster(3, 1).await else {
        return;
    };
    let (prefix, _keys) = fresh(&cluster, "cl-kill");
    let rx = Recorder::start(Duration::ZERO).await;
    let daemon = Daemon::spawn(&config(
        &cluster.url(),
        &prefix,
        ", lease: 5s, replicas_ack: 1",
        "a",
        &rx,
        "",
    ));
    daemon.wait_ready(Duration::from_secs(20)).await;
    let daemon = Arc::new(daemon);

    // The load: an event every 20 ms, each posted on its own so a slow
    // answer (a WAIT during the failover) never holds up the next one.
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let (sent, stop, daemon) = (sent.clone(), stop.clone(), daemon.clone());
        tokio::spawn(async move {
            let mut posts = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for n in 0.. {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let (sent, daemon) = (sent.clone(), daemon.clone());
                posts.push(tokio::spawn(async move {
                    let id = format!("load-{n:05}");
                    let at = Instant::now();
                    let status = daemon.post(&id, json!({"n": n})).await;
                    sent.lock().unwrap().push(Sent { id, at, status });
                }));
            }
            for p in posts {
                p.await.unwrap();
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_port = cluster.kill_master(0);
    let killed = Instant::now();
    let failover = tokio::task::block_in_place(|| cluster.wait_failover(Duration::from_secs(30)));
    // Load goes on for a while on the new master, then stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    load.await.unwrap();
    // The killed node comes back as a replica of its successor (as an
    // operator's restart would), so `replicas_ack: 1` can be met there
    // again.
    tokio::task::block_in_place(|| cluster.restart(killed_port));

    // Every partition takes events again: these are retried on 503 as a
    // sender would, and each must be acknowledged in the end.
    let mut after = Vec::new();
    let start = Instant::now();
    for n in 0..32 {
        let id = format!("after-{n:02}");
        loop {
            let status = daemon.post(&id, json!({"n": n})).await;
            if status == 202 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{id} still answered {status} 60s after the failover; stderr:\n{}\n{}",
                daemon.stderr(),
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        after.push(id);
    }

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let acked: HashSet<String> = sent
        .iter()
        .filter(|s| s.status == 202)
        .map(|s| s.id.clone())
        .chain(after.iter().cloned())
        .collect();
    let before = sent
        .iter()
        .filter(|s| s.at < killed && s.status == 202)
        .count();
    let refused = sent.iter().filter(|s| s.status != 202).count();
    assert!(
        before > 20,
        "only {before} events acknowledged before the kill"
    );

    // No loss: every acknowledged event is delivered. Duplicates (the
    // same event id twice) are allowed, and counted.
    rx.wait_all(&acked, Duration::from_secs(60), || {
        format!("stderr:\n{}\n{}", daemon.stderr(), cluster.logs())
    })
    .await;
    let mut times: HashMap<String, usize> = HashMap::new();
    for hit in rx.answered() {
        *times.entry(hit.event_id).or_default() += 1;
    }
    let duplicates = times.values().filter(|n| **n > 1).count();
    let posted: HashSet<String> = sent.iter().map(|s| s.id.clone()).chain(after).collect();
    let unknown: Vec<&String> = times.keys().filter(|id| !posted.contains(*id)).collect();
    assert!(
        unknown.is_empty(),
        "deliveries of events never posted: {unknown:?}"
    );
    eprintln!(
        "cluster master kill: {} posted under load, {} acknowledged in all ({before} before the \
         kill), {refused} refused; the cluster served all slots again {failover:?} after the \
         kill; {duplicates} events delivered more than once",
        sent.len(),
        acked.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_cluster_one_killed_the_other_reclaims_its_leases() {
    let Some(cluster) = cluster(3, 0).await else {
        return;
    };
    let (prefix, _keys) = fresh(&cluster, "cl-lease");
    // Replica a's requests are never answered: until they time out (2 s,
    // below the 3 s lease), a holds their leases, renewing them.
    let rx = Recorder::start(Duration::ZERO).await;
    rx.hold("a");
    let cfg = |replica: &str| config(&cluster.url(), &prefix, ", lease: 3s", replica, &rx, "");
    let mut a = Daemon::spawn(&cfg("a"));
    let b = Daemon::spawn(&cfg("b"));
    a.wait_ready(Duration::from_secs(20)).await;
    b.wait_ready(Duration::from_secs(20)).await;

    // Events go in, alternately on a and b, until a request of a's is
    // open at the receiver; then a is killed, holding at least that
    // job's lease. b takes the rest.
    let mut ids = Vec::new();
    let held: HashSet<String> = loop {
        let held = rx.held();
        if !held.is_empty() {
            a.kill();
            break held.into_iter().collect();
        }
        assert!(
            ids.len() < 500,
            "replica a never delivered any of {} events; stderr:\n{}",
            ids.len(),
            a.stderr()
        );
        let id = format!("lease-{:03}", ids.len());
        let d = if ids.len() % 2 == 0 { &a } else { &b };
        assert_eq!(d.post(&id, json!({})).await, 202, "{}", d.stderr());
        ids.push(id);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for n in 0..10 {
        let id = format!("lease-after-{n}");
        assert_eq!(b.post(&id, json!({})).await, 202, "{}", b.stderr());
        ids.push(id);
    }

    let all: HashSet<String> = ids.iter().cloned().collect();
    rx.wait_all(&all, Duration::from_secs(60), || logs(&[&a, &b]))
        .await;
    let answered = rx.answered();
    assert!(
        answered.iter().all(|h| h.replica == "b"),
        "the held replica was answered"
    );
    // What a held when it died, b delivered.
    let by_b: HashSet<String> = answered.into_iter().map(|h| h.event_id).collect();
    assert!(!held.is_empty() && held.is_subset(&by_b));
    eprintln!(
        "cluster lease reclaim: replica a died holding {} of {} events; b delivered all",
        held.len(),
        ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_target_keeps_order_across_partitions() {
    let Some(cluster) = cluster(3, 0).await else {
        return;
    };
    let (prefix, _keys) = fresh(&cluster, "cl-fifo");
    // A short answer time, so two deliveries at once would overlap.
    let rx = Recorder::start(Duration::from_millis(10)).await;
    let cfg = |replica: &str| {
        config(
            &cluster.url(),
            &prefix,
            "",
            replica,
            &rx,
            "    ordering: fifo\n",
        )
    };
    let a = Daemon::spawn(&cfg("a"));
    let b = Daemon::spawn(&cfg("b"));
    a.wait_ready(Duration::from_secs(20)).await;
    b.wait_ready(Duration::from_secs(20)).await;

    // Posted one after the other, alternately on a and b: the order of the
    // 202s is the line's order.
    let ids: Vec<String> = (0..200).map(|n| format!("fifo-{n:03}")).collect();
    post_all(&[&a, &b], &ids).await;
    let all: HashSet<String> = ids.iter().cloned().collect();
    rx.wait_all(&all, Duration::from_secs(180), || logs(&[&a, &b]))
        .await;

    let mut answered = rx.answered();
    answered.sort_by_key(|h| h.at);
    let order: Vec<&str> = answered.iter().map(|h| h.event_id.as_str()).collect();
    assert_eq!(order.len(), ids.len(), "some event was delivered twice");
    if let Some(at) = order.iter().zip(&ids).position(|(got, want)| got != want) {
        let around = &order[at.saturating_sub(3)..(at + 5).min(order.len())];
        panic!("out of order from delivery {at}: ... {around:?} ...");
    }
    assert_eq!(
        rx.max_in_flight(),
        1,
        "two deliveries of a fifo target at once"
    );
    let replicas: HashSet<&str> = answered.iter().map(|h| h.replica.as_str()).collect();
    assert_eq!(
        replicas.len(),
        2,
        "one replica did all the work, so the line was not shared: {replicas:?}"
    );
}

/// `rate_limit: 5/s`, whose burst is 5.
const RATE: f64 = 5.0;
const BURST: f64 = 5.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_holds_across_partitions_and_replicas() {
    let Some(cluster) = cluster(3, 0).await else {
        return;
    };
    let (prefix, _keys) = fresh(&cluster, "cl-rate");
    let rx = Recorder::start(Duration::ZERO).await;
    let cfg = |replica: &str| {
        config(
            &cluster.url(),
            &prefix,
            "",
            replica,
            &rx,
            "    rate_limit: 5/s\n",
        )
    };
    let a = Daemon::spawn(&cfg("a"));
    let b = Daemon::spawn(&cfg("b"));
    a.wait_ready(Duration::from_secs(20)).await;
    b.wait_ready(Duration::from_secs(20)).await;

    let ids: Vec<String> = (0..30).map(|n| format!("rate-{n:02}")).collect();
    post_all(&[&a, &b], &ids).await;
    let all: HashSet<String> = ids.iter().cloned().collect();
    rx.wait_all(&all, Duration::from_secs(60), || logs(&[&a, &b]))
        .await;

    let mut got = rx.answered();
    got.sort_by_key(|h| h.at);
    assert_eq!(got.len(), ids.len(), "some event was delivered twice");
    // By any arrival, at most burst + rate * elapsed (+1 for the time the
    // first grant took to reach the receiver) have arrived in total.
    // Separate limits per replica or per partition would let through
    // twice (or 16 times) as many.
    let t0 = got[0].at;
    for (i, hit) in got.iter().enumerate() {
        let elapsed = (hit.at - t0).as_secs_f64();
        let allowed = BURST + RATE * elapsed + 1.0;
        let seen = (i + 1) as f64;
        assert!(
            seen <= allowed,
            "{seen} deliveries within {elapsed:.2}s of the first: more than {allowed:.1} \
             (5/s shared by both replicas and all partitions)"
        );
    }
    // 30 at 5/s after a burst of 5 take about 5s.
    let span = got[got.len() - 1].at - t0;
    assert!(span >= Duration::from_millis(4500), "{span:?}");
    let by: HashSet<&str> = got.iter().map(|h| h.replica.as_str()).collect();
    assert_eq!(by.len(), 2, "one replica did all the work: {by:?}");
    eprintln!("cluster rate limit: {} events in {span:?}", got.len());
}
