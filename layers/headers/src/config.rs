use http::{HeaderName, HeaderValue};
use tower_openai_settings::ConfigError;

/// The names of the user-info and chat-id headers (rules H-3, H-4; configurable as in later Open WebUI releases).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderNames {
    /// `X-OpenWebUI-User-Name`.
    pub user_name: HeaderName,
    /// `X-OpenWebUI-User-Id`.
    pub user_id: HeaderName,
    /// `X-OpenWebUI-User-Email`.
    pub user_email: HeaderName,
    /// `X-OpenWebUI-User-Role`.
    pub user_role: HeaderName,
    /// `X-OpenWebUI-Chat-Id`.
    pub chat_id: HeaderName,
}

impl Default for HeaderNames {
    fn default() -> Self {
        Self {
            user_name: HeaderName::from_static("x-openwebui-user-name"),
            user_id: HeaderName::from_static("x-openwebui-user-id"),
            user_email: HeaderName::from_static("x-openwebui-user-email"),
            user_role: HeaderName::from_static("x-openwebui-user-role"),
            chat_id: HeaderName::from_static("x-openwebui-chat-id"),
        }
    }
}

/// What the headers layer sends. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct HeadersConfig {
    /// H-2 `HTTP-Referer` for OpenRouter connections.
    pub openrouter_referer: HeaderValue,
    /// H-2 `X-Title` for OpenRouter connections.
    pub openrouter_title: HeaderValue,
    /// Names of the user-info and chat-id headers.
    pub names: HeaderNames,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        Self {
            openrouter_referer: HeaderValue::from_static(
                "https://github.com/tower-openai/tower-openai",
            ),
            openrouter_title: HeaderValue::from_static("tower-openai"),
            names: HeaderNames::default(),
        }
    }
}

impl HeadersConfig {
    /// Open WebUI's own attribution (`https://openwebui.com/`, `Open WebUI`), for a drop-in
    /// replacement that keeps its OpenRouter rankings.
    pub fn open_webui() -> Self {
        Self {
            openrouter_referer: HeaderValue::from_static("https://openwebui.com/"),
            openrouter_title: HeaderValue::from_static("Open WebUI"),
            ..Self::default()
        }
    }

    /// Defaults, with names and attribution from the environment:
    /// `FORWARD_USER_INFO_HEADER_USER_NAME` / `_ID` / `_EMAIL` / `_ROLE`,
    /// `FORWARD_SESSION_INFO_HEADER_CHAT_ID`, `OPENROUTER_HTTP_REFERER`, `OPENROUTER_X_TITLE`.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let name = |var: &str, slot: &mut HeaderName| -> Result<(), ConfigError> {
            if let Some(v) = lookup(var).filter(|v| !v.trim().is_empty()) {
                *slot = HeaderName::from_bytes(v.trim().as_bytes()).map_err(|_| {
                    ConfigError::new(var, format!("{v:?} is not a valid HTTP header name"))
                })?;
            }
            Ok(())
        };
        name(
            "FORWARD_USER_INFO_HEADER_USER_NAME",
            &mut config.names.user_name,
        )?;
        name(
            "FORWARD_USER_INFO_HEADER_USER_ID",
            &mut config.names.user_id,
        )?;
        name(
            "FORWARD_USER_INFO_HEADER_USER_EMAIL",
            &mut config.names.user_email,
        )?;
        name(
            "FORWARD_USER_INFO_HEADER_USER_ROLE",
            &mut config.names.user_role,
        )?;
        name(
            "FORWARD_SESSION_INFO_HEADER_CHAT_ID",
            &mut config.names.chat_id,
        )?;
        let value = |var: &str, slot: &mut HeaderValue| -> Result<(), ConfigError> {
            if let Some(v) = lookup(var).filter(|v| !v.trim().is_empty()) {
                *slot = HeaderValue::from_str(&v).map_err(|_| {
                    ConfigError::new(var, format!("{v:?} is not a valid HTTP header value"))
                })?;
            }
            Ok(())
        };
        value("OPENROUTER_HTTP_REFERER", &mut config.openrouter_referer)?;
        value("OPENROUTER_X_TITLE", &mut config.openrouter_title)?;
        Ok(config)
    }
}
