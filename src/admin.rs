//! The history and admin API under `/v1` (SPEC §8): bearer tokens with
//! scopes, JSON in and out, cursor pagination.
//!
//! - [`auth`]: bearer token → token name, scope check, the JSON error shape
//!   `{"error": {"code", "message"}}` every route answers with.
//! - [`history`]: events, deliveries, retry, replay, dead-letter redrive.
//! - [`webhooks`]: subscriptions listed (YAML and API) and managed (API).
//! - [`control`]: `/v1/admin/reload` and `/v1/admin/config`.
//! - [`overview`]: `/v1/stats`, the numbers of the console's Overview.
//!
//! `POST /v1/events` (publishing) belongs to the inbound module; axum merges
//! its `POST` with the `GET` here into one route.

use axum::Router;

use crate::runtime::App;

pub mod auth;
pub mod control;
pub mod history;
pub mod overview;
pub mod webhook_request;
pub mod webhooks;

pub use auth::{ApiError, Caller, authorize};

/// History, replay, webhooks and admin routes.
pub fn routes(app: &App) -> Router {
    Router::new()
        .merge(history::routes())
        .merge(webhooks::routes())
        .merge(control::routes())
        .merge(overview::routes())
        .with_state(app.clone())
}

#[cfg(test)]
mod tests {
    use axum::routing::post;

    use super::*;

    /// `POST /v1/events` (inbound) and `GET /v1/events` (here) share a path:
    /// merging their routers must combine the methods, not panic.
    #[test]
    fn merges_with_the_event_api_on_the_same_path() {
        let inbound: Router<App> = Router::new().route("/v1/events", post(|| async {}));
        let _merged: Router<App> = inbound
            .merge(history::routes())
            .merge(webhooks::routes())
            .merge(control::routes());
    }
}
