use std::fmt;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::value::RawValue;

use crate::error::ErrorResponse;

use super::index::{Field, FieldValue, Text, TextOrNull, index};

/// The most top-level members a [`Payload`] indexes; an object with more is refused
/// ([`PayloadError::TooManyMembers`]), so a body of a million tiny members cannot make the
/// index cost many times the body's size.
pub const MAX_MEMBERS: usize = 4096;

/// A JSON request body, read once and parsed at most once.
///
/// The body is kept as the bytes the caller sent. The first read indexes its top-level
/// members (each value is validated and located, but not built into a tree); a member is
/// deserialized only when a layer asks for it. Edits replace whole top-level members, and
/// [`to_bytes`](Payload::to_bytes) returns the original bytes when nothing was edited, or
/// writes the object once, keeping the members' order and every unknown member as sent.
///
/// ```
/// use bytes::Bytes;
/// use tower_openai_core::Payload;
///
/// let mut p = Payload::new(Bytes::from_static(br#"{"model":"local.llama3","stream":true}"#));
/// assert_eq!(p.get::<String>("model").unwrap().as_deref(), Some("local.llama3"));
/// assert!(!p.is_changed());
/// p.set("model", "llama3").unwrap();
/// assert_eq!(&p.to_bytes()[..], br#"{"model":"llama3","stream":true}"#);
/// ```
#[derive(Clone)]
pub struct Payload {
    original: Bytes,
    index: OnceLock<Result<Vec<Field>, PayloadError>>,
    /// `model`, read once and kept as text (several layers ask for it, and a span of the
    /// original would be checked as UTF-8 at each asking).
    model: OnceLock<Result<Option<Box<str>>, PayloadError>>,
    changed: bool,
}

/// Why a payload could not be read as the JSON object a layer needed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The body is not JSON at all.
    #[error("The request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON, but not an object.
    #[error("The request body must be a JSON object")]
    NotAnObject,
    /// The object has more top-level members than [`MAX_MEMBERS`].
    #[error("The request body has more than {MAX_MEMBERS} top-level members")]
    TooManyMembers,
    /// A member has the wrong type for what it is used for.
    #[error("Invalid value for `{key}`: {message}")]
    InvalidField {
        /// The member's name.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl PayloadError {
    /// The 400 response a caller should see.
    pub fn to_response(&self) -> ErrorResponse {
        let code = match self {
            PayloadError::InvalidJson(_) => "invalid_json",
            PayloadError::NotAnObject | PayloadError::TooManyMembers => "invalid_body",
            PayloadError::InvalidField { .. } => "invalid_value",
        };
        ErrorResponse::bad_request(self.to_string()).with_code(code)
    }
}

impl Payload {
    /// A payload over these bytes. Nothing is parsed yet.
    pub fn new(bytes: Bytes) -> Self {
        Self {
            original: bytes,
            index: OnceLock::new(),
            model: OnceLock::new(),
            changed: false,
        }
    }

    /// The bytes the caller sent.
    pub fn original(&self) -> &Bytes {
        &self.original
    }

    /// Whether a layer edited the payload.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// Check that the body is a JSON object (indexing it if that has not happened yet).
    pub fn check(&self) -> Result<(), PayloadError> {
        self.fields().map(|_| ())
    }

    fn fields(&self) -> Result<&[Field], PayloadError> {
        match self.index.get_or_init(|| index(&self.original)) {
            Ok(fields) => Ok(fields),
            Err(e) => Err(e.clone()),
        }
    }

    /// The index for editing, beside the original bytes its spans point into.
    fn fields_mut(&mut self) -> Result<(&[u8], &mut Vec<Field>), PayloadError> {
        self.fields()?;
        match self.index.get_mut() {
            Some(Ok(fields)) => Ok((&self.original, fields)),
            Some(Err(e)) => Err(e.clone()),
            None => unreachable!("fields() initialised the index"),
        }
    }

    fn raw_of<'a>(&'a self, field: &'a Field) -> &'a str {
        match &field.value {
            // The index only holds spans that serde_json validated as a JSON value of a
            // UTF-8 document, so this cannot fail; an empty string would read as "absent".
            FieldValue::Original(r) => std::str::from_utf8(&self.original[r.clone()]).unwrap_or(""),
            FieldValue::Owned(raw) => raw.get(),
        }
    }

