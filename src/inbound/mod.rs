//! Inbound HTTP: triggers and the event API.

pub mod verify;
