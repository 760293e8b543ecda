//! Coalesced script calls, like a group commit: concurrent `ingest` /
//! `ingest_many` calls, and concurrent `complete` calls, of one process are
//! sent to a task per script that runs them together in one script call.
//! Many HTTP handlers ingest at once and a worker pool completes many jobs
//! at once; one call for all of them saves a round trip and the per-call
//! overhead each, and lets the script write counters and indexes once per
//! batch instead of once per job (see `lua/common.lua`). Atomicity is per
//! item as before (a script runs atomically as a whole).
//!
//! Two batches may be in flight at once on the (pipelining) connection:
//! while Redis runs one, the next is already on its way, so neither the
//! daemon nor Redis waits for the other between batches. Items of two
//! batches never share a script call, and Redis runs scripts one at a
//! time, so a duplicate in the later batch still sees the earlier one.
//!
//! The task only holds a connection and the script, never the queue itself,
//! so it ends when the last queue handle (and with it the sender) is
//! dropped. Each caller waits for its own answers.
//!
//! `queue.replicas_ack: N` (SPEC §16): the ingest batcher sends its script
//! call and `WAIT N timeout` together, as one pipeline, so both run on the
//! same connection, in that order, and nothing can reconnect between them.
//! That matters because WAIT waits for the replication offset of the last
//! write made *on its own connection* (Redis' WAIT documentation: "all the
//! previous write commands sent in the context of the current
//! connection"); the offset is a position in the master's one replication
//! stream, so a replica that has it also has every earlier write of every
//! connection. Every ingest script writes (its sequence INCRBY, even when
//! the whole batch is duplicates), so a duplicate's answer also waits for
//! the original event's write, wherever it was made. The ingest batcher
//! then has a connection of its own (`redis.rs`): WAIT holds its
//! connection until the replicas answer, and leases and completions must
//! not wait behind it. Fewer than N replicas in time: every caller of the
//! batch gets `QueueError::NotReplicated` (answered as "queue
//! unavailable"); the events stay written. With N = 0 nothing of this
//! runs: the script call goes alone, as before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{Cmd, Pipeline, RedisResult, Script};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::nodes::Nodes;
use super::partition::Partition;
use super::source::{Conn, Source};
use super::{Result, ms};
use crate::queue::{Clock, QueueError};

/// At most one warning per this long about unmet `replicas_ack`.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Most items run by one script call.
const MAX_ITEMS: usize = 512;
/// Script calls of one batcher in flight at once.
const IN_FLIGHT: usize = 2;

/// One caller's share of a batch: `items` items of partition `part` whose
/// script arguments are `args` (already in the script's per-item layout).
pub(super) struct Call {
    pub part: usize,
    pub items: usize,
    pub args: Vec<String>,
    /// The reply's head (the first caller of a batch gets it, the others an
    /// empty one) and `per` answer strings per item.
    pub reply: oneshot::Sender<Result<(Vec<String>, Vec<String>)>>,
}

/// How to run one script for a batch: `KEYS` = the partition's keys, `ARGV`
/// = its prefix, now, `header`, item count, items; the reply is `head`
/// strings then `per` per item. A batch of several partitions (a cluster)
/// is one script call per master, sent together, each carrying the
/// partitions of its master (`nodes.rs`).
pub(super) struct Batcher {
    /// The queue's connections (unused when `ack` brings its own).
    pub source: Source,
    /// `queue.replicas_ack`, when above 0.
    pub ack: Option<ReplicasAck>,
    pub script: Script,
    pub parts: Arc<Vec<Partition>>,
    /// Which master holds each partition (one call per master).
    pub nodes: Arc<Nodes>,
    pub clock: Clock,
    pub header: Vec<String>,
    pub head: usize,
    pub per: usize,
}

/// `WAIT replicas timeout` after every script call, on `source`.
pub(super) struct ReplicasAck {
    pub replicas: u32,
    pub timeout: Duration,
    /// The connection of the batcher's own (see the module header).
    pub source: Source,
    pub unmet: Unmet,
}

