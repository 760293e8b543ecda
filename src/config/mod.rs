//! Configuration: YAML files → checked, compiled runtime [`Config`].
//!
//! Pipeline (each stage collects every error with `file:line:col`):
//! 1. `load.rs`: find the files (a file, or a directory walked recursively
//!    in sorted order, `.`-entries skipped, symlinks followed), interpolate
//!    `${VAR}` (`interp.rs`), parse every YAML document into a position-aware
//!    node tree and deserialize each section and list item on its own
//!    (`node.rs` explains the two passes) into the raw types (`raw.rs`,
//!    `raw_items.rs`; these also generate the JSON Schema, `schema.rs`).
//! 2. `compile.rs` (+ `compile_items.rs`, `compile_trigger.rs`,
//!    `compile_auth.rs`): resolve secrets and references, parse
//!    durations/sizes/rates (`units.rs`),
//!    CIDRs, JSONPaths, templates and expressions (`templates.rs`, one
//!    shared minijinja environment), apply defaults → `runtime.rs` types.
//!
//! Entry points: [`load`] (a path), [`load_str`] (one file's text).

use std::collections::HashMap;
use std::path::Path;

pub mod compile;
mod compile_auth;
mod compile_items;
mod compile_signature;
mod compile_transport;
mod compile_trigger;
pub mod error;
pub mod interp;
mod leaf;
mod lease;
pub mod load;
pub mod node;
mod node_de;
pub mod raw;
pub mod raw_items;
mod raw_trigger;
pub mod redis_address;

mod restart;
pub mod verify_rules;
pub use restart::restart_changes;
pub mod runtime;
mod runtime_transport;
mod runtime_trigger;
pub mod schema;
pub mod secret;
pub mod spanned;
mod tags;
pub mod telemetry;
pub mod templates;
pub mod tokens;
pub mod units;

pub use error::{ConfigError, ConfigErrors, Pos};
pub use raw::{EventCatalog, Ordering, QueueBackend, RequestBody, Scope, SigningScheme};
pub use raw_items::{
    Encoding, Handshake, Method, Otherwise, SignaturePreset, ValueType, WorkflowMode,
};
pub use runtime::*;
pub use secret::Secret;
pub use telemetry::{Otlp, OtlpProtocol, Telemetry};
pub use templates::{Expr, JsonTemplate, Template, Templates};
pub use tokens::TokenError;
pub use units::Rate;

/// How to load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Do not resolve `${VAR}` references and secrets (`validate --no-env`):
    /// `${VAR:-default}` takes its default, other references stay as text
    /// and the checks of values holding them are skipped; secrets are empty.
    pub no_env: bool,
    /// Variables to use instead of the process environment (tests).
    pub env: Option<HashMap<String, String>>,
}

/// Load, check and compile the config at `path` (a file or a directory).
/// On failure every error is returned, each with `file:line:col`.
pub fn load(path: &Path, opts: LoadOptions) -> Result<Config, ConfigErrors> {
    let mut diags = error::Diagnostics::default();
    let files = load::find_files(path, &mut diags);
    if files.is_empty() && diags.errors.is_empty() {
        diags.error(&Pos::file_start(path), "no *.yaml or *.yml files found");
    }
    compile_with(opts, diags, |lookup, set, diags| {
        load::load_files(&files, lookup, set, diags)
    })
}

/// Load, check and compile one config file's `text`, as if read from
/// `path`: errors name `path`, and relative secret `file:`s are read from
/// its directory. The same stages as [`load`], without finding files.
pub fn load_str(text: &str, path: &Path, opts: LoadOptions) -> Result<Config, ConfigErrors> {
    compile_with(opts, error::Diagnostics::default(), |lookup, set, diags| {
        load::load_text(path, text.to_owned(), lookup, set, diags)
    })
}

