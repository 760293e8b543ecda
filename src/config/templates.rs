//! Templates and expressions, compiled once at load into ONE shared
//! `minijinja::Environment<'static>` per config.
//!
//! Runtime types hold a [`Template`] or [`Expr`] handle (a name in that
//! environment plus the source, for display); render them with the
//! config's [`Templates`]:
//!
//! ```ignore
//! let ctx = minijinja::context! { event => ..., contact => ... };
//! let url = action_url_template.render(&config.templates, &ctx)?;
//! let ok = workflow.condition.as_ref().map(|c| c.is_true(&config.templates, &ctx)).transpose()?;
//! ```
//!
//! An expression is stored as the template `{% set __value = (EXPR) %}` and
//! evaluated with `render_captured`, whose state holds the value; this keeps the value's type (a number
//! stays a number in a JSON body). Undefined variables render empty
//! (minijinja's lenient default); `strict` handling is the renderer's job.
//!
//! Templates are code run on data a sender controls, so every render is
//! bounded (SPEC §11): minijinja's fuel caps the instructions one render may
//! execute ([`FUEL`]), and the output is written into a [`Bounded`] buffer
//! that fails the render as soon as it passes `render.max_output`, instead
//! of building the whole string and measuring it afterwards. An expression's
//! value never passes through a writer, so [`value_fits`] measures it with
//! the same budget before it is turned into JSON. [`is_limit`] tells such a
//! failure from an ordinary template error.

use std::sync::Arc;

use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

const VALUE_VAR: &str = "__value";

/// Default `render.max_output`: 1 MiB per template.
pub const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;

/// Instructions one render may execute. A loop over a few thousand items
/// with a dozen instructions each uses well under a tenth of it; nested
/// `range(100000)` loops run out within milliseconds.
pub const FUEL: u64 = 2_000_000;

/// The shared template environment of one config.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    max_output: usize,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    /// The environment, e.g. to look templates up directly.
    pub fn env(&self) -> &Environment<'static> {
        &self.env
    }

    /// `render.max_output`: the longest output of one template.
    pub fn max_output(&self) -> usize {
        self.max_output
    }

    pub(crate) fn new(env: Environment<'static>, max_output: usize) -> Templates {
        Templates {
            env: Arc::new(env),
            max_output,
        }
    }
}

/// Render `tmpl` into a buffer that refuses to grow past `max_output`.
pub fn render_bounded<S: Serialize>(
    tmpl: &minijinja::Template<'_, '_>,
    ctx: S,
    max_output: usize,
) -> Result<String, minijinja::Error> {
    let mut out = Bounded {
        buf: Vec::new(),
        max: max_output,
    };
    match tmpl.render_captured_to(ctx, &mut out) {
        Ok(_) => String::from_utf8(out.buf).map_err(|_| {
            // minijinja writes only whole `str`s, so this cannot happen;
            // an error is still better than a panic.
            minijinja::Error::new(ErrorKind::BadSerialization, "template output is not UTF-8")
        }),
        Err(e) if e.kind() == ErrorKind::WriteFailure => Err(output_limit(max_output)),
        Err(e) => Err(e),
    }
}

/// The error of a render whose output passed `render.max_output`.
fn output_limit(max_output: usize) -> minijinja::Error {
    minijinja::Error::new(
        ErrorKind::WriteFailure,
        format!("the output is longer than render.max_output ({max_output} bytes)"),
    )
}

/// Whether a render failed on one of the bounds of SPEC §11 (fuel or
/// output), rather than on the template itself.
pub fn is_limit(e: &minijinja::Error) -> bool {
    matches!(e.kind(), ErrorKind::OutOfFuel | ErrorKind::WriteFailure)
}

/// Check that an expression's value would fit in `max_output` bytes of
/// JSON, walking it only until the budget is spent (a value like
/// `[body] * 100000` is a lazy sequence that would be huge once written).
pub fn value_fits(value: &Value, max_output: usize) -> Result<(), minijinja::Error> {
    let mut budget = max_output;
    if spend(value, &mut budget, 0) {
        Ok(())
    } else {
        Err(output_limit(max_output))
    }
}

