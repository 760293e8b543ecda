//! The YAML node tree with positions (pass 1); the serde `Deserializer`
//! over it (pass 2) is in `node_de.rs` and re-exported here.
//!
//! Why two passes: serde stops at the first error, but a config with eight
//! mistakes must report eight. So each document is first parsed by
//! serde-saphyr into a plain [`Node`] tree in which every node knows its
//! line and column (through `serde_saphyr::Spanned`, which also expands
//! anchors, aliases and `<<` merges, and rejects duplicate keys). Then the
//! loader deserializes every top-level section and every list item (each
//! trigger, action, …) *on its own* from that tree with [`deserialize_node`]; one
//! bad item yields one error and the next item is still checked.
//!
//! Positions inside items: our deserializer attaches the position of the
//! innermost node being read to any error that has none yet, so an unknown
//! key points at the key, a wrong type at the value, a missing field at the
//! map. Typed leaves that are checked after deserialization (durations,
//! JSONPaths, templates, CIDRs, references) are read as [`Sp<T>`], which our
//! deserializer fills with the node's file, line and column. Two more
//! wrappers are understood natively: [`OneOrMany<T>`] (a value or a list of
//! them, each element keeping its position) and [`StrOr<T>`] (a string or a
//! map), so no `#[serde(untagged)]` is needed (serde buffers untagged input
//! and loses positions). These wrappers only work with this deserializer,
//! which is the only one the raw config types are ever read with.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::Pos;
pub use super::node_de::{DeError, deserialize_node};
pub(crate) use super::node_de::{ONE_OR_MANY_MARKER, SP_MARKER};
pub use super::spanned::{OneOrMany, Sp, StrOr};

/// One YAML node with its 1-based position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
    /// The value.
    pub kind: Kind,
}

/// The value of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A negative integer.
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A float, with its text as written when known (`1.10` stays `1.10`
    /// when read as a string; see [`Node::restore_float_text`]).
    Float(f64, Option<String>),
    /// A string (quoted or plain).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The string value when this node is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The position of this node in `file`.
    pub fn pos(&self, file: &Arc<str>) -> Pos {
        Pos::new(file, self.line, self.col)
    }

    /// Apply `f` to the position of this node and all nodes below it.
    pub fn map_positions(&mut self, f: &dyn Fn(u32, u32) -> u32) {
        self.col = f(self.line, self.col);
        match &mut self.kind {
            Kind::Seq(items) => items.iter_mut().for_each(|n| n.map_positions(f)),
            Kind::Map(pairs) => pairs.iter_mut().for_each(|(k, v)| {
                k.map_positions(f);
                v.map_positions(f);
            }),
            _ => {}
        }
    }
}

impl Node {
    /// Record the source spelling of float scalars, read from the `text`
    /// the tree was parsed from (a float's `to_string` loses `1.10` → `1.1`).
    pub fn restore_float_text(&mut self, text: &str) {
        let lines: Vec<&str> = text.lines().collect();
        self.restore_with(&lines);
    }

