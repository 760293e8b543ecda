//! `${VAR}` interpolation of config text, before YAML parsing.
//!
//! Rules (the convention of Vector, Benthos and Svix Bridge): `${VAR}` is
//! replaced by the variable's value, `${VAR:-default}` by the default when
//! the variable is unset or empty, `$${` writes a literal `${`. A value with
//! a newline is refused (it could inject YAML structure); an unset variable
//! without default is an error at the `${` position. The whole text is
//! processed, comments included (write `$${` to keep a literal there).
//!
//! A replacement changes the length of its line, so positions that the YAML
//! parser reports afterwards are mapped back to the original columns with
//! [`ColumnMap`] (lines never shift, since values cannot hold newlines).

use std::collections::HashMap;

/// One problem found while interpolating: 1-based line and column, message.
pub type InterpError = (u32, u32, String);

/// Maps columns of the interpolated text back to the original text.
#[derive(Debug, Default, Clone)]
pub struct ColumnMap {
    /// Per line: (column in the new text where an edit ended, delta =
    /// original length - new length), in column order.
    edits: HashMap<u32, Vec<(u32, i64)>>,
}

impl ColumnMap {
    /// The original column of `col` (1-based) on `line`.
    pub fn original(&self, line: u32, col: u32) -> u32 {
        let Some(edits) = self.edits.get(&line) else {
            return col;
        };
        let mut shift: i64 = 0;
        for (end, delta) in edits {
            if *end <= col {
                shift += delta;
            }
        }
        u32::try_from((i64::from(col) + shift).max(1)).unwrap_or(col)
    }
}

/// How to resolve variables.
pub enum Lookup<'a> {
    /// From a function (the process environment in production).
    Env(&'a dyn Fn(&str) -> Option<String>),
    /// Do not resolve (`--no-env`): defaults are used, other references stay
    /// as written.
    NoEnv,
}

/// Interpolate `text`. Returns the new text, the column map and every
/// problem found (the text is still returned so parsing can go on).
pub fn interpolate(text: &str, lookup: &Lookup<'_>) -> (String, ColumnMap, Vec<InterpError>) {
    let mut out = String::with_capacity(text.len());
    let mut map = ColumnMap::default();
    let mut errors = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let mut new_col: u32 = 1; // column in the new text of the next char
        let mut rest = line;
        let mut orig_col: u32 = 1;
        while let Some(idx) = rest.find('$') {
            let before = &rest[..idx];
            out.push_str(before);
            let n = count(before);
            new_col += n;
            orig_col += n;
            let after = &rest[idx..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                new_col += 2;
                orig_col += 3;
                map.edits.entry(line_no).or_default().push((new_col, 1));
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${") {
                let Some(close) = tail.find('}') else {
                    errors.push((
                        line_no,
                        orig_col,
                        "unclosed `${`: write `${VAR}`, or `$${` for a literal `${`".into(),
                    ));
                    out.push_str(after);
                    rest = "";
                    break;
                };
                let inner = &tail[..close];
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner, None),
                };
                let original = &after[..close + 3];
                let valid =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                let value = if !valid {
                    errors.push((line_no, orig_col, format!("invalid variable reference `{original}`: names use letters, digits and `_`")));
                    original.to_owned()
                } else {
                    match lookup {
                        Lookup::Env(get) => match (get(name).filter(|v| !v.is_empty()), default) {
                            (Some(v), _) => v,
                            (None, Some(d)) => d.to_owned(),
                            (None, None) => {
                                errors.push((line_no, orig_col, format!("environment variable `{name}` is not set and `{original}` has no default (write `${{{name}:-default}}`)")));
                                String::new()
                            }
                        },
                        Lookup::NoEnv => match default {
                            Some(d) => d.to_owned(),
                            None => original.to_owned(),
                        },
                    }
                };
                let value = if value.contains('\n') || value.contains('\r') {
                    errors.push((
                        line_no,
                        orig_col,
                        format!(
                            "the value of `{original}` contains a newline, which is not allowed"
                        ),
                    ));
                    String::new()
                } else {
                    value
                };
                out.push_str(&value);
                let new_len = count(&value);
                let orig_len = count(original);
                new_col += new_len;
                orig_col += orig_len;
                map.edits
                    .entry(line_no)
                    .or_default()
                    .push((new_col, i64::from(orig_len) - i64::from(new_len)));
                rest = &tail[close + 1..];
            } else {
                out.push('$');
                new_col += 1;
                orig_col += 1;
                rest = &after[1..];
            }
        }
        out.push_str(rest);
    }
    (out, map, errors)
}

fn count(s: &str) -> u32 {
    u32::try_from(s.chars().count()).unwrap_or(u32::MAX)
}

/// Whether `text` still holds an unresolved `${…}` reference (only after a
/// `--no-env` load); checks of such values are skipped.
pub fn has_reference(text: &str) -> bool {
    text.contains("${")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".into()),
            "EMPTY" => Some(String::new()),
            "NL" => Some("a\nb".into()),
            _ => None,
        }
    }

    fn run(text: &str) -> (String, ColumnMap, Vec<InterpError>) {
        interpolate(text, &Lookup::Env(&env))
    }

    #[test]
    fn replaces_defaults_and_escapes() {
        let (out, _, errs) =
            run("a: ${HOST}\nb: ${MISSING:-dflt}\nc: $${HOST}\nd: ${EMPTY:-x}\ne: $5\n");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(out, "a: example.com\nb: dflt\nc: ${HOST}\nd: x\ne: $5\n");
    }

    #[test]
    fn unset_and_newline_are_errors_with_positions() {
        let (_, _, errs) = run("x: 1\nurl: \"${NOPE}/p\"\nv: ${NL}\n");
        assert_eq!(errs.len(), 2);
        assert_eq!((errs[0].0, errs[0].1), (2, 7));
        assert!(errs[0].2.contains("`NOPE` is not set"));
        assert_eq!((errs[1].0, errs[1].1), (3, 4));
        assert!(errs[1].2.contains("newline"));
    }

    #[test]
    fn columns_map_back() {
        // `${HOST}` (7 chars) becomes `example.com` (11 chars): +4.
        let (out, map, _) = run("a: ${HOST} b: 1\n");
        assert_eq!(out, "a: example.com b: 1\n");
        let b_new = u32::try_from(out.find("b:").unwrap() + 1).unwrap();
        assert_eq!(map.original(1, b_new), 12);
        assert_eq!(map.original(1, 4), 4);
        assert_eq!(map.original(2, 9), 9);
    }

    #[test]
    fn no_env_keeps_references() {
        let (out, _, errs) = interpolate("a: ${X}\nb: ${Y:-d}\n", &Lookup::NoEnv);
        assert!(errs.is_empty());
        assert_eq!(out, "a: ${X}\nb: d\n");
        assert!(has_reference(&out));
    }
}