    /// The raw JSON bytes of `field` (no UTF-8 check: for copying, not for reading).
    fn raw_bytes_of<'a>(&'a self, field: &'a Field) -> &'a [u8] {
        match &field.value {
            FieldValue::Original(r) => &self.original[r.clone()],
            FieldValue::Owned(raw) => raw.get().as_bytes(),
        }
    }

    /// The raw JSON text of member `key` (the last one, if the key is repeated).
    pub fn get_raw(&self, key: &str) -> Result<Option<&str>, PayloadError> {
        let fields = self.fields()?;
        Ok(fields
            .iter()
            .rev()
            .find(|f| f.key.is(&self.original, key))
            .map(|f| self.raw_of(f)))
    }

    /// The `model` member: `None` when absent or `null`, an error when it is not a string.
    /// Read once and kept (until a layer changes it), as every routing layer asks for it.
    pub fn model(&self) -> Result<Option<&str>, PayloadError> {
        let cached = self.model.get_or_init(|| {
            let fields = self.fields()?;
            let mut named = fields.iter().filter(|f| f.key.is(&self.original, "model"));
            let Some(field) = named.next() else {
                return Ok(None);
            };
            if named.next().is_some() {
                // Parsers disagree on which repeat wins: refuse rather than guess.
                return Err(PayloadError::InvalidField {
                    key: "model".to_owned(),
                    message: "must appear only once".to_owned(),
                });
            }
            let raw = self.raw_of(field);
            let mut de = serde_json::Deserializer::from_str(raw);
            let text = de
                .deserialize_any(TextOrNull)
                .and_then(|text| de.end().map(|()| text))
                .map_err(|_| PayloadError::InvalidField {
                    key: "model".to_owned(),
                    message: "must be a string".to_owned(),
                })?;
            Ok(text.map(|text| Box::from(&*text)))
        });
        match cached {
            Ok(m) => Ok(m.as_deref()),
            Err(e) => Err(e.clone()),
        }
    }

    fn touched(&mut self, key: &str) {
        self.changed = true;
        if key == "model" {
            self.model = OnceLock::new();
        }
    }

    /// Member `key` deserialized as `T`; `None` when absent. A JSON `null` is `Some` only if
    /// `T` accepts null (use `Option<T>` to tell absent from null).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PayloadError> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(raw) => {
                serde_json::from_str(raw)
                    .map(Some)
                    .map_err(|e| PayloadError::InvalidField {
                        key: key.to_owned(),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Whether member `key` is present.
    pub fn contains_key(&self, key: &str) -> Result<bool, PayloadError> {
        Ok(self.fields()?.iter().any(|f| f.key.is(&self.original, key)))
    }

    /// The members' names, in order.
    pub fn keys(&self) -> Result<impl Iterator<Item = &str>, PayloadError> {
        Ok(self.fields()?.iter().map(|f| f.key.as_str(&self.original)))
    }

    /// Set member `key` to the string `value`: [`set`](Self::set) for strings, written
    /// straight into a buffer of its exact size (routing rewrites `model` on most requests).
    pub fn set_str(&mut self, key: &str, value: &str) -> Result<(), PayloadError> {
        let plain = value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        if !plain {
            return self.set(key, value);
        }
        let mut json = String::with_capacity(value.len() + 2);
        json.push('"');
        json.push_str(value);
        json.push('"');
        let raw = RawValue::from_string(json).map_err(|e| PayloadError::InvalidField {
            key: key.to_owned(),
            message: e.to_string(),
        })?;
        self.set_raw(key, raw)?;
        if key == "model" {
            // Known without reading it back: routing sets the model on most requests, and
            // the layers below ask for it again.
            self.model = OnceLock::from(Ok(Some(Box::from(value))));
        }
        Ok(())
    }

    /// Set member `key` to `value`, in place if present (earlier repeats are dropped), at the
    /// end otherwise.
    pub fn set<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), PayloadError> {
        let raw =
            serde_json::value::to_raw_value(value).map_err(|e| PayloadError::InvalidField {
                key: key.to_owned(),
                message: e.to_string(),
            })?;
        self.set_raw(key, raw)
    }

    /// Set member `key` to already-serialized JSON.
    pub fn set_raw(&mut self, key: &str, raw: Box<RawValue>) -> Result<(), PayloadError> {
        let (original, fields) = self.fields_mut()?;
        let value = FieldValue::Owned(raw);
        match fields.iter().rposition(|f| f.key.is(original, key)) {
            Some(last) => {
                fields[last].value = value;
                let mut i = 0;
                fields.retain(|f| {
                    let keep = !f.key.is(original, key) || i == last;
                    i += 1;
                    keep
                });
            }
            None => fields.push(Field {
                key: Text::Owned(key.into()),
                value,
            }),
        }
        self.touched(key);
        Ok(())
    }

    /// Remove member `key` (every repeat of it); whether it was there.
    pub fn remove(&mut self, key: &str) -> Result<bool, PayloadError> {
        let (original, fields) = self.fields_mut()?;
        let before = fields.len();
        fields.retain(|f| !f.key.is(original, key));
        let removed = fields.len() != before;
        if removed {
            self.touched(key);
        }
        Ok(removed)
    }

    /// Keep only the members whose name `keep` accepts, in one pass; whether any went.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) -> Result<bool, PayloadError> {
        let (original, fields) = self.fields_mut()?;
        let before = fields.len();
        let mut model_dropped = false;
        fields.retain(|f| {
            let name = f.key.as_str(original);
            let kept = keep(name);
            model_dropped |= !kept && name == "model";
            kept
        });
        let removed = fields.len() != before;
        if removed {
            self.changed = true;
            if model_dropped {
                self.model = OnceLock::new();
            }
        }
        Ok(removed)
    }

