//! Compile the raw sections into the runtime [`Config`], collecting every
//! error with its position (never stopping at the first).
//!
//! Order: secrets first (everything else refers to them), then the scalar
//! sections and defaults, then triggers, actions, workflows (whose steps
//! refer to actions and triggers) and subscriptions (`compile_items.rs`).
//! Each leaf is parsed by a [`Ctx`] helper that reports `file:line:col`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde_json_path::JsonPath;

use super::error::{Diagnostics, Pos};
use super::interp::has_reference;
use super::load::{Item, RawSet};
use super::node::{OneOrMany, Sp};
use super::raw::*;
use super::runtime::*;
use super::secret::Secret;
use super::templates::{self, Expr, Template, Templates};
use super::units::{self, Rate};

/// Shared state of one compilation.
pub(crate) struct Ctx<'a> {
    pub diags: &'a mut Diagnostics,
    pub env: minijinja::Environment<'static>,
    pub texts: &'a HashMap<Arc<str>, Arc<str>>,
    pub no_env: bool,
    pub secrets: HashMap<String, Secret>,
    /// Declared secrets whose value could not be read (already reported;
    /// references to them are not reported again).
    pub failed_secrets: std::collections::HashSet<String>,
}

impl Ctx<'_> {
    pub fn error(&mut self, pos: &Pos, msg: impl Into<String>) {
        self.diags.error(pos, msg);
    }

    /// A leaf that still holds `${…}` after a `--no-env` load is not checked.
    fn skip(&self, s: &Sp<String>) -> bool {
        self.no_env && has_reference(&s.value)
    }

    fn unit<T>(&mut self, s: &Sp<String>, f: fn(&str) -> Result<T, String>) -> Option<T> {
        if self.skip(s) {
            return None;
        }
        f(&s.value).map_err(|e| self.error(&s.pos, e)).ok()
    }

    pub fn duration(&mut self, s: &Option<Sp<String>>, default: Duration) -> Duration {
        s.as_ref()
            .and_then(|s| self.unit(s, units::parse_duration))
            .unwrap_or(default)
    }

    pub fn size(&mut self, s: &Option<Sp<String>>, default: u64) -> u64 {
        s.as_ref()
            .and_then(|s| self.unit(s, units::parse_size))
            .unwrap_or(default)
    }

    pub fn rate(&mut self, s: &Option<Sp<String>>) -> Option<Rate> {
        s.as_ref().and_then(|s| self.unit(s, units::parse_rate))
    }

    pub fn addr(&mut self, s: &Sp<String>) -> Option<SocketAddr> {
        self.unit(s, |t| {
            t.parse::<SocketAddr>().map_err(|_| {
                format!("invalid listen address `{t}`: write `IP:PORT`, e.g. `127.0.0.1:8080`")
            })
        })
    }

    pub fn cidrs(&mut self, list: &Option<Vec<Sp<String>>>) -> Vec<IpNet> {
        let mut out = Vec::new();
        for s in list.iter().flatten() {
            if let Some(n) = self.unit(s, parse_cidr) {
                out.push(n);
            }
        }
        out
    }

    /// The position of byte `offset` of a value that starts at `pos`.
    pub fn inner_pos(&self, pos: &Pos, src: &str, offset: usize) -> Pos {
        let offset = offset.min(src.len());
        let before = src.get(..offset).unwrap_or("");
        let tline = before.matches('\n').count();
        let tcol = before.rsplit('\n').next().unwrap_or("").chars().count();
        let text = self.texts.get(&pos.file).map(|t| t.as_ref()).unwrap_or("");
        let line_text = |n: u32| {
            text.lines()
                .nth((n as usize).saturating_sub(1))
                .unwrap_or("")
        };
        let first = line_text(pos.line)
            .chars()
            .nth((pos.col as usize).saturating_sub(1));
        if tline == 0 {
            let quote = usize::from(matches!(first, Some('"') | Some('\'')));
            return pos.shifted(quote + tcol);
        }
        let block = usize::from(matches!(first, Some('|') | Some('>')));
        let line = pos.line as usize + block + tline;
        let line_u32 = u32::try_from(line).unwrap_or(u32::MAX);
        let indent = line_text(line_u32)
            .chars()
            .take_while(|c| *c == ' ')
            .count();
        Pos::new(
            &pos.file,
            line_u32,
            u32::try_from(indent + tcol + 1).unwrap_or(u32::MAX),
        )
    }

    pub fn jsonpath(&mut self, s: &Sp<String>) -> Option<JsonPath> {
        if self.skip(s) {
            return None;
        }
        match JsonPath::parse(&s.value) {
            Ok(p) => Some(p),
            Err(e) => {
                let pos = self.inner_pos(&s.pos, &s.value, e.position());
                self.error(
                    &pos,
                    format!("invalid JSONPath `{}`: {}", s.value, e.message()),
                );
                None
            }
        }
    }

    fn minijinja_pos(&self, s: &Sp<String>, e: &minijinja::Error, prefix: usize) -> Pos {
        let offset = match (e.range(), e.line()) {
            (Some(r), _) => r.start.saturating_sub(prefix),
            (None, Some(l)) => s
                .value
                .split_inclusive('\n')
                .take(l.saturating_sub(1))
                .map(str::len)
                .sum(),
            _ => 0,
        };
        self.inner_pos(&s.pos, &s.value, offset)
    }

    /// Compile `s` as template `name` into the shared environment.
    pub fn template(&mut self, name: String, s: &Sp<String>) -> Option<Template> {
        match self.env.add_template_owned(name.clone(), s.value.clone()) {
            Ok(()) => Some(Template {
                name,
                source: s.value.clone(),
            }),
            Err(e) => {
                let pos = self.minijinja_pos(s, &e, 0);
                let detail = e
                    .detail()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.kind().to_string());
                self.error(&pos, format!("template syntax error: {detail}"));
                None
            }
        }
    }

    /// Compile `s` (an expression without `{{ }}`) as expression `name`.
    pub fn expr(&mut self, name: String, s: &Sp<String>) -> Option<Expr> {
        self.expr_at(name, s, &s.value, 0)
    }

    /// Compile `src`, found at byte `offset` of `s`, as expression `name`.
    pub fn expr_at(
        &mut self,
        name: String,
        s: &Sp<String>,
        src: &str,
        offset: usize,
    ) -> Option<Expr> {
        if let Err(e) = self.env.compile_expression_owned(src.to_owned()) {
            let pos = self.minijinja_pos(s, &e, 0);
            let pos = if offset > 0 { pos.shifted(offset) } else { pos };
            let detail = e
                .detail()
                .map(str::to_owned)
                .unwrap_or_else(|| e.kind().to_string());
            self.error(&pos, format!("expression syntax error: {detail}"));
            return None;
        }
        match self
            .env
            .add_template_owned(name.clone(), templates::expression_wrapper(src))
        {
            Ok(()) => Some(Expr {
                name,
                source: src.to_owned(),
            }),
            Err(e) => {
                self.error(&s.pos, format!("expression error: {e}"));
                None
            }
        }
    }

    /// The secret named by `s`.
    pub fn secret(&mut self, s: &Sp<String>) -> Option<Secret> {
        match self.secrets.get(&s.value) {
            Some(v) => Some(v.clone()),
            None if self.failed_secrets.contains(&s.value) => None,
            None => {
                let known = if self.secrets.is_empty() {
                    "none are declared".to_owned()
                } else {
                    let mut k: Vec<&str> = self.secrets.keys().map(String::as_str).collect();
                    k.sort_unstable();
                    format!("declared: {}", k.join(", "))
                };
                self.error(
                    &s.pos,
                    format!(
                        "unknown secret `{}`: declare it under `secrets:` ({known})",
                        s.value
                    ),
                );
                None
            }
        }
    }

    pub fn secret_list(&mut self, list: &OneOrMany<Sp<String>>) -> Vec<Secret> {
        list.0.iter().filter_map(|s| self.secret(s)).collect()
    }
}

