//! The history and admin API under `/v1` (SPEC §8). (Placeholder until it lands.)

use axum::Router;

use crate::app::App;

/// History, replay, webhooks and admin routes.
pub fn routes(_app: &App) -> Router {
    Router::new()
}
