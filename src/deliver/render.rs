//! Rendering a delivery: the template context of SPEC §4 and the HTTP
//! request (method, URL, headers, body) of an action or a subscription.
//! Pure: no I/O, no clock.
//!
//! Two template environments are cloned from the config's shared one (see
//! [`Envs`]), because the shared one is lenient in a way that does not fit
//! delivery:
//! - `lenient` uses [`UndefinedBehavior::Chainable`]: a missing field — even
//!   `contact.email` when `contact` itself is missing — renders empty, as
//!   SPEC §5 asks (minijinja's default would fail on the attribute access).
//! - `strict` uses [`UndefinedBehavior::SemiStrict`]: every template is
//!   rendered here first; an `UndefinedError` means a merge tag named a
//!   missing field (`default(...)` and `is defined` still work). Then the
//!   caller counts `hookyard_template_missing_total` and, unless the action
//!   is `strict: true`, renders again leniently.
//!
//! URL injection: both environments get a formatter that percent-encodes
//! every value printed into a template named `…/url` (all URL templates
//! are compiled under that name), using the RFC 3986 "unreserved" set, so
//! event data can add neither `/`, `?`, `#`, `@` nor `%`-escapes to the
//! path or query; a value that is exactly `.` or `..` is refused (URL
//! parsing would treat it as a path step even when percent-encoded).
//! Values marked safe pass unencoded: that is how `secrets.*` are put in
//! the context (operator values, e.g. a secret path with slashes), and how
//! an operator can opt out explicitly with `| safe`. The scheme, host and
//! port are then checked against the template's literal prefix
//! ([`send::url_safety`]). Query templates are appended with
//! `application/x-www-form-urlencoded` encoding.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;
use url::form_urlencoded;

use crate::config::templates;
use crate::config::{
    Action, Body, DeliveryOptions, JsonTemplate, Method, Secret, Subscription, TargetUrl, Template,
    Templates,
};
use crate::model::ApiSubscription;
use crate::model::{Event, StepResponse};
use crate::send::{self, UnsafeRequest};

/// Everything but RFC 3986 unreserved characters is encoded.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Variable an expression template stores its value in (the wrapper of
/// `config::templates::expression_wrapper`; pinned by a unit test).
const VALUE_VAR: &str = "__value";

/// The two delivery environments (see the module docs).
pub struct Envs {
    lenient: Environment<'static>,
    strict: Environment<'static>,
    /// `render.max_output` of the config they were cloned from.
    max_output: usize,
}

impl Envs {
    /// Clone the config's environment twice with delivery settings. Done
    /// once per config snapshot (templates are shared, the clone is cheap).
    pub fn new(templates: &Templates) -> Envs {
        let mut lenient = templates.env().clone();
        lenient.set_undefined_behavior(UndefinedBehavior::Chainable);
        lenient.set_formatter(url_formatter);
        let mut strict = templates.env().clone();
        strict.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        strict.set_formatter(url_formatter);
        Envs {
            lenient,
            strict,
            max_output: templates.max_output(),
        }
    }
}

fn url_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    if value.is_undefined() {
        // A custom formatter bypasses minijinja's own check for printing
        // undefined values, so do it here.
        return match state.undefined_behavior() {
            UndefinedBehavior::Strict | UndefinedBehavior::SemiStrict => {
                Err(Error::from(ErrorKind::UndefinedError))
            }
            _ => Ok(()),
        };
    }
    if !state.name().ends_with("/url") || value.is_safe() {
        return minijinja::escape_formatter(out, state, value);
    }
    let text = value.to_string();
    if text == "." || text == ".." {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "a value rendered into the URL is `.` or `..` (a path traversal); refused",
        ));
    }
    out.write_str(&utf8_percent_encode(&text, URL_VALUE).to_string())?;
    Ok(())
}

/// Why a delivery could not be rendered. Permanent: the same job renders
/// the same way next time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("template {name} failed: {message}")]
    Template { name: String, message: String },
    #[error(
        "template {name} stopped: {message}; make the template smaller, or raise render.max_output"
    )]
    Limit { name: String, message: String },
    #[error(
        "template {0} refers to a field the event does not have, and the action is `strict: true`; \
         fix the merge tag or give it a `default(...)`"
    )]
    Missing(String),
    #[error("the rendered URL is invalid: {0}")]
    BadUrl(String),
    #[error("{0}")]
    Unsafe(#[from] UnsafeRequest),
}

/// A rendered request, before signing and the X-Hookyard-* headers.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub method: reqwest::Method,
    pub url: Url,
    /// What history shows as the URL: `secret:<name>`, or the URL with
    /// secret values redacted.
    pub url_display: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// A merge tag named a missing field (rendered empty).
    pub missing: bool,
}