/// Parse a CIDR (`10.0.0.0/8`) or a single address (`10.1.2.3`).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("invalid CIDR `{t}`: write an address or a network like `203.0.113.0/24`")
        })
}

/// Check ids: valid characters and unique per kind. Returns false for an
/// item to skip.
pub(crate) struct Ids {
    kind: &'static str,
    seen: HashMap<String, Pos>,
}

impl Ids {
    pub fn new(kind: &'static str) -> Ids {
        Ids {
            kind,
            seen: HashMap::new(),
        }
    }

    pub fn check(&mut self, id: &Sp<String>, diags: &mut Diagnostics) -> bool {
        let ok = !id.value.is_empty()
            && id
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            diags.error(
                &id.pos,
                format!(
                    "invalid {} id `{}`: use letters, digits, `-`, `_` and `.`",
                    self.kind, id.value
                ),
            );
            return false;
        }
        if let Some(first) = self.seen.get(&id.value) {
            diags.error(
                &id.pos,
                format!(
                    "duplicate {} id `{}`: also defined at {first}",
                    self.kind, id.value
                ),
            );
            return false;
        }
        self.seen.insert(id.value.clone(), id.pos.clone());
        true
    }
}

fn resolve_secrets(set: &RawSet, ctx: &mut Ctx<'_>, lookup: &dyn Fn(&str) -> Option<String>) {
    let mut seen: HashMap<String, Pos> = HashMap::new();
    for (name, raw, dir) in &set.secrets {
        if let Some(first) = seen.get(&name.value) {
            let msg = format!("duplicate secret `{}`: also defined at {first}", name.value);
            ctx.error(&name.pos, msg);
            continue;
        }
        seen.insert(name.value.clone(), name.pos.clone());
        let value = match (&raw.env, &raw.file) {
            (Some(_), Some(_)) | (None, None) => {
                ctx.error(
                    &name.pos,
                    format!(
                        "secret `{}` needs exactly one of `env: VAR` or `file: PATH`",
                        name.value
                    ),
                );
                ctx.failed_secrets.insert(name.value.clone());
                continue;
            }
            _ if ctx.no_env => Vec::new(),
            (Some(var), None) => match lookup(&var.value) {
                Some(v) => v.into_bytes(),
                None => {
                    ctx.error(
                        &var.pos,
                        format!(
                            "environment variable `{}` of secret `{}` is not set",
                            var.value, name.value
                        ),
                    );
                    ctx.failed_secrets.insert(name.value.clone());
                    continue;
                }
            },
            (None, Some(file)) => {
                let path = dir.join(&file.value);
                match std::fs::read(&path) {
                    Ok(mut v) => {
                        if v.ends_with(b"\n") {
                            v.pop();
                            if v.ends_with(b"\r") {
                                v.pop();
                            }
                        }
                        v
                    }
                    Err(e) => {
                        ctx.error(
                            &file.pos,
                            format!(
                                "cannot read secret file `{}` of secret `{}`: {e}",
                                path.display(),
                                name.value
                            ),
                        );
                        ctx.failed_secrets.insert(name.value.clone());
                        continue;
                    }
                }
            }
        };
        ctx.secrets
            .insert(name.value.clone(), Secret::new(name.value.clone(), value));
    }
}

