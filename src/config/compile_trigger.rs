//! Compile triggers: event source, verification, mappings, handshakes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::error::Pos;
use super::leaf::{Ctx, Ids};
use super::load::Item;
use super::node::{Sp, StrOr};
use super::raw::*;
use super::runtime::*;
use super::secret::Secret;

/// Requests kept as samples per trigger unless `capture` says otherwise.
const DEFAULT_CAPTURE: u32 = 20;
/// The most samples kept per trigger (each is up to
/// `history.request_body_limit` of body).
const MAX_CAPTURE: u32 = 200;

/// Triggers in order, index by id, index by path.
pub(crate) type CompiledTriggers = (
    Vec<Arc<Trigger>>,
    HashMap<String, usize>,
    HashMap<String, usize>,
);

pub(crate) fn compile_triggers(items: &[Item<RawTrigger>], ctx: &mut Ctx<'_>) -> CompiledTriggers {
    let mut ids = Ids::new("trigger");
    let mut out = Vec::new();
    let mut by_id = HashMap::new();
    let mut by_path: HashMap<String, usize> = HashMap::new();
    let mut path_pos: HashMap<String, Pos> = HashMap::new();
    for it in items {
        let raw = &it.value;
        if !ids.check(&raw.id, ctx.diags) {
            continue;
        }
        let Some(t) = trigger(raw, &it.pos, ctx) else {
            continue;
        };
        let pos = raw
            .path
            .as_ref()
            .map(|p| p.pos.clone())
            .unwrap_or_else(|| raw.id.pos.clone());
        if let Some(first) = path_pos.get(&t.path) {
            ctx.error(
                &pos,
                format!(
                    "trigger `{}`: path `{}` is already served by a trigger at {first}",
                    t.id, t.path
                ),
            );
            continue;
        }
        path_pos.insert(t.path.clone(), pos);
        by_id.insert(t.id.clone(), out.len());
        by_path.insert(t.path.clone(), out.len());
        out.push(Arc::new(t));
    }
    // `/hooks/a/b` would be both trigger `/hooks/a/b` and trigger
    // `/hooks/a` with token `b`: refuse, so a path names one trigger.
    for t in &out {
        let Some((parent, _)) = t.path.rsplit_once('/') else {
            continue;
        };
        let Some(owner) = by_path.get(parent).map(|&i| &out[i]) else {
            continue;
        };
        if owner.verify.url_token.is_some() {
            if let Some(pos) = path_pos.get(&t.path) {
                ctx.error(
                    pos,
                    format!(
                        "trigger `{}`: path `{}` lies under `{}`, where trigger `{}` takes its url_token: give one of them another path",
                        t.id, t.path, owner.path, owner.id
                    ),
                );
            }
        }
    }
    (out, by_id, by_path)
}

