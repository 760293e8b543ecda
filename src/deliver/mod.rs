//! Outbound delivery: signing, sending, retry policy.

pub mod attempt;
pub mod handshake;
pub mod limits;
pub mod preview;
pub mod render;
pub mod retry;
pub mod send;
pub mod sign;
pub mod target;
pub mod worker;
