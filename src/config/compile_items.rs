//! Compile triggers, actions, workflows and subscriptions (see `compile.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::compile_auth::{is_authorization, outbound_auth, target_name};
use super::leaf::{Ctx, Ids};
use super::lease::{Lease, check_timeout};
use super::load::Item;
use super::node::{Sp, StrOr};
use super::raw::*;
use super::runtime::*;
use super::templates::{self, JsonTemplate, Template};

/// `defaults:` compiled once; targets copy what they do not override.
pub(crate) struct Defaults {
    timeout: Duration,
    retry: RetryPolicy,
    signing: Option<Signing>,
    headers: Vec<(String, Template)>,
    rate_limit: Option<crate::config::units::Rate>,
    max_in_flight: Option<u32>,
    ordering: Ordering,
    paused: bool,
    /// `queue.lease`: every target timeout must be below it.
    lease: Lease,
}

fn retry(raw: Option<&RawRetry>, base: &RetryPolicy, ctx: &mut Ctx<'_>) -> RetryPolicy {
    let Some(raw) = raw else { return base.clone() };
    let schedule = match &raw.schedule {
        Some(list) => list
            .iter()
            .filter_map(|s| {
                let d = ctx.duration(&Some(s.clone()), Duration::MAX);
                (d != Duration::MAX).then_some(d)
            })
            .collect(),
        None => base.schedule.clone(),
    };
    RetryPolicy {
        schedule,
        max_retry_after: ctx.duration(&raw.max_retry_after, base.max_retry_after),
    }
}

/// Compile a `signing:` block, checking each secret's format here (a broken
/// `whsec_` or `whsk_` value is an error at the secret's name, not a failed
/// delivery later). Under `--no-env` secrets have no value and are not checked.
fn signing(raw: &RawSigning, ctx: &mut Ctx<'_>) -> Signing {
    let secrets = ctx.secret_list(&raw.secret);
    let scheme = raw.scheme.model();
    for (name, secret) in raw.secret.0.iter().zip(&secrets) {
        let value = secret.expose();
        if value.is_empty() || secret.name != name.value {
            continue;
        }
        if let Err(e) = crate::model::signing::compile_key(scheme, value) {
            ctx.error(&name.pos, format!("signing secret `{}`: {e}", name.value));
        }
    }
    Signing::new(raw.scheme, secrets)
}

fn headers(
    prefix: &str,
    raw: &Option<BTreeMap<String, Sp<String>>>,
    ctx: &mut Ctx<'_>,
) -> Vec<(String, Template)> {
    let mut out = Vec::new();
    for (k, v) in raw.iter().flatten() {
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
        {
            ctx.error(&v.pos, format!("invalid header name `{k}`"));
            continue;
        }
        if let Some(t) = ctx.template(format!("{prefix}/header/{k}"), v) {
            out.push((k.clone(), t));
        }
    }
    out
}

pub(crate) fn compile_defaults(
    raw: Option<&RawDefaults>,
    lease: Lease,
    ctx: &mut Ctx<'_>,
) -> Defaults {
    let base = RetryPolicy::default();
    let empty = RawDefaults::default();
    let raw = raw.unwrap_or(&empty);
    let timeout = ctx.duration(&raw.timeout, Duration::from_secs(30));
    // The effective default is checked where it was written, or, when
    // both are defaults, where the lease was shortened.
    if let Some(pos) = raw.timeout.as_ref().map(|t| &t.pos).or(lease.pos.as_ref()) {
        let pos = pos.clone();
        check_timeout(timeout, &pos, &lease, ctx);
    }
    Defaults {
        timeout,
        retry: retry(raw.retry.as_ref(), &base, ctx),
        signing: raw.signing.as_ref().map(|s| signing(s, ctx)),
        headers: headers("defaults", &raw.headers, ctx),
        rate_limit: ctx.rate(&raw.rate_limit),
        max_in_flight: raw.max_in_flight,
        ordering: raw.ordering.unwrap_or_default(),
        paused: raw.paused.unwrap_or(false),
        lease,
    }
}

