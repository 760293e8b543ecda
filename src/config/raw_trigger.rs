//! Raw types of triggers: event source, verification, mapping sources,
//! handshakes and answers (SPEC §3). Re-exported by `raw_items.rs`.
//!
//! Each trigger is deserialized on its own (see `node.rs`), so an error in
//! one trigger never hides an error in the next.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;

use super::node::{OneOrMany, Sp, StrOr};

/// What to do when the event type cannot be determined from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Otherwise {
    /// Answer 204 and enqueue nothing (e.g. GitHub's `ping`).
    Ignore,
    /// Answer 422 (default).
    #[default]
    Reject,
}

/// The event type taken from the request.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EventFrom")]
pub struct RawEventFrom {
    /// Read the type from this request header (e.g. `X-GitHub-Event`).
    pub header: Option<String>,
    /// Read the type from this JSONPath in the body (e.g. `$.type`).
    pub path: Option<Sp<String>>,
    /// Rename values to event types; without it the value is the type.
    pub map: Option<BTreeMap<String, String>>,
    /// When the value is missing or not in `map`: `ignore` (204) or
    /// `reject` (422, default).
    pub otherwise: Option<Otherwise>,
}

/// Signature verification presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignaturePreset {
    /// Generic HMAC-SHA256 of the raw body (`header`, `encoding`, `prefix`).
    HmacSha256,
    /// `X-Hub-Signature-256: sha256=<hex>`.
    Github,
    /// `Stripe-Signature: t=..,v1=..` over `t.body`.
    Stripe,
    /// `X-Shopify-Hmac-Sha256`, base64.
    Shopify,
    /// Slack `v0=` over `v0:ts:body`.
    Slack,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
    /// Ed25519 over the raw body, checked with `public_key` (no secret);
    /// `header` is required, `encoding` defaults to `base64`.
    Ed25519,
    /// RSA PKCS#1 v1.5 with SHA-256 over the raw body, checked with an RSA
    /// `public_key` (no secret); `header` is required, `encoding` defaults
    /// to `base64`.
    RsaSha256,
    /// HighLevel (the CRM platform): `X-GHL-Signature`, base64 Ed25519 over
    /// the raw body, checked with `public_key`; the legacy RSA
    /// `X-WH-Signature` with `legacy_public_key` while `legacy: true`; the
    /// body's `timestamp` within `tolerance`; idempotency on `$.webhookId`.
    Highlevel,
}

/// Signature encoding for the generic `hmac-sha256` preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lowercase hex (default).
    Hex,
    /// Standard base64.
    Base64,
}

/// Inbound signature check.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Signature")]
pub struct RawSignature {
    /// The sender's scheme.
    pub preset: SignaturePreset,
    /// Secret name, or a list of names (rotation: any match passes).
    /// Required by every preset but `ed25519`, `rsa-sha256` and
    /// `highlevel`, which take `public_key`.
    #[serde(default)]
    pub secret: Option<OneOrMany<Sp<String>>>,
    /// The sender's public key. `ed25519` and `highlevel`: an Ed25519 key
    /// as PEM (`-----BEGIN PUBLIC KEY-----`), base64 of the 32-byte key
    /// (optionally `whpk_`-prefixed) or of its DER. `rsa-sha256`: an RSA key
    /// (at least 2048 bits) as PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`) or
    /// base64 of its DER. Inline is fine: it is not a secret; or
    /// `{ secret: NAME }` to read it like one (a file, an env var).
    pub public_key: Option<Sp<StrOr<super::raw_items::RawSecretRef>>>,
    /// `highlevel` only: the RSA public key for the legacy `X-WH-Signature`
    /// header (PEM or base64 DER), used while `legacy: true`; inline or
    /// `{ secret: NAME }`.
    pub legacy_public_key: Option<Sp<StrOr<super::raw_items::RawSecretRef>>>,
    /// `highlevel` only: also accept the legacy RSA `X-WH-Signature` when
    /// `X-GHL-Signature` is absent (default `false`; needs
    /// `legacy_public_key`).
    pub legacy: Option<Sp<bool>>,
    /// Header holding the signature (`hmac-sha256`, default
    /// `X-Hmac-Signature`; `ed25519` and `rsa-sha256`, required).
    pub header: Option<String>,
    /// `hex` or `base64` (`hmac-sha256`, default `hex`; `ed25519` and
    /// `rsa-sha256`, default `base64`).
    pub encoding: Option<Encoding>,
    /// Text before the signature, e.g. `sha256=` (`hmac-sha256` only).
    pub prefix: Option<String>,
    /// Oldest accepted timestamp for timestamped schemes (default `5m`).
    pub tolerance: Option<Sp<String>>,
    /// `ed25519` and `rsa-sha256` only: where the sender's signed timestamp
    /// is, checked within `tolerance`. A JSONPath into the body (`$.ts`;
    /// the body is what was signed), or `header:NAME`, when the signature
    /// covers that header's value followed by the body.
    pub timestamp: Option<Sp<String>>,
}

/// HTTP basic authentication of the sender.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Basic")]
pub struct RawBasic {
    /// Expected user name.
    pub user: String,
    /// Name of the secret holding the expected password.
    pub password: Sp<String>,
}

