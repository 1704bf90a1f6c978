//! The responses layer's section of a connection's config: `api_type`.

use serde_json::{Map, Value};
use tower_openai_settings::{ConnectionOptions, OptionsError};

/// The API a connection's upstream speaks for chat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApiType {
    /// Chat Completions (the default).
    #[default]
    Chat,
    /// OpenAI's Responses API only: chat requests are converted.
    Responses,
}

/// The member of a connection's config the responses layer reads: `api_type` (`"chat"`, the
/// default, or `"responses"`; Open WebUI 0.7+).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponsesOptions {
    /// The API the upstream speaks.
    pub api_type: ApiType,
}

impl ConnectionOptions for ResponsesOptions {
    fn from_config(config: &Map<String, Value>) -> Result<Self, OptionsError> {
        let api_type = match config.get("api_type") {
            None => ApiType::Chat,
            Some(Value::String(s)) if s == "chat" || s.is_empty() => ApiType::Chat,
            Some(Value::String(s)) if s == "responses" => ApiType::Responses,
            Some(_) => {
                return Err(OptionsError::new(
                    "api_type",
                    "must be \"chat\" or \"responses\"",
                ));
            }
        };
        Ok(Self { api_type })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use tower_openai_settings::ConnectionOptions;

    use super::{ApiType, ResponsesOptions};

    #[test]
    fn api_type_is_chat_or_responses() {
        let parse = |v: Value| ResponsesOptions::from_config(v.as_object().unwrap());
        assert_eq!(parse(json!({})).unwrap().api_type, ApiType::Chat);
        assert_eq!(
            parse(json!({"api_type": "responses"})).unwrap().api_type,
            ApiType::Responses
        );
        assert_eq!(
            parse(json!({"api_type": "chat"})).unwrap().api_type,
            ApiType::Chat
        );
        assert_eq!(
            parse(json!({"api_type": "soap"})).unwrap_err().member(),
            "api_type"
        );
        assert_eq!(
            parse(json!({"api_type": 1})).unwrap_err().member(),
            "api_type"
        );
    }
}
