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

use super::error::{Diagnostics, Pos};
pub use super::leaf::parse_cidr;
use super::leaf::{Ctx, Ids};
use super::load::{Item, RawSet};
use super::node::Sp;
use super::raw::*;
use super::runtime::*;
use super::secret::{self, Secret};
use super::templates::{self, Templates};

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
                Some(v) if v.is_empty() => {
                    ctx.error(
                        &var.pos,
                        format!(
                            "environment variable `{}` of secret `{}` is set but empty: give it the secret's value (an empty key would accept anything signed with no key)",
                            var.value, name.value
                        ),
                    );
                    ctx.failed_secrets.insert(name.value.clone());
                    continue;
                }
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
                    Ok(bytes) => {
                        let value = secret::file_value(bytes);
                        if value.is_empty() {
                            ctx.error(
                                &file.pos,
                                format!(
                                    "secret file `{}` of secret `{}` is empty: write the secret's value into it (an empty key would accept anything signed with no key)",
                                    path.display(),
                                    name.value
                                ),
                            );
                            ctx.failed_secrets.insert(name.value.clone());
                            continue;
                        }
                        value
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
        header_timeout: positive(&mut ctx, "header_timeout", &s.header_timeout, 10),
        body_timeout: positive(&mut ctx, "body_timeout", &s.body_timeout, 30),
        idle_timeout: positive(&mut ctx, "idle_timeout", &s.idle_timeout, 60),
        max_connections: max_connections(&mut ctx, s.max_connections.as_ref()),
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
        request_body: h.request_body.unwrap_or_default(),
        request_body_limit: ctx.size(&h.request_body_limit, 16 * 1024),
    };
    let idem = set
        .idempotency
        .as_ref()
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let idempotency_window = ctx.duration(&idem.window, Duration::from_secs(86_400));
    let rd = set
        .render
        .as_ref()
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let max_output = ctx.size(&rd.max_output, templates::DEFAULT_MAX_OUTPUT as u64);
    if let (Some(s), 0) = (&rd.max_output, max_output) {
        ctx.error(
            &s.pos,
            "render.max_output of 0 would refuse every template: give a size, e.g. 1MiB (default)",
        );
    }
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
        proxy: super::compile_transport::egress_proxy(eg.proxy.as_ref(), &mut ctx),
    };
    let telemetry = super::telemetry::compile(set.telemetry.as_ref(), &mut ctx);
    let tokens = compile_tokens(&set.tokens, &mut ctx);
    let event_types = compile_event_types(&set.event_types, &mut ctx);
    let lease = super::lease::Lease {
        value: queue.lease,
        pos: set
            .queue
            .as_ref()
            .and_then(|q| q.value.lease.as_ref())
            .map(|l| l.pos.clone()),
    };
    let defaults = super::compile_items::compile_defaults(
        set.defaults.as_ref().map(|i| &i.value),
        lease,
        &mut ctx,
    );

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

    // Merge tags naming no field of their events (warnings only).
    super::tags::check(&set, ctx.diags);
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
        telemetry,
        templates: Templates::new(env, usize::try_from(max_output).unwrap_or(usize::MAX)),
        sources: set.sources,
        warnings: diags.warnings.clone(),
        trigger_ids,
        trigger_paths,
        action_ids,
        workflow_ids,
        subscription_ids,
    })
}

/// A `server.*_timeout`: zero would close every connection at once, so it
/// is refused where it is written.
fn positive(ctx: &mut Ctx<'_>, key: &str, s: &Option<Sp<String>>, default_secs: u64) -> Duration {
    let value = ctx.duration(s, Duration::from_secs(default_secs));
    if let (Some(s), true) = (s, value.is_zero()) {
        ctx.error(
            &s.pos,
            format!("server.{key} must be longer than 0s (default {default_secs}s)"),
        );
    }
    value
}

