//! The headers layer's section of a connection's config: `headers`.

use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tower_openai_settings::{ConnectionOptions, OptionsError};

/// A connection's `headers`: extra upstream headers, validated as HTTP (values may hold
/// `{{…}}` placeholders, filled per request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionHeaders {
    /// The headers, in the order given.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ConnectionOptions for ConnectionHeaders {
    fn from_config(config: &Map<String, Value>) -> Result<Self, OptionsError> {
        let Some(value) = config.get("headers") else {
            return Ok(Self::default());
        };
        let obj = value.as_object().ok_or_else(|| {
            OptionsError::new(
                "headers",
                "must be a JSON object of header names to strings",
            )
        })?;
        let mut headers = Vec::with_capacity(obj.len());
        for (name, v) in obj {
            let member = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| OptionsError::new(&*member, "is not a valid HTTP header name"))?;
            let v = v
                .as_str()
                .ok_or_else(|| OptionsError::new(&*member, "must be a string"))?;
            let v = HeaderValue::from_str(v)
                .map_err(|_| OptionsError::new(&*member, "is not a valid HTTP header value"))?;
            headers.push((header, v));
        }
        Ok(Self { headers })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<ConnectionHeaders, OptionsError> {
        ConnectionHeaders::from_config(v.as_object().unwrap())
    }

    /// C-6: `headers` is an object of valid header names to valid values; the member at
    /// fault is named down to the header.
    #[test]
    fn c6_headers() {
        assert!(parse(json!({})).unwrap().headers.is_empty());
        let h = parse(json!({"headers": {"X-Team": "ml", "X-User": "{{USER_ID}}"}})).unwrap();
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.headers[1].1, "{{USER_ID}}");
        for (bad, member) in [
            (json!({"headers": ["X-A"]}), "headers"),
            (
                json!({"headers": {"bad header": "v"}}),
                "headers.bad header",
            ),
            (json!({"headers": {"X-A": "line\nbreak"}}), "headers.X-A"),
            (json!({"headers": {"X-A": 1}}), "headers.X-A"),
        ] {
            assert_eq!(parse(bad).unwrap_err().member(), member);
        }
    }
}
