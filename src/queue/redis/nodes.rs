//! Which master holds each partition, so that the batched scripts (ingest,
//! complete, lease) carry the work of every partition of one master in one
//! call (`batch.rs`, `lease.rs`, SPEC §16).
//!
//! Why: a script call costs Redis a fixed ~150k instructions (the call,
//! the shared prelude of `lua/common.lua`) on top of its per-event work.
//! A batch split into one call per partition, 16 of them, would pay that
//! 16 times for what one server does once; grouped by master it is paid
//! once per master. Such a call declares its first partition's keys and
//! names the others by prefix; the scripts run with `allow-cross-slot-keys`,
//! which lets them reach keys of other slots as long as they are on the
//! master that runs the script (Redis refuses declared keys of several
//! slots in one call, flag or not: checked on 7.0.15).
//!
//! The map is read with `CLUSTER SLOTS` at open, again every few seconds
//! (with the safety check) and at once when a call is refused because its
//! keys are no longer on one master (slots moved). A failover moves all of
//! a master's slots to its replica together, so a stale map still groups
//! correctly then; only a reshard needs the new map. One server (and
//! Sentinel) has one partition and one master: nothing to read.

use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::Value;

use super::partition::{Partition, slot};
use super::source::Source;

/// Partition → index of its master (among the masters seen).
pub(super) struct Nodes {
    of_part: RwLock<Vec<usize>>,
    refreshing: AtomicBool,
}

impl Nodes {
    /// Until the map is read, every partition counts as on a master of its
    /// own, so no call carries two partitions on a guess.
    pub fn new(partitions: usize) -> Nodes {
        Nodes {
            of_part: RwLock::new((0..partitions).collect()),
            refreshing: AtomicBool::new(false),
        }
    }

    pub fn node_of(&self, part: usize) -> usize {
        self.of_part
            .read()
            .map(|v| v.get(part).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Read the map now (a cluster; nothing elsewhere). A failure leaves
    /// the map as it was: the next call that meets a moved slot asks again.
    pub async fn refresh(&self, source: &Source, parts: &[Partition]) {
        if !source.is_cluster() {
            return;
        }
        let answer: redis::RedisResult<Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut source.conn())
            .await;
        match answer.map(|v| masters_of(&v, parts)) {
            Ok(Some(map)) => {
                if let Ok(mut v) = self.of_part.write() {
                    *v = map;
                }
            }
            Ok(None) => tracing::warn!("CLUSTER SLOTS answered without every slot; kept the map"),
            Err(e) => tracing::warn!(error = %e, "CLUSTER SLOTS failed; kept the map"),
        }
    }

    /// [`Nodes::refresh`] in the background, once at a time.
    pub fn refresh_soon(self: &Arc<Self>, source: &Source, parts: &Arc<Vec<Partition>>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (me, source, parts) = (self.clone(), source.clone(), parts.clone());
        tokio::spawn(async move {
            me.refresh(&source, &parts).await;
            me.refreshing.store(false, Ordering::Release);
        });
    }
}

/// From a `CLUSTER SLOTS` answer (ranges: start, end, master, replicas…;
/// a node as host, port, id…): each partition's master, numbered in the
/// order first met. `None` when a partition's slot is in no range.
fn masters_of(answer: &Value, parts: &[Partition]) -> Option<Vec<usize>> {
    let Value::Array(ranges) = answer else {
        return None;
    };
    let mut ranges_of: Vec<(i64, i64, String)> = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(start), Some(end), Some(Value::Array(master))) =
            (int(fields.first()), int(fields.get(1)), fields.get(2))
        else {
            continue;
        };
        let host = master.first().and_then(text).unwrap_or_default();
        let port = int(master.get(1)).unwrap_or(0);
        ranges_of.push((start, end, format!("{host}:{port}")));
    }
    let mut masters: Vec<String> = Vec::new();
    parts
        .iter()
        .map(|p| {
            let s = i64::from(slot(p.prefix.as_bytes()));
            let (_, _, addr) = ranges_of.iter().find(|(a, b, _)| *a <= s && s <= *b)?;
            Some(match masters.iter().position(|m| m == addr) {
                Some(i) => i,
                None => {
                    masters.push(addr.clone());
                    masters.len() - 1
                }
            })
        })
        .collect()
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(start: i64, end: i64, master: Value) -> Value {
        Value::Array(vec![Value::Int(start), Value::Int(end), master])
    }

    #[test]
    fn partitions_map_to_the_master_of_their_slot() {
        let parts = super::super::partition::layout("hy", 16, true);
        let answer = Value::Array(vec![
            range(0, 5460, node("127.0.0.1", 7001)),
            range(10923, 16383, node("127.0.0.1", 7003)),
            range(5461, 10922, node("127.0.0.1", 7002)),
        ]);
        let map = masters_of(&answer, &parts).unwrap();
        // Masters are numbered as partitions meet them, from partition 0.
        let want: Vec<usize> = parts
            .iter()
            .map(|p| match slot(p.prefix.as_bytes()) {
                s if s <= 5460 => 0,
                s if s <= 10922 => 1,
                _ => 2,
            })
            .collect();
        assert_eq!(map, want);
        assert_eq!(map.iter().max(), Some(&2));
    }

    #[test]
    fn a_slot_in_no_range_leaves_no_map() {
        let parts = super::super::partition::layout("hy", 4, true);
        let answer = Value::Array(vec![range(0, 100, node("h", 1))]);
        assert_eq!(masters_of(&answer, &parts), None);
        assert_eq!(masters_of(&Value::Nil, &parts), None);
    }
}
