//! Group commit: the single writer thread of the embedded backend.
//!
//! Every write goes through one thread that takes a request from its channel,
//! then every other request already waiting (up to `MAX_BATCH`), applies them
//! all in ONE redb write transaction with `Durability::Immediate`, commits
//! (one fsync), and only then answers each request. Under load the fsync cost
//! is shared by the whole batch, so throughput is not one fsync per event,
//! while each caller still gets its answer only once its write is on disk.
//! A batch of nothing but leases, renewals and deferrals is committed
//! without the fsync (see `needs_durability`); the next durable commit
//! persists it with everything else.
//!
//! A refused request (lost lease, unknown event) writes nothing and gets its
//! error; a storage error aborts the batch and every request in it gets
//! `Unavailable`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use redb::{Database, Durability};
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot};

use super::ops::{Batch, Counters};
use super::tables::Tables;
use crate::queue::{
    Attempt, Clock, DeliveryState, IngestItem, Ingested, LeasedJob, MinuteCount, NewJob,
    QueueError, StoreSettings,
};

/// Requests applied per transaction at most, so one commit stays short.
const MAX_BATCH: usize = 1024;

/// Non-durable commits in a row at most: the next one is made durable, so
/// pages freed meanwhile can be reused (redb reuses them only after a
/// durable commit) even when only leases are being written.
const MAX_NON_DURABLE: u32 = 64;

/// Whether a request's effect must be on disk before it is answered. A
/// lease, its renewal and a deferral need not be: after a crash every job
/// still leased goes back to ready at start, which is where a lost lease or
/// deferral would have left it anyway (at-least-once). Skipping their fsync
/// lets the writer spend its disk waits on what callers are promised. The
/// Overview's counters are not worth an fsync of their own either: a crash
/// loses at most the last few seconds of them.
fn needs_durability(request: &Request) -> bool {
    !matches!(
        request,
        Request::Lease(..) | Request::Renew(..) | Request::Defer(..) | Request::AddCounts(..)
    )
}

pub type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

/// A write request to the writer thread.
pub enum Request {
    Ingest(Vec<IngestItem>, Reply<Vec<Ingested>>),
    Lease(usize, Reply<Vec<LeasedJob>>),
    Renew(LeasedJob, Reply<()>),
    Complete(
        LeasedJob,
        Option<Attempt>,
        DeliveryState,
        Option<NewJob>,
        Reply<()>,
    ),
    RetryAt(LeasedJob, Attempt, Timestamp, Reply<()>),
    Defer(LeasedJob, Timestamp, Option<Timestamp>, Reply<()>),
    DeadLetter(LeasedJob, Option<Attempt>, String, Reply<()>),
    Enqueue(Vec<NewJob>, Reply<()>),
    Redrive(Option<String>, Reply<u64>),
    PutSubscription(String, Value, Reply<bool>),
    DeleteSubscription(String, Reply<bool>),
    PutState(String, Value, Reply<()>),
    Prune(Timestamp, u64, Reply<u64>),
    AddCounts(Vec<MinuteCount>, Reply<()>),
}

/// Sends one answer once the batch's fate (commit or abort) is known.
type Finisher = Box<dyn FnOnce(Option<&str>) + Send>;

fn finisher<T: Send + 'static>(result: Result<T, QueueError>, reply: Reply<T>) -> Finisher {
    Box::new(move |commit_error: Option<&str>| {
        let answer = match commit_error {
            Some(e) => Err(QueueError::Unavailable(e.to_owned())),
            None => result,
        };
        // The caller may have given up waiting; nothing to do then.
        let _ = reply.send(answer);
    })
}

