//! The raw (as written) config types: serde + JSON Schema, no logic.
//!
//! Every struct denies unknown keys (a typo must not silently disable a
//! check) and every field's `///` comment becomes its description in the
//! committed JSON Schema that editors use. Values checked later (durations,
//! JSONPaths, templates, CIDRs, names of secrets, actions, triggers) are
//! read as [`Sp`] so the compiler can report their position. Triggers,
//! actions, workflows and subscriptions live in `raw_items.rs`.
//!
//! These types are only ever deserialized through `node.rs` (see there).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::node::{OneOrMany, Sp};
pub use super::raw_items::*;

/// A hookyard configuration (one file, or all files of a directory merged).
/// Top-level keys starting with `x-` are ignored (a place for YAML anchors).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "hookyard configuration", extend("patternProperties" = { "^x-": {} }))]
pub struct RawConfig {
    /// HTTP listeners and request limits.
    pub server: Option<RawServer>,
    /// Delivery options that every action and subscription inherits.
    pub defaults: Option<RawDefaults>,
    /// The durable queue: `embedded` (default, on disk) or `redis`.
    pub queue: Option<RawQueue>,
    /// How long delivery history is kept.
    pub history: Option<RawHistory>,
    /// Duplicate detection of inbound events.
    pub idempotency: Option<RawIdempotency>,
    /// Bounds on every template render.
    pub render: Option<RawRender>,
    /// Hot reload of the config files.
    pub reload: Option<RawReload>,
    /// Named secrets, read from the environment or a file at load time.
    /// Referenced by name everywhere else; values never appear in logs.
    pub secrets: Option<BTreeMap<String, RawSecret>>,
    /// API tokens for `/v1/*` (bearer tokens whose value is a secret).
    pub tokens: Option<Vec<RawToken>>,
    /// Declared event types, optionally with a JSON Schema for their data.
    pub event_types: Option<Vec<RawEventType>>,
    /// `open` (default): any event type is accepted. `strict`: only types
    /// listed in `event_types`; others are answered 422.
    pub event_catalog: Option<EventCatalog>,
    /// Inbound webhooks: `POST /hooks/{id}`.
    pub triggers: Option<Vec<RawTrigger>>,
    /// Outbound HTTP call templates, used as workflow steps.
    pub actions: Option<Vec<RawAction>>,
    /// Chains of actions run for matching events.
    pub workflows: Option<Vec<RawWorkflow>>,
    /// Endpoints that receive every event of the listed types.
    pub subscriptions: Option<Vec<RawSubscription>>,
    /// Which addresses deliveries may be sent to.
    pub egress: Option<RawEgress>,
    /// Traces exported over OTLP (off when absent).
    pub telemetry: Option<super::telemetry::RawTelemetry>,
}

/// HTTP listeners and request limits.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Server")]
pub struct RawServer {
    /// Address serving `/hooks/*` (and `/v1/*`, `/metrics` unless moved).
    /// Default `127.0.0.1:8080`. Changing it needs a restart.
    pub listen: Option<Sp<String>>,
    /// When set, `/v1/*` is served only here (keep the API on localhost).
    pub api_listen: Option<Sp<String>>,
    /// When set, `/metrics` is served only here.
    pub metrics_listen: Option<Sp<String>>,
    /// Largest accepted request body, e.g. `1MiB` (default). Larger: 413.
    pub max_body: Option<Sp<String>>,
    /// CIDRs of proxies whose `X-Forwarded-For` is trusted for `ip_allow`.
    pub trusted_proxies: Option<Vec<Sp<String>>>,
    /// Time in-flight deliveries get to finish on shutdown (default `30s`).
    pub shutdown_grace: Option<Sp<String>>,
    /// Time between readiness going 503 and listeners closing (default `0s`;
    /// a few seconds behind a load balancer).
    pub shutdown_delay: Option<Sp<String>>,
    /// A connection whose request headers are not complete this long after
    /// it opened (or after its first byte following an idle keep-alive) is
    /// closed (default `10s`).
    pub header_timeout: Option<Sp<String>>,
    /// A request body not complete this long after its headers gets 408 and
    /// the connection closes (default `30s`).
    pub body_timeout: Option<Sp<String>>,
    /// A keep-alive connection with no request for this long is closed
    /// (default `60s`).
    pub idle_timeout: Option<Sp<String>>,
    /// Open connections per listener (default `10000`); past it, new
    /// connections wait unaccepted in the kernel's backlog.
    pub max_connections: Option<Sp<u32>>,
}

