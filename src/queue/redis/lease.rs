//! Handing out work: `lease` promotes due delayed jobs, reclaims lapsed
//! leases (XAUTOCLAIM) and reads new entries in one script, then, when
//! nothing was found, blocks on XREADGROUP on a connection of its own until
//! work arrives, the next delayed job is due or `wait` runs out.
//!
//! On a cluster (several partitions) there is no blocking read: XREADGROUP
//! can block on one partition's stream only, and a blocked command holds
//! its connection to that one master. `lease` runs the lease script on the
//! partitions in turn (those of one master in one script call), starting
//! one further on each call so every partition is served, until it has
//! `max` jobs; when none has work it waits, at most 100 ms (less right
//! after finding work, and it wakes at once when this process ingests), and
//! looks again. An idle worker so costs each master one script call per
//! 100 ms.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::streams::{StreamId, StreamReadReply};
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError, Value};

use super::StoredJob;
use super::{RedisQueue, Result, is_nogroup, ms, unavailable};
use crate::queue::{LeasedJob, QueueError};

/// Longest single XREADGROUP BLOCK; `lease` loops for longer waits.
const MAX_BLOCK: Duration = Duration::from_secs(30);

/// A leased entry whose stored job could not be decoded: lease handle,
/// delivery id, why.
type Undecodable = (String, String, String);

/// Fields per job in the lease scripts' flat reply (see `emit` in
/// `lua/common.lua`).
const JOB_FIELDS: usize = 7;

/// Decode the flat job list the lease scripts return. Entries that do not
/// decode are returned apart, so one bad record cannot block the others
/// (the caller dead-letters them). An event that does not decode is left
/// for the worker to read (and judge) itself.
fn parse_jobs(fields: &[String]) -> (Vec<LeasedJob>, Vec<Undecodable>) {
    let mut jobs = Vec::with_capacity(fields.len() / JOB_FIELDS);
    let mut bad = Vec::new();
    for f in fields.chunks_exact(JOB_FIELDS) {
        let lease = format!("{}/{}", f[0], f[1]);
        let decoded = serde_json::from_str::<StoredJob>(&f[3])
            .map_err(|e| format!("job: {e}"))
            .and_then(|StoredJob::V1 { job }| {
                let attempts = f[4].parse().map_err(|e| format!("attempts: {e}"))?;
                let orphaned_since = match f[5].as_str() {
                    "" => None,
                    t => Some(t.parse().map_err(|e| format!("orphaned_since: {e}"))?),
                };
                let event = match f[6].as_str() {
                    "" => None,
                    json => serde_json::from_str(json).ok(),
                };
                Ok(LeasedJob {
                    job,
                    attempts,
                    orphaned_since,
                    lease: lease.clone(),
                    event,
                })
            });
        match decoded {
            Ok(job) => jobs.push(job),
            Err(why) => bad.push((lease, f[2].clone(), why)),
        }
    }
    (jobs, bad)
}

/// The entries of an XREADGROUP reply (RESP2 or RESP3; nil when the BLOCK
/// ran out), read by redis-rs. A reply it cannot read (Redis sends none)
/// yields no entries rather than failing the lease: whatever it handed out
/// stays pending, and the lease script reclaims and judges it once its
/// lease lapses.
fn parse_read_reply(v: Value) -> Vec<StreamId> {
    match StreamReadReply::from_redis_value(v) {
        Ok(reply) => reply.keys.into_iter().flat_map(|key| key.ids).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "XREADGROUP reply not understood; its entries are reclaimed once their lease lapses");
            Vec::new()
        }
    }
}