/// The template context: the event's `data` fields at top level, `event`
/// {id, type, timestamp, source}, `steps.<id>.response` and `secrets`.
pub fn context(
    event: &Event,
    steps: &BTreeMap<String, StepResponse>,
    secrets: &HashMap<String, Secret>,
) -> Value {
    let mut top: BTreeMap<String, Value> = BTreeMap::new();
    if let serde_json::Value::Object(fields) = &event.data {
        for (k, v) in fields {
            top.insert(k.clone(), Value::from_serialize(v));
        }
    }
    top.insert(
        "event".into(),
        Value::from_serialize(serde_json::json!({
            "id": event.id,
            "type": event.event_type,
            "timestamp": event.timestamp.to_string(),
            "source": event.source,
        })),
    );
    let steps: BTreeMap<&str, serde_json::Value> = steps
        .iter()
        .map(|(id, r)| (id.as_str(), serde_json::json!({ "response": r })))
        .collect();
    top.insert("steps".into(), Value::from_serialize(&steps));
    let secrets: BTreeMap<String, Value> = secrets
        .iter()
        .filter_map(|(name, s)| {
            s.expose_str()
                .map(|v| (name.clone(), Value::from_safe_string(v.to_owned())))
        })
        .collect();
    top.insert("secrets".into(), Value::from(secrets));
    Value::from(top)
}

/// The template context, built when a template first needs it: most
/// subscriptions' URLs and headers are plain text and never do, and
/// building it copies the event's data.
pub struct LazyContext<'a> {
    build: &'a dyn Fn() -> Value,
    value: std::cell::OnceCell<Value>,
}

impl<'a> LazyContext<'a> {
    pub fn new(build: &'a dyn Fn() -> Value) -> LazyContext<'a> {
        LazyContext {
            build,
            value: std::cell::OnceCell::new(),
        }
    }

    /// A context built already.
    #[cfg(test)]
    pub fn ready(value: Value) -> LazyContext<'static> {
        fn unused() -> Value {
            Value::UNDEFINED
        }
        let cell = std::cell::OnceCell::new();
        let _ = cell.set(value);
        LazyContext {
            build: &unused,
            value: cell,
        }
    }

    pub fn get(&self) -> &Value {
        self.value.get_or_init(|| (self.build)())
    }
}

/// Renders templates of one job, remembering whether a field was missing.
pub struct Renderer<'a> {
    envs: &'a Envs,
    ctx: &'a LazyContext<'a>,
    strict: bool,
    pub missing: bool,
}

impl<'a> Renderer<'a> {
    pub fn new(envs: &'a Envs, ctx: &'a LazyContext<'a>, strict: bool) -> Renderer<'a> {
        Renderer {
            envs,
            ctx,
            strict,
            missing: false,
        }
    }

    fn template_error(name: &str, e: &Error) -> RenderError {
        let (name, message) = (name.to_owned(), e.to_string());
        if templates::is_limit(e) {
            RenderError::Limit { name, message }
        } else {
            RenderError::Template { name, message }
        }
    }

    /// Render a string template.
    pub fn template(&mut self, t: &Template) -> Result<String, RenderError> {
        // Most URLs and headers are plain text: skip the engine. (A trailing
        // newline is left to it, which drops one.)
        if !crate::config::templates::is_templated(&t.source) && !t.source.ends_with('\n') {
            return Ok(t.source.clone());
        }
        let strict = self
            .envs
            .strict
            .get_template(&t.name)
            .map_err(|e| Self::template_error(&t.name, &e))?;
        let max = self.envs.max_output;
        match templates::render_bounded(&strict, self.ctx.get(), max) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == ErrorKind::UndefinedError => {}
            Err(e) => return Err(Self::template_error(&t.name, &e)),
        }
        self.missing = true;
        if self.strict {
            return Err(RenderError::Missing(t.name.clone()));
        }
        let lenient = self
            .envs
            .lenient
            .get_template(&t.name)
            .map_err(|e| Self::template_error(&t.name, &e))?;
        templates::render_bounded(&lenient, self.ctx.get(), max)
            .map_err(|e| Self::template_error(&t.name, &e))
    }

