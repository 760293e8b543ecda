//! hookyard: a declarative webhook gateway.
//!
//! ```text
//!  external system ──POST /hooks/{trigger}──► verify ─► map ─┐
//!  your app ─────────POST /v1/events────────► auth ──────────┼─► event ─► durable queue
//!                                                            │            │
//!                          (2xx only after the event is durably enqueued)  ▼
//!                                                    router: workflows + subscriptions
//!                                                            │  one delivery job per target
//!                                                            ▼
//!                                worker: render ─► sign ─► HTTP ─► record attempt
//!                                          │ failure: retry on schedule, then dead-letter
//! ```
//!
//! Modules follow that picture top to bottom:
//! - [`config`]: YAML files → checked, compiled runtime config (all errors
//!   with `file:line:column`), hot reload.
//! - [`inbound`]: the HTTP server: triggers (verify → map) and the event API.
//! - [`queue`]: the durable queue and store (Redis Streams or embedded redb).
//! - [`deliver`]: workers that render, sign, send and record each attempt.
//! - [`metrics`]: every Prometheus metric, defined in one place.
//! - [`json`]: events written as JSON without serde_json's per-byte scan.
//! - [`ratelimit`]: in-memory rate limits (per trigger, and a target's
//!   fallback while the queue's shared limiter cannot answer).
//! - [`app`]: the shared state; [`daemon`]: listeners, workers, shutdown;
//!   [`serve`]: the HTTP connections (timeouts, connection cap, bounded
//!   shutdown); [`admin`]: the history and admin API.

pub mod admin;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod inbound;
pub mod metrics;
pub mod model;
pub mod preview;
pub mod queue;
pub mod route;
pub mod runtime;
pub mod send;
pub mod serve;
