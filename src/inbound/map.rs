//! Mapping: a verified request's body, headers and query → the event's
//! `data` (and optionally its timestamp), per the trigger's `mapping`.
//!
//! Only a [`Verified`] request can be parsed ([`ParsedRequest::parse`]), so
//! nothing here ever sees unchecked bytes. Everything is a pure function of
//! the request and the compiled mapping; failures are 422s that name the
//! field at fault.
//!
//! Rules (SPEC §3): a JSONPath matching one node gives its value, several
//! an array, none "missing"; a missing field takes its `default`, is a 422
//! when `required`, else is absent (never null). `type` converts strings
//! that parse as the wanted number or boolean; anything else that does not
//! fit is a 422. Dotted keys build nested objects. A top-level `timestamp`
//! key sets the event's timestamp (RFC 3339 or unix seconds) and is not
//! copied into `data`. A template that renders to the empty string counts as
//! missing (its inputs were absent).

use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use jiff::Timestamp;
use serde_json::{Map, Number, Value};

use super::errors::InboundError;
use super::verify::Verified;
use crate::config::{Mapping, MappingField, Source, Templates, ValueType};

/// A verified request, parsed: what mappings, event-type sources and
/// idempotency keys read.
#[derive(Debug)]
pub struct ParsedRequest<'a> {
    /// The body: parsed JSON, or an object of form fields.
    pub body: Value,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// Query parameters (a repeated name gives an array of its values).
    pub query: Map<String, Value>,
}

impl<'a> ParsedRequest<'a> {
    /// Parse the body of a verified request (JSON, or form-urlencoded when
    /// the content type says so; an empty body is `{}`), and its query.
    pub fn parse(verified: Verified<'a>, query: Option<&str>) -> Result<Self, InboundError> {
        let headers = verified.headers();
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let body = parse_body(verified.body(), content_type)?;
        Ok(ParsedRequest {
            body,
            headers,
            query: form_object(query.unwrap_or("").as_bytes()),
        })
    }

    /// The first value of header `name` as text, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The template context `{body, headers, query}` (header names
    /// lowercase; a repeated header's values joined with `, `).
    pub fn template_context(&self) -> minijinja::Value {
        let mut headers = Map::new();
        for name in self.headers.keys() {
            let values: Vec<&str> = self
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if !values.is_empty() {
                headers.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
            }
        }
        minijinja::context! {
            body => minijinja::Value::from_serialize(&self.body),
            headers => minijinja::Value::from_serialize(&headers),
            query => minijinja::Value::from_serialize(&self.query),
        }
    }
}

/// Parse a body: form-urlencoded by content type, otherwise JSON. Empty (or
/// whitespace-only) bodies are `{}`, as many senders post nothing on pings.
pub fn parse_body(bytes: &[u8], content_type: &str) -> Result<Value, InboundError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Ok(Value::Object(form_object(bytes)));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        InboundError::BadBody(format!(
            "body is not valid JSON ({e}); send JSON or application/x-www-form-urlencoded"
        ))
    })
}

/// `a=1&b=2&a=3` → `{"a": ["1", "3"], "b": "2"}`.
pub fn form_object(bytes: &[u8]) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        let v = Value::String(v.into_owned());
        match out.get_mut(k.as_ref()) {
            None => {
                out.insert(k.into_owned(), v);
            }
            Some(Value::Array(items)) => items.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
        }
    }
    out
}

/// The result of a mapping: the event's data and, when mapped, its timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub data: Value,
    pub timestamp: Option<Timestamp>,
}

/// Apply `mapping`, or pass the body through (moved, not copied) when
/// `None`. Consumes the request: mapping is its last reader.
pub fn apply(
    mapping: Option<&Mapping>,
    req: ParsedRequest<'_>,
    templates: &Templates,
) -> Result<Mapped, InboundError> {
    let Some(mapping) = mapping else {
        return Ok(Mapped {
            data: req.body,
            timestamp: None,
        });
    };
    let req = &req;
    // Built at most once, and only when a template needs it.
    let mut ctx: Option<minijinja::Value> = None;
    let mut data = Map::new();
    let mut timestamp = None;
    for field in &mapping.fields {
        let Some(value) = field_value(field, req, templates, &mut ctx)? else {
            continue;
        };
        if field.output.len() == 1 && field.output[0] == "timestamp" {
            timestamp = Some(parse_timestamp(&value).ok_or_else(|| {
                InboundError::Mapping(format!(
                    "mapped `timestamp` is {value}, which is neither an RFC 3339 time nor unix seconds"
                ))
            })?);
            continue;
        }
        insert_nested(&mut data, &field.output, value).map_err(InboundError::Mapping)?;
    }
    Ok(Mapped {
        data: Value::Object(data),
        timestamp,
    })
}