/// Retry policy of a target.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Retry")]
pub struct RawRetry {
    /// Waits between attempts (default `[5s, 5m, 30m, 2h, 5h, 10h, 10h]`:
    /// 8 attempts). After the last one the delivery is dead-lettered.
    pub schedule: Option<Vec<Sp<String>>>,
    /// Longest `Retry-After` honoured (default `1h`).
    pub max_retry_after: Option<Sp<String>>,
}

/// Outbound signing scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SigningScheme {
    /// `X-Hmac-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
    HmacSha256,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature: v1,<base64>` (HMAC, `whsec_` secret) or
    /// `v1a,<base64>` (Ed25519, `whsk_` secret) over `id.timestamp.body`.
    StandardWebhooks,
}

/// How outbound requests are signed.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Signing")]
pub struct RawSigning {
    /// `hmac-sha256` or `standard-webhooks`.
    pub scheme: SigningScheme,
    /// Name of the secret, or a list (rotation: newest first, one
    /// signature per secret).
    pub secret: OneOrMany<Sp<String>>,
}

/// Delivery ordering of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// Deliveries run concurrently (up to `max_in_flight`).
    #[default]
    Parallel,
    /// One delivery at a time across all replicas, in enqueue order.
    Fifo,
}

/// Delivery options inherited by every action and subscription.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Defaults")]
pub struct RawDefaults {
    /// Time a delivery may take before it counts as failed (default `30s`).
    pub timeout: Option<Sp<String>>,
    /// Retry schedule.
    pub retry: Option<RawRetry>,
    /// Signing of outbound requests (default: none).
    pub signing: Option<RawSigning>,
    /// Extra headers (templates) sent with every delivery.
    pub headers: Option<BTreeMap<String, Sp<String>>>,
    /// Rate limit per target, e.g. `50/s`.
    pub rate_limit: Option<Sp<String>>,
    /// Concurrent deliveries per target.
    pub max_in_flight: Option<u32>,
    /// `parallel` (default) or `fifo`.
    pub ordering: Option<Ordering>,
    /// Hold every delivery in the queue, send nothing.
    pub paused: Option<bool>,
}

/// Queue backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    /// A durable on-disk queue in `path`, for a single instance.
    Embedded,
    /// Redis Streams at `url`, shared by any number of replicas.
    Redis,
}

/// The durable queue. Changing it needs a restart.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Queue")]
pub struct RawQueue {
    /// `embedded` (default) or `redis`.
    pub backend: Option<QueueBackend>,
    /// Embedded: data directory (default `./hookyard-data`).
    pub path: Option<Sp<String>>,
    /// Redis: connection URL: one server, e.g. `redis://127.0.0.1:6379/0`,
    /// or a master watched by Redis Sentinel,
    /// `redis+sentinel://[user:password@]s1:26379,s2:26379/MASTER[/DB]`,
    /// or a Redis Cluster, `redis+cluster://[user:password@]n1:6379,n2:6379`.
    pub url: Option<Sp<String>>,
    /// Redis: key prefix (default `hookyard`).
    pub prefix: Option<Sp<String>>,
    /// How long a worker holds a job before another may take it (default
    /// `60s`; renewed while the request is in flight).
    pub lease: Option<Sp<String>>,
    /// Redis: run even when Redis would lose data (a `maxmemory-policy`
    /// other than `noeviction`, or a version older than 7.0), with a
    /// warning and `hookyard_queue_unsafe` = 1, instead of refusing to
    /// start (default false).
    pub allow_eviction: Option<Sp<bool>>,
    /// Redis: replicas that must have an ingested event before it is
    /// acknowledged (`WAIT`), so a failover loses no acknowledged event;
    /// not met in time, the event is kept and the sender gets "queue
    /// unavailable" (503, or the trigger's `on_unavailable`) (default 0).
    pub replicas_ack: Option<Sp<u32>>,
    /// Redis: how long to wait for `replicas_ack` replicas (default `1s`,
    /// at most `2s`).
    pub replicas_ack_timeout: Option<Sp<String>>,
    /// Redis Cluster: how many partitions events are spread over (default
    /// 16, from 1 to 1024); each partition's keys share a hash tag, so the
    /// partitions spread over the cluster's masters. Fixed once data is
    /// written (a different count is refused at start).
    pub partitions: Option<Sp<u32>>,
}

