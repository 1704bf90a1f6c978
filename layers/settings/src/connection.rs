use std::fmt;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};
use serde_json::{Map, Value};

use super::options::{ConnectionOptions, OptionsCache, OptionsError};

/// An upstream API key. Its `Debug` never shows it; read it with [`expose`](Self::expose).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wrap a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("ApiKey(\"\")")
        } else {
            f.write_str("ApiKey(<redacted>)")
        }
    }
}

impl From<&str> for ApiKey {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// The members of a connection's config (C-6) that several layers read, typed. A layer's own
/// members are its [`ConnectionOptions`](super::ConnectionOptions) section.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// `enable` (default true): false contributes no models.
    pub enable: bool,
    /// `model_ids`: when not empty, the connection's models, with no `/models` call.
    pub model_ids: Vec<String>,
    /// `prefix_id`: model ids are published as `{prefix_id}.{id}`. An empty string is none.
    pub prefix_id: Option<String>,
    /// `tags`: `[{"name": …}]`, copied onto every model.
    pub tags: Vec<Value>,
    /// `connection_type` (default `external`).
    pub connection_type: String,
    /// `azure`: Azure OpenAI mode (the model list, discovery and credentials depend on it);
    /// also on with `provider: "azure"` (Open WebUI 0.7+).
    pub azure: bool,
    /// `provider` (Open WebUI 0.7+): copied onto the connection's listed models.
    pub provider: Option<String>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            enable: true,
            model_ids: Vec::new(),
            prefix_id: None,
            tags: Vec::new(),
            connection_type: "external".to_owned(),
            azure: false,
            provider: None,
        }
    }
}

impl ConnectionConfig {
    /// Parse a config object; on error, the member at fault and what is wrong.
    /// A `null` member counts as absent; members this type does not name are left to the
    /// layers' sections.
    pub fn from_json(value: &Value) -> Result<Self, OptionsError> {
        let err = |member: &str, msg: &str| OptionsError::new(member, msg);
        let Value::Object(map) = value else {
            return Err(err("", "must be a JSON object"));
        };
        let mut config = ConnectionConfig::default();
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            match key.as_str() {
                "enable" => {
                    config.enable = value
                        .as_bool()
                        .ok_or_else(|| err(key, "must be true or false"))?;
                }
                "model_ids" => {
                    let list = value
                        .as_array()
                        .ok_or_else(|| err(key, "must be a list of strings"))?;
                    config.model_ids = list
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned))
                        .collect::<Option<_>>()
                        .ok_or_else(|| err(key, "must be a list of strings"))?;
                }
                "prefix_id" => {
                    let prefix = value.as_str().ok_or_else(|| err(key, "must be a string"))?;
                    config.prefix_id = (!prefix.is_empty()).then(|| prefix.to_owned());
                }
                "tags" => {
                    let list = value
                        .as_array()
                        .ok_or_else(|| err(key, "must be a list of {\"name\": …} objects"))?;
                    if !list
                        .iter()
                        .all(|t| t.get("name").is_some_and(Value::is_string))
                    {
                        return Err(err(key, "must be a list of {\"name\": …} objects"));
                    }
                    config.tags = list.clone();
                }
                "connection_type" => {
                    config.connection_type = value
                        .as_str()
                        .ok_or_else(|| err(key, "must be a string"))?
                        .to_owned();
                }
                "azure" => {
                    config.azure = value
                        .as_bool()
                        .ok_or_else(|| err(key, "must be true or false"))?;
                }
                "provider" => {
                    let provider = value.as_str().ok_or_else(|| err(key, "must be a string"))?;
                    config.provider = (!provider.is_empty()).then(|| provider.to_owned());
                }
                // Another layer's section (`Connection::options`), or nobody's.
                _ => {}
            }
        }
        if config.provider.as_deref() == Some("azure") {
            config.azure = true;
        }
        Ok(config)
    }
}

/// A connection's base URL, split once so joining a request path costs no parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// The path without a trailing `/` (`""` for the root).
    path: String,
    /// The `Host` header its requests carry (the host, and the port unless it is the
    /// scheme's default), made once instead of per request.
    host: http::HeaderValue,
}

impl BaseUrl {
    /// Parse an `http://` or `https://` URL; the message says what is wrong.
    pub fn parse(url: &str) -> Result<Self, &'static str> {
        let uri: Uri = url.parse().map_err(|_| "is not a URL")?;
        let scheme = uri.scheme().cloned().ok_or("is not an absolute URL")?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err("must start with http:// or https://");
        }
        let authority = uri.authority().cloned().ok_or("has no host")?;
        if uri.query().is_some() {
            return Err("must not have a query string");
        }
        let path = uri.path().trim_end_matches('/').to_owned();
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host = http::HeaderValue::try_from(host)
            .map_err(|_| "has a host that is not a header value")?;
        Ok(Self {
            scheme,
            authority,
            path,
            host,
        })
    }

    /// Whether it is `https`.
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The host (and port).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The `Host` header value for its requests: the host, and the port unless it is the
    /// scheme's default (as HTTP clients write it; never the URL's user info).
    pub fn host_header(&self) -> &http::HeaderValue {
        &self.host
    }

    /// `{base}{path_and_query}`: the request path is appended to the base path with exactly
    /// one `/` between them (so a base URL with a trailing slash works), query kept.
    pub fn join(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let rest = path_and_query.trim_start_matches('/');
        let mut pq = String::with_capacity(self.path.len() + rest.len() + 1);
        pq.push_str(&self.path);
        pq.push('/');
        pq.push_str(rest);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::try_from(pq)?)
            .build()
    }
}

/// The host whose URL marks OpenAI's own API (`connection.url_contains` in the spec).
pub(super) const OPENAI_HOST: &str = "api.openai.com";

