//! Opening the Redis backend: the connections (`source.rs`), the
//! partitions (`partition.rs`), the batching tasks (`batch.rs`), and the
//! checks made before anything is written: a server that loses data is
//! refused (`safety.rs`), and so is a partition count other than the one
//! the data was written with.

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;

use super::scripts::Scripts;
use super::{
    Address, Inner, RESPONSE_TIMEOUT, RedisQueue, Result, batch, nodes, partition, safety, source,
    unavailable,
};
use crate::queue::{Clock, QueueError, StoreSettings, system_clock};

/// Settings of the Redis backend beyond the common [`StoreSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisOptions {
    /// `queue.allow_eviction`: run on a server that would lose data, with
    /// a warning, where otherwise the open fails (`redis/safety.rs`).
    pub allow_eviction: bool,
    /// `queue.replicas_ack`: replicas that must have an ingested event
    /// before it is acknowledged (`WAIT`, see `redis/batch.rs`); 0: none.
    pub replicas_ack: u32,
    /// `queue.replicas_ack_timeout`: how long to wait for them.
    pub replicas_ack_timeout: Duration,
    /// `queue.partitions`: on a Redis Cluster, how many partitions events
    /// are spread over (one server and Sentinel always have one).
    pub partitions: u16,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            allow_eviction: false,
            replicas_ack: 0,
            replicas_ack_timeout: Duration::from_secs(1),
            partitions: 16,
        }
    }
}

impl RedisQueue {
    /// Connect, load the scripts and make sure the stream and its consumer
    /// group exist. Fails with `Unavailable` when Redis cannot be reached.
    pub async fn open(url: &str, prefix: &str, settings: StoreSettings) -> Result<Self> {
        Self::open_with_clock(url, prefix, settings, system_clock()).await
    }

    /// Like [`RedisQueue::open`] with a clock of the caller's (tests): due
    /// times, ages and idempotency windows follow it. Lease expiry does not:
    /// it is Redis' own idle time of the stream entry (see the header).
    pub async fn open_with_clock(
        url: &str,
        prefix: &str,
        settings: StoreSettings,
        clock: Clock,
    ) -> Result<Self> {
        Self::open_with(url, prefix, settings, clock, RedisOptions::default()).await
    }

    /// Like [`RedisQueue::open_with_clock`], with the backend's own
    /// settings: `url` is one server or a Sentinel URL (`redis/address.rs`);
    /// see [`RedisOptions`].
    pub async fn open_with(
        url: &str,
        prefix: &str,
        settings: StoreSettings,
        clock: Clock,
        options: RedisOptions,
    ) -> Result<Self> {
        let address = Address::parse(url)
            .map_err(|e| QueueError::Unavailable(format!("invalid queue.url: {e}")))?;
        let source = source::Source::open(&address, RESPONSE_TIMEOUT)
            .await
            .map_err(unavailable)?;
        // With `replicas_ack`, ingestion runs on a connection of its own:
        // WAIT holds its connection until the replicas answer (up to the
        // timeout), and must not hold up leases and completions meanwhile.
        let acked = match options.replicas_ack {
            0 => None,
            replicas => Some(batch::ReplicasAck {
                replicas,
                timeout: options.replicas_ack_timeout,
                source: source::Source::open(
                    &address,
                    RESPONSE_TIMEOUT + options.replicas_ack_timeout,
                )
                .await
                .map_err(unavailable)?,
                unmet: Default::default(),
            }),
        };
        let prefix = prefix.trim_end_matches(':').to_string();
        let parts = Arc::new(partition::layout(
            &prefix,
            options.partitions,
            source.is_cluster(),
        ));
        let nodes = Arc::new(nodes::Nodes::new(parts.len()));
        nodes.refresh(&source, &parts).await;
        let scripts = Scripts::new(source.is_cluster());
        let batcher = |script: &Script,
                       header: String,
                       head: usize,
                       per: usize,
                       ack: Option<batch::ReplicasAck>| {
            batch::spawn(batch::Batcher {
                source: source.clone(),
                ack,
                script: script.clone(),
                parts: parts.clone(),
                nodes: nodes.clone(),
                clock: clock.clone(),
                header: vec![header],
                head,
                per,
            })
        };
        // ingest.lua: header = idempotency window, reply = reset flag then
        // (answer, event id) per event; complete.lua: header = consumer,
        // reply = one answer per completion.
        let window = settings.idempotency_window.as_millis().to_string();
        let ingests = batcher(&scripts.ingest, window, 1, 2, acked);
        let completions = batcher(
            &scripts.complete,
            settings.consumer_name.clone(),
            0,
            1,
            None,
        );
        let queue = RedisQueue {
            inner: Arc::new(Inner {
                source,
                blocking: Mutex::new(Vec::new()),
                prefix,
                reclaim_cursor: parts.iter().map(|_| Mutex::new("0-0".into())).collect(),
                last_reclaim: parts.iter().map(|_| Mutex::new(None)).collect(),
                parts,
                nodes,
                next_part: AtomicUsize::new(0),
                work: tokio::sync::Notify::new(),
                idle_ms: AtomicU64::new(5),
                settings,
                scripts,
                clock,
                ingests,
                completions,
                resets: AtomicU64::new(0),
                safety: safety::Safety::new(options.allow_eviction),
            }),
        };
        // Before writing anything: an unsafe server is refused untouched.
        queue.check_safety(true).await?;
        queue.check_partitions().await?;
        for part in 0..queue.inner.parts.len() {
            queue.create_group(part).await?;
            queue.mark_pruned_ids(part).await?;
            queue.count_dead_letters(part).await?;
        }
        Ok(queue)
    }

    /// The partition count is fixed once data is written: events are found
    /// by the hash of their dedupe key, which another count would send to
    /// another partition. Recorded at the first open, checked after.
    async fn check_partitions(&self) -> Result<()> {
        let count = self.inner.parts.len();
        if !self.inner.source.is_cluster() {
            return Ok(());
        }
        // SET NX GET: the count recorded before, or nothing (recorded now).
        let found: Option<usize> = redis::cmd("SET")
            .arg(self.key("partitions"))
            .arg(count)
            .arg("NX")
            .arg("GET")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match found {
            Some(n) if n != count => Err(QueueError::Unavailable(format!(
                "queue.partitions is {count}, but the data under prefix `{}` was written with \
                 {n} partitions: set queue.partitions back to {n} (a different count needs a new \
                 queue.prefix, with the old one drained by a daemon that still uses {n})",
                self.inner.prefix
            ))),
            _ => Ok(()),
        }
    }
}
