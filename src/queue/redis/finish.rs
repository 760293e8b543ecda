//! Coalesced completion: concurrent `complete` calls of one process are
//! sent to one task that finishes them together in one script call
//! (`lua/complete.lua`), like a group commit. A worker pool completes many
//! jobs at once; one script call for all of them saves a round trip and the
//! per-call overhead each, and lets the script write counters and indexes
//! once per batch instead of once per job.
//!
//! The task only holds a connection and the script, never the queue itself,
//! so it ends when the last queue handle (and with it the sender) is
//! dropped. Each caller waits for its own answer (`ok` or `LeaseLost`).

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use super::{Result, ms};
use crate::queue::{Clock, QueueError};

/// Most completions finished by one script call.
const MAX_BATCH: usize = 256;

/// One completion: its script arguments (see complete.lua, per item) and
/// where its answer goes.
pub(super) struct Item {
    pub args: Vec<String>,
    pub reply: oneshot::Sender<Result<()>>,
}

/// What the task needs to run the script.
pub(super) struct Finisher {
    pub conn: ConnectionManager,
    pub script: Script,
    pub prefix: String,
    pub consumer: String,
    pub clock: Clock,
}

/// Start the task; completions go into the returned sender.
pub(super) fn spawn(f: Finisher) -> mpsc::UnboundedSender<Item> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(f, rx));
    tx
}

async fn run(mut f: Finisher, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let answers = f.finish(&batch).await;
        for (item, answer) in batch.drain(..).zip(answers) {
            // A caller that stopped waiting needs no answer.
            let _ = item.reply.send(answer);
        }
    }
}

impl Finisher {
    /// One script call for the whole batch; an answer per item.
    async fn finish(&mut self, batch: &[Item]) -> Vec<Result<()>> {
        let mut inv = self.script.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(ms((self.clock)()))
            .arg(&self.consumer)
            .arg(batch.len());
        for item in batch {
            for a in &item.args {
                inv.arg(a);
            }
        }
        // The connection's response timeout bounds the wait.
        let reply: std::result::Result<Vec<String>, _> = inv.invoke_async(&mut self.conn).await;
        match reply {
            Ok(answers) if answers.len() == batch.len() => answers
                .iter()
                .map(|a| match a.as_str() {
                    "ok" => Ok(()),
                    _ => Err(QueueError::LeaseLost),
                })
                .collect(),
            Ok(answers) => batch
                .iter()
                .map(|_| {
                    Err(QueueError::Corrupt(format!(
                        "complete answered {} items for {}",
                        answers.len(),
                        batch.len()
                    )))
                })
                .collect(),
            Err(e) => {
                let why = e.to_string();
                batch
                    .iter()
                    .map(|_| Err(QueueError::Unavailable(why.clone())))
                    .collect()
            }
        }
    }
}
