//! One integration-test binary for hookyard: each file is an area.

mod config;
mod queue_conformance;
mod queue_redis;
mod send;
mod smoke;
mod support;
