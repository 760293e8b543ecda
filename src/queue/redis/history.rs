//! Reading side of the Redis backend: event and delivery history with
//! newest-first cursor pagination, queue statistics, pruning, and the small
//! documents (API-created subscriptions, state) kept next to the queue.
//!
//! Listing walks the `<p>:events` / `<p>:deliveries` sorted sets from the
//! highest sequence number down in batches and filters in Rust; the cursor is
//! the sequence number of the last item returned, so pages stay stable while
//! new events arrive.
//!
//! On a cluster every partition has its own indexes; a page is their
//! merge, newest first (`index.rs`), and the cursor names the position in
//! that merged order (sequence and partition).

use std::collections::BTreeMap;

use redis::Value;

use super::index::Pos;
use super::{RedisQueue, Result, StoredJob, corrupt, ms, unavailable};
use crate::queue::{
    Attempt, DeliveryRecord, DeliveryState, Event, HistoryQuery, NewJob, Page, QueueError,
    QueueStats,
};

/// How many index entries one round trip looks at while filtering.
pub(super) const SCAN_BATCH: usize = 200;
/// Page size when the query gives none.
const DEFAULT_LIMIT: usize = 50;

fn state_of(s: &str) -> Result<DeliveryState> {
    match s {
        "pending" => Ok(DeliveryState::Pending),
        "succeeded" => Ok(DeliveryState::Succeeded),
        "dead_letter" => Ok(DeliveryState::DeadLetter),
        "test" => Ok(DeliveryState::Test),
        other => Err(QueueError::Corrupt(format!("delivery state {other:?}"))),
    }
}

/// The head fields of a delivery record: event id, target, state, reason.
pub(super) type Head = (String, String, DeliveryState, Option<String>);

/// The head of a delivery queued without its record: `<p>:dq` holds
/// "<target label>\n<event id>".
fn queued_head(value: &str) -> Option<Head> {
    let (target, event_id) = value.split_once('\n')?;
    Some((
        event_id.to_owned(),
        target.to_owned(),
        DeliveryState::Pending,
        None,
    ))
}

impl RedisQueue {
    fn start(q: &HistoryQuery) -> Result<(usize, Option<Pos>)> {
        let limit = if q.limit == 0 { DEFAULT_LIMIT } else { q.limit };
        let cursor = match &q.cursor {
            Some(c) => Some(Pos::parse(c).ok_or_else(|| {
                QueueError::NotFound(format!(
                    "cursor {c:?} (use the next_cursor of a previous page)"
                ))
            })?),
            None => None,
        };
        Ok((limit, cursor))
    }