    /// Render a JSON body template (like `JsonTemplate::render`, but a leaf
    /// expression whose value is missing counts as missing).
    pub fn json(&mut self, j: &JsonTemplate) -> Result<serde_json::Value, RenderError> {
        Ok(match j {
            JsonTemplate::Literal(v) => v.clone(),
            JsonTemplate::Template(t) => serde_json::Value::String(self.template(t)?),
            JsonTemplate::Expr(e) => {
                let tmpl = self
                    .envs
                    .lenient
                    .get_template(&e.name)
                    .map_err(|err| Self::template_error(&e.name, &err))?;
                let captured = tmpl
                    .render_captured(self.ctx.get())
                    .map_err(|err| Self::template_error(&e.name, &err))?;
                let v = captured.state().lookup(VALUE_VAR).unwrap_or_default();
                templates::value_fits(&v, self.envs.max_output)
                    .map_err(|err| Self::template_error(&e.name, &err))?;
                if v.is_undefined() {
                    self.missing = true;
                    if self.strict {
                        return Err(RenderError::Missing(e.name.clone()));
                    }
                    serde_json::Value::Null
                } else if v.is_none() {
                    serde_json::Value::Null
                } else {
                    serde_json::to_value(&v).map_err(|err| RenderError::Template {
                        name: e.name.clone(),
                        message: err.to_string(),
                    })?
                }
            }
            JsonTemplate::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| self.json(i))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(fields) => {
                let mut map = serde_json::Map::new();
                for (k, v) in fields {
                    map.insert(k.clone(), self.json(v)?);
                }
                serde_json::Value::Object(map)
            }
        })
    }

    /// The target URL, checked against its template's literal origin.
    pub fn url(&mut self, url: &TargetUrl) -> Result<(Url, String), RenderError> {
        match url {
            TargetUrl::Secret(secret) => {
                let text = secret.expose_str().unwrap_or_default();
                let parsed = Url::parse(text).map_err(|_| {
                    RenderError::BadUrl(format!(
                        "the URL in secret `{}` does not parse",
                        secret.name
                    ))
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(UnsafeRequest::Scheme.into());
                }
                Ok((parsed, format!("secret:{}", secret.name)))
            }
            TargetUrl::Template { template, .. } => {
                let text = self.template(template)?;
                let parsed = Url::parse(&text).map_err(|e| RenderError::BadUrl(format!("{e}")))?;
                send::url_safety(&template.source, &parsed)?;
                let display = parsed.to_string();
                Ok((parsed, display))
            }
        }
    }

    /// Render `options.headers` (templates), then add `options.auth`'s.
    pub fn headers(&mut self, d: &DeliveryOptions) -> Result<Vec<(String, String)>, RenderError> {
        let mut out = Vec::with_capacity(d.headers.len() + 1);
        for (name, t) in &d.headers {
            out.push((name.clone(), self.template(t)?));
        }
        super::auth::apply(d.auth.as_ref(), &mut out);
        Ok(out)
    }
}

fn method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

fn has_header(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// Render an action's request.
pub fn action<'a>(
    envs: &'a Envs,
    a: &Action,
    ctx: &'a LazyContext<'a>,
) -> Result<Rendered, RenderError> {
    let mut r = Renderer::new(envs, ctx, a.strict);
    let (mut url, _) = r.url(&a.url)?;
    if !a.query.is_empty() {
        let mut values = Vec::with_capacity(a.query.len());
        for (k, t) in &a.query {
            values.push((k.as_str(), r.template(t)?));
        }
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &values {
            pairs.append_pair(k, v);
        }
    }
    let url_display = match &a.url {
        TargetUrl::Secret(s) => format!("secret:{}", s.name),
        TargetUrl::Template { .. } => url.to_string(),
    };
    let mut headers = r.headers(&a.delivery)?;
    let (body, content_type) = match &a.body {
        None => (Bytes::new(), None),
        Some(Body::Json(j)) => {
            let v = r.json(j)?;
            let bytes = serde_json::to_vec(&v).map_err(|e| RenderError::Template {
                name: format!("action/{}/body", a.id),
                message: e.to_string(),
            })?;
            (Bytes::from(bytes), Some("application/json".to_owned()))
        }
        Some(Body::Form(fields)) => {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            for (k, t) in fields {
                let v = r.template(t)?;
                ser.append_pair(k, &v);
            }
            (
                Bytes::from(ser.finish()),
                Some("application/x-www-form-urlencoded".to_owned()),
            )
        }
        Some(Body::Raw {
            template,
            content_type,
        }) => (
            Bytes::from(r.template(template)?),
            Some(content_type.clone()),
        ),
    };
    if let Some(ct) = content_type {
        if !has_header(&headers, "content-type") {
            headers.push(("Content-Type".to_owned(), ct));
        }
    }
    send::check_headers(&headers)?;
    Ok(Rendered {
        method: method(a.method),
        url,
        url_display,
        headers,
        body,
        missing: r.missing,
    })
}

/// The standard envelope `{id, type, timestamp, source, data}`.
pub fn envelope(event: &Event) -> Bytes {
    // `Event` is exactly the envelope, in that field order, with the
    // timestamp in RFC 3339.
    Bytes::from(crate::model::envelope::event(event))
}

/// Render a YAML subscription's request: POST of the envelope.
pub fn subscription<'a>(
    envs: &'a Envs,
    s: &Subscription,
    event: &Event,
    ctx: &'a LazyContext<'a>,
) -> Result<Rendered, RenderError> {
    let mut r = Renderer::new(envs, ctx, false);
    let (url, url_display) = r.url(&s.url)?;
    let mut headers = r.headers(&s.delivery)?;
    if !has_header(&headers, "content-type") {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    send::check_headers(&headers)?;
    Ok(Rendered {
        method: reqwest::Method::POST,
        url,
        url_display,
        headers,
        body: envelope(event),
        missing: r.missing,
    })
}

/// An API subscription's request: literal URL and headers, the envelope.
pub fn api_subscription(s: &ApiSubscription, event: &Event) -> Result<Rendered, RenderError> {
    let mut headers = s.headers.clone();
    if !has_header(&headers, "content-type") {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    send::check_headers(&headers)?;
    Ok(Rendered {
        method: reqwest::Method::POST,
        url: s.url.clone(),
        url_display: s.url.to_string(),
        headers,
        body: envelope(event),
        missing: false,
    })
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
