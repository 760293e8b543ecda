//! Inbound HTTP: triggers (`POST /hooks/{trigger}`: verify → map) and the
//! event API (`POST /v1/events`), both ending in one durable enqueue.

use axum::Router;

use crate::app::App;

pub mod verify;

/// `/hooks/*` routes. (Placeholder until the inbound server lands: answers
/// nothing, so every trigger URL is a 404.)
pub fn routes(_app: &App) -> Router {
    Router::new()
}

/// The event API under `/v1/events`. (Placeholder until the inbound server lands.)
pub fn api_routes(_app: &App) -> Router {
    Router::new()
}
