//! The console's Overview on the embedded backend: the per-minute counters
//! ([`crate::model::tally`], table `tally`, written through the writer
//! like everything else and pruned of old minutes as they are written),
//! and the dead letters per target (table `target_dead`, kept as jobs
//! enter and leave `dead`, counted once for a store written before it).

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};

use super::ops::{Batch, add};
use super::tables::*;
use crate::model::tally::{KEEP_MINUTES, MinuteCount, minute_of};
use crate::queue::{QueueError, StoredJob};

/// The `meta` key that says `target_dead` holds every dead letter.
const DEAD_COUNTED: &str = "target_dead_counted";

impl Batch<'_, '_> {
    /// Adds to the counters, then drops minutes older than `KEEP_MINUTES`.
    pub fn add_counts(&mut self, counts: &[MinuteCount]) -> Result<(), QueueError> {
        let cut = minute_of(self.now.as_second()) - KEEP_MINUTES;
        for c in counts.iter().filter(|c| c.minute >= cut) {
            let key = (c.minute, c.name.as_str());
            let was = self.t.tally.get(key)?.map(|v| v.value()).unwrap_or(0);
            self.t.tally.insert(key, was.saturating_add(c.n))?;
        }
        self.t.tally.retain_in(..(cut, ""), |_, _| false)?;
        Ok(())
    }

    /// A dead letter of `stored`'s target came (`1`) or went (`-1`).
    pub(super) fn count_dead(&mut self, stored: &StoredJob, delta: i64) -> Result<(), QueueError> {
        let StoredJob::V1 { job, .. } = stored;
        add(&mut self.t.target_dead, &job.target.label(), delta)
    }
}

/// Every counter of minutes `since..=now` (at most `KEEP_MINUTES` back).
pub fn counts(db: &Database, since: i64, now: i64) -> Result<Vec<MinuteCount>, QueueError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(TALLY)?;
    let since = since.max(now - KEEP_MINUTES);
    let mut out = Vec::new();
    for row in table.range((since, "")..)? {
        let (k, v) = row?;
        let (minute, name) = k.value();
        if minute > now {
            break;
        }
        out.push(MinuteCount {
            minute,
            name: name.to_owned(),
            n: v.value(),
        });
    }
    Ok(out)
}

/// At open: count the dead letters per target if this store has not yet
/// (one scan of `dead`, once per store).
pub fn count_dead_once(txn: &WriteTransaction) -> Result<(), QueueError> {
    let mut meta = txn.open_table(META)?;
    if meta.get(DEAD_COUNTED)?.is_some() {
        return Ok(());
    }
    let dead = txn.open_table(DEAD)?;
    let mut by_target = txn.open_table(TARGET_DEAD)?;
    by_target.retain(|_, _| false)?;
    for row in dead.iter()? {
        let (_, raw) = row?;
        let StoredDead::V1 { job, .. } = decode(raw.value())?;
        let StoredJob::V1 { job, .. } = job;
        add(&mut by_target, &job.target.label(), 1)?;
    }
    meta.insert(DEAD_COUNTED, 1)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use jiff::Timestamp;
    use redb::ReadableTableMetadata;

    use super::*;
    use crate::queue::{NewJob, Target};

    fn dead(sub: &str) -> Vec<u8> {
        let job = NewJob {
            delivery_id: format!("d-{sub}"),
            event_id: "e".into(),
            target: Target::Subscription { id: sub.into() },
            steps: Default::default(),
            ordering_key: None,
            not_before: None,
            traceparent: None,
            fifo_later: false,
        };
        let stored = StoredJob::V1 {
            job,
            attempts: 1,
            orphaned_since: None,
            enqueued_at: Timestamp::UNIX_EPOCH,
        };
        encode(&StoredDead::V1 {
            job: stored,
            reason: "http_404".into(),
        })
        .unwrap()
    }

    /// A store of an older hookyard has dead letters and no count: the
    /// first open counts them, later opens leave the kept count alone.
    #[test]
    fn dead_letters_of_an_older_store_are_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        create_all(&txn).unwrap();
        {
            let mut table = txn.open_table(DEAD).unwrap();
            for (seq, sub) in [(1, "a"), (2, "a"), (3, "b")] {
                table.insert(seq, dead(sub).as_slice()).unwrap();
            }
        }
        count_dead_once(&txn).unwrap();
        txn.commit().unwrap();
        let counted = |db: &Database| {
            let txn = db.begin_read().unwrap();
            let t = txn.open_table(TARGET_DEAD).unwrap();
            let a = t.get("subscription/a").unwrap().map(|v| v.value());
            let b = t.get("subscription/b").unwrap().map(|v| v.value());
            (a, b, t.len().unwrap())
        };
        assert_eq!(counted(&db), (Some(2), Some(1), 2));

        // Later changes keep the count (here: one more dead letter of b);
        // the next open must not count again.
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(TARGET_DEAD).unwrap();
            add(&mut t, "subscription/b", 1).unwrap();
        }
        count_dead_once(&txn).unwrap();
        txn.commit().unwrap();
        assert_eq!(counted(&db), (Some(2), Some(2), 2));
    }
}
