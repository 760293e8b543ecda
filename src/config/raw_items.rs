//! Raw types of the list items: actions, workflows, subscriptions; the
//! triggers' are in `raw_trigger.rs` (re-exported here).
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
pub use super::raw_trigger::*;

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

/// Credentials sent with every request to a target (actions and YAML
/// subscriptions only: an API token cannot send a config secret to a URL it
/// chooses).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OutboundAuth")]
pub struct RawOutboundAuth {
    /// HTTP basic authentication: `Authorization: Basic base64(user:password)`.
    pub basic: Option<RawOutboundBasic>,
    /// OAuth2 client credentials: `Authorization: Bearer <access token>`,
    /// the token fetched from `token_url` and cached until shortly before
    /// it expires.
    pub oauth2: Option<Sp<RawOutboundOAuth2>>,
}

/// OAuth2 client credentials grant (RFC 6749 §4.4). The client
/// authenticates with `client_secret_post` (`client_id` and
/// `client_secret` in the form body).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OutboundOAuth2")]
pub struct RawOutboundOAuth2 {
    /// The authorization server's token endpoint (`http` or `https`).
    pub token_url: Sp<String>,
    /// Client identifier.
    pub client_id: Sp<String>,
    /// Name of the secret holding the client secret.
    pub client_secret: Sp<String>,
    /// Scopes requested (sent space-separated as `scope`).
    #[serde(default)]
    pub scopes: Vec<Sp<String>>,
    /// Audience requested (sent as `audience`; some servers require it).
    pub audience: Option<Sp<String>>,
}

/// TLS settings of one target (SPEC §14). Each value names a secret
/// holding PEM, or is `{ file: PATH }` (relative to the config file).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OutboundTls")]
pub struct RawTls {
    /// The client certificate chain (PEM) for mTLS: a secret's name or
    /// `{ file: PATH }`.
    pub client_cert: Option<Sp<StrOr<RawFileRef>>>,
    /// The client certificate's private key (PEM): a secret's name or
    /// `{ file: PATH }`.
    pub client_key: Option<Sp<StrOr<RawFileRef>>>,
    /// The CA certificate(s) (PEM) that signed the target's certificate,
    /// trusted in addition to the system's roots: a secret's name or
    /// `{ file: PATH }`.
    pub ca: Option<Sp<StrOr<RawFileRef>>>,
}

/// `{ file: PATH }`: PEM read from a file, relative to the config file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "FileRef")]
pub struct RawFileRef {
    /// The file's path.
    pub file: Sp<String>,
}

/// HTTP basic credentials sent to a target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OutboundBasic")]
pub struct RawOutboundBasic {
    /// User name (no `:`).
    pub user: Sp<String>,
    /// Name of the secret holding the password.
    pub password: Sp<String>,
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
    /// Credentials sent with every request, e.g.
    /// `{ basic: { user, password: SECRET } }`.
    auth: Option<Sp<RawOutboundAuth>>,
    /// Client certificate and private CA, e.g.
    /// `{ client_cert: SECRET, client_key: SECRET, ca: SECRET }`.
    tls: Option<Sp<RawTls>>,
    /// HTTP CONNECT proxy (`http://host:port`), or `{ secret: NAME }` when
    /// its URL holds credentials (default `egress.proxy`).
    proxy: Option<Sp<StrOr<RawSecretRef>>>,
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
    /// Credentials sent with every delivery and the verification handshake,
    /// e.g. `{ basic: { user, password: SECRET } }`.
    pub auth: Option<Sp<RawOutboundAuth>>,
    /// Client certificate and private CA.
    pub tls: Option<Sp<RawTls>>,
    /// HTTP CONNECT proxy, or `{ secret: NAME }` (default `egress.proxy`).
    pub proxy: Option<Sp<StrOr<RawSecretRef>>>,
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