/// Unmet WAITs since the last warning, and when that was.
#[derive(Default)]
pub(super) struct Unmet {
    count: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

impl ReplicasAck {
    /// A warning for an unmet WAIT, at most one per [`WARN_EVERY`] (the
    /// refused requests are counted by `hookyard_inbound_requests_total`).
    fn warn(&self, acked: u32) {
        let count = self.unmet.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .unmet
            .last_warning
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        self.unmet.count.store(0, Ordering::Relaxed);
        tracing::warn!(
            wanted = self.replicas,
            acked,
            timeout_ms = self.timeout.as_millis() as u64,
            unmet_since_last_warning = count,
            "queue.replicas_ack not met: events were stored but answered 503 (queue unavailable); \
             check the Redis replicas (`INFO replication` on the master)"
        );
    }
}

/// Start the task; calls go into the returned sender.
pub(super) fn spawn(b: Batcher) -> mpsc::UnboundedSender<Call> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(b, rx));
    tx
}

/// Send one call and wait for its answers.
pub(super) async fn call(
    tx: &mpsc::UnboundedSender<Call>,
    part: usize,
    items: usize,
    args: Vec<String>,
) -> Result<(Vec<String>, Vec<String>)> {
    let stopped = || QueueError::Unavailable("the Redis batching task stopped".into());
    let (reply, answer) = oneshot::channel();
    tx.send(Call {
        part,
        items,
        args,
        reply,
    })
    .map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

async fn run(b: Batcher, mut rx: mpsc::UnboundedReceiver<Call>) {
    let b = Arc::new(b);
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Wait for a free slot before gathering, so a batch takes in every
        // call that arrived while the slots were busy.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let mut items = batch[0].items;
        while items < MAX_ITEMS {
            match rx.try_recv() {
                Ok(call) => {
                    items += call.items;
                    batch.push(call);
                }
                Err(_) => break,
            }
        }
        let b = b.clone();
        tokio::spawn(async move {
            // One script call per master, all in flight at once; within a
            // call, the calls of each partition together.
            let mut by_node: Vec<(usize, PartCalls)> = Vec::new();
            for call in batch {
                let node = b.nodes.node_of(call.part);
                let at = match by_node.iter().position(|(n, _)| *n == node) {
                    Some(at) => at,
                    None => {
                        by_node.push((node, Vec::new()));
                        by_node.len() - 1
                    }
                };
                let parts = &mut by_node[at].1;
                match parts.iter_mut().find(|(p, _)| *p == call.part) {
                    Some((_, calls)) => calls.push(call),
                    None => parts.push((call.part, vec![call])),
                }
            }
            if by_node.len() == 1 {
                let (_, parts) = by_node.remove(0);
                b.run_batch(parts).await;
            } else {
                let runs = by_node.into_iter().map(|(_, parts)| b.run_batch(parts));
                futures_util::future::join_all(runs).await;
            }
            drop(slot);
        });
    }
}

