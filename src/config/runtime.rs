//! The compiled, runtime form of the config: plain data, every default
//! resolved, every reference replaced by what it names, every leaf parsed.
//!
//! Hold it as `Arc<Config>` (the reloader swaps it with `ArcSwap`); items
//! are `Arc` so a worker can keep one across a reload.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

pub use crate::model::EventPattern;

use super::error::ConfigError;
use super::raw::{EventCatalog, QueueBackend, RequestBody, Scope, SigningScheme};
use super::raw_items::{Method, WorkflowMode};
pub use super::runtime_transport::*;
pub use super::runtime_trigger::*;
use super::secret::Secret;
use super::templates::{Expr, JsonTemplate, Template, Templates};
use super::units::Rate;
use url::Url;

pub use super::raw::Ordering;

/// The whole compiled config.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listeners and limits.
    pub server: Server,
    /// The queue backend.
    pub queue: Queue,
    /// History bounds.
    pub history: History,
    /// Idempotency window.
    pub idempotency_window: Duration,
    /// Reload behaviour.
    pub reload: Reload,
    /// Every declared secret by name.
    pub secrets: HashMap<String, Secret>,
    /// API tokens.
    pub tokens: Vec<Token>,
    /// Declared event types by name.
    pub event_types: HashMap<String, Arc<EventType>>,
    /// `open` or `strict`.
    pub event_catalog: EventCatalog,
    /// Triggers in file order.
    pub triggers: Vec<Arc<Trigger>>,
    /// Named actions in file order (inline `request` steps are not here;
    /// they live in their workflow's steps).
    pub actions: Vec<Arc<Action>>,
    /// Workflows in file order.
    pub workflows: Vec<Arc<Workflow>>,
    /// YAML subscriptions in file order.
    pub subscriptions: Vec<Arc<Subscription>>,
    /// Egress policy.
    pub egress: Egress,
    /// Traces (read at start only).
    pub telemetry: super::telemetry::Telemetry,
    /// The shared template environment every [`Template`]/[`Expr`] lives in.
    pub templates: Templates,
    /// Each loaded file with its text *before* `${VAR}` interpolation (the
    /// admin API shows references, never values).
    pub sources: Vec<SourceFile>,
    /// Warnings found while loading.
    pub warnings: Vec<ConfigError>,
    pub(crate) trigger_ids: HashMap<String, usize>,
    pub(crate) trigger_paths: HashMap<String, usize>,
    pub(crate) action_ids: HashMap<String, usize>,
    pub(crate) workflow_ids: HashMap<String, usize>,
    pub(crate) subscription_ids: HashMap<String, usize>,
}

impl Config {
    /// A trigger by id.
    pub fn trigger(&self, id: &str) -> Option<&Arc<Trigger>> {
        self.trigger_ids.get(id).map(|&i| &self.triggers[i])
    }

