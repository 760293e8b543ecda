//! Pass 2 of config loading: the serde `Deserializer` over a [`Node`] tree
//! (pass 1, the tree itself, is in `node.rs`, whose header says why there
//! are two passes). It attaches the position of the innermost node being
//! read to any error that has none yet, and understands the wrappers that
//! keep positions: [`Sp<T>`](super::spanned::Sp), `OneOrMany<T>` and
//! `StrOr<T>`.

use std::fmt;
use std::sync::Arc;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::error::Pos;
use super::node::{Kind, Node};

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
