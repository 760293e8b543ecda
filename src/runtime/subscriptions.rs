//! API-created subscriptions in the snapshot (SPEC §12): they live in the
//! queue backend, so they survive restarts and every replica sharing a Redis
//! queue sees them. This is the snapshot's store-change writer:
//! - a change through this replica's API writes the store and reloads the
//!   snapshot's copy as one step ([`change_and_reload`]);
//! - a change on another replica is noticed by the [`Follower`]: at once
//!   from its announcement (Redis pub/sub), or within a second from the
//!   store's change counter if the announcement was missed;
//! - a job naming a subscription this snapshot lacks reloads it too
//!   (`deliver::worker`), before the job counts as orphaned.

use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::model::ApiSubscription;
use crate::queue::{Queue, QueueError, SubscriptionChanges};

use super::App;

/// Every stored API subscription. A document that no longer decodes is
/// logged and skipped (one bad record must not stop the daemon).
pub async fn load(queue: &Queue) -> Result<Vec<ApiSubscription>, QueueError> {
    let docs = queue.subscriptions().await?;
    let mut subs = Vec::with_capacity(docs.len());
    for doc in docs {
        match serde_json::from_value::<ApiSubscription>(doc) {
            Ok(s) => subs.push(s),
            Err(e) => {
                tracing::warn!("skipping a stored API subscription that does not decode: {e}")
            }
        }
    }
    Ok(subs)
}

/// Run `change` on the store, then reload the snapshot's subscriptions from
/// the store, as one step with respect to the other writers.
pub async fn change_and_reload<T, F>(app: &App, change: F) -> Result<T, QueueError>
where
    F: AsyncFnOnce(&Queue) -> Result<T, QueueError>,
{
    let held = app.writer().await;
    let out = change(app.queue()).await?;
    refresh(app, &held).await?;
    Ok(out)
}

/// Load the stored API subscriptions into `app`'s snapshot (at start, when
/// another replica changed them, and when a job names one this snapshot
/// does not have).
pub async fn load_into(app: &App) -> Result<(), QueueError> {
    let held = app.writer().await;
    refresh(app, &held).await
}

/// [`load_into`] for a caller that holds the writer lock.
async fn refresh(app: &App, held: &super::Writer) -> Result<(), QueueError> {
    let subs = load(app.queue()).await?;
    app.replace(held, |current| current.with_subscriptions(subs));
    Ok(())
}

/// How often a replica asks whether another changed the subscriptions, in
/// case it missed an announcement (or none can be heard), and the least
/// time between two attempts to subscribe to announcements.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Keeps this replica's snapshot of the API-created subscriptions in step
/// with the store (SPEC §12): a create or delete on any replica sharing the
/// Redis queue shows here at once, when its announcement is heard, and
/// within a second from the change counter when it is not (a lost pub/sub
/// connection, or a change made while resubscribing).
pub struct Follower {
    /// The change counter the snapshot's subscriptions were loaded at.
    seen: Option<u64>,
    changes: Option<SubscriptionChanges>,
    /// Whether the backend announces changes at all (not the embedded one,
    /// which serves one process).
    announced: bool,
    last_subscribe: Option<Instant>,
}

/// Load the stored subscriptions into the snapshot at start. The change
/// counter is read and announcements are subscribed to first, so a change
/// another replica makes meanwhile is either in what was loaded or caught
/// by the follower right after.
pub async fn start(app: &App) -> Result<Follower, QueueError> {
    let mut follower = Follower {
        seen: None,
        changes: None,
        announced: matches!(app.queue(), Queue::Redis(_)),
        last_subscribe: None,
    };
    follower.seen = app.queue().subscriptions_version().await.ok();
    follower.subscribe(app).await;
    load_into(app).await?;
    Ok(follower)
}

impl Follower {
    /// Subscribe to announcements unless subscribed, or tried less than
    /// [`FOLLOW_EVERY`] ago (a stream that keeps ending must not spin).
    async fn subscribe(&mut self, app: &App) {
        if !self.announced || self.changes.is_some() {
            return;
        }
        if self
            .last_subscribe
            .is_some_and(|at| at.elapsed() < FOLLOW_EVERY)
        {
            return;
        }
        self.last_subscribe = Some(Instant::now());
        match app.queue().subscription_changes().await {
            Ok(Some(c)) => self.changes = Some(c),
            Ok(None) => self.announced = false,
            Err(e) => tracing::debug!("not subscribed to subscription changes: {e}"),
        }
    }

    /// Follow the store until `stop`.
    pub async fn run(mut self, app: App, stop: CancellationToken) {
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let heard = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => false,
                heard = next_change(&mut self.changes) => heard,
            };
            if heard {
                // A burst of announcements is one reload.
                if let Some(changes) = self.changes.as_mut() {
                    changes.drain_ready();
                }
            }
            // Redis calls race the stop, so a hung Redis never holds up
            // the shutdown.
            let step = async {
                self.subscribe(&app).await;
                self.check(&app, heard).await;
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = step => {}
            }
        }
    }

    /// Reload when an announcement was heard or the counter moved.
    async fn check(&mut self, app: &App, heard: bool) {
        let version = match app.queue().subscriptions_version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("subscription changes not checked: {e}");
                return;
            }
        };
        if !heard && self.seen == Some(version) {
            return;
        }
        // The counter is read before the store, so a change made while
        // loading moves it past `seen` and is loaded next time.
        match load_into(app).await {
            Ok(()) => self.seen = Some(version),
            Err(e) => tracing::warn!("API subscriptions not reloaded: {e}"),
        }
    }
}

/// The next announcement: true when one arrived, false (and the stream
/// dropped) when the connection was lost; never returns without a stream.
async fn next_change(changes: &mut Option<SubscriptionChanges>) -> bool {
    let Some(stream) = changes.as_mut() else {
        return std::future::pending().await;
    };
    if stream.next().await {
        return true;
    }
    *changes = None;
    false
}