    /// The trigger a request path names, and whether its URL token (if it
    /// has one) matched. A plain trigger is served at its path; a
    /// `url_token` trigger only at `{path}/{token}` (its bare path, or any
    /// other token, is [`TokenCheck::Wrong`], which callers answer like an
    /// unknown trigger). Runs per request: at most two hash lookups and
    /// one constant-time comparison.
    pub fn trigger_by_path(&self, path: &str) -> Option<PathMatch<'_>> {
        if let Some(&i) = self.trigger_paths.get(path) {
            let trigger = &self.triggers[i];
            let token = match trigger.verify.url_token {
                None => TokenCheck::NotRequired,
                Some(_) => TokenCheck::Wrong,
            };
            return Some(PathMatch { trigger, token });
        }
        let (parent, presented) = path.rsplit_once('/')?;
        let trigger = &self.triggers[*self.trigger_paths.get(parent)?];
        let secret = trigger.verify.url_token.as_ref()?;
        let token = if secret.matches(presented.as_bytes()) {
            TokenCheck::Matched
        } else {
            TokenCheck::Wrong
        };
        Some(PathMatch { trigger, token })
    }

    /// A named action by id.
    pub fn action(&self, id: &str) -> Option<&Arc<Action>> {
        self.action_ids.get(id).map(|&i| &self.actions[i])
    }

    /// A workflow by id.
    pub fn workflow(&self, id: &str) -> Option<&Arc<Workflow>> {
        self.workflow_ids.get(id).map(|&i| &self.workflows[i])
    }

    /// Every distinct `tls:`/`proxy:` of the YAML targets, in config order.
    pub fn transports(&self) -> Vec<Arc<Transport>> {
        let mut all: Vec<Arc<Transport>> = Vec::new();
        let targets = self
            .actions
            .iter()
            .map(|a| &a.delivery)
            .chain(self.subscriptions.iter().map(|s| &s.delivery));
        for t in targets.filter_map(|d| d.transport.as_ref()) {
            if !all.contains(t) {
                all.push(Arc::clone(t));
            }
        }
        all
    }

    /// A YAML subscription by id.
    pub fn subscription(&self, id: &str) -> Option<&Arc<Subscription>> {
        self.subscription_ids
            .get(id)
            .map(|&i| &self.subscriptions[i])
    }

    /// The token whose secret equals the presented bearer value. Every
    /// token is compared in constant time, whatever matched first.
    pub fn token_for(&self, bearer: &[u8]) -> Option<&Token> {
        let index = super::secret::position_of(self.tokens.iter().map(|t| &t.secret), bearer)?;
        self.tokens.get(index)
    }

    /// Whether `event_type` is accepted under the catalog mode.
    pub fn accepts_event_type(&self, event_type: &str) -> bool {
        self.event_catalog == EventCatalog::Open || self.event_types.contains_key(event_type)
    }
}

/// One loaded file.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path as found.
    pub path: PathBuf,
    /// Text before interpolation.
    pub raw_text: String,
}

/// `server:`.
#[derive(Clone, Debug)]
pub struct Server {
    /// Serves `/hooks/*` (and the rest unless moved).
    pub listen: SocketAddr,
    /// Serves `/v1/*` alone when set.
    pub api_listen: Option<SocketAddr>,
    /// Serves `/metrics` alone when set.
    pub metrics_listen: Option<SocketAddr>,
    /// Largest request body in bytes.
    pub max_body: u64,
    /// Proxies whose `X-Forwarded-For` is trusted.
    pub trusted_proxies: Vec<IpNet>,
    /// Time in-flight deliveries get on shutdown.
    pub shutdown_grace: Duration,
    /// Delay between readiness 503 and closing listeners.
    pub shutdown_delay: Duration,
    /// Time a connection gets to complete its request headers.
    pub header_timeout: Duration,
    /// Time a request gets to complete its body (then 408).
    pub body_timeout: Duration,
    /// Time a keep-alive connection may stay without a request.
    pub idle_timeout: Duration,
    /// Open connections per listener (at least 1).
    pub max_connections: u32,
}

/// `queue:`.
#[derive(Clone, Debug)]
pub struct Queue {
    /// `embedded` or `redis`.
    pub backend: QueueBackend,
    /// Embedded data directory (relative to the working directory).
    pub path: PathBuf,
    /// Redis URL (empty for embedded).
    pub url: String,
    /// Redis key prefix.
    pub prefix: String,
    /// Job lease.
    pub lease: Duration,
    /// Redis: run on a server that would lose data (SPEC §11), warned
    /// about, instead of refusing it.
    pub allow_eviction: bool,
    /// Redis: replicas that must acknowledge an ingested event (0: none).
    pub replicas_ack: u32,
    /// Redis: how long to wait for them.
    pub replicas_ack_timeout: Duration,
    /// Redis Cluster: partitions events are spread over (1 elsewhere).
    pub partitions: u16,
}

