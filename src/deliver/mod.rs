//! Outbound delivery (SPEC §5): from a leased job to a recorded attempt.
//!
//! - `worker`: the pool that leases jobs and runs each delivery.
//! - `target`: a job's target resolved in the current config, its options.
//! - `render`: template context and the rendered request (pure).
//! - `limits`: per-target max_in_flight, rate limit, circuit breaker.
//! - `handshake`: the subscription verification handshake.
//! - `attempt`: attempt records, outcomes and dead-letter reasons (pure).
//! - `sign`, `retry`, `send`: signing, retry policy, the HTTP edge.
//! - `auth`: the `Authorization` header of a target's `auth:`.
//! - `oauth2`: OAuth2 client credentials tokens and their cache.
//! - `preview`: `hookyard render` (what an event would send).

pub mod attempt;
pub mod auth;
pub mod handshake;
pub mod limits;
pub mod oauth2;
pub mod render;
pub mod retry;
pub mod sign;
pub mod target;
pub mod worker;
