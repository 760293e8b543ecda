//! Taking work in: `ingest` writes an event, its idempotency key and every
//! routed job in one script call (`lua/ingest.lua`), coalesced with the
//! other ingestions running at the same moment (`batch.rs`); `enqueue`
//! adds jobs to events that exist (replay, manual retry).

use redis::Value;

use super::{RedisQueue, Result, StoredJob, batch, ms, unavailable};
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
        let mut answers = self.run_ingest(1, args).await?;
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
        let mut args = Vec::new();
        for (event, idem, jobs) in &items {
            let idem = idem.as_ref().map(|(s, k)| (s.as_str(), k.as_str()));
            self.ingest_args(event, idem, jobs, &mut args)?;
        }
        self.run_ingest(items.len(), args).await
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
            Some((scope, key)) => args.push(format!("{scope}:{key}")),
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
    pub(super) async fn mark_pruned_ids(&self) -> Result<()> {
        let mut conn = self.conn();
        let found: u64 = redis::cmd("EXISTS")
            .arg(self.key("events"))
            .arg(self.key("idem"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if found > 0 {
            let _: Value = redis::cmd("SET")
                .arg(self.key("idempruned"))
                .arg(ms(self.now()))
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Run `items` ingested events' arguments through the ingest batcher.
    async fn run_ingest(&self, items: usize, args: Vec<String>) -> Result<Vec<Ingested>> {
        // Refused while Redis is found to lose data (`safety.rs`).
        self.refusal()?;
        let (head, answers) = batch::call(&self.inner.ingests, items, args).await?;
        if head.first().map(String::as_str) == Some("1") {
            self.count_reset();
        }
        let mut out = Vec::with_capacity(items);
        for pair in answers.chunks_exact(2) {
            let event_id = pair[1].clone();
            out.push(match pair[0].as_str() {
                "dup" => Ingested::Duplicate { event_id },
                _ => Ingested::Accepted { event_id },
            });
        }
        Ok(out)
    }

    /// New jobs for existing events (replay, manual retry).
    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut args = vec![jobs.len().to_string()];
        for job in &jobs {
            job_args(job, &mut args, true)?;
        }
        let reply: Vec<String> = self
            .run(&self.inner.scripts.enqueue, &args)
            .await
            .map_err(unavailable)?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(()),
            _ => Err(QueueError::NotFound(format!(
                "event {}",
                reply.get(1).map(String::as_str).unwrap_or("?")
            ))),
        }
    }
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
