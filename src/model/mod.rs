//! The shared vocabulary, at the bottom of the layers: what an event, a
//! delivery job, a target and a subscription are, how an event is written as
//! JSON, the HMAC math both directions sign and verify with, the one rate
//! limiting algorithm (GCRA), and the per-minute counters of the console's
//! Overview ([`tally`]). Everything above (config, queue, routing, the
//! runtime, inbound, delivery, admin) speaks these words; nothing here
//! imports from the rest of the crate.

pub mod envelope;
pub mod event;
pub mod gcra;
pub mod mac;
pub mod rate_limits;
pub mod signing;
pub mod subscription;
pub mod tally;

pub use event::*;
pub use gcra::Rate;
pub use subscription::{ApiSubscription, EventPattern, Handshake, Verification};