/// Delivery history bounds.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "History")]
pub struct RawHistory {
    /// How long events and attempts are kept (default `7d`).
    pub retention: Option<Sp<String>>,
    /// Most events kept (default 100000).
    pub max_events: Option<u64>,
    /// Bytes of each response body kept (default `4KiB`).
    pub response_body_limit: Option<Sp<String>>,
    /// Which attempts keep the body they sent: `always` (default), `test`
    /// (only `mode: test` workflows) or `never`.
    pub request_body: Option<RequestBody>,
    /// Bytes of each request body kept (default `16KiB`).
    pub request_body_limit: Option<Sp<String>>,
}

/// Which attempts keep their request body in history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestBody {
    /// Every attempt (so a published delivery can be inspected like a test
    /// one).
    #[default]
    Always,
    /// Only the attempts of `mode: test` workflows.
    Test,
    /// None.
    Never,
}

/// Duplicate detection of inbound events.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Idempotency")]
pub struct RawIdempotency {
    /// How long an idempotency key is remembered (default `24h`).
    pub window: Option<Sp<String>>,
}

/// Bounds on every template render (outbound requests, inbound mappings,
/// `respond` bodies): a template is code run on event data.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Render")]
pub struct RawRender {
    /// Longest output of one template, e.g. `1MiB` (default). Past it the
    /// delivery is dead-lettered with reason `render_limit`, and an inbound
    /// mapping answers 422.
    pub max_output: Option<Sp<String>>,
}

/// Hot reload.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Reload")]
pub struct RawReload {
    /// Watch the config path for changes (default true). SIGHUP and
    /// `POST /v1/admin/reload` always work.
    pub watch: Option<bool>,
    /// Quiet time after a change before reloading (default `500ms`).
    pub debounce: Option<Sp<String>>,
    /// How long jobs of a removed target wait before being dead-lettered as
    /// `target_removed` (default `10m`).
    pub orphan_grace: Option<Sp<String>>,
}

/// Where a secret's value comes from: exactly one of `env` or `file`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Secret")]
pub struct RawSecret {
    /// Name of an environment variable holding the value.
    pub env: Option<Sp<String>>,
    /// Path of a file holding the value (one trailing newline is dropped;
    /// relative paths are relative to the config file). Read again on reload.
    pub file: Option<Sp<String>>,
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
pub enum Scope {
    /// `POST /v1/events`.
    #[serde(rename = "events:write")]
    EventsWrite,
    /// `GET /v1/webhooks…`.
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    /// Create or delete subscriptions through the API.
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
    /// Read events and deliveries.
    #[serde(rename = "deliveries:read")]
    DeliveriesRead,
    /// Retry, replay, redrive.
    #[serde(rename = "deliveries:write")]
    DeliveriesWrite,
    /// `/v1/admin/…`.
    #[serde(rename = "admin")]
    Admin,
}

/// An API token.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Token")]
pub struct RawToken {
    /// Token name (shown in history as `api:<name>`).
    pub name: Sp<String>,
    /// Name of the secret holding the bearer token value.
    pub secret: Sp<String>,
    /// What the token may do.
    pub scopes: Vec<Scope>,
}

/// A declared event type.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EventType")]
pub struct RawEventType {
    /// The type name, e.g. `contact.created`.
    pub name: Sp<String>,
    /// Optional JSON Schema that the event's `data` must match.
    pub schema: Option<Sp<serde_json::Value>>,
}

/// Event catalog mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventCatalog {
    /// Any event type is accepted.
    #[default]
    Open,
    /// Only declared `event_types` are accepted.
    Strict,
}

/// Egress policy for delivery targets.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Egress")]
pub struct RawEgress {
    /// CIDRs that API-created targets may reach even when private.
    pub allow: Option<Vec<Sp<String>>>,
    /// CIDRs no delivery may reach (applies to YAML targets too).
    pub deny: Option<Vec<Sp<String>>>,
    /// HTTP CONNECT proxy for every delivery without its own `proxy:`,
    /// or `{ secret: NAME }` when its URL holds credentials.
    pub proxy: Option<Sp<super::node::StrOr<super::raw_items::RawSecretRef>>>,
}
