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
//! Modules are layers that follow that picture; each imports only from the
//! layers below it (no import cycles, no process-wide statics), top first:
//! - [`daemon`]: the lifecycle: listeners, workers, signals, shutdown.
//! - [`console`]: the HTML console at `/ui/` (sessions, pages, forms).
//! - [`admin`]: the history and admin API; [`preview`]: `hookyard render`,
//!   an event's whole path without sending.
//! - [`inbound`]: triggers (verify → map) and the event API, ending in one
//!   enqueue; [`deliver`]: workers that render, sign, send and record each
//!   attempt.
//! - [`serve`]: the HTTP connections (timeouts, connection cap, bounded
//!   shutdown) and the one JSON error body both APIs answer with.
//! - [`runtime`]: the immutable snapshot every request and job reads once
//!   (compiled config, API subscriptions, sender), and its only writers:
//!   the config reloader and the store-change writer (API subscription
//!   changes made here, or announced by other replicas).
//! - [`telemetry`]: traces (OTLP): the inbound and attempt spans and the
//!   W3C `traceparent` in, stored with the jobs, and out; off by default.
//! - [`send`]: the outbound HTTP client under the egress policy.
//! - [`route`]: which workflows and subscriptions an event goes to.
//! - [`queue`]: the durable queue and store (Redis Streams or embedded redb).
//! - [`metrics`]: every Prometheus metric, defined in one place.
//! - [`config`]: YAML files → checked, compiled `Config` (all errors with
//!   `file:line:column`); pure: it imports nothing from the running daemon.
//! - [`model`]: the shared vocabulary: event, job, target, subscription, the
//!   event envelope codec, HMAC, the one rate limiter (GCRA).

pub mod admin;
pub mod config;
pub mod console;
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
pub mod telemetry;