/// A text field of a stream entry (`None`: absent, or not text). Bytes
/// that are not UTF-8 are kept (replaced), so a damaged job still reaches
/// `parse_jobs` and is dead-lettered with a reason.
fn field(entry: &StreamId, name: &str) -> Option<String> {
    match entry.map.get(name)? {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Split freshly read entries into job rows (the fields `parse_jobs`
/// takes; the job travels in the entry, the event is left to the worker)
/// and the ids of entries the `load` script must emit: those whose delivery
/// record is written at first lease (they carry their target, `t`), those
/// without their job (written by an older hookyard) and those not ours.
fn split_entries(entries: Vec<StreamId>) -> (Vec<String>, Vec<String>) {
    let mut rows = Vec::new();
    let mut to_load = Vec::new();
    for entry in entries {
        let target = field(&entry, "t");
        match (field(&entry, "d"), field(&entry, "j")) {
            (Some(did), Some(job)) if target.is_none() => {
                let attempts = field(&entry, "n").unwrap_or_else(|| "0".to_string());
                let orphaned_since = field(&entry, "o").unwrap_or_default();
                rows.extend([
                    entry.id,
                    "1".to_string(),
                    did,
                    job,
                    attempts,
                    orphaned_since,
                    String::new(),
                ]);
            }
            _ => to_load.push(entry.id),
        }
    }
    (rows, to_load)
}

impl RedisQueue {
    /// Dead-letter leased entries whose job does not decode (written by an
    /// incompatible version, or damaged), so they are visible with a reason
    /// instead of being reclaimed forever; return the good ones.
    async fn take_decodable(
        &self,
        part: usize,
        (jobs, bad): (Vec<LeasedJob>, Vec<Undecodable>),
    ) -> Result<Vec<LeasedJob>> {
        for (lease, did, why) in bad {
            tracing::error!(delivery = %did, error = %why, "stored job cannot be decoded; dead-lettering it");
            let args = vec![
                self.inner.settings.consumer_name.clone(),
                lease,
                did,
                String::new(),
                "undecodable_job".to_string(),
            ];
            // LeaseLost here only means someone else already dealt with it.
            match self.finishing(part, &self.inner.scripts.dead, args).await {
                Ok(()) | Err(QueueError::LeaseLost) => {}
                Err(e) => return Err(e),
            }
        }
        if !self.on_cluster() {
            return Ok(jobs);
        }
        // The handle names the partition, so finishing finds it.
        Ok(jobs
            .into_iter()
            .map(|mut j| {
                j.lease = format!("{part}@{}", j.lease);
                j
            })
            .collect())
    }

    /// The lease script on some partitions of one master, with a lost
    /// stream recreated: the jobs (up to `max` in all) and the earliest
    /// delayed job's due ms.
    async fn lease_in(&self, parts: &[usize], max: usize) -> Result<(Vec<LeasedJob>, Option<i64>)> {
        let reply = match self.lease_now(parts, max).await {
            Err(e) if is_nogroup(&e) => {
                for &part in parts {
                    self.recover(part).await?;
                }
                self.lease_now(parts, max).await.map_err(unavailable)?
            }
            other => other.map_err(unavailable)?,
        };
        // Per partition: cursor, next due, job count, jobs.
        let mut jobs = Vec::new();
        let mut next_due: Option<i64> = None;
        let mut rest = reply.as_slice();
        for &part in parts {
            let [cursor, due, count, tail @ ..] = rest else {
                return Err(QueueError::Corrupt(format!(
                    "the lease script answered {} values",
                    reply.len()
                )));
            };
            if let Ok(mut c) = self.inner.reclaim_cursor[part].lock() {
                *c = cursor.clone();
            }
            if let Ok(due) = due.parse::<f64>() {
                next_due = Some(next_due.map_or(due as i64, |d| d.min(due as i64)));
            }
            let n = count.parse::<usize>().unwrap_or(0) * JOB_FIELDS;
            let (rows, after) = tail.split_at(n.min(tail.len()));
            jobs.extend(self.take_decodable(part, parse_jobs(rows)).await?);
            rest = after;
        }
        Ok((jobs, next_due))
    }

    /// Lease up to `max` jobs, waiting up to `wait` when none is ready.
    pub async fn lease(&self, max: usize, wait: Duration) -> Result<Vec<LeasedJob>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        if self.on_cluster() {
            return self.lease_partitioned(max, wait).await;
        }
        let started = tokio::time::Instant::now();
        loop {
            let (jobs, next_due) = self.lease_in(&[0], max).await?;
            if !jobs.is_empty() {
                return Ok(jobs);
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            // Wake up for the next delayed job even if nothing is added, and
            // look for lapsed leases at least every lease period.
            let mut block = left.min(self.inner.settings.lease.max(Duration::from_millis(50)));
            if let Some(due) = next_due {
                let until = Duration::from_millis(due.saturating_sub(ms(self.now())).max(1) as u64);
                block = block.min(until);
            }
            let entries = match self.block_read(max, block).await {
                Err(e) if is_nogroup(&e) => {
                    self.recover(0).await?;
                    continue;
                }
                other => other.map_err(unavailable)?,
            };
            if !entries.is_empty() {
                let (mut rows, to_load) = split_entries(entries);
                if !to_load.is_empty() {
                    let loaded: Vec<String> = self
                        .run(0, &self.inner.scripts.load, &to_load)
                        .await
                        .map_err(unavailable)?;
                    rows.extend(loaded);
                }
                let jobs = self.take_decodable(0, parse_jobs(&rows)).await?;
                if !jobs.is_empty() {
                    return Ok(jobs);
                }
            }
        }
    }

    /// [`RedisQueue::lease`] on a cluster: the partitions in turn, no
    /// blocking read (see the module header).
    async fn lease_partitioned(&self, max: usize, wait: Duration) -> Result<Vec<LeasedJob>> {
        const MAX_IDLE: Duration = Duration::from_millis(100);
        let started = tokio::time::Instant::now();
        let n = self.partitions();
        // The pause grows while nothing is found, across calls, so a worker
        // that keeps asking an idle queue settles at one round per 100 ms.
        let mut idle = Duration::from_millis(self.inner.idle_ms.load(Ordering::Relaxed).max(5));
        loop {
            // The partitions from a new one each time, grouped by master:
            // one script call per master, until `max` jobs are found.
            let first = self.inner.next_part.fetch_add(1, Ordering::Relaxed) % n;
            let mut by_node: Vec<(usize, Vec<usize>)> = Vec::new();
            for part in (0..n).map(|k| (first + k) % n) {
                let node = self.inner.nodes.node_of(part);
                match by_node.iter_mut().find(|(m, _)| *m == node) {
                    Some((_, parts)) => parts.push(part),
                    None => by_node.push((node, vec![part])),
                }
            }
            let mut jobs = Vec::new();
            let mut next_due: Option<i64> = None;
            let mut failed = None;
            for (_, parts) in by_node {
                if jobs.len() >= max {
                    break;
                }
                // A master that fails (down, failing over) must not cost the
                // jobs already leased from the others: they are handed out
                // now, and the failing master is asked again next round.
                let (got, due) = match self.lease_in(&parts, max - jobs.len()).await {
                    Ok(found) => found,
                    Err(e) => {
                        self.inner
                            .nodes
                            .refresh_soon(&self.inner.source, &self.inner.parts);
                        failed = Some(e);
                        continue;
                    }
                };
                jobs.extend(got);
                next_due = match (next_due, due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            if !jobs.is_empty() {
                self.inner.idle_ms.store(5, Ordering::Relaxed);
                return Ok(jobs);
            }
            if let Some(e) = failed {
                return Err(e);
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            let mut pause = left.min(idle);
            if let Some(due) = next_due {
                let until = Duration::from_millis(due.saturating_sub(ms(self.now())).max(1) as u64);
                pause = pause.min(until);
            }
            let _ = tokio::time::timeout(pause, self.inner.work.notified()).await;
            idle = (idle * 2).min(MAX_IDLE);
            self.inner
                .idle_ms
                .store(idle.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Promote due delayed jobs, reclaim lapsed leases, read new entries,
    /// in `parts` (partitions of one master). Reply per partition: reclaim
    /// cursor, next delayed due ms, job count, jobs (see `parse_jobs`).
    async fn lease_now(
        &self,
        parts: &[usize],
        max: usize,
    ) -> std::result::Result<Vec<String>, RedisError> {
        // Look for lapsed leases a few times per lease period (at most every
        // second), not on every call: XAUTOCLAIM dominates the script's cost.
        let every = (self.inner.settings.lease / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut inv = self.inner.scripts.lease.prepare_invoke();
        // The first partition's keys; the others by prefix (`batch.rs`).
        for k in &self.inner.parts[parts[0]].keys {
            inv.key(k);
        }
        inv.arg(&self.inner.parts[parts[0]].prefix)
            .arg(ms(self.now()))
            .arg(&self.inner.settings.consumer_name)
            .arg(max)
            .arg(self.inner.settings.lease.as_millis() as u64);
        for (n, &part) in parts.iter().enumerate() {
            let cursor = self.inner.reclaim_cursor[part]
                .lock()
                .map(|c| c.clone())
                .unwrap_or_else(|_| "0-0".to_string());
            let reclaim = match self.inner.last_reclaim[part].lock() {
                Ok(mut last) => {
                    let due = last.is_none_or(|t| t.elapsed() >= every);
                    if due {
                        *last = Some(Instant::now());
                    }
                    due
                }
                Err(_) => true,
            };
            if n > 0 {
                inv.arg(&self.inner.parts[part].prefix);
            }
            inv.arg(cursor).arg(if reclaim { "1" } else { "0" });
        }
        inv.invoke_async(&mut self.conn()).await
    }

    /// XREADGROUP BLOCK on a connection of its own (the shared connection's
    /// short response timeout would cut the BLOCK off).
    async fn block_read(
        &self,
        max: usize,
        block: Duration,
    ) -> std::result::Result<Vec<StreamId>, RedisError> {
        let pooled = self.inner.blocking.lock().ok().and_then(|mut p| p.pop());
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                // The response timeout covers the BLOCK time plus a margin,
                // so a silently vanished Redis cannot hang a worker forever.
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(MAX_BLOCK + Duration::from_secs(5)));
                self.client()
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?
            }
        };
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(self.pkey(0, "workers"))
            .arg(&self.inner.settings.consumer_name)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(block.min(MAX_BLOCK).as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(self.pkey(0, "ready"))
            .arg(">")
            .query_async(&mut conn)
            .await?;
        // Only a connection that answered goes back to the pool.
        if let Ok(mut p) = self.inner.blocking.lock() {
            p.push(conn);
        }
        Ok(parse_read_reply(reply))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn read_reply_splits_into_job_rows_and_entries_for_the_load_script() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = |id: &str, fields: &[&str]| {
            Value::Array(vec![
                bulk(id),
                Value::Array(fields.iter().map(|f| bulk(f)).collect()),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("p:ready"),
            Value::Array(vec![
                entry("1-0", &["d", "D1", "j", "{}", "n", "2", "o", ""]),
                entry("2-0", &["d", "D2"]),
                entry("3-0", &["x", "y"]),
                entry("4-0", &["d", "D4", "j", "{}", "n", "0", "o", "", "t", "s"]),
            ]),
        ])]);
        let (rows, to_load) = split_entries(parse_read_reply(reply));
        assert_eq!(rows, ["1-0", "1", "D1", "{}", "2", "", ""]);
        assert_eq!(to_load, ["2-0", "3-0", "4-0"]);
        assert!(parse_read_reply(Value::Nil).is_empty());
    }

    #[test]
    fn read_reply_in_resp3_and_unreadable_replies() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        // RESP3: a map of stream name to entries.
        let reply = Value::Map(vec![(
            bulk("p:ready"),
            Value::Array(vec![Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("d"), bulk("D1"), bulk("j"), bulk("{}")]),
            ])]),
        )]);
        let (rows, to_load) = split_entries(parse_read_reply(reply));
        assert_eq!(rows, ["1-0", "1", "D1", "{}", "0", "", ""]);
        assert!(to_load.is_empty());
        // Not stream entries: nothing, and no panic.
        assert!(parse_read_reply(Value::Int(3)).is_empty());
        assert!(parse_read_reply(Value::Array(vec![Value::Int(3)])).is_empty());
    }

    #[test]
    fn jobs_decode_with_lease_handle() {
        let job = crate::queue::NewJob {
            delivery_id: "D1".into(),
            event_id: "E1".into(),
            target: crate::queue::Target::Subscription { id: "s".into() },
            steps: Default::default(),
            ordering_key: None,
            not_before: None,
            traceparent: None,
            fifo_later: false,
        };
        // Written the way ingestion writes it, read by serde.
        let mut args = Vec::new();
        super::super::job_args(&job, &mut args, false).unwrap();
        let stored = args.pop().unwrap();
        assert_eq!(
            stored,
            serde_json::to_string(&StoredJob::V1 { job: job.clone() }).unwrap()
        );
        let fields: Vec<String> = vec![
            "5-1".into(),
            "2".into(),
            "D1".into(),
            stored,
            "3".into(),
            "2026-01-01T00:00:00Z".into(),
            r#"{"id":"E1","type":"t","timestamp":"2026-01-01T00:00:00Z","source":"api:x","data":{"a":1}}"#.into(),
        ];
        let (jobs, bad) = parse_jobs(&fields);
        assert!(bad.is_empty());
        let event = jobs[0].event.as_ref().unwrap();
        assert_eq!(
            (event.id.as_str(), &event.data),
            ("E1", &serde_json::json!({"a": 1}))
        );
        assert_eq!(jobs[0].job, job);
        assert_eq!(jobs[0].attempts, 3);
        assert_eq!(jobs[0].lease, "5-1/2");
        assert_eq!(
            jobs[0].orphaned_since,
            Some("2026-01-01T00:00:00Z".parse().unwrap())
        );
        let (jobs, bad) = parse_jobs(&[
            "7-0".into(),
            "1".into(),
            "D9".into(),
            "{".into(),
            "0".into(),
            "".into(),
            "".into(),
        ]);
        assert!(jobs.is_empty());
        assert_eq!((bad[0].0.as_str(), bad[0].1.as_str()), ("7-0/1", "D9"));
    }
}