/// One field's value: found, converted, defaulted; `None` when absent.
fn field_value(
    field: &MappingField,
    req: &ParsedRequest<'_>,
    templates: &Templates,
    ctx: &mut Option<minijinja::Value>,
) -> Result<Option<Value>, InboundError> {
    let found = match &field.source {
        Source::Path(path) => {
            let nodes = path.query(&req.body).all();
            match nodes.len() {
                0 => None,
                1 => Some(nodes[0].clone()),
                _ => Some(Value::Array(nodes.into_iter().cloned().collect())),
            }
        }
        Source::Header(name) => req.header(name).map(|s| Value::String(s.to_owned())),
        Source::Query(name) => req.query.get(name).cloned(),
        Source::Template(template) => {
            let ctx = ctx.get_or_insert_with(|| req.template_context());
            match template.render(templates, &*ctx) {
                Ok(text) => (!text.is_empty()).then_some(Value::String(text)),
                // `body.customer.first_name` without a `customer`: the
                // template's inputs are absent, so the field is missing
                // (absent, its default, or a 422 when required), not an
                // error refusing the whole request.
                Err(e) if e.kind() == minijinja::ErrorKind::UndefinedError => None,
                Err(e) => {
                    return Err(InboundError::Mapping(format!(
                        "mapping `{}`: template failed: {e}",
                        field.key
                    )));
                }
            }
        }
        Source::Value(v) => Some(v.clone()),
    };
    // A null with a wanted type has nothing to convert: treat as missing.
    let found = match (found, field.value_type) {
        (Some(Value::Null), Some(_)) => None,
        (found, _) => found,
    };
    match found {
        Some(v) => match field.value_type {
            Some(ty) => convert(v, ty)
                .map(Some)
                .map_err(|why| InboundError::Mapping(format!("mapping `{}`: {why}", field.key))),
            None => Ok(Some(v)),
        },
        None => {
            if let Some(default) = &field.default {
                Ok(Some(default.clone()))
            } else if field.required {
                Err(InboundError::Mapping(format!(
                    "required field `{}` is missing from the request",
                    field.key
                )))
            } else {
                Ok(None)
            }
        }
    }
}

/// Convert `v` to `ty`: strings that parse as the wanted number or boolean
/// are converted; a template's JSON text becomes an object or array.
pub fn convert(v: Value, ty: ValueType) -> Result<Value, String> {
    let describe = |v: &Value| {
        let text = v.to_string();
        if text.len() > 60 {
            format!("{}…", text.chars().take(60).collect::<String>())
        } else {
            text
        }
    };
    match (ty, v) {
        (ValueType::String, Value::String(s)) => Ok(Value::String(s)),
        (ValueType::String, v @ (Value::Number(_) | Value::Bool(_))) => {
            Ok(Value::String(v.to_string()))
        }
        (ValueType::Number, Value::Number(n)) => Ok(Value::Number(n)),
        (ValueType::Number, Value::String(s)) => parse_number(s.trim())
            .ok_or_else(|| format!("{} is not a number", describe(&Value::String(s)))),
        (ValueType::Integer, Value::Number(n)) => {
            integer_of(&n).ok_or_else(|| format!("{n} is not an integer"))
        }
        (ValueType::Integer, Value::String(s)) => parse_number(s.trim())
            .and_then(|v| v.as_number().and_then(integer_of))
            .ok_or_else(|| format!("{} is not an integer", describe(&Value::String(s)))),
        (ValueType::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
        (ValueType::Boolean, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{} is not a boolean", describe(&Value::String(s)))),
        },
        (ValueType::Object, v @ Value::Object(_)) | (ValueType::Array, v @ Value::Array(_)) => {
            Ok(v)
        }
        (ValueType::Object | ValueType::Array, Value::String(s)) => {
            match serde_json::from_str::<Value>(&s) {
                Ok(v @ Value::Object(_)) if ty == ValueType::Object => Ok(v),
                Ok(v @ Value::Array(_)) if ty == ValueType::Array => Ok(v),
                _ => Err(format!(
                    "{} is not {}",
                    describe(&Value::String(s)),
                    if ty == ValueType::Object {
                        "an object"
                    } else {
                        "an array"
                    }
                )),
            }
        }
        (ty, v) => Err(format!("{} cannot be converted to {ty:?}", describe(&v)).to_lowercase()),
    }
}

fn parse_number(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Number(i.into()));
    }
    let f = s.parse::<f64>().ok()?;
    Number::from_f64(f).map(Value::Number)
}

fn integer_of(n: &Number) -> Option<Value> {
    if n.is_i64() || n.is_u64() {
        return Some(Value::Number(n.clone()));
    }
    let f = n.as_f64()?;
    // Only whole numbers inside i64 are integers (10.0 → 10; 10.5 is not).
    if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
        Some(Value::Number((f as i64).into()))
    } else {
        None
    }
}

/// RFC 3339 text, or unix seconds (a number or a numeric string).
pub fn parse_timestamp(v: &Value) -> Option<Timestamp> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(ts) = s.parse::<Timestamp>() {
                return Some(ts);
            }
            let n = parse_number(s)?;
            parse_timestamp(&n)
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Timestamp::from_second(i).ok();
            }
            let f = n.as_f64()?;
            let ms = f * 1000.0;
            if !ms.is_finite() || ms.abs() > 1e17 {
                return None;
            }
            Timestamp::from_millisecond(ms.round() as i64).ok()
        }
        _ => None,
    }
}

/// Insert `value` at the dotted `path` in `root`, creating objects.
fn insert_nested(
    root: &mut Map<String, Value>,
    path: &[String],
    value: Value,
) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut node = root;
    for (i, key) in parents.iter().enumerate() {
        let slot = node
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        node = match slot {
            Value::Object(map) => map,
            _ => {
                return Err(format!(
                    "mapping `{}` nests under `{}`, which another mapping set to a non-object value",
                    path.join("."),
                    path[..=i].join(".")
                ));
            }
        };
    }
    node.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
