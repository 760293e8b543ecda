//! Outbound delivery: signing, sending, retry policy.

pub mod retry;
pub mod send;
pub mod sign;
pub mod worker;
pub mod render;
pub mod limits;
