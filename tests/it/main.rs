//! One integration-test binary for hookyard: each file is an area.

mod config;
mod deliver;
mod deliver_limits;
mod deliver_support;
mod queue_conformance;
mod queue_redis;
mod send;
mod smoke;
mod support;
