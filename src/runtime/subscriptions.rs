//! API-created subscriptions in the snapshot (SPEC §12): they live in the
//! queue backend, so they survive restarts and every replica sharing a Redis
//! queue sees them. This is the snapshot's store-change writer:
//! - a change through this replica's API writes the store and reloads the
//!   snapshot's copy as one step ([`change_and_reload`]);
//! - a change on another replica is noticed by [`follow`], which checks the
//!   store's change counter every second and reloads when it moved.

use std::sync::Arc;

use crate::model::ApiSubscription;
use crate::queue::{Queue, QueueError};

use super::App;

/// Every stored API subscription. A document that no longer decodes is
/// logged and skipped (one bad record must not stop the daemon).
pub async fn load(queue: &Queue) -> Result<Vec<Arc<ApiSubscription>>, QueueError> {
    let docs = queue.subscriptions().await?;
    let mut subs = Vec::with_capacity(docs.len());
    for doc in docs {
        match serde_json::from_value::<ApiSubscription>(doc) {
            Ok(s) => subs.push(Arc::new(s)),
            Err(e) => {
                tracing::warn!("skipping a stored API subscription that does not decode: {e}")
            }
        }
    }
    subs.sort_by(|a, b| a.id.cmp(&b.id));
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
    load_into(app).await?;
    Ok(out)
}

/// Load the stored API subscriptions into `app`'s cache (at start).
pub async fn load_into(app: &App) -> Result<(), QueueError> {
    let subs = load(app.queue()).await?;
    app.set_api_subscriptions(subs);
    Ok(())
}

/// How often a replica asks whether another changed the subscriptions.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Keep this replica's copy of the API-created subscriptions in step with
/// the store: a create or delete on any replica sharing the Redis queue
/// shows here within about a second (SPEC §12).
pub async fn follow(app: App, stop: tokio_util::sync::CancellationToken) {
    let mut seen = app.queue().subscriptions_version().await.ok();
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = match app.queue().subscriptions_version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("subscription changes not checked: {e}");
                continue;
            }
        };
        if seen == Some(now) {
            continue;
        }
        match load_into(&app).await {
            Ok(()) => seen = Some(now),
            Err(e) => tracing::warn!("API subscriptions not reloaded: {e}"),
        }
    }
}