/// Read the sources with `read` (interpolating with the lookup `opts`
/// asks for), then compile them.
fn compile_with(
    opts: LoadOptions,
    mut diags: error::Diagnostics,
    read: impl FnOnce(&interp::Lookup<'_>, &mut load::RawSet, &mut error::Diagnostics),
) -> Result<Config, ConfigErrors> {
    let lookup = |name: &str| -> Option<String> {
        match &opts.env {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    };
    let interp_lookup = if opts.no_env {
        interp::Lookup::NoEnv
    } else {
        interp::Lookup::Env(&lookup)
    };
    let mut set = load::RawSet::default();
    read(&interp_lookup, &mut set, &mut diags);
    match compile::compile(set, &mut diags, opts.no_env, &lookup) {
        Some(config) => Ok(config),
        None => Err(ConfigErrors::from_diagnostics(diags)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)
mod tests {
    use super::*;

    const YAML: &str = "secrets: { s: { env: S } }\n\
        triggers:\n  - id: t\n    event: e.x\n    verify: { signature: { preset: github, secret: s } }\n";

    fn env() -> LoadOptions {
        LoadOptions {
            no_env: false,
            env: Some([("S".to_owned(), "sec".to_owned())].into_iter().collect()),
        }
    }

    #[test]
    fn load_str_compiles_like_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, YAML).unwrap();
        let from_file = load(&path, env()).unwrap();
        let from_text = load_str(YAML, &path, env()).unwrap();
        assert_eq!(from_file.triggers.len(), 1);
        assert_eq!(from_text.triggers.len(), 1);
        assert_eq!(from_file.triggers[0].path, from_text.triggers[0].path);
    }

    /// Found by fuzzing (config_load): minijinja panicked on a bare
    /// expression with a `}}` followed by more text; now an error.
    #[test]
    fn stray_block_end_in_an_expression_is_an_error_not_a_panic() {
        let yaml = "workflows:\n  - id: w\n    when: { event: e, if: \"a.b }} x\" }\n    \
            steps: [{ request: { url: \"http://127.0.0.1:1/\" } }]\n";
        let err = load_str(yaml, Path::new("c.yaml"), env()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("c.yaml:3:32: expression syntax error: unexpected `}}`"),
            "{text}"
        );
    }

    #[test]
    fn allow_eviction_is_a_redis_setting_off_by_default() {
        let c = Path::new("c.yaml");
        let redis = "queue: { backend: redis, url: \"redis://127.0.0.1:6379\" }\n";
        assert!(!load_str(redis, c, env()).unwrap().queue.allow_eviction);
        let allowed = "queue: { backend: redis, url: \"redis://127.0.0.1:6379\", \
            allow_eviction: true }\n";
        assert!(load_str(allowed, c, env()).unwrap().queue.allow_eviction);
        let embedded = "queue: { backend: embedded, allow_eviction: true }\n";
        let text = load_str(embedded, c, env()).unwrap_err().to_string();
        assert!(
            text.contains("c.yaml:1:")
                && text.contains("`queue.allow_eviction` is for `backend: redis`"),
            "{text}"
        );
    }

    #[test]
    fn on_unavailable_is_503_or_429() {
        let c = Path::new("c.yaml");
        let yaml = "triggers:\n  - { id: a, event: e, verify: none, on_unavailable: 429 }\n  \
            - { id: b, event: e, verify: none }\n";
        let config = load_str(yaml, c, env()).unwrap();
        assert_eq!(
            config.triggers[0].on_unavailable,
            OnUnavailable::TooManyRequests
        );
        assert_eq!(
            config.triggers[1].on_unavailable,
            OnUnavailable::ServiceUnavailable
        );
        let bad = "triggers:\n  - { id: a, event: e, verify: none, on_unavailable: 418 }\n";
        let text = load_str(bad, c, env()).unwrap_err().to_string();
        assert!(
            text.contains(
                "c.yaml:2:54: trigger `a`: `on_unavailable` must be 503 (default) or 429, not 418"
            ),
            "{text}"
        );
    }

    const AUTH: &str = "secrets: { pw: { env: S } }\n\
        defaults: { headers: { Authorization: \"Bearer default\" } }\n\
        actions:\n  - id: a\n    url: \"http://127.0.0.1:1/\"\n    \
        auth: { basic: { user: crm, password: pw } }\n\
        subscriptions:\n  - id: s\n    url: \"http://127.0.0.1:1/\"\n    events: \"*\"\n    \
        auth: { basic: { user: crm, password: pw } }\n";

    #[test]
    fn outbound_basic_auth_compiles_for_actions_and_subscriptions() {
        let config = load_str(AUTH, Path::new("c.yaml"), env()).unwrap();
        let subscription = &config.subscriptions[0].delivery;
        for d in [&config.actions[0].delivery, subscription] {
            match &d.auth {
                Some(OutboundAuth::Basic { user, password }) => {
                    assert_eq!(user, "crm");
                    assert_eq!(password.expose(), b"sec");
                }
                _ => panic!("no basic auth compiled"),
            }
            // `auth` wins over the defaults' Authorization header.
            assert!(d.headers.is_empty(), "{:?}", d.headers);
        }
    }

    const OAUTH: &str = "secrets: { cs: { env: S } }\n\
        actions:\n  - id: a\n    url: \"http://127.0.0.1:1/\"\n    \
        auth: { oauth2: { token_url: \"https://auth.example/token\", client_id: hy, \
        client_secret: cs, scopes: [a, b], audience: api } }\n\
        subscriptions:\n  - id: s\n    url: \"http://127.0.0.1:1/\"\n    events: \"*\"\n    \
        auth: { oauth2: { token_url: \"http://127.0.0.1:2/t\", client_id: hy, client_secret: cs } }\n";

    #[test]
    fn outbound_oauth2_compiles_for_actions_and_subscriptions() {
        let config = load_str(OAUTH, Path::new("c.yaml"), env()).unwrap();
        let Some(OutboundAuth::OAuth2(a)) = &config.actions[0].delivery.auth else {
            panic!("no oauth2 on the action");
        };
        assert_eq!(a.token_url.as_str(), "https://auth.example/token");
        assert_eq!(a.client_id, "hy");
        assert_eq!(a.client_secret.expose(), b"sec");
        assert_eq!(a.scopes, ["a", "b"]);
        assert_eq!(a.audience.as_deref(), Some("api"));
        let Some(OutboundAuth::OAuth2(s)) = &config.subscriptions[0].delivery.auth else {
            panic!("no oauth2 on the subscription");
        };
        assert!(s.scopes.is_empty() && s.audience.is_none());
    }

    #[test]
    fn outbound_oauth2_mistakes_point_at_the_value() {
        let c = Path::new("c.yaml");
        let cases = [
            (
                OAUTH.replace("client_secret: cs }", "client_secret: nope }"),
                "c.yaml:10:88: unknown secret `nope`",
            ),
            (
                OAUTH.replace("\"http://127.0.0.1:2/t\"", "\"ftp://x/t\""),
                "c.yaml:10:34: subscription `s`: `auth.oauth2.token_url` must be an http or https URL",
            ),
            (
                OAUTH.replace("\"http://127.0.0.1:2/t\"", "not a url"),
                "c.yaml:10:34: subscription `s`: `auth.oauth2.token_url` is not a URL",
            ),
            (
                OAUTH.replace(
                    "auth: { oauth2: { token_url: \"https",
                    "auth: { basic: { user: u, password: cs }, oauth2: { token_url: \"https",
                ),
                "c.yaml:5:11: action `a`: `auth` has both `basic` and `oauth2`: keep one",
            ),
            (
                OAUTH.replace("scopes: [a, b]", "scopes: [\"a b\"]"),
                "action `a`: an `auth.oauth2.scopes` entry must be one non-empty word",
            ),
        ];
        for (yaml, want) in cases {
            let text = load_str(&yaml, c, env()).unwrap_err().to_string();
            assert!(text.contains(want), "want {want} in:\n{text}\n{yaml}");
        }
    }

    #[test]
    fn outbound_auth_mistakes_point_at_the_value() {
        let c = Path::new("c.yaml");
        let cases = [
            (
                AUTH.replace("password: pw } }\nsub", "password: nope } }\nsub"),
                "c.yaml:6:43: unknown secret `nope`",
            ),
            (
                AUTH.replace(
                    "user: crm, password: pw } }\nsub",
                    "user: \"a:b\", password: pw } }\nsub",
                ),
                "c.yaml:6:28: action `a`: `auth.basic.user` must not contain `:`",
            ),
            (
                AUTH.replace(
                    "auth: { basic: { user: crm, password: pw } }\nsub",
                    "auth: {}\nsub",
                ),
                "c.yaml:6:11: action `a`: `auth` needs `basic:",
            ),
            (
                AUTH.replace(
                    "events: \"*\"\n",
                    "events: \"*\"\n    headers: { authorization: x }\n",
                ),
                "c.yaml:12:11: subscription `s`: `auth` and an `Authorization` header both set",
            ),
        ];
        for (yaml, want) in cases {
            let text = load_str(&yaml, c, env()).unwrap_err().to_string();
            assert!(text.contains(want), "want {want} in:\n{text}\n{yaml}");
        }
    }

    #[test]
    fn load_str_errors_name_the_given_path() {
        let err = load_str("triggers: 3\n", Path::new("virtual/c.yaml"), env()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("virtual/c.yaml:1:"), "{text}");
    }
}