/// `server.max_connections`: 0 would never accept a connection.
fn max_connections(ctx: &mut Ctx<'_>, s: Option<&Sp<u32>>) -> u32 {
    match s {
        None => 10_000,
        Some(s) if s.value == 0 => {
            ctx.error(
                &s.pos,
                "server.max_connections must be at least 1 (default 10000)",
            );
            10_000
        }
        Some(s) => s.value,
    }
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
            if let Some(v) = &raw.allow_eviction {
                ctx.error(
                    &v.pos,
                    "`queue.allow_eviction` is for `backend: redis`; the embedded queue evicts nothing",
                );
            }
            // An error, not a warning: whoever sets it expects replicated
            // events, and the embedded queue has no replicas to wait for.
            let ack_pos = [
                raw.replicas_ack.as_ref().map(|v| &v.pos),
                raw.replicas_ack_timeout.as_ref().map(|v| &v.pos),
            ];
            if let Some(p) = &raw.partitions {
                ctx.error(
                    &p.pos,
                    "`queue.partitions` is for `backend: redis` with a `redis+cluster://` url; \
                     the embedded queue is one file",
                );
            }
            for (field, pos) in ["replicas_ack", "replicas_ack_timeout"].iter().zip(ack_pos) {
                if let Some(pos) = pos {
                    ctx.error(
                        pos,
                        format!(
                            "`queue.{field}` is for `backend: redis`; the embedded queue has no \
                             replicas to wait for (its events are committed to local disk)"
                        ),
                    );
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
                Some(u) if !ctx.skip(u) => {
                    // The message names what is wrong, never the URL: it
                    // may hold a password.
                    match super::redis_address::Address::parse(&u.value) {
                        Err(e) => {
                            ctx.error(&u.pos, format!("invalid Redis URL in `queue.url`: {e}"))
                        }
                        Ok(super::redis_address::Address::Cluster(_)) => {
                            if let Some(p) = &raw.prefix
                                && p.value.contains(['{', '}'])
                            {
                                ctx.error(
                                    &p.pos,
                                    "`queue.prefix` may not hold `{` or `}` on a Redis Cluster: \
                                     hookyard puts each partition's hash tag in braces after it, \
                                     and a brace of the prefix would put every partition in one \
                                     slot",
                                );
                            }
                        }
                        Ok(_) => {
                            if let Some(p) = &raw.partitions {
                                ctx.error(
                                    &p.pos,
                                    "`queue.partitions` is for a `redis+cluster://` url: one \
                                     server and a Sentinel-watched master keep one partition \
                                     (one script per batch); remove it",
                                );
                            }
                        }
                    }
                }
                Some(_) => {}
            }
            if let Some(p) = &raw.partitions
                && !(1..=MAX_PARTITIONS).contains(&p.value)
            {
                ctx.error(
                    &p.pos,
                    format!(
                        "queue.partitions must be from 1 to {MAX_PARTITIONS} (default 16): \
                         more partitions than slots' worth of masters only add work"
                    ),
                );
            }
        }
    }
    let url = raw
        .url
        .as_ref()
        .map(|u| u.value.clone())
        .unwrap_or_default();
    let replicas_ack_timeout = ctx.duration(&raw.replicas_ack_timeout, Duration::from_secs(1));
    if let Some(t) = &raw.replicas_ack_timeout
        && (replicas_ack_timeout < Duration::from_millis(1)
            || replicas_ack_timeout > MAX_REPLICAS_ACK_TIMEOUT)
    {
        ctx.error(
            &t.pos,
            "queue.replicas_ack_timeout must be from 1ms to 2s (default 1s): a sender waiting \
             on it must get its answer within 5s, and two batches can wait in turn (a WAIT \
             timeout of 0 would wait forever)",
        );
    }
    Queue {
        backend,
        path: PathBuf::from(
            raw.path
                .map(|p| p.value)
                .unwrap_or_else(|| "./hookyard-data".into()),
        ),
        url: url.clone(),
        prefix: raw
            .prefix
            .map(|p| p.value)
            .unwrap_or_else(|| "hookyard".into()),
        lease: ctx.duration(&raw.lease, Duration::from_secs(60)),
        allow_eviction: raw.allow_eviction.is_some_and(|a| a.value),
        replicas_ack: raw.replicas_ack.map(|n| n.value).unwrap_or(0),
        replicas_ack_timeout,
        partitions: match super::redis_address::Address::parse(&url) {
            Ok(super::redis_address::Address::Cluster(_)) => raw
                .partitions
                .map(|p| p.value.clamp(1, MAX_PARTITIONS) as u16)
                .unwrap_or(DEFAULT_PARTITIONS),
            _ => 1,
        },
    }
}

/// `queue.partitions` on a cluster when not set, and its largest value.
const DEFAULT_PARTITIONS: u16 = 16;
const MAX_PARTITIONS: u32 = 1024;

/// The longest `queue.replicas_ack_timeout`: an ingestion must be answered
/// within 5 s (SPEC §3), and Redis blocks the ingest connection during a
/// WAIT, so the second of the two batches in flight waits for the first's.
const MAX_REPLICAS_ACK_TIMEOUT: Duration = Duration::from_secs(2);

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

#[cfg(test)]
#[path = "compile_queue_tests.rs"]
mod queue_tests;