/// Take `value`'s approximate JSON size from `budget`; false when it runs out.
fn spend(value: &Value, budget: &mut usize, depth: usize) -> bool {
    use minijinja::value::ValueKind;
    let cost = match value.kind() {
        ValueKind::String | ValueKind::Bytes => value.len().unwrap_or(0) + 2,
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable | ValueKind::Plain => 2,
        _ => 8,
    };
    let Some(left) = budget.checked_sub(cost) else {
        return false;
    };
    *budget = left;
    let nested = matches!(
        value.kind(),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable
    );
    if !nested {
        return true;
    }
    // minijinja refuses to nest values deeper than this when serializing.
    if depth > 500 {
        return false;
    }
    let Ok(items) = value.try_iter() else {
        return true;
    };
    let is_map = value.kind() == ValueKind::Map;
    for item in items {
        if is_map {
            let Ok(v) = value.get_item(&item) else {
                return false;
            };
            if !spend(&item, budget, depth + 1) || !spend(&v, budget, depth + 1) {
                return false;
            }
        } else if !spend(&item, budget, depth + 1) {
            return false;
        }
    }
    true
}

/// A `Write` into memory that fails once more than `max` bytes were written.
struct Bounded {
    buf: Vec<u8>,
    max: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            return Err(std::io::Error::other("render.max_output reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A new environment with hookyard's settings.
pub(crate) fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Output goes into JSON, headers and URLs, never HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(FUEL));
    env
}

/// A compiled template, by name in [`Templates`].
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// Unique name, e.g. `action/zap/url`.
    pub name: String,
    /// The source as written (after `${VAR}` interpolation).
    pub source: String,
}

impl Template {
    /// Render with `ctx` (any `Serialize`, typically a `minijinja::Value`).
    pub fn render<S: Serialize>(&self, t: &Templates, ctx: S) -> Result<String, minijinja::Error> {
        render_bounded(&t.env.get_template(&self.name)?, ctx, t.max_output)
    }
}

/// A compiled expression, by name in [`Templates`].
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// Unique name, e.g. `workflow/big-orders/if`.
    pub name: String,
    /// The expression as written.
    pub source: String,
}

impl Expr {
    /// Evaluate to a value (undefined when the expression's value is).
    pub fn eval<S: Serialize>(&self, t: &Templates, ctx: S) -> Result<Value, minijinja::Error> {
        let tmpl = t.env.get_template(&self.name)?;
        let captured = tmpl.render_captured(ctx)?;
        let value = captured.state().lookup(VALUE_VAR).unwrap_or_default();
        value_fits(&value, t.max_output)?;
        Ok(value)
    }

    /// Evaluate as a condition (Jinja truthiness).
    pub fn is_true<S: Serialize>(&self, t: &Templates, ctx: S) -> Result<bool, minijinja::Error> {
        Ok(self.eval(t, ctx)?.is_true())
    }
}

/// The template source that evaluates `expr` into [`VALUE_VAR`].
pub(crate) fn expression_wrapper(expr: &str) -> String {
    format!("{{% set {VALUE_VAR} = ({expr}) %}}")
}

/// A JSON body template: literal JSON with templated string leaves.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonTemplate {
    /// A literal value (no template in it).
    Literal(serde_json::Value),
    /// A leaf that is exactly one `{{ expr }}`: keeps the value's JSON type.
    Expr(Expr),
    /// Any other templated string: renders to a JSON string.
    Template(Template),
    /// An array.
    Array(Vec<JsonTemplate>),
    /// An object, in source order.
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Render to JSON. An undefined expression leaf renders as `null`.
    pub fn render(
        &self,
        t: &Templates,
        ctx: &Value,
    ) -> Result<serde_json::Value, minijinja::Error> {
        Ok(match self {
            JsonTemplate::Literal(v) => v.clone(),
            JsonTemplate::Expr(e) => {
                let v = e.eval(t, ctx)?;
                if v.is_undefined() || v.is_none() {
                    serde_json::Value::Null
                } else {
                    serde_json::to_value(&v).map_err(|err| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::BadSerialization,
                            format!("{}: {err}", e.name),
                        )
                    })?
                }
            }
            JsonTemplate::Template(tm) => serde_json::Value::String(tm.render(t, ctx)?),
            JsonTemplate::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| i.render(t, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(fields) => {
                let mut map = serde_json::Map::new();
                for (k, v) in fields {
                    map.insert(k.clone(), v.render(t, ctx)?);
                }
                serde_json::Value::Object(map)
            }
        })
    }
}