    /// Rename member `from` to `to`, keeping its position; an existing `to` is replaced.
    /// Whether `from` was there.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<bool, PayloadError> {
        if from == to {
            return self.contains_key(from);
        }
        let (original, fields) = self.fields_mut()?;
        let Some(pos) = fields.iter().rposition(|f| f.key.is(original, from)) else {
            return Ok(false);
        };
        fields[pos].key = Text::Owned(to.into());
        let mut i = 0;
        fields.retain(|f| {
            let keep = i == pos || !(f.key.is(original, to) || f.key.is(original, from));
            i += 1;
            keep
        });
        self.touched(from);
        self.touched(to);
        Ok(true)
    }

    /// The body to send: the original bytes when unchanged, else the edited object.
    pub fn to_bytes(&self) -> Bytes {
        if !self.changed {
            return self.original.clone();
        }
        let Ok(fields) = self.fields() else {
            // Only an indexed payload can be changed.
            return self.original.clone();
        };
        // Sized exactly when no name needs escaping: a buffer that is full becomes `Bytes`
        // without another allocation.
        let size = 2 + fields
            .iter()
            .map(|f| {
                let key = match &f.key {
                    Text::Span(r) => r.len(),
                    Text::Owned(k) => k.len(),
                };
                key + 4 + self.raw_bytes_of(f).len()
            })
            .sum::<usize>()
            - usize::from(!fields.is_empty());
        let mut out = BytesMut::with_capacity(size);
        out.put_u8(b'{');
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            match &field.key {
                // The key as sent: it has no escapes to redo.
                Text::Span(r) => {
                    out.put_u8(b'"');
                    out.put_slice(&self.original[r.clone()]);
                    out.put_u8(b'"');
                }
                // A `str` always serializes, and writing to memory cannot fail.
                Text::Owned(key) => {
                    let _ = serde_json::to_writer((&mut out).writer(), &**key);
                }
            }
            out.put_u8(b':');
            out.put_slice(self.raw_bytes_of(field));
        }
        out.put_u8(b'}');
        out.freeze()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bodies can carry secrets and personal data: show the shape only.
        f.debug_struct("Payload")
            .field("len", &self.original.len())
            .field("changed", &self.changed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn p(s: &'static str) -> Payload {
        Payload::new(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn at_most_max_members_are_indexed() {
        let object = |n: usize| {
            let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":0")).collect();
            Payload::new(Bytes::from(format!("{{{}}}", members.join(","))))
        };
        assert!(object(MAX_MEMBERS).check().is_ok());
        assert_eq!(
            object(MAX_MEMBERS + 1).check(),
            Err(PayloadError::TooManyMembers)
        );
        assert_eq!(
            object(MAX_MEMBERS + 1)
                .check()
                .unwrap_err()
                .to_response()
                .code(),
            Some("invalid_body")
        );
    }

    #[test]
    fn retain_keeps_the_accepted_members_in_order_in_one_pass() {
        let mut payload = p(r#"{"model":"m","a":1,"b":2,"c":3}"#);
        assert!(payload.retain(|k| k != "b").unwrap());
        assert_eq!(&payload.to_bytes()[..], br#"{"model":"m","a":1,"c":3}"#);
        assert!(!payload.retain(|_| true).unwrap());
        assert!(payload.retain(|k| k != "model").unwrap());
        assert_eq!(payload.model().unwrap(), None);
    }

    #[test]
    fn a_repeated_model_is_refused_not_guessed() {
        let payload = p(r#"{"model":"a","x":1,"model":"b"}"#);
        assert!(matches!(
            payload.model(),
            Err(PayloadError::InvalidField { ref key, .. }) if key == "model"
        ));
        // Other repeated members are left to the last-one-wins rule.
        assert_eq!(p(r#"{"x":1,"x":2}"#).get::<u8>("x").unwrap(), Some(2));
    }

    #[test]
    fn what_python_accepts_and_rfc_8259_does_not_is_invalid_json() {
        for body in [
            "\u{feff}{\"model\":\"a\"}",
            r#"{"model":"a","t":NaN}"#,
            r#"{"model":"a"} x"#,
        ] {
            let payload = Payload::new(Bytes::from(body));
            assert!(
                matches!(payload.check(), Err(PayloadError::InvalidJson(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn unchanged_payload_is_forwarded_byte_for_byte() {
        let src = "{ \"model\" : \"x\",\n \"a\":[1, 2 ,3], \"z\": {\"k\": \"\\u00e9\"} }";
        let payload = p(src);
        assert_eq!(
            payload.get::<String>("model").unwrap().as_deref(),
            Some("x")
        );
        assert_eq!(&payload.to_bytes()[..], src.as_bytes());
    }

    #[test]
    fn edits_keep_order_and_unknown_members() {
        let mut payload = p(
            r#"{"model":"a.b","max_tokens":5,"x":{"deep":[1,{"y":null}]},"metadata":{"chat_id":"c"}}"#,
        );
        payload.set("model", "b").unwrap();
        payload
            .rename("max_tokens", "max_completion_tokens")
            .unwrap();
        assert!(payload.remove("metadata").unwrap());
        assert!(payload.is_changed());
        let out: Value = serde_json::from_slice(&payload.to_bytes()).unwrap();
        assert_eq!(
            out,
            json!({"model":"b","max_completion_tokens":5,"x":{"deep":[1,{"y":null}]}})
        );
        assert_eq!(
            String::from_utf8(payload.to_bytes().to_vec()).unwrap(),
            r#"{"model":"b","max_completion_tokens":5,"x":{"deep":[1,{"y":null}]}}"#
        );
    }

    #[test]
    fn set_appends_new_members() {
        let mut payload = p(r#"{"a":1}"#);
        payload.set("b", &json!({"c": [true]})).unwrap();
        assert_eq!(&payload.to_bytes()[..], br#"{"a":1,"b":{"c":[true]}}"#);
    }

    #[test]
    fn repeated_keys_read_the_last_and_collapse_on_set() {
        let mut payload = p(r#"{"model":"a","x":1,"model":"b"}"#);
        assert_eq!(
            payload.get::<String>("model").unwrap().as_deref(),
            Some("b")
        );
        payload.set("model", "c").unwrap();
        assert_eq!(&payload.to_bytes()[..], br#"{"x":1,"model":"c"}"#);
    }

    #[test]
    fn rename_replaces_an_existing_target() {
        let mut payload = p(r#"{"max_completion_tokens":1,"max_tokens":2}"#);
        assert!(
            payload
                .rename("max_tokens", "max_completion_tokens")
                .unwrap()
        );
        assert_eq!(&payload.to_bytes()[..], br#"{"max_completion_tokens":2}"#);
        assert!(!payload.rename("absent", "other").unwrap());
    }

    #[test]
    fn escaped_keys_are_decoded_and_rewritten_escaped() {
        let mut payload = p(r#"{"mo\u0064el":"x","q\"":1}"#);
        assert_eq!(
            payload.get::<String>("model").unwrap().as_deref(),
            Some("x")
        );
        payload.set("n", &1).unwrap();
        let out: Value = serde_json::from_slice(&payload.to_bytes()).unwrap();
        assert_eq!(out, json!({"model":"x","q\"":1,"n":1}));
    }

    #[test]
    fn bad_bodies_are_classified() {
        assert!(matches!(
            p("{\"a\":").check(),
            Err(PayloadError::InvalidJson(_))
        ));
        assert!(matches!(
            p("not json").check(),
            Err(PayloadError::InvalidJson(_))
        ));
        assert_eq!(p("[1,2]").check(), Err(PayloadError::NotAnObject));
        assert_eq!(p("\"s\"").check(), Err(PayloadError::NotAnObject));
        assert!(matches!(
            p("{} x").check(),
            Err(PayloadError::InvalidJson(_))
        ));
        let mut bad = p("[1]");
        assert!(bad.set("a", &1).is_err());
        assert!(!bad.is_changed());
        assert_eq!(&bad.to_bytes()[..], b"[1]");
    }

    #[test]
    fn wrong_member_type_is_a_field_error() {
        let payload = p(r#"{"model":5}"#);
        let err = payload.get::<String>("model").unwrap_err();
        assert!(matches!(err, PayloadError::InvalidField { ref key, .. } if key == "model"));
        assert_eq!(err.to_response().status(), http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn absent_and_null_are_told_apart() {
        let payload = p(r#"{"a":null}"#);
        assert_eq!(payload.get::<Option<String>>("a").unwrap(), Some(None));
        assert_eq!(payload.get::<Option<String>>("b").unwrap(), None);
        assert_eq!(payload.keys().unwrap().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn the_model_is_read_once_and_follows_edits() {
        let mut payload = p(r#"{"model":"a.m","x":1}"#);
        assert_eq!(payload.model().unwrap(), Some("a.m"));
        payload.set("model", "m").unwrap();
        assert_eq!(payload.model().unwrap(), Some("m"));
        payload.remove("model").unwrap();
        assert_eq!(payload.model().unwrap(), None);
        assert_eq!(p(r#"{"model":null}"#).model().unwrap(), None);
        assert!(matches!(
            p(r#"{"model":5}"#).model(),
            Err(PayloadError::InvalidField { .. })
        ));
        assert!(p("[1]").model().is_err());
    }

    #[test]
    fn the_model_is_decoded_whether_escaped_or_set() {
        let mut payload = p(r#"{"model":"a\u002em","k\u00e9y":"v","ключ":1}"#);
        assert_eq!(payload.model().unwrap(), Some("a.m"));
        payload.set("model", "b\"q").unwrap();
        assert_eq!(payload.model().unwrap(), Some("b\"q"));
        payload.rename("ключ", "ключ2").unwrap();
        // Keys read without escapes are written back as they were, escaped ones re-escaped.
        assert_eq!(
            String::from_utf8(payload.to_bytes().to_vec()).unwrap(),
            r#"{"model":"b\"q","kéy":"v","ключ2":1}"#
        );
    }

    #[test]
    fn set_str_writes_the_same_json_as_set() {
        for value in [
            "m",
            "",
            "é ü",
            "a\"b",
            "back\\slash",
            "tab\there",
            "nul\u{0}",
        ] {
            let mut a = p(r#"{"model":"x","n":1}"#);
            let mut b = a.clone();
            a.set_str("model", value).unwrap();
            b.set("model", value).unwrap();
            assert_eq!(a.to_bytes(), b.to_bytes(), "{value:?}");
            assert_eq!(a.model().unwrap(), Some(value));
            assert_eq!(b.model().unwrap(), Some(value));
        }
    }

    #[test]
    fn the_model_set_is_the_model_read() {
        // A repeated `model` is refused when read; setting it leaves one member, which is
        // what is read after (from the value set, not from the bytes).
        let mut p = p(r#"{"model":"a","n":1,"model":"b"}"#);
        assert!(p.model().is_err());
        p.set_str("model", "c").unwrap();
        assert_eq!(p.model().unwrap(), Some("c"));
        assert_eq!(&p.to_bytes()[..], br#"{"n":1,"model":"c"}"#);
        p.remove("model").unwrap();
        assert_eq!(p.model().unwrap(), None);
    }

    #[test]
    fn a_large_body_round_trips() {
        let big = "x".repeat(1 << 20);
        let src = format!(r#"{{"model":"p.m","messages":[{{"role":"user","content":"{big}"}}]}}"#);
        let mut payload = Payload::new(Bytes::from(src.clone()));
        payload.set("model", "m").unwrap();
        let out = payload.to_bytes();
        assert_eq!(out.len(), src.len() - 2);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["messages"][0]["content"].as_str().unwrap().len(), 1 << 20);
    }
}