/// `history:`.
#[derive(Clone, Debug)]
pub struct History {
    /// Age limit.
    pub retention: Duration,
    /// Count limit.
    pub max_events: u64,
    /// Bytes of response body kept.
    pub response_body_limit: u64,
    /// Which attempts keep their request body.
    pub request_body: RequestBody,
    /// Bytes of request body kept.
    pub request_body_limit: u64,
}

/// `reload:`.
#[derive(Clone, Debug)]
pub struct Reload {
    /// Watch the files.
    pub watch: bool,
    /// Debounce.
    pub debounce: Duration,
    /// Grace for jobs of removed targets.
    pub orphan_grace: Duration,
}

/// An API token.
#[derive(Clone, Debug)]
pub struct Token {
    /// Name (`api:<name>` as event source).
    pub name: String,
    /// Expected bearer value.
    pub secret: Secret,
    /// Allowed scopes.
    pub scopes: Vec<Scope>,
}

impl Token {
    /// Whether the token has `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A declared event type.
#[derive(Clone, Debug)]
pub struct EventType {
    /// Name.
    pub name: String,
    /// The schema as written.
    pub schema_json: Option<serde_json::Value>,
    /// The compiled schema.
    pub schema: Option<Arc<jsonschema::Validator>>,
}

/// `egress:`.
#[derive(Clone, Debug, Default)]
pub struct Egress {
    /// Allowed even when private (API targets).
    pub allow: Vec<IpNet>,
    /// Never dialled.
    pub deny: Vec<IpNet>,
    /// The proxy of every delivery without its own (`egress.proxy`).
    pub proxy: Option<Proxy>,
}

/// A target URL.
#[derive(Clone, Debug)]
pub enum TargetUrl {
    /// A template; `literal_prefix` is the text before the first tag, whose
    /// scheme and host rendering must not change.
    Template {
        /// The template.
        template: Template,
        /// Literal text before the first `{{`/`{%`.
        literal_prefix: String,
    },
    /// The URL is a secret; history shows its name.
    Secret(Secret),
}

/// Outbound signing.
#[derive(Clone, Debug)]
pub struct Signing {
    /// Scheme.
    pub scheme: SigningScheme,
    /// Secrets, newest first.
    pub secrets: Vec<Secret>,
    /// The same, compiled for the signer (each delivery borrows it).
    pub keys: crate::model::signing::Signing,
}

impl Signing {
    /// Compile `secrets` for `scheme`.
    pub fn new(scheme: SigningScheme, secrets: Vec<Secret>) -> Signing {
        let exposed: Vec<&[u8]> = secrets.iter().map(Secret::expose).collect();
        let keys = crate::model::signing::Signing::new(scheme.model(), &exposed);
        Signing {
            scheme,
            secrets,
            keys,
        }
    }
}

impl SigningScheme {
    /// The same scheme, as the signer names it.
    pub fn model(self) -> crate::model::signing::Scheme {
        match self {
            SigningScheme::HmacSha256 => crate::model::signing::Scheme::HmacSha256,
            SigningScheme::StandardWebhooks => crate::model::signing::Scheme::StandardWebhooks,
        }
    }
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

/// The default `retry.schedule`: waits after attempts 1..=7.
pub const DEFAULT_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(5 * HOUR),
    Duration::from_secs(10 * HOUR),
    Duration::from_secs(10 * HOUR),
];

/// The default `retry.max_retry_after`: the longest `Retry-After` honoured.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(HOUR);

/// A target's `retry:` block, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Waits between attempts; attempts = `schedule.len() + 1`.
    pub schedule: Vec<Duration>,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            schedule: DEFAULT_SCHEDULE.to_vec(),
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

/// Delivery options of one target, defaults applied.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    /// Attempt timeout.
    pub timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// Signing.
    pub signing: Option<Signing>,
    /// Header templates (defaults merged, target wins by case-insensitive name).
    pub headers: Vec<(String, Template)>,
    /// Credentials sent with every request (`auth:`; never for API
    /// subscriptions).
    pub auth: Option<OutboundAuth>,
    /// Its own TLS settings and proxy (`tls:`, `proxy:`); `None` uses the
    /// sender's default clients (which follow `egress.proxy`).
    pub transport: Option<Arc<Transport>>,
    /// Rate limit.
    pub rate_limit: Option<Rate>,
    /// Concurrency limit.
    pub max_in_flight: Option<u32>,
    /// Ordering.
    pub ordering: Ordering,
    /// Paused.
    pub paused: bool,
}