/// Compile everything; `None` when any error was recorded.
pub(crate) fn compile(
    set: RawSet,
    diags: &mut Diagnostics,
    no_env: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<Config> {
    let mut ctx = Ctx {
        diags,
        env: templates::new_environment(),
        texts: &set.texts,
        no_env,
        secrets: HashMap::new(),
        failed_secrets: Default::default(),
    };
    resolve_secrets(&set, &mut ctx, lookup);

    let s = set
        .server
        .as_ref()
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let server = Server {
        listen: s
            .listen
            .as_ref()
            .and_then(|a| ctx.addr(a))
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
        api_listen: s.api_listen.as_ref().and_then(|a| ctx.addr(a)),
        metrics_listen: s.metrics_listen.as_ref().and_then(|a| ctx.addr(a)),
        max_body: ctx.size(&s.max_body, 1024 * 1024),
        trusted_proxies: ctx.cidrs(&s.trusted_proxies),
        shutdown_grace: ctx.duration(&s.shutdown_grace, Duration::from_secs(30)),
        shutdown_delay: ctx.duration(&s.shutdown_delay, Duration::ZERO),
    };
    let queue = compile_queue(set.queue.as_ref(), &mut ctx);
    let h = set
        .history
        .as_ref()
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let history = History {
        retention: ctx.duration(&h.retention, Duration::from_secs(7 * 86_400)),
        max_events: h.max_events.unwrap_or(100_000),
        response_body_limit: ctx.size(&h.response_body_limit, 4096),
    };
    let idem = set
        .idempotency
        .as_ref()
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let idempotency_window = ctx.duration(&idem.window, Duration::from_secs(86_400));
    let r = set
        .reload
        .as_ref()
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let reload = Reload {
        watch: r.watch.unwrap_or(true),
        debounce: ctx.duration(&r.debounce, Duration::from_millis(500)),
        orphan_grace: ctx.duration(&r.orphan_grace, Duration::from_secs(600)),
    };
    let eg = set
        .egress
        .as_ref()
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let egress = Egress {
        allow: ctx.cidrs(&eg.allow),
        deny: ctx.cidrs(&eg.deny),
    };
    let tokens = compile_tokens(&set.tokens, &mut ctx);
    let event_types = compile_event_types(&set.event_types, &mut ctx);
    let defaults =
        super::compile_items::compile_defaults(set.defaults.as_ref().map(|i| &i.value), &mut ctx);

    let (triggers, trigger_ids, trigger_paths) =
        super::compile_items::compile_triggers(&set.triggers, &mut ctx);
    let (actions, action_ids) =
        super::compile_items::compile_actions(&set.actions, &defaults, &mut ctx);
    let (workflows, workflow_ids) = super::compile_items::compile_workflows(
        &set.workflows,
        &actions,
        &action_ids,
        &trigger_ids,
        &defaults,
        &mut ctx,
    );
    let (subscriptions, subscription_ids) =
        super::compile_items::compile_subscriptions(&set.subscriptions, &defaults, &mut ctx);

    let Ctx { env, secrets, .. } = ctx;
    if !diags.errors.is_empty() {
        return None;
    }
    Some(Config {
        server,
        queue,
        history,
        idempotency_window,
        reload,
        secrets,
        tokens,
        event_types,
        event_catalog: set
            .event_catalog
            .as_ref()
            .map(|i| i.value)
            .unwrap_or_default(),
        triggers,
        actions,
        workflows,
        subscriptions,
        egress,
        templates: Templates::new(env),
        sources: set.sources,
        warnings: diags.warnings.clone(),
        trigger_ids,
        trigger_paths,
        action_ids,
        workflow_ids,
        subscription_ids,
    })
}

fn compile_queue(q: Option<&Item<RawQueue>>, ctx: &mut Ctx<'_>) -> Queue {
    let raw = q.map(|i| i.value.clone()).unwrap_or_default();
    let backend = raw.backend.unwrap_or(QueueBackend::Embedded);
    let pos = q.map(|i| i.pos.clone());
    match backend {
        QueueBackend::Embedded => {
            for (field, v) in [("url", &raw.url), ("prefix", &raw.prefix)] {
                if let Some(v) = v {
                    ctx.error(&v.pos, format!("`queue.{field}` is for `backend: redis`; the embedded queue uses `path`"));
                }
            }
        }
        QueueBackend::Redis => {
            if let Some(p) = &raw.path {
                ctx.error(
                    &p.pos,
                    "`queue.path` is for `backend: embedded`; Redis uses `url`",
                );
            }
            match &raw.url {
                None => {
                    if let Some(pos) = &pos {
                        ctx.error(
                            pos,
                            "`backend: redis` needs `url`, e.g. `redis://127.0.0.1:6379/0`",
                        );
                    }
                }
                Some(u)
                    if !ctx.skip(u)
                        && !u.value.starts_with("redis://")
                        && !u.value.starts_with("rediss://") =>
                {
                    ctx.error(
                        &u.pos,
                        format!(
                            "invalid Redis URL `{}`: it must start with redis:// or rediss://",
                            u.value
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }
    Queue {
        backend,
        path: PathBuf::from(
            raw.path
                .map(|p| p.value)
                .unwrap_or_else(|| "./hookyard-data".into()),
        ),
        url: raw.url.map(|u| u.value).unwrap_or_default(),
        prefix: raw
            .prefix
            .map(|p| p.value)
            .unwrap_or_else(|| "hookyard".into()),
        lease: ctx.duration(&raw.lease, Duration::from_secs(60)),
    }
}

fn compile_tokens(items: &[Item<RawToken>], ctx: &mut Ctx<'_>) -> Vec<Token> {
    let mut ids = Ids::new("token");
    let mut out = Vec::new();
    for it in items {
        let t = &it.value;
        if !ids.check(&t.name, ctx.diags) {
            continue;
        }
        if t.scopes.is_empty() {
            ctx.error(
                &it.pos,
                format!(
                    "token `{}` has no scopes; list what it may do",
                    t.name.value
                ),
            );
        }
        if let Some(secret) = ctx.secret(&t.secret) {
            out.push(Token {
                name: t.name.value.clone(),
                secret,
                scopes: t.scopes.clone(),
            });
        }
    }
    out
}

fn compile_event_types(
    items: &[Item<RawEventType>],
    ctx: &mut Ctx<'_>,
) -> HashMap<String, Arc<EventType>> {
    let mut ids = Ids::new("event type");
    let mut out = HashMap::new();
    for it in items {
        let t = &it.value;
        if !ids.check(&t.name, ctx.diags) {
            continue;
        }
        let schema = match &t.schema {
            None => None,
            Some(s) => match jsonschema::validator_for(&s.value) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    ctx.error(
                        &s.pos,
                        format!("invalid JSON Schema for `{}`: {e}", t.name.value),
                    );
                    None
                }
            },
        };
        out.insert(
            t.name.value.clone(),
            Arc::new(EventType {
                name: t.name.value.clone(),
                schema_json: t.schema.as_ref().map(|s| s.value.clone()),
                schema,
            }),
        );
    }
    out
}
