//! Taking work in: `ingest` writes an event, its idempotency key and every
//! routed job in one script call (`lua/ingest.lua`), coalesced with the
//! other ingestions running at the same moment (`batch.rs`); `enqueue`
//! adds jobs to events that exist (replay, manual retry).
//!
//! On a cluster each event goes to its partition (`partition.rs`): that of
//! its dedupe key, or partition 0 ([`FIFO_PARTITION`]) when a job of it is
//! for a FIFO target, so every FIFO line is in one place; the events of one
//! call are split by partition and run together.

use redis::Value;

use super::{RedisQueue, Result, StoredJob, batch, ms, unavailable};

/// The partition of every event with a job for a FIFO target, on a cluster:
/// a FIFO line (its order, its one job in flight) lives in one partition,
/// with all the jobs that wait in it.
pub(super) const FIFO_PARTITION: usize = 0;
use crate::queue::{EVENT_ID_SCOPE, Event, IngestItem, Ingested, NewJob, QueueError};

impl RedisQueue {
    /// Ingest one event with its idempotency key and jobs, atomically.
    pub async fn ingest(
        &self,
        event: &Event,
        idempotency: Option<(&str, &str)>,
        jobs: Vec<NewJob>,
    ) -> Result<Ingested> {
        let mut args = Vec::new();
        self.ingest_args(event, idempotency, &jobs, &mut args)?;
        let part = self.event_part(event, idempotency, &jobs);
        let mut answers = self.run_ingest(vec![(part, 1, args)]).await?;
        answers
            .pop()
            .ok_or_else(|| QueueError::Corrupt("ingest returned no answer".into()))
    }

