//! Connection settings for the tower-openai layers: the connections' URLs, keys and configs,
//! resolved by Open WebUI's rules (C-4 … C-8; the gateway reads its environment, C-1 … C-3),
//! validated once, and published as an immutable snapshot.
//!
//! - [`SettingsSource`] holds what one source (the environment, a TOML file, an admin update,
//!   your own code) says; sources are layered with [`SettingsSource::or`] and turned into
//!   [`Settings`] by [`SettingsSource::build`], which validates everything (URLs, per-connection
//!   config types, header names and values) and fails with a [`ConfigError`] naming the
//!   variable.
//! - [`Settings`] is the validated snapshot; each [`Connection`] in it carries its URL, key
//!   and typed [`ConnectionConfig`]; a layer reads its own section of a connection's config
//!   as [`ConnectionOptions`] ([`Connection::options`]).
//! - [`SettingsHandle`] publishes the current snapshot behind an `ArcSwap`: a request loads
//!   it once and keeps it to the end, an update swaps it atomically.
//! - [`LoadSettingsLayer`] is the step that loads that snapshot into each request, as a
//!   [`SettingsSnapshot`] extension every layer below reads.
//!
//! # Extensions
//! - writes [`SettingsSnapshot`] (the [`LoadSettingsLayer`]).

mod connection;
mod handle;
mod load;
mod options;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

pub use self::connection::{ApiKey, BaseUrl, Connection, ConnectionConfig};
pub use self::handle::SettingsHandle;
pub use self::load::{LoadSettings, LoadSettingsLayer};
pub use self::options::{ConnectionOptions, OptionsError};

/// The default upstream, used where Open WebUI uses it (C-1, C-2).
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Azure's `api-version` when a connection names none (C-6, CC-12).
pub const DEFAULT_AZURE_API_VERSION: &str = "2023-03-15-preview";
/// The idle-read timeout of chat and proxy requests when `AIOHTTP_CLIENT_TIMEOUT` is unset.
///
/// Open WebUI waits forever by default (CC-13); we wait at most this long for the *next*
/// byte, so a dead upstream is noticed and a long stream that keeps flowing is never cut.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The model-list timeout when `AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST` is unset.
pub const DEFAULT_TIMEOUT_MODEL_LIST: Duration = Duration::from_secs(10);
/// The model-list cache TTL when `MODELS_CACHE_TTL` is unset (M-12).
pub const DEFAULT_MODELS_CACHE_TTL: Duration = Duration::from_secs(1);

/// The settings snapshot a request runs with, loaded once at the top by
/// [`LoadSettingsLayer`]: a settings update that lands while the request is in flight never
/// mixes old and new values in one request.
#[derive(Clone, Debug)]
pub struct SettingsSnapshot(pub Arc<Settings>);

/// A settings value that did not validate. The message names the environment variable and
/// the TOML key it came from; it never contains a key or token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    field: String,
    message: String,
}

impl ConfigError {
    /// An error for `field` (e.g. `OPENAI_API_BASE_URLS[1]`).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The variable or key at fault.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What one source of settings says; `None` means "this source does not say".
///
/// Timeouts and the TTL are `Option<Option<Duration>>`: `Some(None)` is an explicit "no
/// timeout" / "no expiry" (an empty variable, as in Open WebUI).
#[derive(Clone, Default, PartialEq)]
pub struct SettingsSource {
    /// `ENABLE_OPENAI_API`.
    pub enable: Option<bool>,
    /// `OPENAI_API_BASE_URLS`, already split (C-2).
    pub base_urls: Option<Vec<String>>,
    /// `OPENAI_API_KEYS`, already split (C-3).
    pub keys: Option<Vec<ApiKey>>,
    /// `OPENAI_API_CONFIGS`: per-connection configs keyed `"0"`, `"1"`, … or by URL.
    pub configs: Option<Map<String, Value>>,
    /// `AIOHTTP_CLIENT_TIMEOUT`: idle-read timeout of chat and proxy requests.
    pub timeout: Option<Option<Duration>>,
    /// `AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST`: timeout of model lists and connection checks.
    pub timeout_model_list: Option<Option<Duration>>,
    /// `AIOHTTP_CLIENT_SESSION_SSL`: verify upstream certificates.
    pub ssl_verify: Option<bool>,
    /// `MODELS_CACHE_TTL`.
    pub models_cache_ttl: Option<Option<Duration>>,
    /// `BYPASS_MODEL_ACCESS_CONTROL`.
    pub bypass_model_access_control: Option<bool>,
    /// `ENABLE_FORWARD_USER_INFO_HEADERS`.
    pub forward_user_info_headers: Option<bool>,
}

impl fmt::Debug for SettingsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SettingsSource")
            .field("enable", &self.enable)
            .field("base_urls", &self.base_urls)
            .field("keys", &self.keys)
            .field("configs", &self.configs.as_ref().map(|c| c.len()))
            .field("timeout", &self.timeout)
            .field("timeout_model_list", &self.timeout_model_list)
            .field("ssl_verify", &self.ssl_verify)
            .field("models_cache_ttl", &self.models_cache_ttl)
            .field(
                "bypass_model_access_control",
                &self.bypass_model_access_control,
            )
            .field("forward_user_info_headers", &self.forward_user_info_headers)
            .finish()
    }
}

