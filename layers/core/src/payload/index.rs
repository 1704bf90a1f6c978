//! The index of a [`Payload`](super::Payload): its top-level members located in the caller's
//! bytes (validated, not built into a tree).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{MAX_MEMBERS, PayloadError};

#[derive(Clone)]
pub(super) struct Field {
    pub(super) key: Text,
    pub(super) value: FieldValue,
}

/// A member name or a string value: a span of the original bytes when the JSON string has
/// no escapes (the common case, no allocation), decoded text otherwise.
#[derive(Clone)]
pub(super) enum Text {
    /// The string's content (between its quotes) in the original bytes.
    Span(Range<usize>),
    /// Decoded text.
    Owned(Box<str>),
}

impl Text {
    pub(super) fn as_str<'a>(&'a self, original: &'a [u8]) -> &'a str {
        match self {
            // Spans are only taken from strings serde_json read (and validated) as UTF-8.
            Text::Span(r) => std::str::from_utf8(&original[r.clone()]).unwrap_or(""),
            Text::Owned(s) => s,
        }
    }

    /// Whether this is `other` (compared as bytes: no UTF-8 check per comparison).
    pub(super) fn is(&self, original: &[u8], other: &str) -> bool {
        match self {
            Text::Span(r) => &original[r.clone()] == other.as_bytes(),
            Text::Owned(s) => &**s == other,
        }
    }
}

#[derive(Clone)]
pub(super) enum FieldValue {
    /// A span of the original bytes.
    Original(Range<usize>),
    /// A value a layer set.
    Owned(Box<RawValue>),
}

pub(super) fn index(bytes: &Bytes) -> Result<Vec<Field>, PayloadError> {
    let classify = |e: serde_json::Error| {
        if e.is_data() {
            PayloadError::NotAnObject
        } else {
            PayloadError::InvalidJson(e.to_string())
        }
    };
    let too_many = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let fields = TopLevel {
        base: bytes.as_ptr() as usize,
        too_many: &too_many,
    }
    .deserialize(&mut de)
    .map_err(|e| {
        if too_many.get() {
            PayloadError::TooManyMembers
        } else {
            classify(e)
        }
    })?;
    de.end().map_err(classify)?;
    Ok(fields)
}

/// Reads the top-level members of an object into [`Field`]s: spans of the input at `base`
/// (keys with escapes are decoded).
struct TopLevel<'a> {
    base: usize,
    /// Set when the object has more than [`MAX_MEMBERS`] members.
    too_many: &'a std::cell::Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Vec<Field>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Field>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Vec<Field>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Field>, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8).min(MAX_MEMBERS));
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if fields.len() == MAX_MEMBERS {
                self.too_many.set(true);
                return Err(serde::de::Error::custom("too many members"));
            }
            let raw: &'de RawValue = map.next_value()?;
            let key = match key {
                Cow::Borrowed(k) => {
                    let start = k.as_ptr() as usize - self.base;
                    Text::Span(start..start + k.len())
                }
                Cow::Owned(k) => Text::Owned(k.into()),
            };
            let start = raw.get().as_ptr() as usize - self.base;
            fields.push(Field {
                key,
                value: FieldValue::Original(start..start + raw.get().len()),
            });
        }
        Ok(fields)
    }
}

/// A string borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON string (borrowed from the input when it has no escapes) or `null`.
pub(super) struct TextOrNull;

impl<'de> Visitor<'de> for TextOrNull {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
}
