//! Outbound delivery: signing, sending, retry policy.

pub mod retry;
pub mod send;
pub mod sign;
pub mod worker;
pub mod render;
pub mod limits;
pub mod attempt;
pub mod handshake;
pub mod target;