/// Checks on inbound requests; all that are listed must pass.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Verify")]
pub struct RawVerify {
    /// Signature of the body.
    pub signature: Option<RawSignature>,
    /// CIDRs the peer must be in (401/403 otherwise).
    pub ip_allow: Option<Vec<Sp<String>>>,
    /// Name of the secret holding the expected `Authorization: Bearer` token.
    pub bearer: Option<Sp<String>>,
    /// Expected HTTP basic credentials.
    pub basic: Option<RawBasic>,
    /// Name of the secret holding a URL token: the trigger is then served
    /// only at `/hooks/{id}/{token}` (or `{path}/{token}`); any other path
    /// is a 404. For senders that cannot sign.
    pub url_token: Option<Sp<String>>,
}

impl RawVerify {
    /// Whether no check is listed (`verify: {}`).
    pub fn is_empty(&self) -> bool {
        self.signature.is_none()
            && self.ip_allow.is_none()
            && self.bearer.is_none()
            && self.basic.is_none()
            && self.url_token.is_none()
    }
}

/// `verify`: the string `none` (an open trigger) or the map of checks.
fn verify_schema(g: &mut SchemaGenerator) -> Schema {
    let checks = g.subschema_for::<RawVerify>();
    json_schema!({
        "description": "`none` for an open trigger, or the checks every request must pass.",
        "anyOf": [{ "const": "none" }, checks]
    })
}

/// Type a mapped value is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// A string.
    String,
    /// Any number (a numeric string is converted).
    Number,
    /// A whole number (a numeric string is converted).
    Integer,
    /// `true`/`false` (the strings too).
    Boolean,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
}

/// The long form of a mapping source: exactly one of `path`, `header`,
/// `query`, `template`, `value`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Source")]
pub struct RawSource {
    /// JSONPath (RFC 9535) into the parsed body.
    pub path: Option<Sp<String>>,
    /// Request header name.
    pub header: Option<String>,
    /// Query parameter name.
    pub query: Option<String>,
    /// minijinja template over `body`, `headers`, `query`.
    pub template: Option<Sp<String>>,
    /// A constant.
    pub value: Option<serde_json::Value>,
    /// Convert the value to this type (422 when it cannot be).
    #[serde(rename = "type")]
    pub value_type: Option<ValueType>,
    /// Answer 422 when the value is missing.
    pub required: Option<bool>,
    /// Value used when the source is missing.
    pub default: Option<serde_json::Value>,
}

/// A mapping source: a JSONPath string, or the long form.
pub type RawMappingSource = Sp<StrOr<RawSource>>;

/// Provider handshakes answered by the trigger itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Handshake {
    /// Slack `url_verification`: echo `challenge`.
    Slack,
    /// Meta `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`.
    Meta,
    /// Zoom `endpoint.url_validation`.
    Zoom,
}

/// Override of the trigger's 202 answer.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Respond")]
pub struct RawRespond {
    /// Status code (default 202).
    pub status: Option<u16>,
    /// Body template; sees `event_id`.
    pub body: Option<Sp<String>>,
    /// Extra response headers.
    pub headers: Option<BTreeMap<String, String>>,
}

/// An inbound webhook, served at `POST /hooks/{id}` (or its `path`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Trigger")]
pub struct RawTrigger {
    /// Unique trigger id (letters, digits, `-`, `_`, `.`).
    pub id: Sp<String>,
    /// Own URL path instead of `/hooks/{id}` (must start with `/hooks/`).
    pub path: Option<Sp<String>>,
    /// The event type: a fixed name, or `{header|path, map, otherwise}`.
    pub event: Option<Sp<StrOr<RawEventFrom>>>,
    // Read as optional so that a missing `verify` is reported by the
    // compiler with a hint (write `verify: none`), not serde's bare
    // "missing field"; the schema marks it required.
    /// Required: `none` for an open trigger, or the checks every request
    /// must pass.
    #[schemars(required, schema_with = "verify_schema")]
    pub verify: Option<Sp<StrOr<RawVerify>>>,
    /// Idempotency key: a JSONPath (`$.id`) or `header:<Name>`.
    pub idempotency_key: Option<Sp<String>>,
    /// Output field (dotted keys nest) → source. Omit to pass the body through.
    pub mapping: Option<BTreeMap<String, RawMappingSource>>,
    /// A mapping per event type (overrides `mapping` for that type).
    pub mappings: Option<BTreeMap<String, BTreeMap<String, RawMappingSource>>>,
    /// Inbound rate limit, e.g. `100/s` (429 beyond).
    pub rate_limit: Option<Sp<String>>,
    /// Provider handshake answered without enqueuing: `slack`, `meta`, `zoom`.
    pub handshake: Option<Handshake>,
    /// Secret for the handshake (Meta verify token, Zoom secret token);
    /// default: the signature secret.
    pub handshake_secret: Option<Sp<String>>,
    /// Override of the 202 answer.
    pub respond: Option<RawRespond>,
    /// How many recent requests the console keeps as samples (default 20;
    /// `0` keeps none).
    pub capture: Option<u32>,
    /// Status answered, with `Retry-After`, when the queue cannot take the
    /// event: `503` (default) or `429`, for senders that retry only on 429.
    #[serde(default)]
    #[schemars(schema_with = "on_unavailable_schema")]
    pub on_unavailable: Option<Sp<u16>>,
}

/// `on_unavailable`: 503 or 429 (the description is the field's).
fn on_unavailable_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "enum": [503, 429] })
}