/// The delivery fields shared by actions and subscriptions.
struct RawDelivery<'a> {
    signing: &'a Option<RawSigning>,
    timeout: &'a Option<Sp<String>>,
    retry: &'a Option<RawRetry>,
    headers: &'a Option<BTreeMap<String, Sp<String>>>,
    auth: &'a Option<Sp<RawOutboundAuth>>,
    tls: &'a Option<Sp<RawTls>>,
    proxy: &'a Option<Sp<StrOr<RawSecretRef>>>,
    rate_limit: &'a Option<Sp<String>>,
    max_in_flight: Option<u32>,
    ordering: Option<Ordering>,
    paused: Option<bool>,
}

fn delivery(
    prefix: &str,
    raw: RawDelivery<'_>,
    d: &Defaults,
    ctx: &mut Ctx<'_>,
) -> DeliveryOptions {
    let own = headers(prefix, raw.headers, ctx);
    let auth = outbound_auth(prefix, raw.auth.as_ref(), &own, ctx);
    let transport = super::compile_transport::transport(
        &target_name(prefix),
        raw.tls.as_ref(),
        raw.proxy.as_ref(),
        ctx,
    );
    // The target's own headers and credentials win over the defaults.
    let mut merged: Vec<(String, Template)> = d
        .headers
        .iter()
        .filter(|(k, _)| !own.iter().any(|(o, _)| o.eq_ignore_ascii_case(k)))
        .filter(|(k, _)| auth.is_none() || !is_authorization(k))
        .cloned()
        .collect();
    merged.extend(own);
    let timeout = ctx.duration(raw.timeout, d.timeout);
    if let Some(t) = raw.timeout {
        check_timeout(timeout, &t.pos, &d.lease, ctx);
    }
    DeliveryOptions {
        timeout,
        retry: retry(raw.retry.as_ref(), &d.retry, ctx),
        signing: match raw.signing {
            Some(s) => Some(signing(s, ctx)),
            None => d.signing.clone(),
        },
        headers: merged,
        auth,
        transport,
        rate_limit: ctx.rate(raw.rate_limit).or(d.rate_limit),
        max_in_flight: raw.max_in_flight.or(d.max_in_flight),
        ordering: raw.ordering.unwrap_or(d.ordering),
        paused: raw.paused.unwrap_or(d.paused),
    }
}

fn target_url(prefix: &str, raw: &Sp<StrOr<RawSecretRef>>, ctx: &mut Ctx<'_>) -> Option<TargetUrl> {
    match &raw.value {
        StrOr::Map(r) => ctx.secret(&r.secret).map(TargetUrl::Secret),
        StrOr::Str(s) => {
            let sp = Sp {
                value: s.clone(),
                pos: raw.pos.clone(),
            };
            let cut = [s.find("{{"), s.find("{%")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(s.len());
            let literal_prefix = s[..cut].to_owned();
            let checked = ctx.no_env && s.contains("${");
            if !checked {
                let host_start = literal_prefix
                    .strip_prefix("https://")
                    .or_else(|| literal_prefix.strip_prefix("http://"));
                match host_start {
                    Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {
                        if cut == s.len() && url::Url::parse(s).is_err() {
                            ctx.error(&raw.pos, format!("invalid URL `{s}`"));
                        }
                    }
                    _ => ctx.error(
                        &raw.pos,
                        format!("invalid URL `{s}`: it must start with http:// or https:// and a host written literally (not from a template)"),
                    ),
                }
            }
            let template = ctx.template(format!("{prefix}/url"), &sp)?;
            Some(TargetUrl::Template {
                template,
                literal_prefix,
            })
        }
    }
}

fn json_body(name: &str, node: &JsonNode, ctx: &mut Ctx<'_>) -> JsonTemplate {
    match &node.value {
        JsonKind::Null => JsonTemplate::Literal(serde_json::Value::Null),
        JsonKind::Bool(b) => JsonTemplate::Literal((*b).into()),
        JsonKind::Number(n) => JsonTemplate::Literal(serde_json::Value::Number(n.clone())),
        JsonKind::Str(s) => {
            let sp = Sp {
                value: s.clone(),
                pos: node.pos.clone(),
            };
            if let Some((expr, offset)) = templates::single_expression(s) {
                let expr = expr.to_owned();
                match ctx.expr_at(name.to_owned(), &sp, &expr, offset) {
                    Some(e) => JsonTemplate::Expr(e),
                    None => JsonTemplate::Literal(serde_json::Value::Null),
                }
            } else if templates::is_templated(s) {
                match ctx.template(name.to_owned(), &sp) {
                    Some(t) => JsonTemplate::Template(t),
                    None => JsonTemplate::Literal(serde_json::Value::Null),
                }
            } else {
                JsonTemplate::Literal(serde_json::Value::String(s.clone()))
            }
        }
        JsonKind::Array(items) => JsonTemplate::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| json_body(&format!("{name}/{i}"), n, ctx))
                .collect(),
        ),
        JsonKind::Object(fields) => JsonTemplate::Object(
            fields
                .iter()
                .map(|(k, n)| (k.clone(), json_body(&format!("{name}/{k}"), n, ctx)))
                .collect(),
        ),
    }
}

