//! Raw types of the list items: triggers, actions, workflows, subscriptions.
//!
//! Each item is deserialized on its own (see `node.rs`), so an error in one
//! trigger never hides an error in the next.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use super::node::{OneOrMany, Sp, StrOr};
use super::raw::{Ordering, RawRetry, RawSigning};

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
    pub secret: OneOrMany<Sp<String>>,
    /// Header holding the signature (`hmac-sha256` only; default
    /// `X-Hmac-Signature`).
    pub header: Option<String>,
    /// `hex` (default) or `base64` (`hmac-sha256` only).
    pub encoding: Option<Encoding>,
    /// Text before the signature, e.g. `sha256=` (`hmac-sha256` only).
    pub prefix: Option<String>,
    /// Oldest accepted timestamp for timestamped schemes (default `5m`).
    pub tolerance: Option<Sp<String>>,
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
    /// Checks every request must pass.
    pub verify: Option<RawVerify>,
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
}

/// `{ secret: NAME }`: the URL itself is a credential.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SecretRef")]
pub struct RawSecretRef {
    /// Name of the secret holding the URL.
    pub secret: Sp<String>,
}

/// HTTP method of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET.
    Get,
    /// POST (default).
    #[default]
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

/// Raw body template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RawBody")]
pub struct RawRawBody {
    /// Template of the whole body.
    pub template: Sp<String>,
    /// `Content-Type` sent (default `text/plain; charset=utf-8`).
    pub content_type: Option<String>,
}

/// Request body: exactly one of `json`, `form`, `raw`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Body")]
pub struct RawBody {
    /// JSON body; string leaves are templates, a leaf that is exactly one
    /// `{{ expression }}` keeps its JSON type.
    pub json: Option<JsonNode>,
    /// Form body (`application/x-www-form-urlencoded`); values are templates.
    pub form: Option<BTreeMap<String, Sp<String>>>,
    /// Any body from one template.
    pub raw: Option<RawRawBody>,
}

