//! Reads of the embedded backend: history pages, stats, subscriptions and
//! state. Each runs in its own redb read transaction (a consistent snapshot
//! that never blocks the writer), on a blocking thread.

use std::collections::BTreeMap;

use jiff::Timestamp;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde_json::Value;

use super::tables::*;
use crate::queue::{
    DeliveryRecord, Event, HistoryQuery, NewJob, Page, QueueError, QueueStats, StoredJob,
};

/// Page size when the query gives none.
const DEFAULT_LIMIT: usize = 100;

/// The event alone, without its delivery records (the delivery worker's
/// per-job read).
pub fn event_only(db: &Database, id: &str) -> Result<Option<Event>, QueueError> {
    let txn = db.begin_read()?;
    let events = txn.open_table(EVENTS)?;
    let Some(raw) = events.get(id)? else {
        return Ok(None);
    };
    let StoredEvent::V1 { event, .. } = decode(raw.value())?;
    Ok(Some(event))
}

pub fn event(db: &Database, id: &str) -> Result<Option<(Event, Vec<DeliveryRecord>)>, QueueError> {
    let txn = db.begin_read()?;
    let events = txn.open_table(EVENTS)?;
    let Some(raw) = events.get(id)? else {
        return Ok(None);
    };
    let StoredEvent::V1 { event, .. } = decode(raw.value())?;
    let links = txn.open_table(EVENT_DELIVERIES)?;
    let deliveries = txn.open_table(DELIVERIES)?;
    let mut records = Vec::new();
    for row in links.range((id, "")..)? {
        let (k, _) = row?;
        let (event_id, delivery_id) = k.value();
        if event_id != id {
            break;
        }
        if let Some(raw) = deliveries.get(delivery_id)? {
            let StoredDelivery::V1 { seq, record, .. } = decode(raw.value())?;
            records.push((seq, record));
        }
    }
    // In the order they were created (workflow steps in step order).
    records.sort_by_key(|(seq, _)| *seq);
    Ok(Some((event, records.into_iter().map(|(_, r)| r).collect())))
}

/// Newest first; the cursor is the seq of the last item of the previous page.
pub fn events(db: &Database, q: &HistoryQuery) -> Result<Page<Event>, QueueError> {
    let txn = db.begin_read()?;
    let by_seq = txn.open_table(EVENTS_BY_SEQ)?;
    let events = txn.open_table(EVENTS)?;
    let limit = limit(q);
    let upper = cursor(q)?;
    let mut items = Vec::new();
    let mut next_cursor = None;
    for row in by_seq.range(..upper)?.rev() {
        let (seq, id) = row?;
        let Some(raw) = events.get(id.value())? else {
            continue;
        };
        let StoredEvent::V1 { event, .. } = decode(raw.value())?;
        if !q.admits(&event) {
            continue;
        }
        if items.len() == limit {
            next_cursor = Some(items_cursor(&items, seq.value()));
            break;
        }
        items.push((seq.value(), event));
    }
    Ok(page(items, next_cursor))
}

pub fn deliveries(db: &Database, q: &HistoryQuery) -> Result<Page<DeliveryRecord>, QueueError> {
    let txn = db.begin_read()?;
    let by_seq = txn.open_table(DELIVERIES_BY_SEQ)?;
    let deliveries = txn.open_table(DELIVERIES)?;
    let limit = limit(q);
    let upper = cursor(q)?;
    let mut items = Vec::new();
    let mut next_cursor = None;
    for row in by_seq.range(..upper)?.rev() {
        let (seq, id) = row?;
        let Some(raw) = deliveries.get(id.value())? else {
            continue;
        };
        let StoredDelivery::V1 { record, .. } = decode(raw.value())?;
        if q.state.is_some_and(|s| s != record.state)
            || q.target.as_ref().is_some_and(|t| *t != record.target)
        {
            continue;
        }
        if items.len() == limit {
            next_cursor = Some(items_cursor(&items, seq.value()));
            break;
        }
        items.push((seq.value(), record));
    }
    Ok(page(items, next_cursor))
}

fn limit(q: &HistoryQuery) -> usize {
    if q.limit == 0 { DEFAULT_LIMIT } else { q.limit }
}

fn cursor(q: &HistoryQuery) -> Result<u64, QueueError> {
    match &q.cursor {
        None => Ok(u64::MAX),
        Some(c) => c.parse().map_err(|_| {
            QueueError::NotFound(format!(
                "cursor {c:?} (pass the next_cursor of a previous page)"
            ))
        }),
    }
}

