//! Runtime types of triggers: event source, verification, mapping.
//! Re-exported by `runtime.rs`; see there for the whole [`super::Config`].

use std::collections::HashMap;
use std::time::Duration;

use ipnet::IpNet;
use serde_json_path::JsonPath;

use super::raw_items::{Encoding, Handshake, Otherwise, SignaturePreset, ValueType};
use super::secret::Secret;
use super::templates::Template;
use super::units::Rate;

/// An inbound webhook.
#[derive(Clone, Debug)]
pub struct Trigger {
    /// Id.
    pub id: String,
    /// Request path served, `/hooks/<id>` unless `path` was set.
    pub path: String,
    /// How the event type is found.
    pub event: EventSource,
    /// Checks.
    pub verify: Verify,
    /// The same checks, compiled for the inbound handler.
    pub rules: super::verify_rules::VerifyRules,
    /// Where the idempotency key is read.
    pub idempotency_key: Option<KeySource>,
    /// Default mapping; `None` passes the body through as `data`.
    pub mapping: Option<Mapping>,
    /// Mappings per event type (take precedence over `mapping`).
    pub mappings: HashMap<String, Mapping>,
    /// Inbound rate limit.
    pub rate_limit: Option<Rate>,
    /// Recent requests kept as samples for the console (0: none).
    pub capture: usize,
    /// Provider handshake.
    pub handshake: Option<Handshake>,
    /// Secrets for the handshake (explicit, else the signature secrets).
    pub handshake_secrets: Vec<Secret>,
    /// Custom answer.
    pub respond: Option<Respond>,
    /// The answer when the queue cannot take an event.
    pub on_unavailable: OnUnavailable,
}

/// A trigger's answer when the queue cannot take an event
/// (`on_unavailable`); both carry `Retry-After`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnUnavailable {
    /// 503 Service Unavailable (default).
    #[default]
    ServiceUnavailable,
    /// 429 Too Many Requests, for senders that retry only on 429.
    TooManyRequests,
}

impl Trigger {
    /// The path to show in logs: a `url_token` trigger's token is itself
    /// a credential, so it shows as `{path}/…`, never its value.
    pub fn shown_path(&self) -> String {
        if self.verify.url_token.is_some() {
            format!("{}/…", self.path)
        } else {
            self.path.clone()
        }
    }

    /// The mapping for an event type: per-type, else the default.
    pub fn mapping_for(&self, event_type: &str) -> Option<&Mapping> {
        self.mappings.get(event_type).or(self.mapping.as_ref())
    }
}

/// How a trigger finds its event type.
#[derive(Clone, Debug)]
pub enum EventSource {
    /// Always this type.
    Fixed(String),
    /// From a header value.
    Header {
        /// Header name.
        name: String,
        /// Value → type; `None`: the value is the type.
        map: Option<HashMap<String, String>>,
        /// When missing or unmapped.
        otherwise: Otherwise,
    },
    /// From a JSONPath in the body.
    Path {
        /// Compiled path.
        path: JsonPath,
        /// Value → type; `None`: the value is the type.
        map: Option<HashMap<String, String>>,
        /// When missing or unmapped.
        otherwise: Otherwise,
    },
}

/// Inbound checks; all present must pass.
#[derive(Clone, Debug, Default)]
pub struct Verify {
    /// Signature check.
    pub signature: Option<SignatureCheck>,
    /// Allowed peer networks (empty: any).
    pub ip_allow: Vec<IpNet>,
    /// Expected bearer token.
    pub bearer: Option<Secret>,
    /// Expected basic credentials.
    pub basic: Option<Basic>,
    /// The URL token: the trigger is served only at `{path}/{token}`.
    pub url_token: Option<Secret>,
}

/// A signature check, with the preset's defaults filled in.
#[derive(Clone, Debug)]
pub struct SignatureCheck {
    /// Scheme.
    pub preset: SignaturePreset,
    /// Candidate secrets (any match passes).
    pub secrets: Vec<Secret>,
    /// Header holding the signature (preset default when not given).
    pub header: String,
    /// Encoding (`hmac-sha256`; github hex, shopify base64…).
    pub encoding: Encoding,
    /// Prefix before the signature (e.g. `sha256=` for github).
    pub prefix: String,
    /// Timestamp tolerance of timestamped schemes.
    pub tolerance: Duration,
    /// The sender's Ed25519 public key (`ed25519`, `highlevel`; `None` for
    /// the others).
    pub public_key: Option<ed25519_dalek::VerifyingKey>,
    /// The sender's RSA public key: `rsa-sha256`'s `public_key`, or
    /// `highlevel`'s `legacy_public_key` when `legacy: true` (else `None`).
    pub rsa_key: Option<rsa::RsaPublicKey>,
    /// `ed25519`, `rsa-sha256`: where the signed timestamp is (`timestamp:`).
    pub timestamp: Option<SignedTimestamp>,
}

/// Where a public-key preset's signed timestamp is read.
#[derive(Clone, Debug)]
pub struct SignedTimestamp {
    /// A header (signed as its value followed by the body), or a JSONPath
    /// into the signed body.
    pub at: KeySource,
    /// As written in the config, for error messages.
    pub shown: String,
}

/// Equal when written the same: the text decides where it is read.
impl PartialEq for SignedTimestamp {
    fn eq(&self, other: &SignedTimestamp) -> bool {
        self.shown == other.shown
    }
}

impl Eq for SignedTimestamp {}

/// Basic credentials.
#[derive(Clone, Debug)]
pub struct Basic {
    /// User.
    pub user: String,
    /// Password.
    pub password: Secret,
}

/// Where an idempotency key is read.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// JSONPath into the body.
    Path(JsonPath),
    /// A header.
    Header(String),
}

/// A mapping: output fields, in sorted order of their dotted keys.
#[derive(Clone, Debug, Default)]
pub struct Mapping {
    /// The fields.
    pub fields: Vec<MappingField>,
}

/// One mapped output field.
#[derive(Clone, Debug)]
pub struct MappingField {
    /// Dotted key as written (`contact.email`); `timestamp` sets the event's.
    pub key: String,
    /// The key split on `.` (nested objects).
    pub output: Vec<String>,
    /// Where the value comes from.
    pub source: Source,
    /// Conversion.
    pub value_type: Option<ValueType>,
    /// Missing → 422.
    pub required: bool,
    /// Used when missing.
    pub default: Option<serde_json::Value>,
}

/// A mapping source.
#[derive(Clone, Debug)]
pub enum Source {
    /// JSONPath into the parsed body (one node: its value; several: array).
    Path(JsonPath),
    /// Request header.
    Header(String),
    /// Query parameter.
    Query(String),
    /// Template over `body`, `headers`, `query`.
    Template(Template),
    /// Constant.
    Value(serde_json::Value),
}

/// A custom trigger answer.
#[derive(Clone, Debug)]
pub struct Respond {
    /// Status.
    pub status: u16,
    /// Body template (sees `event_id`).
    pub body: Option<Template>,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

/// A trigger found by request path ([`super::Config::trigger_by_path`]).
#[derive(Clone, Copy, Debug)]
pub struct PathMatch<'a> {
    /// The trigger the path names.
    pub trigger: &'a std::sync::Arc<Trigger>,
    /// The outcome of its URL token check.
    pub token: TokenCheck,
}

/// The URL token check of a request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// The trigger has no `url_token`.
    NotRequired,
    /// The last path segment is the trigger's token.
    Matched,
    /// The trigger has a `url_token` and the path's token is missing or
    /// another: answer exactly like an unknown trigger (404).
    Wrong,
}
