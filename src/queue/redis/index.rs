//! Walking the history indexes newest first across partitions (SPEC §16).
//!
//! Every partition has its own `events`, `deliveries` and `dead` sorted
//! sets. A page is their merge: for the sequence-scored indexes the
//! position is (sequence, partition), ordered by sequence and then
//! partition, which is total (a sequence is unique within its partition);
//! sequences come from the ingest clock (`lua/common.lua`), so a merge
//! is also roughly newest first across partitions. The dead-letter set is
//! scored by time, with ties, so its cursor is how far each partition's set
//! was read. With one partition both are what they always were: the
//! sequence alone, and one position.

use std::fmt;

use super::history::{Head, SCAN_BATCH};
use super::{RedisQueue, Result, unavailable};
use crate::queue::{DeliveryRecord, DeliveryState, HistoryQuery, Page};

/// A place in a merged index: sequence number, then partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub seq: u64,
    pub part: usize,
}

impl Pos {
    /// `<seq>` or `<seq>-<partition>` (what `Display` writes).
    pub fn parse(text: &str) -> Option<Pos> {
        let (seq, part) = match text.split_once('-') {
            Some((seq, part)) => (seq, part.parse().ok()?),
            None => (text, 0),
        };
        Some(Pos {
            seq: seq.parse().ok()?,
            part,
        })
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.part {
            0 => write!(f, "{}", self.seq),
            part => write!(f, "{}-{part}", self.seq),
        }
    }
}

/// The places of `len` items by partition (`part_of(i)` is item i's), for
/// one round trip per partition: (partition, the items' places), in
/// partition order, leaving out partitions without items.
pub(super) fn by_part(len: usize, part_of: impl Fn(usize) -> usize) -> Vec<(usize, Vec<usize>)> {
    let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in 0..len {
        let part = part_of(i);
        match out.iter_mut().find(|(p, _)| *p == part) {
            Some((_, at)) => at.push(i),
            None => out.push((part, vec![i])),
        }
    }
    out.sort_by_key(|(p, _)| *p);
    out
}

/// The `n` newest of `entries` (from every partition), newest first.
fn newest(mut entries: Vec<(String, Pos)>, n: usize) -> Vec<(String, Pos)> {
    entries.sort_by_key(|e| std::cmp::Reverse(e.1));
    entries.truncate(n);
    entries
}

impl RedisQueue {
    /// The `n` entries of `index` after `below` (exclusive) in the merged
    /// newest-first order: the newest `n` below it of each partition hold
    /// them all.
    pub(super) async fn index_page(
        &self,
        index: &str,
        below: Option<Pos>,
        n: usize,
    ) -> Result<Vec<(String, Pos)>> {
        let mut all = Vec::new();
        for part in 0..self.partitions() {
            // Below (seq, part) in this partition: seq itself still counts
            // in the partitions ordered before `part`.
            let max = match below {
                Some(b) if part < b.part => b.seq.to_string(),
                Some(b) => format!("({}", b.seq),
                None => "+inf".to_string(),
            };
            let raw: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(self.pkey(part, index))
                .arg(max)
                .arg("-inf")
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(n)
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            all.extend(raw.into_iter().map(|(id, s)| {
                (
                    id,
                    Pos {
                        seq: s as u64,
                        part,
                    },
                )
            }));
        }
        Ok(newest(all, n))
    }

    /// Heads of deliveries listed with their partitions.
    pub(super) async fn heads_by_part(&self, batch: &[(String, Pos)]) -> Result<Vec<Option<Head>>> {
        let mut heads: Vec<Option<Head>> = vec![None; batch.len()];
        for (part, at) in by_part(batch.len(), |i| batch[i].1.part) {
            let ids: Vec<String> = at.iter().map(|&i| batch[i].0.clone()).collect();
            for (i, head) in at.into_iter().zip(self.heads(part, &ids).await?) {
                heads[i] = head;
            }
        }
        Ok(heads)
    }