    /// Heads of deliveries by id (None: unknown). A delivery queued at
    /// ingestion has no record until it is first leased; it is listed in
    /// `<p>:dq` instead and reads as pending with no attempts. The queued
    /// entry is read before the record: a lease in between moves it from
    /// the one to the other, never away from both.
    pub(super) async fn heads(&self, part: usize, ids: &[String]) -> Result<Vec<Option<Head>>> {
        // An empty pipeline is a client error in redis-rs (an event
        // without deliveries has no ids).
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let queued_key = self.pkey(part, "dq");
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGET").arg(&queued_key).arg(id);
            pipe.cmd("HMGET")
                .arg(self.pkey(part, &format!("d:{id}")))
                .arg(&["ev", "tg", "st", "rs"]);
        }
        let rows: Vec<(Option<String>, Vec<Option<String>>)> = pipe
            .query_async::<Vec<Value>>(&mut self.conn())
            .await
            .map_err(unavailable)?
            .chunks_exact(2)
            .map(|pair| {
                let queued = redis::from_redis_value_ref(&pair[0]);
                let record = redis::from_redis_value_ref(&pair[1]);
                Ok((
                    queued.map_err(|e| corrupt("queued delivery", e))?,
                    record.map_err(|e| corrupt("delivery record", e))?,
                ))
            })
            .collect::<Result<_>>()?;
        rows.into_iter()
            .map(|(queued, record)| match (record.as_slice(), queued) {
                ([Some(ev), Some(tg), Some(st), rs], _) => Ok(Some((
                    ev.clone(),
                    tg.clone(),
                    state_of(st)?,
                    rs.clone().filter(|r| !r.is_empty()),
                ))),
                (_, Some(queued)) => Ok(queued_head(&queued)),
                _ => Ok(None),
            })
            .collect()
    }

    /// Full records (with attempts) of deliveries whose heads are known.
    pub(super) async fn records(
        &self,
        part: usize,
        heads: Vec<(String, Head)>,
    ) -> Result<Vec<DeliveryRecord>> {
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (id, _) in &heads {
            pipe.cmd("LRANGE")
                .arg(self.pkey(part, &format!("da:{id}")))
                .arg(0)
                .arg(-1);
        }
        let lists: Vec<Vec<String>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(heads.len());
        for ((id, (event_id, target, state, reason)), attempts) in heads.into_iter().zip(lists) {
            let attempts = attempts
                .iter()
                .map(|a| serde_json::from_str::<Attempt>(a).map_err(|e| corrupt("attempt", e)))
                .collect::<Result<Vec<_>>>()?;
            out.push(DeliveryRecord {
                id,
                event_id,
                target,
                state,
                reason,
                attempts,
            });
        }
        Ok(out)
    }

    async fn records_of(&self, part: usize, ids: Vec<String>) -> Result<Vec<DeliveryRecord>> {
        let heads = self.heads(part, &ids).await?;
        let known = ids
            .into_iter()
            .zip(heads)
            .filter_map(|(id, h)| h.map(|h| (id, h)))
            .collect();
        self.records(part, known).await
    }

    /// The event alone, without its delivery records: one HGET (the
    /// delivery worker's per-job read; on a cluster, in the partition its
    /// id hashes to first).
    pub async fn event_only(&self, id: &str) -> Result<Option<Event>> {
        let n = self.partitions();
        let first = self.part_of(id);
        for k in 0..n {
            let json: Option<String> = redis::cmd("HGET")
                .arg(self.pkey((first + k) % n, &format!("ev:{id}")))
                .arg("json")
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            if let Some(json) = json {
                let event: Event = serde_json::from_str(&json).map_err(|e| corrupt("event", e))?;
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// An event with its deliveries (in enqueue order).
    pub async fn event(&self, id: &str) -> Result<Option<(Event, Vec<DeliveryRecord>)>> {
        let Some(part) = self.locate_event(id).await? else {
            return Ok(None);
        };
        let (json, first, later): (Option<String>, Option<String>, Vec<String>) = redis::pipe()
            .cmd("HGET")
            .arg(self.pkey(part, &format!("ev:{id}")))
            .arg("json")
            .cmd("HGET")
            .arg(self.pkey(part, &format!("ev:{id}")))
            .arg("ds")
            .cmd("LRANGE")
            .arg(self.pkey(part, &format!("evd:{id}")))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let Some(json) = json else { return Ok(None) };
        let event: Event = serde_json::from_str(&json).map_err(|e| corrupt("event", e))?;
        // Deliveries made at ingestion are listed in the event hash, later
        // ones (replays, workflow steps) in its list.
        let mut ids: Vec<String> = match first {
            Some(ds) => serde_json::from_str(&ds).map_err(|e| corrupt("event deliveries", e))?,
            None => Vec::new(),
        };
        ids.extend(later);
        Ok(Some((event, self.records_of(part, ids).await?)))
    }

    /// Events newest first, filtered by type and `since` (event timestamp).
    pub async fn events(&self, q: &HistoryQuery) -> Result<Page<Event>> {
        let (limit, mut below) = Self::start(q)?;
        let mut items: Vec<(Event, Pos)> = Vec::new();
        loop {
            let batch = self.index_page("events", below, SCAN_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            below = batch.last().map(|(_, pos)| *pos);
            // One round trip per partition in the batch (a pipeline may not
            // cross slots on a cluster).
            let mut jsons: Vec<Option<String>> = vec![None; batch.len()];
            for (part, at) in super::index::by_part(batch.len(), |i| batch[i].1.part) {
                let mut pipe = redis::pipe();
                for &i in &at {
                    pipe.cmd("HGET")
                        .arg(self.pkey(part, &format!("ev:{}", batch[i].0)))
                        .arg("json");
                }
                let got: Vec<Option<String>> = pipe
                    .query_async(&mut self.conn())
                    .await
                    .map_err(unavailable)?;
                for (i, json) in at.into_iter().zip(got) {
                    jsons[i] = json;
                }
            }
            for ((_, seq), json) in batch.iter().zip(jsons) {
                let Some(json) = json else { continue };
                let event: Event = serde_json::from_str(&json).map_err(|e| corrupt("event", e))?;
                if q.admits(&event) {
                    items.push((event, *seq));
                }
            }
            // One extra match tells whether a next page exists.
            if items.len() > limit {
                break;
            }
        }
        Ok(page(items, limit))
    }

    /// Deliveries newest first, filtered by state and target label.
    pub async fn deliveries(&self, q: &HistoryQuery) -> Result<Page<DeliveryRecord>> {
        if q.state == Some(DeliveryState::DeadLetter) {
            // The dead-letter set holds exactly those: page through it
            // instead of scanning all of history for them.
            return self.dead_letters(q).await;
        }
        let (limit, mut below) = Self::start(q)?;
        let mut found: Vec<((usize, String, Head), Pos)> = Vec::new();
        loop {
            let batch = self.index_page("deliveries", below, SCAN_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            below = batch.last().map(|(_, pos)| *pos);
            let heads = self.heads_by_part(&batch).await?;
            for ((id, seq), head) in batch.into_iter().zip(heads) {
                let Some(head) = head else { continue };
                let state_ok = q.state.is_none_or(|s| s == head.2);
                let target_ok = q.target.as_ref().is_none_or(|t| *t == head.1);
                if state_ok && target_ok {
                    found.push(((seq.part, id, head), seq));
                }
            }
            if found.len() > limit {
                break;
            }
        }
        let Page { items, next_cursor } = page(found, limit);
        Ok(Page {
            items: self.records_by_part(items).await?,
            next_cursor,
        })
    }

    /// One delivery with its attempts.
    /// On a cluster the partitions are asked in turn (a delivery id does
    /// not name its partition; this is an admin read, not a worker's).
    pub async fn delivery(&self, id: &str) -> Result<Option<DeliveryRecord>> {
        for part in self.parts_from(id) {
            if let Some(found) = self.records_of(part, vec![id.to_string()]).await?.pop() {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The partitions in the order to look for `id` in: the one it hashes
    /// to first.
    fn parts_from(&self, id: &str) -> impl Iterator<Item = usize> + use<> {
        let (n, first) = (self.partitions(), self.part_of(id));
        (0..n).map(move |k| (first + k) % n)
    }

    /// The job of a delivery as it was enqueued.
    pub async fn job_of(&self, delivery_id: &str) -> Result<Option<NewJob>> {
        let mut stored: Option<String> = None;
        for part in self.parts_from(delivery_id) {
            stored = redis::cmd("HGET")
                .arg(self.pkey(part, &format!("d:{delivery_id}")))
                .arg("job")
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            if stored.is_some() {
                break;
            }
        }
        match stored {
            None => Ok(None),
            Some(s) => {
                let StoredJob::V1 { job } =
                    serde_json::from_str(&s).map_err(|e| corrupt("stored job", e))?;
                Ok(Some(job))
            }
        }
    }

    /// Depth counters for metrics.
    pub async fn stats(&self) -> Result<QueueStats> {
        let mut total = QueueStats::default();
        for part in 0..self.partitions() {
            let one = self.stats_of(part).await?;
            add_stats(&mut total, one);
        }
        Ok(total)
    }

    /// The counters of one partition.
    async fn stats_of(&self, part: usize) -> Result<QueueStats> {
        let r: Vec<String> = self
            .run(
                part,
                &self.inner.scripts.stats,
                &[MAX_LEASED_LOOKED_AT.to_string()],
            )
            .await
            .map_err(unavailable)?;
        let num = |i: usize| r.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let (stream, in_flight, delayed, due, dead, waiting) =
            (num(0), num(1), num(2), num(3), num(4), num(5));
        let oldest_age_seconds = match r.get(6).and_then(|s| s.parse::<f64>().ok()) {
            Some(enq) => ((ms(self.now()) as f64 - enq) / 1000.0).max(0.0),
            None => 0.0,
        };
        let mut rest = r.get(7..).unwrap_or_default();
        // Three sections, each its number of pairs and the pairs.
        let mut by_target = || {
            let Some((pairs, tail)) = rest.split_first() else {
                return BTreeMap::new();
            };
            let len = pairs.parse::<usize>().unwrap_or(0).saturating_mul(2);
            let (section, after) = tail.split_at(len.min(tail.len()));
            rest = after;
            counts_by_target(section)
        };
        let (pending_by_target, in_flight_by_target, dead_by_target) =
            (by_target(), by_target(), by_target());
        Ok(QueueStats {
            // Like the embedded backend: ready = leasable now (due delayed
            // jobs the next lease moves to the stream included); jobs parked
            // behind their FIFO head count as delayed.
            ready: stream.saturating_sub(in_flight) + due,
            delayed: delayed.saturating_sub(due) + waiting,
            in_flight,
            dead_letter: dead,
            oldest_age_seconds,
            pending_by_target,
            in_flight_by_target,
            dead_by_target,
        })
    }
}

/// Add one partition's counters to the total: counts add up, the oldest
/// job is the oldest of all.
fn add_stats(total: &mut QueueStats, one: QueueStats) {
    total.ready += one.ready;
    total.delayed += one.delayed;
    total.in_flight += one.in_flight;
    total.dead_letter += one.dead_letter;
    total.oldest_age_seconds = total.oldest_age_seconds.max(one.oldest_age_seconds);
    for (into, from) in [
        (&mut total.pending_by_target, one.pending_by_target),
        (&mut total.in_flight_by_target, one.in_flight_by_target),
        (&mut total.dead_by_target, one.dead_by_target),
    ] {
        for (target, n) in from {
            *into.entry(target).or_default() += n;
        }
    }
}

/// Leased entries `stats` looks at for the per-target in-flight counts (the
/// pending list holds only what workers hold, so this is a bound for a
/// pathological case, not a page).
const MAX_LEASED_LOOKED_AT: usize = 10_000;

/// `target, count` pairs as a map, without zero counts.
fn counts_by_target(pairs: &[String]) -> BTreeMap<String, u64> {
    pairs
        .chunks_exact(2)
        .filter_map(|kv| Some((kv[0].clone(), kv[1].parse::<u64>().ok()?)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Cut `limit` items off a newest-first list holding up to one extra match;
/// the cursor is the sequence number of the last item returned.
fn page<T>(mut items: Vec<(T, Pos)>, limit: usize) -> Page<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if more {
        items.last().map(|(_, seq)| seq.to_string())
    } else {
        None
    };
    Page {
        items: items.into_iter().map(|(t, _)| t).collect(),
        next_cursor,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn page_cursor_only_when_more_matches_exist() {
        let at = |seq, part| Pos { seq, part };
        let p = page(vec![("a", at(9, 0)), ("b", at(7, 0)), ("c", at(3, 0))], 2);
        assert_eq!(p.items, vec!["a", "b"]);
        assert_eq!(p.next_cursor.as_deref(), Some("7"));
        let p = page(vec![("a", at(9, 1)), ("b", at(7, 3)), ("c", at(7, 2))], 2);
        assert_eq!(p.next_cursor.as_deref(), Some("7-3"));
        let p = page(vec![("a", at(9, 0)), ("b", at(7, 0))], 2);
        assert_eq!(p.next_cursor, None);
    }

    #[test]
    fn a_queued_delivery_reads_as_pending_with_its_target_and_event() {
        let head = queued_head("subscription:crm\nevt-1|with\u{a0}odd chars").unwrap();
        assert_eq!(head.0, "evt-1|with\u{a0}odd chars");
        assert_eq!(head.1, "subscription:crm");
        assert_eq!(head.2, DeliveryState::Pending);
        assert_eq!(head.3, None);
        assert!(queued_head("no separator").is_none());
    }

    #[test]
    fn delivery_states_round_trip_their_stored_names() {
        assert_eq!(state_of("dead_letter").unwrap(), DeliveryState::DeadLetter);
        assert_eq!(state_of("test").unwrap(), DeliveryState::Test);
        assert!(state_of("nope").is_err());
    }
}