/// Runs the writer loop until every sender is gone.
pub fn run(
    db: Arc<Database>,
    mut rx: mpsc::Receiver<Request>,
    mut counters: Counters,
    settings: StoreSettings,
    clock: Clock,
    wake: Arc<Notify>,
    commits: Arc<AtomicU64>,
) {
    let mut non_durable = 0u32;
    while let Some(first) = rx.blocking_recv() {
        let mut requests = vec![first];
        while requests.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => requests.push(r),
                Err(_) => break,
            }
        }
        let now = clock();
        let durability = if non_durable >= MAX_NON_DURABLE || requests.iter().any(needs_durability)
        {
            non_durable = 0;
            Durability::Immediate
        } else {
            non_durable += 1;
            Durability::None
        };
        let (finishers, outcome) = apply(&db, requests, counters, &settings, now, durability);
        match outcome {
            Ok(c) => {
                counters = c;
                commits.fetch_add(1, Ordering::Relaxed);
                for f in finishers {
                    f(None);
                }
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, "embedded queue write failed");
                for f in finishers {
                    f(Some(&message));
                }
            }
        }
        // Jobs may have become ready: wake waiting `lease` calls.
        wake.notify_waiters();
    }
}

/// Applies a batch in one transaction and commits it with `durability`.
/// Returns the answers
/// to send and the new counters (or the error that aborted the batch).
fn apply(
    db: &Database,
    requests: Vec<Request>,
    counters: Counters,
    settings: &StoreSettings,
    now: Timestamp,
    durability: Durability,
) -> (Vec<Finisher>, Result<Counters, QueueError>) {
    let mut finishers: Vec<Finisher> = Vec::with_capacity(requests.len());
    let txn = match db.begin_write() {
        Ok(mut txn) => match txn.set_durability(durability) {
            Ok(()) => txn,
            Err(e) => return fail_all(requests, QueueError::Unavailable(e.to_string())),
        },
        Err(e) => return fail_all(requests, e.into()),
    };
    let tables = match Tables::open(&txn) {
        Ok(t) => t,
        Err(e) => return fail_all(requests, e),
    };
    let mut batch = Batch {
        t: tables,
        c: counters,
        now,
        settings,
    };
    let mut fatal = None;
    let mut requests = requests.into_iter();
    for request in requests.by_ref() {
        if let Err(e) = apply_one(&mut batch, request, &mut finishers) {
            fatal = Some(e);
            break;
        }
    }
    if fatal.is_none() {
        fatal = batch.save_counters().err();
    }
    let counters = batch.c;
    drop(batch);
    if let Some(e) = fatal {
        drop(txn); // abort
        let message = e.to_string();
        for r in requests {
            finishers.push(refuse(r, &message));
        }
        return (finishers, Err(e));
    }
    match txn.commit() {
        Ok(()) => (finishers, Ok(counters)),
        Err(e) => (finishers, Err(e.into())),
    }
}