/// Credentials a target sends (`auth:`).
#[derive(Clone, Debug)]
pub enum OutboundAuth {
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>` from an OAuth2 client credentials
    /// grant; the token is fetched and cached by the delivery worker.
    OAuth2(Arc<OAuth2>),
}

/// An OAuth2 client credentials grant (`auth: { oauth2: … }`).
#[derive(Clone, Debug)]
pub struct OAuth2 {
    /// The token endpoint.
    pub token_url: Url,
    /// Client identifier.
    pub client_id: String,
    /// Client secret (sent as `client_secret` in the form).
    pub client_secret: Secret,
    /// Scopes requested, in order.
    pub scopes: Vec<String>,
    /// Audience requested.
    pub audience: Option<String>,
}

/// A request body template.
#[derive(Clone, Debug)]
pub enum Body {
    /// JSON (`application/json`).
    Json(JsonTemplate),
    /// Form fields (`application/x-www-form-urlencoded`).
    Form(Vec<(String, Template)>),
    /// A raw template with its content type.
    Raw {
        /// Body template.
        template: Template,
        /// Content type.
        content_type: String,
    },
}

/// An outbound call template (named action or inline step).
#[derive(Clone, Debug)]
pub struct Action {
    /// Id (`<workflow>-<n>` for inline steps).
    pub id: String,
    /// Method.
    pub method: Method,
    /// URL.
    pub url: TargetUrl,
    /// Query templates (values percent-encoded when rendered).
    pub query: Vec<(String, Template)>,
    /// Body.
    pub body: Option<Body>,
    /// Missing merge tag fails the delivery.
    pub strict: bool,
    /// Delivery options.
    pub delivery: DeliveryOptions,
}

/// A workflow step.
#[derive(Clone, Debug)]
pub struct Step {
    /// The action run (shared with `Config::actions` for named ones).
    pub action: Arc<Action>,
    /// True for an inline `request`.
    pub inline: bool,
}

/// A workflow.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// Id.
    pub id: String,
    /// Mode.
    pub mode: WorkflowMode,
    /// Event patterns (empty: any type).
    pub events: Vec<EventPattern>,
    /// Trigger ids (empty: any source).
    pub triggers: Vec<String>,
    /// `when.if`.
    pub condition: Option<Expr>,
    /// Steps in order.
    pub steps: Vec<Step>,
}

impl Workflow {
    /// Whether an event of `event_type` from trigger `trigger` (None for the
    /// event API) starts this workflow, before its `if`. Both `event` and
    /// `trigger` must match when both are given; `disabled` matches nothing.
    pub fn matches(&self, event_type: &str, trigger: Option<&str>) -> bool {
        self.mode != WorkflowMode::Disabled
            && (self.events.is_empty() || self.events.iter().any(|p| p.matches(event_type)))
            && (self.triggers.is_empty()
                || trigger.is_some_and(|t| self.triggers.iter().any(|x| x == t)))
    }
}

/// A YAML subscription.
#[derive(Clone, Debug)]
pub struct Subscription {
    /// Id.
    pub id: String,
    /// URL.
    pub url: TargetUrl,
    /// Event patterns.
    pub events: Vec<EventPattern>,
    /// Confirmation handshake before the first delivery.
    pub verify: bool,
    /// `if`.
    pub condition: Option<Expr>,
    /// Delivery options.
    pub delivery: DeliveryOptions,
}

impl Subscription {
    /// Whether `event_type` is subscribed (before `if`).
    pub fn matches(&self, event_type: &str) -> bool {
        self.events.iter().any(|p| p.matches(event_type))
    }
}