fn action(
    id: &str,
    raw: &RawAction,
    pos: &crate::config::error::Pos,
    d: &Defaults,
    ctx: &mut Ctx<'_>,
) -> Option<Action> {
    let prefix = format!("action/{id}");
    let url = target_url(&prefix, &raw.url, ctx);
    let query = raw
        .query
        .iter()
        .flatten()
        .filter_map(|(k, v)| {
            ctx.template(format!("{prefix}/query/{k}"), v)
                .map(|t| (k.clone(), t))
        })
        .collect();
    let body = raw.body.as_ref().and_then(|b| {
        let count = usize::from(b.json.is_some())
            + usize::from(b.form.is_some())
            + usize::from(b.raw.is_some());
        if count != 1 {
            ctx.error(
                pos,
                format!("action `{id}`: `body` needs exactly one of `json`, `form`, `raw`"),
            );
            return None;
        }
        if let Some(j) = &b.json {
            return Some(Body::Json(json_body(&format!("{prefix}/body"), j, ctx)));
        }
        if let Some(f) = &b.form {
            let fields = f
                .iter()
                .filter_map(|(k, v)| {
                    ctx.template(format!("{prefix}/form/{k}"), v)
                        .map(|t| (k.clone(), t))
                })
                .collect();
            return Some(Body::Form(fields));
        }
        let r = b.raw.as_ref()?;
        let template = ctx.template(format!("{prefix}/body"), &r.template)?;
        Some(Body::Raw {
            template,
            content_type: r
                .content_type
                .clone()
                .unwrap_or_else(|| "text/plain; charset=utf-8".into()),
        })
    });
    let delivery = delivery(
        &prefix,
        RawDelivery {
            signing: &raw.signing,
            timeout: &raw.timeout,
            retry: &raw.retry,
            headers: &raw.headers,
            auth: &raw.auth,
            tls: &raw.tls,
            proxy: &raw.proxy,
            rate_limit: &raw.rate_limit,
            max_in_flight: raw.max_in_flight,
            ordering: raw.ordering,
            paused: raw.paused,
        },
        d,
        ctx,
    );
    Some(Action {
        id: id.to_owned(),
        method: raw.method.unwrap_or_default(),
        url: url?,
        query,
        body,
        strict: raw.strict.unwrap_or(false),
        delivery,
    })
}

pub(crate) fn compile_actions(
    items: &[Item<RawAction>],
    d: &Defaults,
    ctx: &mut Ctx<'_>,
) -> (Vec<Arc<Action>>, HashMap<String, usize>) {
    let mut ids = Ids::new("action");
    let mut out = Vec::new();
    let mut index = HashMap::new();
    for it in items {
        let raw = &it.value;
        if !ids.check(&raw.id, ctx.diags) {
            continue;
        }
        if let Some(a) = action(&raw.id.value, raw, &it.pos, d, ctx) {
            index.insert(a.id.clone(), out.len());
            out.push(Arc::new(a));
        }
    }
    (out, index)
}

