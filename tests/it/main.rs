//! One integration-test binary for hookyard: each file is an area.

mod config;
mod inbound;
mod inbound_answers;
mod inbound_api;
mod inbound_props;
mod inbound_queue;
mod inbound_verify;
mod queue_conformance;
mod queue_redis;
mod send;
mod smoke;
mod support;