    /// Ingest a batch in one atomic script, together with whatever other
    /// ingestions run concurrently (see `redis/batch.rs`); answers in input
    /// order.
    pub async fn ingest_many(&self, items: Vec<IngestItem>) -> Result<Vec<Ingested>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        // Per partition: its items' arguments, and their places in `items`.
        let mut groups: Vec<(usize, usize, Vec<String>)> = Vec::new();
        let mut places: Vec<Vec<usize>> = Vec::new();
        for (n, (event, idem, jobs)) in items.iter().enumerate() {
            let idem = idem.as_ref().map(|(s, k)| (s.as_str(), k.as_str()));
            let part = self.event_part(event, idem, jobs);
            let g = match groups.iter().position(|(p, _, _)| *p == part) {
                Some(g) => g,
                None => {
                    groups.push((part, 0, Vec::new()));
                    places.push(Vec::new());
                    groups.len() - 1
                }
            };
            groups[g].1 += 1;
            places[g].push(n);
            self.ingest_args(event, idem, jobs, &mut groups[g].2)?;
        }
        if groups.len() == 1 {
            return self.run_ingest(groups).await;
        }
        let answers = self.run_ingest(groups).await?;
        let mut out: Vec<Option<Ingested>> = (0..items.len()).map(|_| None).collect();
        for (answer, n) in answers.into_iter().zip(places.into_iter().flatten()) {
            out[n] = Some(answer);
        }
        out.into_iter()
            .map(|a| a.ok_or_else(|| QueueError::Corrupt("ingest answered too few events".into())))
            .collect()
    }

    /// The partition an event is written to (always 0 but on a cluster):
    /// that of its dedupe key (the client's event id, else the idempotency
    /// key, else its own id), or [`FIFO_PARTITION`] when a job of it is for
    /// a FIFO target, now or at a later workflow step.
    fn event_part(&self, event: &Event, idem: Option<(&str, &str)>, jobs: &[NewJob]) -> usize {
        if self.partitions() == 1 {
            return 0;
        }
        if jobs
            .iter()
            .any(|j| j.ordering_key.is_some() || j.fifo_later)
        {
            return FIFO_PARTITION;
        }
        match idem {
            Some((scope, key)) if !(scope == EVENT_ID_SCOPE && key == event.id) => {
                self.part_of(&dedupe_key(scope, key))
            }
            _ => self.part_of(&event.id),
        }
    }

    /// The script arguments of one ingested event (see `lua/ingest.lua`).
    fn ingest_args(
        &self,
        event: &Event,
        idempotency: Option<(&str, &str)>,
        jobs: &[NewJob],
        args: &mut Vec<String>,
    ) -> Result<()> {
        // A zero window means idempotency is off (PX 0 is invalid).
        match idempotency {
            Some(_) if self.inner.settings.idempotency_window.as_millis() == 0 => {
                args.push(String::new())
            }
            // A client's own event id: the event record is the marker (one
            // key less per event, see `lua/ingest.lua`); the key is named
            // for when the event left history within the window.
            Some((scope, key)) if scope == EVENT_ID_SCOPE && key == event.id => {
                args.push(format!("={scope}:{key}"))
            }
            Some((scope, key)) => args.push(dedupe_key(scope, key)),
            None => args.push(String::new()),
        }
        args.push(event.id.clone());
        args.push(crate::model::envelope::event(event));
        // The JSON list of the delivery ids.
        let mut dids = String::with_capacity(2 + jobs.len() * 30);
        dids.push('[');
        for (n, job) in jobs.iter().enumerate() {
            if n > 0 {
                dids.push(',');
            }
            crate::model::envelope::string(&mut dids, &job.delivery_id);
        }
        dids.push(']');
        args.push(dids);
        args.push(jobs.len().to_string());
        for job in jobs {
            job_args(job, args, false)?;
        }
        Ok(())
    }

    /// An older hookyard pruned events without noting it in
    /// `<p>:idempruned`, so on data it wrote, any client id may still be a
    /// key of its own: mark "now" (kept if already set), and ingestion
    /// looks such keys up for one window. Such data has an event history or
    /// an idempotency log (where prune logs every key it writes, even once
    /// every event is gone); a new, empty Redis needs nothing.
    pub(super) async fn mark_pruned_ids(&self, part: usize) -> Result<()> {
        let mut conn = self.conn();
        let found: u64 = redis::cmd("EXISTS")
            .arg(self.pkey(part, "events"))
            .arg(self.pkey(part, "idem"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if found > 0 {
            let _: Value = redis::cmd("SET")
                .arg(self.pkey(part, "idempruned"))
                .arg(ms(self.now()))
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Run ingested events' arguments through the ingest batcher, one call
    /// per (partition, item count, arguments); answers in that order.
    async fn run_ingest(&self, groups: Vec<(usize, usize, Vec<String>)>) -> Result<Vec<Ingested>> {
        // Refused while Redis is found to lose data (`safety.rs`).
        self.refusal()?;
        let calls = groups
            .into_iter()
            .map(|(part, items, args)| batch::call(&self.inner.ingests, part, items, args));
        let answers = if calls.len() == 1 {
            let mut one = Vec::with_capacity(1);
            for call in calls {
                one.push(call.await);
            }
            one
        } else {
            futures_util::future::join_all(calls).await
        };
        let mut out = Vec::new();
        for answer in answers {
            let (head, answers) = answer?;
            if head.first().map(String::as_str) == Some("1") {
                self.count_reset();
            }
            for pair in answers.chunks_exact(2) {
                let event_id = pair[1].clone();
                out.push(match pair[0].as_str() {
                    "dup" => Ingested::Duplicate { event_id },
                    _ => Ingested::Accepted { event_id },
                });
            }
        }
        // A worker polling the partitions need not wait for its next round.
        self.inner.work.notify_waiters();
        Ok(out)
    }

    /// New jobs for existing events (replay, manual retry).
    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        // A job goes where its event is (one call per partition; events are
        // looked up first on a cluster, so nothing is written when one is
        // missing).
        let mut by_part: Vec<(usize, Vec<&NewJob>)> = Vec::new();
        for job in &jobs {
            let part = match self.locate_event(&job.event_id).await? {
                Some(part) => part,
                None => return Err(QueueError::NotFound(format!("event {}", job.event_id))),
            };
            match by_part.iter_mut().find(|(p, _)| *p == part) {
                Some((_, list)) => list.push(job),
                None => by_part.push((part, vec![job])),
            }
        }
        for (part, jobs) in by_part {
            let mut args = vec![jobs.len().to_string()];
            for job in jobs {
                job_args(job, &mut args, true)?;
            }
            let reply: Vec<String> = self
                .run(part, &self.inner.scripts.enqueue, &args)
                .await
                .map_err(unavailable)?;
            if reply.first().map(String::as_str) != Some("ok") {
                return Err(QueueError::NotFound(format!(
                    "event {}",
                    reply.get(1).map(String::as_str).unwrap_or("?")
                )));
            }
        }
        self.inner.work.notify_waiters();
        Ok(())
    }

    /// The partition holding event `id`: the one its id hashes to, else
    /// (an event filed under its idempotency key or in the FIFO partition)
    /// whichever has it. `None` when no partition has it; always `Some(0)`
    /// with one partition (the scripts judge existence there).
    pub(super) async fn locate_event(&self, id: &str) -> Result<Option<usize>> {
        let n = self.partitions();
        if n == 1 {
            return Ok(Some(0));
        }
        let first = self.part_of(id);
        for k in 0..n {
            let part = (first + k) % n;
            let found: bool = redis::cmd("EXISTS")
                .arg(self.pkey(part, &format!("ev:{id}")))
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            if found {
                return Ok(Some(part));
            }
        }
        Ok(None)
    }
}

/// An idempotency key as stored (`<p>:idem:<this>`) and hashed to its
/// partition: the scope (a trigger's source), a colon, the key.
pub(super) fn dedupe_key(scope: &str, key: &str) -> String {
    format!("{scope}:{key}")
}

/// The script arguments of one job: delivery id, event id, target label,
/// ordering key, due ms, stored job JSON (a [`StoredJob::V1`]).
pub(super) fn job_args(job: &NewJob, out: &mut Vec<String>, with_event: bool) -> Result<()> {
    // A job is ids and a few short strings, so serde's own string escaping
    // costs little here; the event, mostly long strings, goes through the
    // faster `envelope::event`.
    let stored = serde_json::to_string(&StoredJob::V1 { job }).map_err(|e| {
        QueueError::Corrupt(format!(
            "encoding the job of delivery {}: {e}",
            job.delivery_id
        ))
    })?;
    out.push(job.delivery_id.clone());
    if with_event {
        out.push(job.event_id.clone());
    }
    out.push(job.target.label());
    out.push(job.ordering_key.clone().unwrap_or_default());
    out.push(job.not_before.map(ms).unwrap_or(0).to_string());
    out.push(stored);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::StepResponse;
    use crate::queue::Target;

    /// A subscription job and a workflow step job with every field set.
    fn jobs() -> Vec<NewJob> {
        let mut jobs = vec![NewJob {
            delivery_id: "01JDELIVERY".into(),
            event_id: "ev \"1\"".into(),
            target: Target::Subscription { id: "crm".into() },
            steps: Default::default(),
            ordering_key: None,
            not_before: None,
            traceparent: None,
            fifo_later: false,
        }];
        let mut step = jobs[0].clone();
        step.target = Target::WorkflowStep {
            workflow: "onboard".into(),
            step: 2,
            action: "notify".into(),
        };
        step.steps.insert(
            "create".into(),
            StepResponse {
                status: 201,
                headers: [("x-id".to_string(), "7".to_string())].into(),
                body: serde_json::json!({"id": 7}),
            },
        );
        step.ordering_key = Some("customer-9".into());
        step.not_before = Some("2026-11-27T05:30:00.5Z".parse().unwrap());
        jobs.push(step);
        jobs
    }

    /// The stored job is the last script argument of a job.
    fn stored(job: &NewJob) -> String {
        let mut args = Vec::new();
        job_args(job, &mut args, true).unwrap();
        args.pop().unwrap()
    }

    #[test]
    fn a_job_is_stored_as_serde_writes_the_owned_stored_job() {
        for j in &jobs() {
            assert_eq!(
                stored(j),
                serde_json::to_string(&StoredJob::V1 { job: j.clone() }).unwrap()
            );
        }
    }

    #[test]
    fn jobs_keep_the_stored_form_earlier_versions_wrote_and_read() {
        // Byte for byte what the hand-written writer of earlier versions
        // stored for this job, so stored jobs read the same both ways.
        let old = concat!(
            r#"{"V1":{"job":{"delivery_id":"01JDELIVERY","event_id":"ev \"1\"","#,
            r#""target":{"kind":"workflow_step","workflow":"onboard","step":2,"action":"notify"},"#,
            r#""steps":{"create":{"status":201,"headers":{"x-id":"7"},"body":{"id":7}}},"#,
            r#""ordering_key":"customer-9","not_before":"2026-11-27T05:30:00.5Z"}}}"#
        );
        let job = jobs().pop().unwrap();
        assert_eq!(stored(&job), old);
        let StoredJob::V1 { job: read } = serde_json::from_str::<StoredJob>(old).unwrap();
        assert_eq!(read, job);
    }
}