impl SettingsSource {
    /// `self`, with what it does not say taken from `lower`.
    pub fn or(self, lower: SettingsSource) -> SettingsSource {
        SettingsSource {
            enable: self.enable.or(lower.enable),
            base_urls: self.base_urls.or(lower.base_urls),
            keys: self.keys.or(lower.keys),
            configs: self.configs.or(lower.configs),
            timeout: self.timeout.or(lower.timeout),
            timeout_model_list: self.timeout_model_list.or(lower.timeout_model_list),
            ssl_verify: self.ssl_verify.or(lower.ssl_verify),
            models_cache_ttl: self.models_cache_ttl.or(lower.models_cache_ttl),
            bypass_model_access_control: self
                .bypass_model_access_control
                .or(lower.bypass_model_access_control),
            forward_user_info_headers: self
                .forward_user_info_headers
                .or(lower.forward_user_info_headers),
        }
    }

    /// Validate and build the settings, filling defaults (C-1) and fitting the keys to the
    /// URLs (C-5).
    pub fn build(self) -> Result<Settings, ConfigError> {
        let enable = self.enable.unwrap_or(true);
        let base_urls = self
            .base_urls
            .unwrap_or_else(|| vec![DEFAULT_BASE_URL.to_owned()]);
        if base_urls.is_empty() {
            return Err(ConfigError::new(
                "OPENAI_API_BASE_URLS (openai.base_urls)",
                "at least one URL is needed",
            ));
        }
        let mut keys = self.keys.unwrap_or_else(|| vec![ApiKey::default()]);
        fit_keys(&mut keys, base_urls.len());
        let configs = self.configs.unwrap_or_default();
        let timeout = self.timeout.unwrap_or(Some(DEFAULT_TIMEOUT));
        let timeout_model_list = self
            .timeout_model_list
            .unwrap_or(Some(DEFAULT_TIMEOUT_MODEL_LIST));
        let ssl_verify = self.ssl_verify.unwrap_or(true);

        for (key, value) in &configs {
            if !value.is_object() {
                return Err(ConfigError::new(
                    format!("OPENAI_API_CONFIGS[{key:?}] (openai.configs.{key:?})"),
                    "must be a JSON object",
                ));
            }
        }
        let mut connections = Vec::with_capacity(base_urls.len());
        for (index, (url, key)) in base_urls.iter().zip(&keys).enumerate() {
            let base = BaseUrl::parse(url).map_err(|message| {
                ConfigError::new(
                    format!("OPENAI_API_BASE_URLS[{index}] (openai.base_urls[{index}])"),
                    format!("{url:?} {message}"),
                )
            })?;
            let (config_key, raw) = match lookup_config(&configs, index, url) {
                Some((k, v)) => (k.to_owned(), v.clone()),
                None => (index.to_string(), Value::Object(Map::new())),
            };
            let config =
                ConnectionConfig::from_json(&raw).map_err(|e| config_error(&config_key, &e))?;
            let raw_config = match raw {
                Value::Object(mut map) => {
                    map.retain(|_, v| !v.is_null());
                    map
                }
                _ => Map::new(),
            };
            let (bearer, api_key_header) = connection::prepared(key).map_err(|()| {
                ConfigError::new(
                    format!("OPENAI_API_KEYS[{index}] (openai.keys[{index}])"),
                    "contains characters that are not allowed in an HTTP header",
                )
            })?;
            connections.push(Arc::new(Connection {
                index,
                openai_host: url.contains(connection::OPENAI_HOST),
                openrouter_host: url.contains(connection::OPENROUTER_HOST),
                anthropic: url.contains(connection::ANTHROPIC_HOST)
                    || config
                        .provider
                        .as_deref()
                        .is_some_and(|p| p.eq_ignore_ascii_case("anthropic")),
                url: url.clone(),
                base,
                key: key.clone(),
                config,
                raw_config,
                config_key,
                options: options::OptionsCache::new(),
                timeout,
                timeout_model_list,
                ssl_verify,
                bearer,
                api_key_header,
            }));
        }
        Ok(Settings {
            generation: 0,
            enable,
            base_urls,
            keys,
            configs,
            connections,
            timeout,
            timeout_model_list,
            ssl_verify,
            models_cache_ttl: self
                .models_cache_ttl
                .unwrap_or(Some(DEFAULT_MODELS_CACHE_TTL)),
            bypass_model_access_control: self.bypass_model_access_control.unwrap_or(false),
            forward_user_info_headers: self.forward_user_info_headers.unwrap_or(false),
        })
    }
}