macro_rules! request_structs {
    ($($(#[doc = $d:literal])* $f:ident : $t:ty,)*) => {
        /// An outbound HTTP call template.
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(rename = "Action")]
        pub struct RawAction {
            /// Unique action id (used in `steps` and as the target name).
            pub id: Sp<String>,
            $($(#[doc = $d])* pub $f: $t,)*
        }

        /// An inline action in a workflow step (its id is
        /// `<workflow id>-<step number>`).
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(rename = "Request")]
        pub struct RawRequest {
            $($(#[doc = $d])* pub $f: $t,)*
        }

        impl From<RawRequest> for RawAction {
            fn from(r: RawRequest) -> RawAction {
                RawAction {
                    id: Sp { value: String::new(), pos: r.url.pos.clone() },
                    $($f: r.$f,)*
                }
            }
        }
    };
}

request_structs! {
    /// `GET`, `POST` (default), `PUT`, `PATCH` or `DELETE`.
    method: Option<Method>,
    /// URL template, or `{ secret: NAME }` when the URL is a credential.
    url: Sp<StrOr<RawSecretRef>>,
    /// Header templates (merged over `defaults.headers`).
    headers: Option<BTreeMap<String, Sp<String>>>,
    /// Query parameter templates (values are percent-encoded).
    query: Option<BTreeMap<String, Sp<String>>>,
    /// Request body.
    body: Option<RawBody>,
    /// Signing (default `defaults.signing`).
    signing: Option<RawSigning>,
    /// Timeout (default `defaults.timeout`).
    timeout: Option<Sp<String>>,
    /// Retry policy (default `defaults.retry`).
    retry: Option<RawRetry>,
    /// A merge tag naming a missing field fails the delivery instead of
    /// rendering empty.
    strict: Option<bool>,
    /// Rate limit of this target, e.g. `10/s`.
    rate_limit: Option<Sp<String>>,
    /// Concurrent deliveries to this target.
    max_in_flight: Option<u32>,
    /// `parallel` (default) or `fifo`.
    ordering: Option<Ordering>,
    /// Hold deliveries in the queue, send nothing.
    paused: Option<bool>,
}

/// Workflow mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowMode {
    /// Runs and sends (default).
    #[default]
    Published,
    /// Runs, records the rendered requests, sends nothing.
    Test,
    /// Matches nothing.
    Disabled,
}

/// When a workflow runs.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "When")]
pub struct RawWhen {
    /// Event type(s): exact names, `prefix.*`, or `*`.
    pub event: Option<OneOrMany<Sp<String>>>,
    /// Trigger id(s) the event must come from.
    pub trigger: Option<OneOrMany<Sp<String>>>,
    /// minijinja expression over the event's data; the workflow runs when true.
    #[serde(rename = "if")]
    pub condition: Option<Sp<String>>,
}

/// A workflow step: exactly one of `action` or `request`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Step")]
pub struct RawStep {
    /// Id of an action.
    pub action: Option<Sp<String>>,
    /// An inline action.
    pub request: Option<RawRequest>,
}

/// A chain of actions run for matching events.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Workflow")]
pub struct RawWorkflow {
    /// Unique workflow id.
    pub id: Sp<String>,
    /// `published` (default), `test` or `disabled`.
    pub mode: Option<WorkflowMode>,
    /// Which events start it.
    pub when: Sp<RawWhen>,
    /// Steps, run in order; each waits for the previous one to succeed.
    pub steps: Sp<Vec<RawStep>>,
}

/// An endpoint receiving every event of the listed types as the envelope.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Subscription")]
pub struct RawSubscription {
    /// Unique subscription id.
    pub id: Sp<String>,
    /// Endpoint URL, or `{ secret: NAME }`.
    pub url: Sp<StrOr<RawSecretRef>>,
    /// Event types: exact names, `prefix.*`, or `*` for all.
    pub events: OneOrMany<Sp<String>>,
    /// Signing (default `defaults.signing`).
    pub signing: Option<RawSigning>,
    /// Confirmation-token handshake before the first delivery.
    pub verify: Option<bool>,
    /// Extra header templates (merged over `defaults.headers`).
    pub headers: Option<BTreeMap<String, Sp<String>>>,
    /// Retry policy (default `defaults.retry`).
    pub retry: Option<RawRetry>,
    /// minijinja expression; only events for which it is true are sent.
    #[serde(rename = "if")]
    pub condition: Option<Sp<String>>,
    /// Rate limit, e.g. `50/s`.
    pub rate_limit: Option<Sp<String>>,
    /// Concurrent deliveries.
    pub max_in_flight: Option<u32>,
    /// `parallel` (default) or `fifo`.
    pub ordering: Option<Ordering>,
    /// Hold deliveries in the queue, send nothing.
    pub paused: Option<bool>,
    /// Timeout (default `defaults.timeout`).
    pub timeout: Option<Sp<String>>,
}

/// A JSON value in which every node keeps its position (JSON body templates).
pub type JsonNode = Sp<JsonKind>;

/// The value of a [`JsonNode`].
#[derive(Debug, Clone, PartialEq)]
pub enum JsonKind {
    /// null.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string (a template when it holds `{{`/`{%`).
    Str(String),
    /// An array.
    Array(Vec<JsonNode>),
    /// An object, in source order.
    Object(Vec<(String, JsonNode)>),
}

impl<'de> Deserialize<'de> for JsonKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JsonKind, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonKind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<JsonKind, E> {
                Ok(JsonKind::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<JsonKind, E> {
                Ok(JsonKind::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<JsonKind, E> {
                Ok(JsonKind::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<JsonKind, E> {
                Ok(JsonKind::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonKind, E> {
                serde_json::Number::from_f64(v)
                    .map(JsonKind::Number)
                    .ok_or_else(|| E::custom("NaN and infinity are not JSON numbers"))
            }
            fn visit_str<E>(self, v: &str) -> Result<JsonKind, E> {
                Ok(JsonKind::Str(v.to_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonKind, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = seq.next_element()? {
                    out.push(x);
                }
                Ok(JsonKind::Array(out))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<JsonKind, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, JsonNode>()? {
                    out.push((k, v));
                }
                Ok(JsonKind::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for JsonKind {
    fn schema_name() -> Cow<'static, str> {
        "AnyJson".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "description": "Any JSON value; string leaves are templates." })
    }
}
