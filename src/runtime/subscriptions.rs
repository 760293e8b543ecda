//! API-created subscriptions in the snapshot (SPEC §12): they live in the
//! queue backend, so they survive restarts and every replica sharing a Redis
//! queue sees them. This is the snapshot's store-change writer:
//! - a change through this replica's API writes the store and reloads the
//!   snapshot's copy as one step ([`change_and_reload`]);
//! - a change on another replica is noticed by [`follow`], which checks the
//!   store's change counter every second and reloads when it moved.

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

/// Run `change` on the store, then reload the cache from the store, as one
/// step with respect to other API changes.
pub async fn change_and_reload<T, F>(app: &App, change: F) -> Result<T, QueueError>
where
    F: AsyncFnOnce(&Queue) -> Result<T, QueueError>,
{
    let _writer = app.writer().lock().await;
    let out = change(app.queue()).await?;
    refresh(app).await?;
    Ok(out)
}

/// Load the stored API subscriptions into `app`'s snapshot (at start, when
/// another replica changed them, and when a job names one this snapshot
/// does not have).
pub async fn load_into(app: &App) -> Result<(), QueueError> {
    let _writer = app.writer().lock().await;
    refresh(app).await
}

/// [`load_into`] for a caller that holds the writer lock.
async fn refresh(app: &App) -> Result<(), QueueError> {
    let subs = load(app.queue()).await?;
    app.replace(|current| current.with_subscriptions(subs));
    Ok(())
}

/// How often a replica asks whether another changed the subscriptions, in
/// case it missed an announcement (or none can be heard).
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Keep this replica's snapshot of the API-created subscriptions in step
/// with the store (SPEC §12): a create or delete on any replica sharing the
/// Redis queue shows here at once, when its announcement is heard, and
/// within a second from the change counter when it is not (a lost pub/sub
/// connection, or a change made while resubscribing).
pub async fn follow(app: App, stop: CancellationToken) {
    let mut seen = app.queue().subscriptions_version().await.ok();
    let mut changes: Option<SubscriptionChanges> = None;
    // The embedded backend has no announcements (one process).
    let mut announced = matches!(app.queue(), Queue::Redis(_));
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    loop {
        if announced && changes.is_none() {
            match app.queue().subscription_changes().await {
                Ok(Some(c)) => changes = Some(c),
                Ok(None) => announced = false,
                Err(e) => tracing::debug!("not subscribed to subscription changes: {e}"),
            }
        }
        let heard = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => false,
            heard = next_change(&mut changes) => heard,
        };
        let version = match app.queue().subscriptions_version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("subscription changes not checked: {e}");
                continue;
            }
        };
        if !heard && seen == Some(version) {
            continue;
        }
        // The counter is read before the store, so a change made while
        // loading moves it past `seen` and is loaded next time.
        match load_into(&app).await {
            Ok(()) => seen = Some(version),
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