fn trigger(raw: &RawTrigger, pos: &Pos, ctx: &mut Ctx<'_>) -> Option<Trigger> {
    let id = raw.id.value.clone();
    let path = match &raw.path {
        None => format!("/hooks/{id}"),
        Some(p) => {
            if !p.value.starts_with("/hooks/") || p.value.len() <= "/hooks/".len() {
                ctx.error(
                    &p.pos,
                    format!(
                        "trigger `{id}`: `path` must start with `/hooks/` (got `{}`)",
                        p.value
                    ),
                );
            }
            p.value.clone()
        }
    };
    let event = match &raw.event {
        None => {
            ctx.error(pos, format!("trigger `{id}` needs `event`: a type name, or `{{ header: … }}` / `{{ path: … }}`"));
            None
        }
        Some(e) => event_source(&id, e, ctx),
    };
    let verify = verify(&id, raw.verify.as_ref(), pos, ctx);
    let idempotency_key = raw.idempotency_key.as_ref().and_then(|k| {
        if let Some(h) = k.value.strip_prefix("header:") {
            Some(KeySource::Header(h.trim().to_owned()))
        } else if k.value.starts_with('$') {
            ctx.jsonpath(k).map(KeySource::Path)
        } else {
            ctx.error(&k.pos, format!("invalid idempotency_key `{}`: write a JSONPath like `$.id` or `header:Idempotency-Key`", k.value));
            None
        }
    });
    // HighLevel sends a unique `webhookId` per delivery: deduplicate on it
    // unless the trigger chose its own key.
    let highlevel = verify
        .signature
        .as_ref()
        .is_some_and(|s| s.preset == SignaturePreset::Highlevel);
    let idempotency_key = match idempotency_key {
        None if raw.idempotency_key.is_none() && highlevel => {
            serde_json_path::JsonPath::parse("$.webhookId")
                .ok()
                .map(KeySource::Path)
        }
        key => key,
    };
    let default_mapping = raw
        .mapping
        .as_ref()
        .map(|m| compile_mapping(&format!("trigger/{id}/mapping"), m, ctx));
    let mut mappings = HashMap::new();
    for (ty, m) in raw.mappings.iter().flatten() {
        mappings.insert(
            ty.clone(),
            compile_mapping(&format!("trigger/{id}/mappings/{ty}"), m, ctx),
        );
    }
    let handshake_secrets = match &raw.handshake_secret {
        Some(s) => ctx.secret(s).into_iter().collect(),
        None => verify
            .signature
            .as_ref()
            .map(|s| s.secrets.clone())
            .unwrap_or_default(),
    };
    if matches!(raw.handshake, Some(Handshake::Meta | Handshake::Zoom))
        && handshake_secrets.is_empty()
        && raw.handshake_secret.is_none()
    {
        ctx.error(pos, format!("trigger `{id}`: this handshake needs `handshake_secret` (or a `verify.signature` secret)"));
    }
    let respond = raw.respond.as_ref().map(|r| {
        let status = r.status.unwrap_or(202);
        if !(100..=599).contains(&status) {
            ctx.error(
                pos,
                format!("trigger `{id}`: `respond.status` {status} is not an HTTP status"),
            );
        }
        Respond {
            status,
            body: r
                .body
                .as_ref()
                .and_then(|b| ctx.template(format!("trigger/{id}/respond"), b)),
            headers: r
                .headers
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    });
    Some(Trigger {
        path,
        event: event?,
        rules: super::verify_rules::compile(&verify),
        verify,
        idempotency_key,
        mapping: default_mapping,
        mappings,
        rate_limit: ctx.rate(&raw.rate_limit),
        capture: raw.capture.unwrap_or(DEFAULT_CAPTURE).min(MAX_CAPTURE) as usize,
        handshake: raw.handshake,
        handshake_secrets,
        respond,
        on_unavailable: on_unavailable(&id, raw.on_unavailable.as_ref(), ctx),
        id,
    })
}

/// `on_unavailable`: 503 (default) or 429, nothing else.
fn on_unavailable(id: &str, raw: Option<&Sp<u16>>, ctx: &mut Ctx<'_>) -> OnUnavailable {
    match raw.map(|s| (s.value, s)) {
        None | Some((503, _)) => OnUnavailable::ServiceUnavailable,
        Some((429, _)) => OnUnavailable::TooManyRequests,
        Some((other, s)) => {
            ctx.error(
                &s.pos,
                format!(
                    "trigger `{id}`: `on_unavailable` must be 503 (default) or 429, not {other}: \
                     write 429 for senders that retry only on 429"
                ),
            );
            OnUnavailable::ServiceUnavailable
        }
    }
}

fn event_source(id: &str, e: &Sp<StrOr<RawEventFrom>>, ctx: &mut Ctx<'_>) -> Option<EventSource> {
    match &e.value {
        StrOr::Str(s) if s.is_empty() => {
            ctx.error(&e.pos, format!("trigger `{id}`: `event` is empty"));
            None
        }
        StrOr::Str(s) => Some(EventSource::Fixed(s.clone())),
        StrOr::Map(f) => {
            let map = f.map.as_ref().map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>()
            });
            let otherwise = f.otherwise.unwrap_or_default();
            match (&f.header, &f.path) {
                (Some(h), None) => Some(EventSource::Header {
                    name: h.clone(),
                    map,
                    otherwise,
                }),
                (None, Some(p)) => ctx.jsonpath(p).map(|path| EventSource::Path {
                    path,
                    map,
                    otherwise,
                }),
                _ => {
                    ctx.error(
                        &e.pos,
                        format!("trigger `{id}`: `event` needs exactly one of `header` or `path`"),
                    );
                    None
                }
            }
        }
    }
}