    /// Full records of deliveries (partition, id, head), in the order given.
    pub(super) async fn records_by_part(
        &self,
        items: Vec<(usize, String, Head)>,
    ) -> Result<Vec<DeliveryRecord>> {
        let mut out: Vec<Option<DeliveryRecord>> = (0..items.len()).map(|_| None).collect();
        for (part, at) in by_part(items.len(), |i| items[i].0) {
            let heads = at
                .iter()
                .map(|&i| (items[i].1.clone(), items[i].2.clone()))
                .collect();
            for (i, record) in at.into_iter().zip(self.records(part, heads).await?) {
                out[i] = Some(record);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Dead-lettered deliveries, newest first (of `q.target` if given),
    /// from the dead-letter sets; the cursor is how far each partition's
    /// set was read (`<n>` or `<n0>,<n1>,...`).
    pub(super) async fn dead_letters(&self, q: &HistoryQuery) -> Result<Page<DeliveryRecord>> {
        let limit = if q.limit == 0 { 50 } else { q.limit };
        let n = self.partitions();
        let bad = || {
            crate::queue::QueueError::NotFound(format!(
                "cursor {:?} (use the next_cursor of a previous page)",
                q.cursor.as_deref().unwrap_or_default()
            ))
        };
        // Redis reads a position as a signed 64-bit number.
        let mut at: Vec<u64> = match &q.cursor {
            None => vec![0; n],
            Some(c) => c
                .split(',')
                .map(|p| p.parse::<u64>().map(|p| p.min(i64::MAX as u64 / 2)))
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad())?,
        };
        if at.len() != n {
            return Err(bad());
        }
        let mut found: Vec<(usize, String, Head)> = Vec::new();
        loop {
            // A batch of each partition, merged by time; only entries up to
            // the last one of a partition that may have more are taken, so
            // nothing of it is skipped.
            let mut merged: Vec<(f64, usize, String)> = Vec::new();
            let mut cutoff: Option<(f64, String, usize)> = None;
            for (part, &from) in at.iter().enumerate() {
                let batch: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
                    .arg(self.pkey(part, "dead"))
                    .arg(from)
                    .arg(from.saturating_add(SCAN_BATCH as u64 - 1))
                    .arg("WITHSCORES")
                    .query_async(&mut self.conn())
                    .await
                    .map_err(unavailable)?;
                if batch.len() == SCAN_BATCH
                    && let Some((id, last)) = batch.last()
                {
                    let edge = (*last, id.clone(), part);
                    if cutoff.as_ref().is_none_or(|c| later(c, &edge)) {
                        cutoff = Some(edge);
                    }
                }
                merged.extend(batch.into_iter().map(|(id, s)| (s, part, id)));
            }
            if merged.is_empty() {
                return Ok(Page {
                    items: self.records_by_part(found).await?,
                    next_cursor: None,
                });
            }
            // Newest first; equal times as ZREVRANGE orders them (by id,
            // descending), then by partition.
            merged.sort_by(|a, b| {
                b.0.total_cmp(&a.0)
                    .then_with(|| b.2.cmp(&a.2))
                    .then(a.1.cmp(&b.1))
            });
            if let Some(c) = cutoff {
                merged.retain(|(s, part, id)| !later(&(*s, id.clone(), *part), &c));
            }
            let heads = self
                .heads_by_part(
                    &merged
                        .iter()
                        .map(|(_, part, id)| {
                            (
                                id.clone(),
                                Pos {
                                    seq: 0,
                                    part: *part,
                                },
                            )
                        })
                        .collect::<Vec<_>>(),
                )
                .await?;
            for ((_, part, id), head) in merged.into_iter().zip(heads) {
                let wanted = head.as_ref().is_some_and(|h| {
                    h.2 == DeliveryState::DeadLetter && q.target.as_ref().is_none_or(|t| *t == h.1)
                });
                if wanted && found.len() == limit {
                    let cursor = at.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
                    return Ok(Page {
                        items: self.records_by_part(found).await?,
                        next_cursor: Some(cursor),
                    });
                }
                at[part] += 1;
                if let (true, Some(head)) = (wanted, head) {
                    found.push((part, id, head));
                }
            }
        }
    }
}

/// Whether dead-letter entry `a` (score, id, partition) comes after `b` in
/// the merged newest-first order.
fn later(a: &(f64, String, usize), b: &(f64, String, usize)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && (a.1 < b.1 || (a.1 == b.1 && a.2 > b.2)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_and_one_partition_keeps_the_old_cursor() {
        let p = Pos { seq: 42, part: 0 };
        assert_eq!(p.to_string(), "42");
        assert_eq!(Pos::parse("42"), Some(p));
        let p = Pos { seq: 42, part: 7 };
        assert_eq!(p.to_string(), "42-7");
        assert_eq!(Pos::parse("42-7"), Some(p));
        assert_eq!(Pos::parse("x"), None);
        assert_eq!(Pos::parse("1-x"), None);
    }

    #[test]
    fn items_group_by_partition_in_partition_order() {
        let parts = [3, 0, 3, 1];
        assert_eq!(
            by_part(parts.len(), |i| parts[i]),
            [(0, vec![1]), (1, vec![3]), (3, vec![0, 2])]
        );
        assert!(by_part(0, |_| 0).is_empty());
    }

    #[test]
    fn merge_orders_by_sequence_then_partition() {
        let at = |seq, part| Pos { seq, part };
        let got = newest(
            vec![
                ("a".into(), at(5, 0)),
                ("b".into(), at(9, 1)),
                ("c".into(), at(5, 2)),
                ("d".into(), at(1, 1)),
            ],
            3,
        );
        let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "a"]);
        let e = |s: f64, id: &str, part| (s, id.to_string(), part);
        assert!(later(&e(1.0, "a", 0), &e(2.0, "a", 0)));
        assert!(later(&e(2.0, "a", 0), &e(2.0, "b", 0)));
        assert!(later(&e(2.0, "a", 3), &e(2.0, "a", 1)));
        assert!(!later(&e(2.0, "a", 1), &e(2.0, "a", 1)));
    }
}