/// The byte offset of a `}}` in the bare expression `expr` that
/// minijinja's lexer would take as the end of a `{{ … }}` block: outside
/// string literals, with every bracket before it closed. A bare expression
/// has no block to end, and minijinja (2.24) panics with "empty lexer
/// stack" when anything follows such a `}}`, so the loader refuses it
/// before compiling. This follows the lexer's rules: brackets count only
/// outside strings, a string ends at its first unescaped quote.
pub(crate) fn stray_block_end(expr: &str) -> Option<usize> {
    let bytes = expr.as_bytes();
    let mut depth: isize = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'}' if depth == 0 && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    // A backslash escapes the byte after it.
                    i += usize::from(bytes[i] == b'\\') + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether `s` contains template syntax.
pub(crate) fn is_templated(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// When `s` is exactly one `{{ expr }}` (whitespace around allowed), the
/// expression inside, with its byte offset in `s`.
pub(crate) fn single_expression(s: &str) -> Option<(&str, usize)> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    let lead = s.len() - s.trim_start().len();
    let offset = lead
        + (t.len() - t.trim_start_matches("{{").len())
        + (inner.len() - inner.trim_start().len());
    Some((inner.trim(), offset))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn templates(defs: &[(&str, &str)]) -> Templates {
        let mut env = new_environment();
        for (n, s) in defs {
            env.add_template_owned(n.to_string(), s.to_string())
                .unwrap();
        }
        Templates::new(env, DEFAULT_MAX_OUTPUT)
    }

    #[test]
    fn expressions_keep_their_type() {
        let t = templates(&[
            ("e", &expression_wrapper("order.total * 2")),
            ("c", &expression_wrapper("order.total > 100")),
        ]);
        let ctx = minijinja::context! { order => minijinja::context! { total => 60 } };
        let e = Expr {
            name: "e".into(),
            source: String::new(),
        };
        assert_eq!(e.eval(&t, &ctx).unwrap(), Value::from(120));
        let c = Expr {
            name: "c".into(),
            source: String::new(),
        };
        assert!(!c.is_true(&t, &ctx).unwrap());
    }

    #[test]
    fn json_body_renders_typed_leaves() {
        let t = templates(&[
            ("total", &expression_wrapper("order.total")),
            ("missing", &expression_wrapper("order.missing")),
            ("name", "Hi {{ name }}"),
        ]);
        let body = JsonTemplate::Object(vec![
            (
                "total".into(),
                JsonTemplate::Expr(Expr {
                    name: "total".into(),
                    source: String::new(),
                }),
            ),
            (
                "missing".into(),
                JsonTemplate::Expr(Expr {
                    name: "missing".into(),
                    source: String::new(),
                }),
            ),
            (
                "name".into(),
                JsonTemplate::Template(Template {
                    name: "name".into(),
                    source: String::new(),
                }),
            ),
            (
                "fixed".into(),
                JsonTemplate::Literal(serde_json::json!([1, true])),
            ),
        ]);
        let ctx =
            Value::from_serialize(serde_json::json!({"order": {"total": 12.5}, "name": "Ann"}));
        assert_eq!(
            body.render(&t, &ctx).unwrap(),
            serde_json::json!({"total": 12.5, "missing": null, "name": "Hi Ann", "fixed": [1, true]})
        );
    }

    #[test]
    fn stray_block_end_follows_the_lexer() {
        assert_eq!(stray_block_end("a }} b"), Some(2));
        assert_eq!(stray_block_end("a -}}"), Some(3));
        assert_eq!(stray_block_end(")}} x"), None); // unbalanced: not an end
        assert_eq!(stray_block_end("{'a': {'b': 1}} == x"), None);
        assert_eq!(stray_block_end("x == '}}' and y"), None);
        assert_eq!(stray_block_end(r#"x == "a\"}}" and y"#), None);
        assert_eq!(stray_block_end(r#"x == "a\\" }} y"#), Some(11));
        assert_eq!(stray_block_end("order.total > 100"), None);
    }

    /// Fuzzing found that minijinja panics ("empty lexer stack") on a bare
    /// expression with a `}}` followed by anything; whatever
    /// `stray_block_end` lets through must compile or fail, never panic.
    #[test]
    fn expressions_let_through_never_panic_the_lexer() {
        let env = new_environment();
        for expr in [
            "a }} b",
            "a -}} ",
            "contact.eQQ}}}}QQmail != ''",
            ")}} x",
            "{'a': {'b': 1}} == x",
            "x == '}}' }} y",
        ] {
            if stray_block_end(expr).is_none() {
                let _ = env.compile_expression(expr);
            }
        }
    }

    #[test]
    fn single_expression_detection() {
        assert_eq!(single_expression("{{ a.b }}"), Some(("a.b", 3)));
        assert_eq!(single_expression("{{a}}"), Some(("a", 2)));
        assert_eq!(single_expression("x {{ a }}"), None);
        assert_eq!(single_expression("{{ a }} {{ b }}"), None);
        assert!(is_templated("a {{ b }}") && !is_templated("plain"));
    }
}