/// A validated, immutable settings snapshot. See the [module docs](self).
#[derive(Clone)]
pub struct Settings {
    generation: u64,
    enable: bool,
    base_urls: Vec<String>,
    keys: Vec<ApiKey>,
    configs: Map<String, Value>,
    connections: Vec<Arc<Connection>>,
    timeout: Option<Duration>,
    timeout_model_list: Option<Duration>,
    ssl_verify: bool,
    models_cache_ttl: Option<Duration>,
    bypass_model_access_control: bool,
    forward_user_info_headers: bool,
}

impl Settings {
    /// Settings for these upstream URLs (no keys, defaults for everything else).
    pub fn for_urls<I, U>(urls: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        SettingsSource {
            base_urls: Some(urls.into_iter().map(Into::into).collect()),
            ..Default::default()
        }
        .build()
    }

    /// Bumped by [`SettingsHandle::store`] on every swap; caches key on it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `ENABLE_OPENAI_API`.
    pub fn enable(&self) -> bool {
        self.enable
    }

    /// The URLs as configured (C-2: trailing slashes kept).
    pub fn base_urls(&self) -> &[String] {
        &self.base_urls
    }

    /// The keys, fitted to the URLs (C-5).
    pub fn keys(&self) -> &[ApiKey] {
        &self.keys
    }

    /// The per-connection configs as given (keyed by index or URL).
    pub fn configs(&self) -> &Map<String, Value> {
        &self.configs
    }

    /// The connections, in index order.
    pub fn connections(&self) -> &[Arc<Connection>] {
        &self.connections
    }

    /// Connection `index`, if there is one.
    pub fn connection(&self, index: usize) -> Option<&Arc<Connection>> {
        self.connections.get(index)
    }

    /// Idle-read timeout of chat and proxy requests (`None`: none).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Timeout of model lists and connection checks (`None`: none).
    pub fn timeout_model_list(&self) -> Option<Duration> {
        self.timeout_model_list
    }

    /// Whether upstream certificates are verified.
    pub fn ssl_verify(&self) -> bool {
        self.ssl_verify
    }

    /// Model-list cache TTL (`None`: never expires).
    pub fn models_cache_ttl(&self) -> Option<Duration> {
        self.models_cache_ttl
    }

    /// `BYPASS_MODEL_ACCESS_CONTROL`.
    pub fn bypass_model_access_control(&self) -> bool {
        self.bypass_model_access_control
    }

    /// `ENABLE_FORWARD_USER_INFO_HEADERS`.
    pub fn forward_user_info_headers(&self) -> bool {
        self.forward_user_info_headers
    }

    /// Parse section `T` of every connection's config (see [`ConnectionOptions`]); the first
    /// member at fault, named as [`build`](SettingsSource::build) names core's own.
    pub fn check<T: ConnectionOptions>(&self) -> Result<(), ConfigError> {
        for connection in &self.connections {
            connection
                .options::<T>()
                .map_err(|e| config_error(&connection.config_key, e))?;
        }
        Ok(())
    }

    /// These settings as a source, e.g. to apply an update over them.
    pub fn to_source(&self) -> SettingsSource {
        SettingsSource {
            enable: Some(self.enable),
            base_urls: Some(self.base_urls.clone()),
            keys: Some(self.keys.clone()),
            configs: Some(self.configs.clone()),
            timeout: Some(self.timeout),
            timeout_model_list: Some(self.timeout_model_list),
            ssl_verify: Some(self.ssl_verify),
            models_cache_ttl: Some(self.models_cache_ttl),
            bypass_model_access_control: Some(self.bypass_model_access_control),
            forward_user_info_headers: Some(self.forward_user_info_headers),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("generation", &self.generation)
            .field("enable", &self.enable)
            .field("connections", &self.connections)
            .field("models_cache_ttl", &self.models_cache_ttl)
            .finish_non_exhaustive()
    }
}

/// C-5: truncate extra keys, pad missing ones with `""`.
fn fit_keys(keys: &mut Vec<ApiKey>, urls: usize) {
    keys.resize(urls, ApiKey::default());
}

/// C-8: connection `index`'s config, looked up by `"index"` first, then by its URL.
fn lookup_config<'a>(
    configs: &'a Map<String, Value>,
    index: usize,
    url: &str,
) -> Option<(&'a str, &'a Value)> {
    configs
        .get_key_value(index.to_string().as_str())
        .or_else(|| configs.get_key_value(url))
        .map(|(k, v)| (k.as_str(), v))
}

/// A member of connection config `config_key` at fault, named as a variable and a TOML key.
fn config_error(config_key: &str, e: &OptionsError) -> ConfigError {
    let member = e.member();
    ConfigError::new(
        format!(
            "OPENAI_API_CONFIGS[{config_key:?}].{member} (openai.configs.{config_key:?}.{member})"
        ),
        e.message(),
    )
}
