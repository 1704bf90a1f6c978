//! Azure's section of a connection's config: `api_version`.

use serde_json::{Map, Value};
use tower_openai_settings::{ConnectionOptions, OptionsError};

/// The members of a connection's config the azure layer reads (besides core's `azure`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AzureOptions {
    /// `api_version` as given (`None` when absent: [`DEFAULT_API_VERSION`](crate::DEFAULT_API_VERSION)).
    pub api_version: Option<String>,
}

impl ConnectionOptions for AzureOptions {
    fn from_config(config: &Map<String, Value>) -> Result<Self, OptionsError> {
        let api_version = match config.get("api_version") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(OptionsError::new("api_version", "must be a string")),
        };
        Ok(AzureOptions { api_version })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// C-6: `api_version` is kept as given; it must be a string.
    #[test]
    fn c6_api_version() {
        let parse = |v: Value| AzureOptions::from_config(v.as_object().unwrap());
        assert_eq!(parse(json!({})).unwrap().api_version, None);
        assert_eq!(
            parse(json!({"api_version": "2024-10-21"}))
                .unwrap()
                .api_version
                .as_deref(),
            Some("2024-10-21")
        );
        assert_eq!(
            parse(json!({"api_version": 2024})).unwrap_err().member(),
            "api_version"
        );
    }
}