impl Batcher {
    /// One script call for the calls of some partitions of one master.
    async fn run_batch(&self, parts: PartCalls) {
        let parts: Vec<(&Partition, Vec<Call>, usize)> = parts
            .into_iter()
            .map(|(p, calls)| {
                let items = calls.iter().map(|c| c.items).sum();
                (&self.parts[p.min(self.parts.len() - 1)], calls, items)
            })
            .collect();
        // EVALSHA built straight into one sized command: a script
        // invocation would copy every argument once more on the way.
        let argc = 4
            + self.header.len()
            + parts
                .iter()
                .map(|(p, calls, _)| {
                    2 + p.keys.len() + calls.iter().map(|c| c.args.len()).sum::<usize>()
                })
                .sum::<usize>();
        let bytes = parts
            .iter()
            .flat_map(|(_, calls, _)| calls.iter().flat_map(|c| c.args.iter().map(String::len)))
            .sum::<usize>()
            + 128 * parts.len();
        let mut cmd = redis::Cmd::with_capacity(argc + 3, bytes);
        // The first partition's keys are declared; the others are reached
        // through their prefixes (see `use_partition` in `lua/common.lua`).
        cmd.arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(parts[0].0.keys.len());
        for k in &parts[0].0.keys {
            cmd.arg(k);
        }
        // The first partition's prefix, now, the header, then each
        // partition's item count and items, each after the first preceded
        // by its prefix (`each_partition` in `lua/common.lua`).
        cmd.arg(&parts[0].0.prefix).arg(ms((self.clock)()));
        for h in &self.header {
            cmd.arg(h);
        }
        for (n, (part, calls, items)) in parts.iter().enumerate() {
            if n > 0 {
                cmd.arg(&part.prefix);
            }
            cmd.arg(*items);
            for call in calls {
                for a in &call.args {
                    cmd.arg(a);
                }
            }
        }
        // The connection's response timeout bounds the wait.
        let (mut conn, request) = match &self.ack {
            None => (self.source.conn(), Request::Alone(cmd)),
            Some(ack) => {
                let mut pipe = redis::pipe();
                pipe.add_command(cmd)
                    .cmd("WAIT")
                    .arg(ack.replicas)
                    .arg(ack.timeout.as_millis() as u64);
                (ack.source.conn(), Request::Acked(pipe))
            }
        };
        let mut reply = request.send(&mut conn).await;
        if let Err(e) = &reply
            && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            // Redis lost its script cache (restart, SCRIPT FLUSH): load it
            // and run the same command again.
            reply = match self.script.prepare_invoke().load_async(&mut conn).await {
                Ok(_) => request.send(&mut conn).await,
                Err(e) => Err(e),
            };
        }
        let calls = parts.into_iter().map(|(_, calls, items)| (calls, items));
        let reply = match (reply, &self.ack) {
            (Ok((_, Some(acked))), Some(ack)) if acked < ack.replicas => {
                ack.warn(acked);
                let why = format!(
                    "{acked} of {} replicas acknowledged within {}ms (queue.replicas_ack)",
                    ack.replicas,
                    ack.timeout.as_millis()
                );
                for call in calls.flat_map(|(c, _)| c) {
                    let _ = call.reply.send(Err(QueueError::NotReplicated(why.clone())));
                }
                return;
            }
            (reply, _) => reply.map(|(values, _)| values),
        };
        let calls: Vec<(Vec<Call>, usize)> = calls.collect();
        let expected: usize = calls.iter().map(|(_, n)| self.head + n * self.per).sum();
        let mut reply = match reply {
            Ok(r) if r.len() == expected => r.into_iter(),
            other => {
                let (corrupt, why) = match other {
                    Ok(r) => (
                        true,
                        format!(
                            "script answered {} values where {expected} were due",
                            r.len()
                        ),
                    ),
                    Err(e) => {
                        if is_cross_slot(&e) {
                            // The cluster moved slots: learn where they are.
                            self.nodes.refresh_soon(&self.source, &self.parts);
                        }
                        (false, e.to_string())
                    }
                };
                for call in calls.into_iter().flat_map(|(c, _)| c) {
                    let _ = call.reply.send(Err(if corrupt {
                        QueueError::Corrupt(why.clone())
                    } else {
                        QueueError::Unavailable(why.clone())
                    }));
                }
                return;
            }
        };
        for (batch, _) in calls {
            let mut head: Vec<String> = reply.by_ref().take(self.head).collect();
            for call in batch {
                let answers = reply.by_ref().take(call.items * self.per).collect();
                // A caller that stopped waiting needs no answer.
                let _ = call.reply.send(Ok((std::mem::take(&mut head), answers)));
            }
        }
    }
}

/// Calls by partition: (partition, its calls).
type PartCalls = Vec<(usize, Vec<Call>)>;

/// An answer that says the keys of one call are not all on the master it
/// went to (the slots moved since the map was read).
fn is_cross_slot(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(
            redis::ServerErrorKind::CrossSlot
                | redis::ServerErrorKind::Moved
                | redis::ServerErrorKind::Ask
                | redis::ServerErrorKind::TryAgain
        )
    ) || {
        let text = e.to_string();
        text.contains("CROSSSLOT") || text.contains("non local key")
    }
}

/// A batch's script call, alone or followed by WAIT in one pipeline.
enum Request {
    Alone(Cmd),
    Acked(Pipeline),
}

impl Request {
    /// The script's reply, and WAIT's (replicas that acknowledged).
    async fn send(&self, conn: &mut Conn) -> RedisResult<(Vec<String>, Option<u32>)> {
        match self {
            Request::Alone(cmd) => Ok((cmd.query_async(conn).await?, None)),
            Request::Acked(pipe) => {
                let (values, acked): (Vec<String>, u32) = pipe.query_async(conn).await?;
                Ok((values, Some(acked)))
            }
        }
    }
}