/// Applies one request. Refusals (lost lease, unknown event) are the
/// request's answer; storage and decoding errors are returned as fatal for
/// the batch.
fn apply_one(b: &mut Batch, request: Request, out: &mut Vec<Finisher>) -> Result<(), QueueError> {
    fn push<T: Send + 'static>(
        result: Result<T, QueueError>,
        reply: Reply<T>,
        out: &mut Vec<Finisher>,
    ) -> Result<(), QueueError> {
        match result {
            Err(e @ (QueueError::Unavailable(_) | QueueError::Corrupt(_))) => {
                let message = e.to_string();
                out.push(finisher(Err(QueueError::Unavailable(message)), reply));
                Err(e)
            }
            other => {
                out.push(finisher(other, reply));
                Ok(())
            }
        }
    }
    match request {
        Request::Ingest(items, reply) => {
            let mut answers = Vec::with_capacity(items.len());
            let mut result = Ok(());
            for (event, key, jobs) in items {
                let key = key.as_ref().map(|(s, k)| (s.as_str(), k.as_str()));
                match b.ingest(&event, key, jobs) {
                    Ok(a) => answers.push(a),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            push(result.map(|()| answers), reply, out)
        }
        Request::Lease(max, reply) => push(b.lease(max), reply, out),
        Request::Renew(job, reply) => push(b.renew(&job), reply, out),
        Request::Complete(job, attempt, state, next, reply) => {
            push(b.complete(&job, attempt, state, next), reply, out)
        }
        Request::RetryAt(job, attempt, at, reply) => {
            push(b.retry_at(&job, attempt, at), reply, out)
        }
        Request::Defer(job, at, orphaned, reply) => push(b.defer(&job, at, orphaned), reply, out),
        Request::DeadLetter(job, attempt, reason, reply) => {
            push(b.dead_letter(&job, attempt, &reason), reply, out)
        }
        Request::Enqueue(jobs, reply) => push(b.enqueue(jobs), reply, out),
        Request::Redrive(target, reply) => push(b.redrive(target.as_deref()), reply, out),
        Request::PutSubscription(id, doc, reply) => push(b.put_subscription(&id, &doc), reply, out),
        Request::DeleteSubscription(id, reply) => push(b.delete_subscription(&id), reply, out),
        Request::PutState(key, value, reply) => push(b.put_state(&key, &value), reply, out),
        Request::Prune(now, budget, reply) => push(b.prune(now, budget), reply, out),
        Request::AddCounts(counts, reply) => push(b.add_counts(&counts), reply, out),
    }
}

fn fail_all(
    requests: Vec<Request>,
    e: QueueError,
) -> (Vec<Finisher>, Result<Counters, QueueError>) {
    let message = e.to_string();
    let finishers = requests.into_iter().map(|r| refuse(r, &message)).collect();
    (finishers, Err(e))
}

/// The answer for a request that was never applied: the batch failed. The
/// finisher is later called with the batch error, so the result here is a
/// placeholder that is never sent.
fn refuse(request: Request, message: &str) -> Finisher {
    fn no<T: Send + 'static>(reply: Reply<T>, message: &str) -> Finisher {
        finisher(Err(QueueError::Unavailable(message.to_owned())), reply)
    }
    match request {
        Request::Ingest(_, r) => no(r, message),
        Request::Lease(_, r) => no(r, message),
        Request::Renew(_, r) => no(r, message),
        Request::Complete(.., r) => no(r, message),
        Request::RetryAt(.., r) => no(r, message),
        Request::Defer(.., r) => no(r, message),
        Request::DeadLetter(.., r) => no(r, message),
        Request::Enqueue(_, r) => no(r, message),
        Request::Redrive(_, r) => no(r, message),
        Request::PutSubscription(.., r) => no(r, message),
        Request::DeleteSubscription(_, r) => no(r, message),
        Request::PutState(.., r) => no(r, message),
        Request::Prune(.., r) => no(r, message),
        Request::AddCounts(_, r) => no(r, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_leases_renewals_deferrals_and_counters_skip_the_fsync() {
        let leased = || LeasedJob {
            job: NewJob {
                delivery_id: "d".into(),
                event_id: "e".into(),
                target: crate::queue::Target::Subscription { id: "s".into() },
                steps: Default::default(),
                ordering_key: None,
                not_before: None,
                traceparent: None,
                fifo_later: false,
            },
            attempts: 0,
            orphaned_since: None,
            lease: "1/1".into(),
            event: None,
        };
        let lease = Request::Lease(1, oneshot::channel().0);
        let renew = Request::Renew(leased(), oneshot::channel().0);
        let defer = Request::Defer(leased(), Timestamp::UNIX_EPOCH, None, oneshot::channel().0);
        let ingest = Request::Ingest(Vec::new(), oneshot::channel().0);
        let complete = Request::Complete(
            leased(),
            None,
            DeliveryState::Succeeded,
            None,
            oneshot::channel().0,
        );
        let dead = Request::DeadLetter(leased(), None, "x".into(), oneshot::channel().0);
        let counts = Request::AddCounts(Vec::new(), oneshot::channel().0);
        assert!(!needs_durability(&lease));
        assert!(!needs_durability(&counts));
        assert!(!needs_durability(&renew));
        assert!(!needs_durability(&defer));
        assert!(needs_durability(&ingest));
        assert!(needs_durability(&complete));
        assert!(needs_durability(&dead));
    }
}