/// The checks of a trigger. `verify` is required so an open trigger is
/// always a decision someone wrote down (`verify: none`), never an
/// omission (SPEC §11).
fn verify(id: &str, raw: Option<&Sp<StrOr<RawVerify>>>, pos: &Pos, ctx: &mut Ctx<'_>) -> Verify {
    const CHECKS: &str = "`signature`, `bearer`, `basic`, `ip_allow`, `url_token`";
    let Some(raw) = raw else {
        ctx.error(
            pos,
            format!("trigger `{id}` needs `verify`: write `verify: none` for an open trigger, or one or more checks ({CHECKS})"),
        );
        return Verify::default();
    };
    let raw = match &raw.value {
        StrOr::Str(s) if s == "none" => return Verify::default(),
        StrOr::Str(s) => {
            ctx.error(
                &raw.pos,
                format!("trigger `{id}`: `verify: {s}` is not understood: write `verify: none` for an open trigger, or a map of checks ({CHECKS})"),
            );
            return Verify::default();
        }
        StrOr::Map(m) if m.is_empty() => {
            ctx.error(
                &raw.pos,
                format!("trigger `{id}`: `verify` lists no check: write `verify: none` for an open trigger, or add one of {CHECKS}"),
            );
            return Verify::default();
        }
        StrOr::Map(m) => m,
    };
    let signature = raw
        .signature
        .as_ref()
        .map(|s| super::compile_signature::signature(id, s, pos, ctx));
    Verify {
        signature,
        ip_allow: ctx.cidrs(&raw.ip_allow),
        bearer: raw.bearer.as_ref().and_then(|b| ctx.secret(b)),
        basic: raw.basic.as_ref().and_then(|b| {
            ctx.secret(&b.password).map(|password| Basic {
                user: b.user.clone(),
                password,
            })
        }),
        url_token: raw.url_token.as_ref().and_then(|t| url_token(id, t, ctx)),
    }
}

/// The `url_token` secret. Its value is compared with the last path
/// segment as sent, so it must be made of characters a URL carries as
/// they are (RFC 3986 unreserved); anything else could never match.
fn url_token(id: &str, name: &Sp<String>, ctx: &mut Ctx<'_>) -> Option<Secret> {
    let secret = ctx.secret(name)?;
    let url_safe = secret
        .expose()
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !url_safe {
        ctx.error(
            &name.pos,
            format!("trigger `{id}`: the value of url_token secret `{}` may only hold letters, digits, `-`, `.`, `_` and `~` (it is sent as a URL path segment); generate one with e.g. `openssl rand -hex 32`", name.value),
        );
        return None;
    }
    Some(secret)
}

fn compile_mapping(
    prefix: &str,
    raw: &BTreeMap<String, RawMappingSource>,
    ctx: &mut Ctx<'_>,
) -> Mapping {
    let mut fields = Vec::new();
    for (key, src) in raw {
        let output: Vec<String> = key.split('.').map(str::to_owned).collect();
        if output.iter().any(String::is_empty) {
            ctx.error(
                &src.pos,
                format!("invalid mapping key `{key}`: empty part between dots"),
            );
            continue;
        }
        let nested_conflict = raw.keys().any(|other| {
            other.len() > key.len()
                && other.starts_with(key.as_str())
                && other.as_bytes()[key.len()] == b'.'
        });
        if nested_conflict {
            ctx.error(&src.pos, format!("mapping key `{key}` is both a value and an object (another key is nested under it)"));
            continue;
        }
        let field = match &src.value {
            StrOr::Str(p) => {
                let sp = Sp {
                    value: p.clone(),
                    pos: src.pos.clone(),
                };
                ctx.jsonpath(&sp)
                    .map(|path| (Source::Path(path), None, false, None))
            }
            StrOr::Map(m) => {
                let count = [
                    m.path.is_some(),
                    m.header.is_some(),
                    m.query.is_some(),
                    m.template.is_some(),
                    m.value.is_some(),
                ]
                .into_iter()
                .filter(|b| *b)
                .count();
                if count != 1 {
                    ctx.error(&src.pos, format!("mapping `{key}` needs exactly one of `path`, `header`, `query`, `template`, `value`"));
                    continue;
                }
                let source = if let Some(p) = &m.path {
                    ctx.jsonpath(p).map(Source::Path)
                } else if let Some(h) = &m.header {
                    Some(Source::Header(h.clone()))
                } else if let Some(q) = &m.query {
                    Some(Source::Query(q.clone()))
                } else if let Some(t) = &m.template {
                    ctx.template(format!("{prefix}/{key}"), t)
                        .map(Source::Template)
                } else {
                    m.value.clone().map(Source::Value)
                };
                source.map(|s| {
                    (
                        s,
                        m.value_type,
                        m.required.unwrap_or(false),
                        m.default.clone(),
                    )
                })
            }
        };
        if let Some((source, value_type, required, default)) = field {
            fields.push(MappingField {
                key: key.clone(),
                output,
                source,
                value_type,
                required,
                default,
            });
        }
    }
    Mapping { fields }
}
