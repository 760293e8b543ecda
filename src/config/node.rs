//! The YAML node tree with positions (pass 1) and the serde `Deserializer`
//! over it (pass 2).
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

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::Pos;
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

/// An error from pass 2; `line == 0` until a node claims it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    /// 1-based line of the innermost node that failed (0: not yet known).
    pub line: u32,
    /// 1-based column.
    pub col: u32,
    /// serde's message, e.g. "unknown field `naem`, expected one of …".
    pub message: String,
}

impl DeError {
    fn at(mut self, node: &Node) -> DeError {
        if self.line == 0 {
            self.line = node.line;
            self.col = node.col;
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            line: 0,
            col: 0,
            message: msg.to_string(),
        }
    }
}

/// Deserialize `T` from one node of `file`, or the error with its position.
pub fn deserialize_node<T: de::DeserializeOwned>(
    node: &Node,
    file: &Arc<str>,
) -> Result<T, (Pos, String)> {
    T::deserialize(NodeDe { node, file }).map_err(|e| {
        let e = e.at(node);
        (Pos::new(file, e.line, e.col), e.message)
    })
}

pub(crate) const SP_MARKER: &str = "__hookyard_spanned";
pub(crate) const ONE_OR_MANY_MARKER: &str = "__hookyard_one_or_many";

/// The pass-2 deserializer: reads typed config from a [`Node`].
#[derive(Clone, Copy)]
struct NodeDe<'a> {
    node: &'a Node,
    file: &'a Arc<str>,
}

impl<'a> NodeDe<'a> {
    fn child(&self, node: &'a Node) -> NodeDe<'a> {
        NodeDe {
            node,
            file: self.file,
        }
    }

    fn any<'de, V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Null => v.visit_unit(),
            Kind::Bool(b) => v.visit_bool(*b),
            Kind::Int(i) => v.visit_i64(*i),
            Kind::UInt(u) => v.visit_u64(*u),
            Kind::Float(x, _) => v.visit_f64(*x),
            Kind::Str(s) => v.visit_str(s),
            Kind::Seq(items) => v.visit_seq(Seq {
                de: self,
                items: items.iter(),
            }),
            Kind::Map(pairs) => v.visit_map(Map {
                de: self,
                pairs: pairs.iter(),
                value: None,
            }),
        };
        r.map_err(|e| e.at(self.node))
    }

    /// Scalars read as text when a string is wanted (`port: 80` into a
    /// header value), as YAML users expect.
    fn text(&self) -> Option<String> {
        match &self.node.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Bool(b) => Some(b.to_string()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::UInt(u) => Some(u.to_string()),
            Kind::Float(_, Some(t)) => Some(t.clone()),
            Kind::Float(x, None) => Some(x.to_string()),
            _ => None,
        }
    }
}

macro_rules! forward_number {
    ($($method:ident => $visit:ident : $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            if let Kind::Str(s) = &self.node.kind {
                if let Ok(n) = s.trim().parse::<$ty>() {
                    return v.$visit::<DeError>(n).map_err(|e| e.at(self.node));
                }
            }
            self.any(v)
        }
    )*};
}

impl<'de, 'a> Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.any(v)
    }

    forward_number! {
        deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32, deserialize_u64 => visit_u64: u64,
        deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32, deserialize_i64 => visit_i64: i64,
        deserialize_f32 => visit_f32: f32, deserialize_f64 => visit_f64: f64,
        deserialize_bool => visit_bool: bool,
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.text() {
            Some(s) => v.visit_string::<DeError>(s).map_err(|e| e.at(self.node)),
            None => self.any(v),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
        .map_err(|e| e.at(self.node))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.any(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        let r = match name {
            SP_MARKER => v.visit_seq(SpSeq { de: self, state: 0 }),
            ONE_OR_MANY_MARKER => match &self.node.kind {
                Kind::Seq(items) => v.visit_seq(Seq {
                    de: self,
                    items: items.iter(),
                }),
                _ => v.visit_seq(Seq {
                    de: self,
                    items: std::slice::from_ref(self.node).iter(),
                }),
            },
            _ => v.visit_newtype_struct(self),
        };
        r.map_err(|e| e.at(self.node))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Str(_) => v.visit_enum(Enum {
                key: self,
                value: None,
            }),
            Kind::Map(pairs) if pairs.len() == 1 => v.visit_enum(Enum {
                key: self.child(&pairs[0].0),
                value: Some(self.child(&pairs[0].1)),
            }),
            _ => Err(de::Error::custom(
                "expected a name (string) or a map with a single key",
            )),
        };
        r.map_err(|e| e.at(self.node))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit_struct seq tuple tuple_struct map struct
    }
}

struct Seq<'a> {
    de: NodeDe<'a>,
    items: std::slice::Iter<'a, Node>,
}

impl<'de> de::SeqAccess<'de> for Seq<'_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(n) => seed.deserialize(self.de.child(n)).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a> {
    de: NodeDe<'a>,
    pairs: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> de::MapAccess<'de> for Map<'_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.pairs.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(self.de.child(k)).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(self.de.child(v)),
            None => Err(de::Error::custom("value requested before key")),
        }
    }
}

struct Enum<'a> {
    key: NodeDe<'a>,
    value: Option<NodeDe<'a>>,
}

impl<'de, 'a> de::EnumAccess<'de> for Enum<'a> {
    type Error = DeError;
    type Variant = Variant<'a>;
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Variant<'a>), DeError> {
        let v = seed.deserialize(self.key)?;
        Ok((v, Variant { value: self.value }))
    }
}

struct Variant<'a> {
    value: Option<NodeDe<'a>>,
}

impl<'de> de::VariantAccess<'de> for Variant<'_> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None => Ok(()),
            Some(v) => match v.node.kind {
                Kind::Null => Ok(()),
                _ => Err(<DeError as de::Error>::custom("this variant takes no value").at(v.node)),
            },
        }
    }
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, DeError> {
        match self.value {
            Some(v) => seed.deserialize(v),
            None => Err(de::Error::custom("expected a map with a single key")),
        }
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        match self.value {
            Some(d) => d.any(v),
            None => Err(de::Error::custom("expected a map with a single key")),
        }
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.tuple_variant(0, v)
    }
}

/// Feeds `[file, line, col, value]` to [`Sp`]'s visitor.
struct SpSeq<'a> {
    de: NodeDe<'a>,
    state: u8,
}

impl<'de> de::SeqAccess<'de> for SpSeq<'_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.state += 1;
        let n = self.de.node;
        match self.state {
            1 => seed
                .deserialize(self.de.file.as_ref().into_deserializer())
                .map(Some),
            2 => seed.deserialize(n.line.into_deserializer()).map(Some),
            3 => seed.deserialize(n.col.into_deserializer()).map(Some),
            4 => seed.deserialize(self.de).map(Some),
            _ => Ok(None),
        }
    }
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