/// The next page starts below the last item returned.
fn items_cursor<T>(items: &[(u64, T)], fallback: u64) -> String {
    items
        .last()
        .map(|(seq, _)| *seq)
        .unwrap_or(fallback)
        .to_string()
}

fn page<T>(items: Vec<(u64, T)>, next_cursor: Option<String>) -> Page<T> {
    Page {
        items: items.into_iter().map(|(_, item)| item).collect(),
        next_cursor,
    }
}

fn stored_delivery(db: &Database, id: &str) -> Result<Option<StoredDelivery>, QueueError> {
    let txn = db.begin_read()?;
    let deliveries = txn.open_table(DELIVERIES)?;
    match deliveries.get(id)? {
        Some(raw) => Ok(Some(decode(raw.value())?)),
        None => Ok(None),
    }
}

pub fn delivery(db: &Database, id: &str) -> Result<Option<DeliveryRecord>, QueueError> {
    Ok(stored_delivery(db, id)?.map(|StoredDelivery::V1 { record, .. }| record))
}

pub fn job_of(db: &Database, id: &str) -> Result<Option<NewJob>, QueueError> {
    Ok(stored_delivery(db, id)?.map(|StoredDelivery::V1 { job, .. }| job))
}

/// Ready = due now; delayed = due later or waiting behind a FIFO head (not
/// leasable now either way).
pub fn stats(db: &Database, now: Timestamp) -> Result<QueueStats, QueueError> {
    let txn = db.begin_read()?;
    let now_us = micros(now);
    let ready_table = txn.open_table(READY)?;
    let mut ready = 0;
    let mut delayed = 0;
    for row in ready_table.iter()? {
        let (k, _) = row?;
        if k.value().0 <= now_us {
            ready += 1;
        } else {
            delayed += 1;
        }
    }
    delayed += txn.open_table(FIFO_WAITING)?.len()?;
    let in_flight = txn.open_table(LEASES)?.len()?;
    let dead_letter = txn.open_table(DEAD)?.len()?;
    let oldest_age_seconds = match txn.open_table(JOBS)?.first()? {
        Some((_, raw)) => {
            let StoredJob::V1 { enqueued_at, .. } = decode(raw.value())?;
            now.duration_since(enqueued_at).as_secs_f64().max(0.0)
        }
        None => 0.0,
    };
    let pending_by_target = by_target(&txn.open_table(TARGET_PENDING)?)?;
    let dead_by_target = by_target(&txn.open_table(TARGET_DEAD)?)?;
    // Leased jobs are as many as the worker holds: reading each is cheap.
    let jobs = txn.open_table(JOBS)?;
    let mut in_flight_by_target = BTreeMap::new();
    for row in txn.open_table(LEASES)?.iter()? {
        let (seq, _) = row?;
        if let Some(raw) = jobs.get(seq.value())? {
            let StoredJob::V1 { job, .. } = decode(raw.value())?;
            *in_flight_by_target.entry(job.target.label()).or_insert(0) += 1;
        }
    }
    Ok(QueueStats {
        ready,
        delayed,
        in_flight,
        dead_letter,
        oldest_age_seconds,
        pending_by_target,
        in_flight_by_target,
        dead_by_target,
    })
}

/// A per-target counter table as a map.
fn by_target(
    table: &redb::ReadOnlyTable<&'static str, u64>,
) -> Result<BTreeMap<String, u64>, QueueError> {
    let mut out = BTreeMap::new();
    for row in table.iter()? {
        let (k, v) = row?;
        out.insert(k.value().to_owned(), v.value());
    }
    Ok(out)
}

/// When the next job becomes leasable or the next lease lapses, if
/// anything is queued; `Some(now)` or earlier means "lease now".
pub fn next_wake(db: &Database) -> Result<Option<Timestamp>, QueueError> {
    let txn = db.begin_read()?;
    let ready = txn.open_table(READY)?.first()?.map(|(k, _)| k.value().0);
    let lapse = txn
        .open_table(LEASE_EXPIRY)?
        .first()?
        .map(|(k, _)| k.value().0);
    let earliest = match (ready, lapse) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(earliest.map(from_micros))
}

pub fn subscriptions(db: &Database) -> Result<Vec<Value>, QueueError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(SUBSCRIPTIONS)?;
    let mut docs = Vec::new();
    for row in table.iter()? {
        let (_, raw) = row?;
        docs.push(decode(raw.value())?);
    }
    Ok(docs)
}

pub fn state(db: &Database, key: &str) -> Result<Option<Value>, QueueError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(STATE)?;
    match table.get(key)? {
        Some(raw) => Ok(Some(decode(raw.value())?)),
        None => Ok(None),
    }
}