    fn restore_with(&mut self, lines: &[&str]) {
        match &mut self.kind {
            Kind::Float(x, spelled) => {
                let line = lines
                    .get((self.line as usize).saturating_sub(1))
                    .copied()
                    .unwrap_or("");
                let token: String = line
                    .chars()
                    .skip((self.col as usize).saturating_sub(1))
                    .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}' | '#'))
                    .collect();
                if token.parse::<f64>().ok() == Some(*x) {
                    *spelled = Some(token);
                }
            }
            Kind::Seq(items) => items.iter_mut().for_each(|n| n.restore_with(lines)),
            Kind::Map(pairs) => pairs.iter_mut().for_each(|(k, v)| {
                k.restore_with(lines);
                v.restore_with(lines);
            }),
            _ => {}
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let sp = serde_saphyr::Spanned::<Kind>::deserialize(d)?;
        let loc = if sp.referenced.line() > 0 {
            sp.referenced
        } else {
            sp.defined
        };
        Ok(Node {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            col: u32::try_from(loc.column()).unwrap_or(u32::MAX),
            kind: sp.value,
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        struct KindVisitor;
        impl<'de> Visitor<'de> for KindVisitor {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
                Ok(Kind::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
                Ok(if v >= 0 {
                    Kind::UInt(v.unsigned_abs())
                } else {
                    Kind::Int(v)
                })
            }
            fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
                Ok(Kind::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
                Ok(Kind::Float(v, None))
            }
            fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
                Ok(Kind::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Kind, E> {
                Ok(Kind::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Kind, E> {
                Ok(Kind::Null)
            }
            fn visit_none<E>(self) -> Result<Kind, E> {
                Ok(Kind::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
                Kind::deserialize(d)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
                let mut items = Vec::new();
                while let Some(n) = seq.next_element::<Node>()? {
                    items.push(n);
                }
                Ok(Kind::Seq(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<Node, Node>()? {
                    pairs.push((k, v));
                }
                Ok(Kind::Map(pairs))
            }
        }
        d.deserialize_any(KindVisitor)
    }
}

/// Pass 1: parse every document of `text` (YAML 1.2 booleans only, so
/// `yes`/`no`/`y`/`on` stay strings; `0755` stays a string too).
pub fn parse_documents(text: &str) -> Result<Vec<Node>, serde_saphyr::Error> {
    let opts = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        with_snippet: false,
    };
    serde_saphyr::from_str_multiple_with_options::<Node, Vec<Node>>(text, opts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        name: Sp<String>,
        list: OneOrMany<Sp<String>>,
        either: Sp<StrOr<Inner>>,
        port: Option<u16>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        header: Sp<String>,
    }

    fn parse(text: &str) -> Result<T, (Pos, String)> {
        let mut docs = parse_documents(text).unwrap();
        docs[0].restore_float_text(text);
        deserialize_node::<T>(&docs[0], &Arc::from("f.yaml"))
    }

    #[test]
    fn positions_reach_every_leaf() {
        let t =
            parse("name: 1.10\nlist: [x, y]\neither: {header: X-Event}\nport: \"8080\"\n").unwrap();
        // YAML 1.2 booleans only (`y` stays a string); `1.10` keeps its spelling.
        assert_eq!(t.name.value, "1.10");
        assert_eq!((t.name.pos.line, t.name.pos.col), (1, 7));
        let cols: Vec<_> = t
            .list
            .0
            .iter()
            .map(|s| (s.value.as_str(), s.pos.line, s.pos.col))
            .collect();
        assert_eq!(cols, [("x", 2, 8), ("y", 2, 11)]);
        match &t.either.value {
            StrOr::Map(i) => {
                assert_eq!((i.header.value.as_str(), i.header.pos.col), ("X-Event", 18))
            }
            other => panic!("{other:?}"),
        }
        // A quoted number is accepted where a number is wanted.
        assert_eq!(t.port, Some(8080));
    }

    #[test]
    fn one_value_and_short_form() {
        let t = parse("name: a\nlist: only\neither: plain\n").unwrap();
        assert_eq!(t.list.0.len(), 1);
        assert_eq!((t.list.0[0].pos.line, t.list.0[0].pos.col), (2, 7));
        assert_eq!(t.either.value, StrOr::Str("plain".into()));
    }

    #[test]
    fn errors_carry_the_innermost_position() {
        let (pos, msg) =
            parse("name: a\nlist: x\neither:\n  header: h\n  hedaer: h\n").unwrap_err();
        assert_eq!((pos.line, pos.col), (5, 3));
        assert!(msg.contains("unknown field `hedaer`"), "{msg}");
        let (pos, msg) = parse("name: a\nlist: x\neither: e\nport: big\n").unwrap_err();
        assert_eq!((pos.line, pos.col), (4, 7));
        assert!(msg.contains("invalid type"), "{msg}");
        let (pos, msg) = parse("list: x\neither: e\n").unwrap_err();
        assert_eq!((pos.line, pos.col), (1, 1));
        assert!(msg.contains("missing field `name`"), "{msg}");
    }
}