/// The host whose URL marks OpenRouter.
pub(super) const OPENROUTER_HOST: &str = "openrouter.ai";

/// The host whose URL marks Anthropic's own API.
pub(super) const ANTHROPIC_HOST: &str = "api.anthropic.com";

/// One upstream connection of a settings snapshot: URL, key and config (C-6).
#[derive(Clone, Debug)]
pub struct Connection {
    pub(super) index: usize,
    pub(super) url: String,
    /// Whether `url` contains [`OPENAI_HOST`], found once: layers ask on every request.
    pub(super) openai_host: bool,
    /// Whether `url` contains [`OPENROUTER_HOST`].
    pub(super) openrouter_host: bool,
    /// Whether the connection speaks Anthropic's API: `provider: "anthropic"` or a URL
    /// containing [`ANTHROPIC_HOST`].
    pub(super) anthropic: bool,
    pub(super) base: BaseUrl,
    pub(super) key: ApiKey,
    pub(super) config: ConnectionConfig,
    /// The config object as given (members set to `null` removed), for the layers' sections.
    pub(super) raw_config: Map<String, Value>,
    /// The key its config was found under in `configs` (for error messages).
    pub(super) config_key: String,
    pub(super) options: OptionsCache,
    pub(super) timeout: Option<Duration>,
    pub(super) timeout_model_list: Option<Duration>,
    pub(super) ssl_verify: bool,
    pub(super) bearer: Option<HeaderValue>,
    pub(super) api_key_header: Option<HeaderValue>,
}

/// `Bearer <key>` and the bare key as header values, marked sensitive; `None` for an empty key.
pub(super) fn prepared(key: &ApiKey) -> Result<(Option<HeaderValue>, Option<HeaderValue>), ()> {
    if key.is_empty() {
        return Ok((None, None));
    }
    let mut bearer = HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| ())?;
    let mut bare = HeaderValue::from_str(key.expose()).map_err(|_| ())?;
    bearer.set_sensitive(true);
    bare.set_sensitive(true);
    Ok((Some(bearer), Some(bare)))
}

impl Connection {
    /// `Authorization: Bearer <key>` for this connection, prepared once per settings snapshot
    /// (rule A-1); `None` when the key is empty.
    pub fn bearer(&self) -> Option<&HeaderValue> {
        self.bearer.as_ref()
    }

    /// The key as an `api-key` header value (rule A-7); `None` when the key is empty.
    pub fn api_key_header(&self) -> Option<&HeaderValue> {
        self.api_key_header.as_ref()
    }

    /// Its position in the URL list.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The parsed base URL.
    pub fn base(&self) -> &BaseUrl {
        &self.base
    }

    /// The API key (possibly empty).
    pub fn key(&self) -> &ApiKey {
        &self.key
    }

    /// The per-connection config: the members several layers read.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// A layer's section of the config, parsed on first use and kept (see
    /// [`ConnectionOptions`]); the member at fault when it does not parse.
    pub fn options<T: ConnectionOptions>(&self) -> Result<&T, &OptionsError> {
        self.options.get::<T>(&self.raw_config)
    }

    /// The config object as given (members set to `null` removed).
    pub fn raw_config(&self) -> &Map<String, Value> {
        &self.raw_config
    }

    /// The model id this connection is sent for `requested` (as the caller named it): its
    /// `prefix_id` and the `.` after it removed (rule M-4); `requested` itself when it does
    /// not carry the prefix.
    pub fn upstream_model<'a>(&self, requested: &'a str) -> &'a str {
        match &self.config.prefix_id {
            Some(prefix) => requested
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .unwrap_or(requested),
            None => requested,
        }
    }

    /// Idle-read timeout for ordinary requests.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Timeout for model lists and checks.
    pub fn timeout_model_list(&self) -> Option<Duration> {
        self.timeout_model_list
    }

    /// Whether certificates are verified.
    pub fn ssl_verify(&self) -> bool {
        self.ssl_verify
    }

    /// Whether the URL contains `substring`. For the spec's two host tests, use
    /// [`is_openai`](Self::is_openai) and [`is_openrouter`](Self::is_openrouter): they were
    /// answered when the settings were loaded.
    pub fn url_contains(&self, substring: &str) -> bool {
        self.url.contains(substring)
    }

    /// Whether the URL contains `api.openai.com` (OpenAI's own API: its model list is
    /// filtered, and its reasoning models get the payload rewrite).
    pub fn is_openai(&self) -> bool {
        self.openai_host
    }

    /// Whether the URL contains `openrouter.ai` (OpenRouter's attribution headers are sent).
    pub fn is_openrouter(&self) -> bool {
        self.openrouter_host
    }

    /// Whether the connection is Anthropic's API (`provider: "anthropic"`, any case, or a URL
    /// containing `api.anthropic.com`): it takes its key as `x-api-key` with an
    /// `anthropic-version`, lists its models in Anthropic's paged shape, and is sent Messages
    /// requests as they are.
    pub fn is_anthropic(&self) -> bool {
        self.anthropic
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::ConnectionConfig;

    /// Open WebUI 0.7+: `provider` is kept for the model list, and `"azure"` means Azure.
    #[test]
    fn provider_is_kept_and_azure_turns_azure_on() {
        let parse = |v| ConnectionConfig::from_json(&v);
        let c = parse(json!({"provider": "vllm"})).unwrap();
        assert_eq!((c.provider.as_deref(), c.azure), (Some("vllm"), false));
        let c = parse(json!({"provider": "azure", "azure": false})).unwrap();
        assert!(c.azure);
        assert_eq!(parse(json!({"provider": ""})).unwrap().provider, None);
        assert_eq!(
            parse(json!({"provider": 3})).unwrap_err().member(),
            "provider"
        );
    }
}
