//! Fuzz check: arbitrary request bodies, content types, query strings and
//! an event-type header through the inbound path after `verify:`, in the
//! daemon's order (`inbound::server::hook`): body parsing (JSON or form),
//! provider handshake, event type, catalog, idempotency key, mapping
//! (`inbound::map::apply`: JSONPaths, typed fields, defaults, templates,
//! header and query sources, nested keys, `timestamp`) and schema check.
//! The mapping config is fixed and compiled once by the real loader.
//!
//! Input: byte 0 picks the trigger (bit 0) and content type (bits 1–3);
//! then the query string up to `\n`, the `X-Event` header up to `\n`, and
//! the rest is the body. Every input must end in an event or an
//! `InboundError`, never a panic.
//!
//! Shared by the fuzz target `fuzz/fuzz_targets/inbound_map.rs` and by
//! `cargo test` (`tests/it/fuzz_corpus.rs`), which replays the committed
//! corpus so an input that once crashed stays fixed.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::OnceLock;

use hookyard::config::{Config, LoadOptions, load_str};
use hookyard::inbound::handshake::answer_post;
use hookyard::inbound::map::{self, ParsedRequest};
use hookyard::inbound::trigger::{self, EventTypeOutcome};
use hookyard::inbound::verify::{Unverified, VerifyRules};
use hookyard::inbound::{check_catalog, check_schema, errors::InboundError};
use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};

const CONFIG: &str = r#"
event_types:
  - name: order.created
    schema:
      type: object
      required: [order]
      properties:
        order:
          type: object
          required: [id]
          properties: { id: { type: string }, total: { type: number }, qty: { type: integer } }
  - { name: contact.updated }
triggers:
  - id: shop
    verify: none
    handshake: slack
    event: { path: "$.type", map: { order: order.created, contact: contact.updated }, otherwise: reject }
    idempotency_key: "$.id"
    mapping:
      raw: "$"
    mappings:
      order.created:
        order.id: { path: "$.id", type: string, required: true }
        order.total: { path: "$.total_price", type: number, default: 0 }
        order.qty: { path: "$.items[0].qty", type: integer }
        order.skus: { path: "$.items[*].sku", type: array, default: [] }
        order.paid: { path: "$.paid", type: boolean, default: false }
        order.meta: { path: "$.meta", type: object }
        order.note: { template: "{{ body.note | upper }} {{ body.items | default([]) | length }}" }
        order.src: { query: src, default: web }
        order.channel: { value: shop }
        timestamp: "$.created_at"
      contact.updated:
        contact.email: { path: "$.contact.email", required: true }
        contact.name: { template: "{{ body.contact.first }} {{ body.contact.last }}" }
        contact.tags: { template: "{{ body.contact.tags | tojson }}", type: array }
        contact.n: { path: "$..n", type: number }
        timestamp: { template: "{{ body.ts }}" }
  - id: form
    verify: none
    event: { header: X-Event, otherwise: ignore }
    idempotency_key: "header:X-Event"
    mapping:
      name: { path: "$.name", required: true }
      age: { path: "$.age", type: integer, default: 0 }
      tags: { path: "$.tag", type: array }
      ok: { path: "$.ok", type: boolean }
      event: { header: X-Event }
      page: { query: page, type: integer, default: 1 }
      greeting: { template: "Hi {{ body.name }} ({{ headers['x-event'] }}, {{ query.page }})" }
      when: { path: "$.at" }
"#;

const CONTENT_TYPES: [Option<&str>; 8] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
    None,
    Some("text/plain"),
    Some("application/json; charset=utf-8"),
    Some(""),
    Some("multipart/form-data; boundary=x"),
];

fn config() -> &'static Config {
    static CONFIG_CELL: OnceLock<Config> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| {
        load_str(
            CONFIG,
            Path::new("inbound_map.yaml"),
            LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("the fuzz target's config does not load:\n{e}"))
    })
}

/// Split `data` at the first `\n` (all of it when there is none).
fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Run one input; any input must return, never panic.
pub fn check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (query, rest) = line(rest);
    let (event_header, body) = line(rest);
    let config = config();
    let trigger = &config.triggers[usize::from(selector & 1)];
    let mut headers = HeaderMap::new();
    if let Some(ct) = CONTENT_TYPES[usize::from(selector >> 1) % CONTENT_TYPES.len()] {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    if let Ok(value) = HeaderValue::from_bytes(event_header) {
        headers.insert("x-event", value);
    }
    let query = String::from_utf8_lossy(query);
    // The 4xx answer carries the error text.
    if let Err(e) = run(config, trigger, &headers, &query, body) {
        drop(e.to_string());
    }
}

/// The daemon's `hook` stages after rate limiting, minus the enqueue.
fn run(
    config: &Config,
    trigger: &hookyard::config::Trigger,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
) -> Result<(), InboundError> {
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let verified = Unverified::new(headers, body, peer)
        .verify(&VerifyRules::default(), &[], jiff::Timestamp::UNIX_EPOCH)
        .map_err(InboundError::from)?;
    let request = ParsedRequest::parse(verified, Some(query))?;
    if answer_post(trigger, &request.body).is_some() {
        return Ok(());
    }
    let event_type = match trigger::event_type(trigger, &request)? {
        EventTypeOutcome::Type(t) => t,
        EventTypeOutcome::Ignore => return Ok(()),
    };
    check_catalog(config, &event_type)?;
    let _key = trigger::idempotency_key(trigger, &request);
    let mapped = map::apply(trigger.mapping_for(&event_type), request, &config.templates)?;
    check_schema(config, &event_type, &mapped.data)?;
    // What the queue stores: the data must serialize.
    if let Err(e) = serde_json::to_vec(&mapped.data) {
        panic!("mapped data does not serialize: {e}");
    }
    Ok(())
}