pub(crate) fn compile_workflows(
    items: &[Item<RawWorkflow>],
    actions: &[Arc<Action>],
    action_ids: &HashMap<String, usize>,
    trigger_ids: &HashMap<String, usize>,
    d: &Defaults,
    ctx: &mut Ctx<'_>,
) -> (Vec<Arc<Workflow>>, HashMap<String, usize>) {
    let mut ids = Ids::new("workflow");
    let mut out = Vec::new();
    let mut index = HashMap::new();
    for it in items {
        let w = &it.value;
        if !ids.check(&w.id, ctx.diags) {
            continue;
        }
        let id = w.id.value.clone();
        let when = &w.when.value;
        if when.event.is_none() && when.trigger.is_none() {
            ctx.error(&w.when.pos, format!("workflow `{id}`: `when` needs `event` or `trigger` (use `event: \"*\"` for every event)"));
        }
        let events = when
            .event
            .iter()
            .flat_map(|e| e.0.iter())
            .map(|p| EventPattern::parse(&p.value))
            .collect();
        let mut triggers = Vec::new();
        for t in when.trigger.iter().flat_map(|t| t.0.iter()) {
            if trigger_ids.contains_key(&t.value) {
                triggers.push(t.value.clone());
            } else {
                ctx.error(
                    &t.pos,
                    format!("workflow `{id}`: unknown trigger `{}`", t.value),
                );
            }
        }
        let condition = when
            .condition
            .as_ref()
            .and_then(|c| ctx.expr(format!("workflow/{id}/if"), c));
        if w.steps.value.is_empty() {
            ctx.error(&w.steps.pos, format!("workflow `{id}` has no steps"));
        }
        let mut steps = Vec::new();
        for (n, step) in w.steps.value.iter().enumerate() {
            match (&step.action, &step.request) {
                (Some(a), None) => match action_ids.get(&a.value) {
                    Some(&i) => steps.push(Step {
                        action: Arc::clone(&actions[i]),
                        inline: false,
                    }),
                    None => ctx.error(
                        &a.pos,
                        format!("workflow `{id}`: unknown action `{}`", a.value),
                    ),
                },
                (None, Some(req)) => {
                    let step_id = format!("{id}-{}", n + 1);
                    let raw: RawAction = req.clone().into();
                    let pos = req.url.pos.clone();
                    if let Some(a) = action(&step_id, &raw, &pos, d, ctx) {
                        steps.push(Step {
                            action: Arc::new(a),
                            inline: true,
                        });
                    }
                }
                _ => ctx.error(
                    &w.steps.pos,
                    format!(
                        "workflow `{id}` step {}: write exactly one of `action` or `request`",
                        n + 1
                    ),
                ),
            }
        }
        index.insert(id.clone(), out.len());
        out.push(Arc::new(Workflow {
            id,
            mode: w.mode.unwrap_or_default(),
            events,
            triggers,
            condition,
            steps,
        }));
    }
    (out, index)
}

pub(crate) fn compile_subscriptions(
    items: &[Item<RawSubscription>],
    d: &Defaults,
    ctx: &mut Ctx<'_>,
) -> (Vec<Arc<Subscription>>, HashMap<String, usize>) {
    let mut ids = Ids::new("subscription");
    let mut out = Vec::new();
    let mut index = HashMap::new();
    for it in items {
        let s = &it.value;
        if !ids.check(&s.id, ctx.diags) {
            continue;
        }
        let id = s.id.value.clone();
        let prefix = format!("subscription/{id}");
        if s.events.0.is_empty() {
            ctx.error(&it.pos, format!("subscription `{id}` lists no `events`"));
        }
        let url = target_url(&prefix, &s.url, ctx);
        let condition = s
            .condition
            .as_ref()
            .and_then(|c| ctx.expr(format!("{prefix}/if"), c));
        let delivery = delivery(
            &prefix,
            RawDelivery {
                signing: &s.signing,
                timeout: &s.timeout,
                retry: &s.retry,
                headers: &s.headers,
                auth: &s.auth,
                tls: &s.tls,
                proxy: &s.proxy,
                rate_limit: &s.rate_limit,
                max_in_flight: s.max_in_flight,
                ordering: s.ordering,
                paused: s.paused,
            },
            d,
            ctx,
        );
        let Some(url) = url else { continue };
        index.insert(id.clone(), out.len());
        out.push(Arc::new(Subscription {
            id,
            url,
            events: s
                .events
                .0
                .iter()
                .map(|p| EventPattern::parse(&p.value))
                .collect(),
            verify: s.verify.unwrap_or(false),
            condition,
            delivery,
        }));
    }
    (out, index)
}

pub(crate) use super::compile_trigger::compile_triggers;
