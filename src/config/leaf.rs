//! Leaf checks of the compiler: each parses one value (duration, size,
//! rate, address, CIDR, JSONPath, template, expression, secret name) and
//! reports a problem at the value's position, inside the value when the
//! parser says where (JSONPath and template errors point at the bad token).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde_json_path::JsonPath;

use super::error::{Diagnostics, Pos};
use super::interp::has_reference;
use super::node::{OneOrMany, Sp};
use super::secret::Secret;
use super::templates::{self, Expr, Template};
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
    pub fn skip(&self, s: &Sp<String>) -> bool {
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
        if let Some(at) = templates::stray_block_end(src) {
            let pos = self.inner_pos(&s.pos, &s.value, offset + at);
            self.error(
                &pos,
                "expression syntax error: unexpected `}}`; write the expression bare, \
                 without `{{ }}` around it",
            );
            return None;
        }
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
