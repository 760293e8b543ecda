//! The per-minute counters of the console's Overview on Redis
//! ([`crate::model::tally`]): one hash per minute, `<p>:tally:<minute>`
//! (counter name → count), which every replica adds to with `HINCRBY`, so
//! the Overview of any replica sums them all. Each hash expires
//! [`KEEP_MINUTES`] after it was last written, so nothing prunes them.
//!
//! Also here: the one-time count of dead letters per target (`<p>:deadby`)
//! for a store written before that count was kept (`deadby.lua`).

use std::collections::BTreeMap;

use redis::Value;

use super::{RedisQueue, Result, unavailable};
use crate::model::tally::{KEEP_MINUTES, MinuteCount, minute_of};

impl RedisQueue {
    /// On a cluster the minutes share a hash tag, so the one pipeline of
    /// `add_counts` and of `counts` goes to one master.
    fn tally_key(&self, minute: i64) -> String {
        if self.on_cluster() {
            format!("{{{}:tally}}:{minute}", self.inner.prefix)
        } else {
            self.key(&format!("tally:{minute}"))
        }
    }

    /// One pipeline: an `HINCRBY` per counter and an `EXPIRE` per minute.
    pub async fn add_counts(&self, counts: &[MinuteCount]) -> Result<()> {
        let mut pipe = redis::pipe();
        let mut minutes: Vec<i64> = Vec::new();
        for c in counts {
            let n = i64::try_from(c.n).unwrap_or(i64::MAX);
            pipe.cmd("HINCRBY")
                .arg(self.tally_key(c.minute))
                .arg(&c.name)
                .arg(n)
                .ignore();
            if !minutes.contains(&c.minute) {
                minutes.push(c.minute);
            }
        }
        let ttl = (KEEP_MINUTES + 1) * 60;
        for m in minutes {
            pipe.cmd("EXPIRE").arg(self.tally_key(m)).arg(ttl).ignore();
        }
        let _: Value = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// `HGETALL` of each minute from `since` to now, in one pipeline.
    pub async fn counts(&self, since: i64) -> Result<Vec<MinuteCount>> {
        let now = minute_of(self.now().as_second());
        let since = since.max(now - KEEP_MINUTES);
        if since > now {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for minute in since..=now {
            pipe.cmd("HGETALL").arg(self.tally_key(minute));
        }
        let hashes: Vec<BTreeMap<String, u64>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for (minute, fields) in (since..=now).zip(hashes) {
            for (name, n) in fields {
                out.push(MinuteCount { minute, name, n });
            }
        }
        Ok(out)
    }

    /// Count the dead letters per target once, if the store has none
    /// counted yet (written by a hookyard that did not keep the count).
    pub(super) async fn count_dead_letters(&self, part: usize) -> Result<()> {
        let built: u64 = self
            .run(part, &self.inner.scripts.deadby, &[])
            .await
            .map_err(unavailable)?;
        if built == 1 {
            tracing::debug!("dead letters counted per target");
        }
        Ok(())
    }
}
