//! One integration-test binary for hookyard: each file is an area.

mod admin;
mod admin_history;
mod admin_support;
mod config;
mod config_tags;
mod deliver;
mod deliver_limits;
mod deliver_support;
mod e2e;
mod examples;
mod faults;
mod inbound;
mod inbound_answers;
mod inbound_api;
mod inbound_props;
mod inbound_queue;
mod inbound_verify;
mod prometheus;
mod queue_conformance;
mod queue_redis;
mod reload;
mod render;
mod secrets_leak;
mod send;
mod smoke;
mod support;
