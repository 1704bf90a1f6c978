//! Open WebUI's environment (C-1 … C-3): `OPENAI_API_*`, `AIOHTTP_CLIENT_*`,
//! `MODELS_CACHE_TTL` and the flags, read into a [`SettingsSource`] the way Open WebUI reads
//! them. Resolving the sources into settings (C-4 … C-8) is core's
//! ([`SettingsSource::build`]).

use std::time::Duration;

use serde_json::Value;

use tower_openai_settings::SettingsSource;
use tower_openai_settings::{ApiKey, ConfigError, DEFAULT_BASE_URL};

#[cfg(test)]
mod tests;

/// C-1/C-2: the URL list from `OPENAI_API_BASE_URLS`, falling back to `OPENAI_API_BASE_URL`.
///
/// - The single URL defaults to [`DEFAULT_BASE_URL`] and loses one trailing `/`.
/// - The list (or the single URL) is split on `;`; an exactly empty piece becomes the
///   default URL, every other piece is whitespace-trimmed (so a blank piece becomes `""`),
///   and trailing slashes of list entries are kept.
pub(crate) fn base_urls_from_env(list: Option<&str>, single: Option<&str>) -> Vec<String> {
    let single = match single.unwrap_or("") {
        "" => DEFAULT_BASE_URL.to_owned(),
        s => s.strip_suffix('/').unwrap_or(s).to_owned(),
    };
    let list = match list.unwrap_or("") {
        "" => single.as_str(),
        l => l,
    };
    list.split(';')
        .map(|piece| match piece {
            "" => DEFAULT_BASE_URL.to_owned(),
            p => p.trim().to_owned(),
        })
        .collect()
}

/// C-1/C-3: the key list from `OPENAI_API_KEYS`, falling back to `OPENAI_API_KEY`; split on
/// `;` (so a single key containing `;` becomes several), each piece trimmed.
pub(crate) fn keys_from_env(list: Option<&str>, single: Option<&str>) -> Vec<ApiKey> {
    let list = match list.unwrap_or("") {
        "" => single.unwrap_or(""),
        l => l,
    };
    list.split(';').map(|k| ApiKey::new(k.trim())).collect()
}

fn flag(value: &str) -> bool {
    value.eq_ignore_ascii_case("true")
}

/// `""` → `Some(None)` (none); an integer → seconds (0 also means none); else an error.
fn seconds(var: &str, value: &str) -> Result<Option<Duration>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    match value.parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(Duration::from_secs(n))),
        Err(_) => Err(ConfigError::new(
            var,
            format!("{value:?} is not a whole number of seconds"),
        )),
    }
}

/// The CA bundles upstream certificates may chain to besides the web roots:
/// `AIOHTTP_CLIENT_SSL_CERT_FILE`, and `AIOHTTP_CLIENT_SESSION_SSL` when it is a path (not
/// `true` or `false`). A path that does not exist is an error naming its variable.
pub(crate) fn ca_bundles(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(&'static str, std::path::PathBuf)>, ConfigError> {
    let mut out = Vec::new();
    for var in ["AIOHTTP_CLIENT_SSL_CERT_FILE", "AIOHTTP_CLIENT_SESSION_SSL"] {
        let Some(value) = lookup(var).map(|v| v.trim().to_owned()) else {
            continue;
        };
        if value.is_empty()
            || (var == "AIOHTTP_CLIENT_SESSION_SSL"
                && (value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")))
        {
            continue;
        }
        let path = std::path::PathBuf::from(&value);
        if !path.is_file() {
            return Err(ConfigError::new(
                var,
                format!("{value:?} is not a CA bundle file (true, false or a PEM file's path)"),
            ));
        }
        out.push((var, path));
    }
    Ok(out)
}

/// `AIOHTTP_CLIENT_STREAM_IDLE_TIMEOUT` (Open WebUI 0.7+): whole seconds; unset, empty, 0
/// or negative: none; anything else is an error naming the variable.
pub(crate) fn stream_idle_timeout(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Duration>, ConfigError> {
    const VAR: &str = "AIOHTTP_CLIENT_STREAM_IDLE_TIMEOUT";
    let Some(value) = lookup(VAR) else {
        return Ok(None);
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    match value.parse::<i64>() {
        Ok(n) if n <= 0 => Ok(None),
        Ok(n) => Ok(Some(Duration::from_secs(n.unsigned_abs()))),
        Err(_) => Err(ConfigError::new(
            VAR,
            format!("{value:?} is not a whole number of seconds"),
        )),
    }
}

/// M-12: `""` → no expiry; an integer → seconds (0: expire at once); else an error.
fn ttl(value: &str) -> Result<Option<Duration>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse::<u64>()
        .map(|n| Some(Duration::from_secs(n)))
        .map_err(|_| {
            ConfigError::new(
                "MODELS_CACHE_TTL",
                format!("{value:?} is not a whole number of seconds"),
            )
        })
}

/// What the environment says, read through `lookup` (e.g. `|k| std::env::var(k).ok()`); a
/// value that does not parse is an error naming its variable.
pub(crate) fn settings_from_env(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<SettingsSource, ConfigError> {
    // An empty variable is treated as unset where Open WebUI falls back (URLs, keys), so that
    // `OPENAI_API_BASE_URLS=` in a compose file does not override the TOML file.
    let set = |name: &str| lookup(name).filter(|v| !v.is_empty());
    let urls_list = set("OPENAI_API_BASE_URLS");
    let url_single = set("OPENAI_API_BASE_URL");
    let base_urls = (urls_list.is_some() || url_single.is_some())
        .then(|| base_urls_from_env(urls_list.as_deref(), url_single.as_deref()));
    let keys_list = set("OPENAI_API_KEYS");
    let key_single = set("OPENAI_API_KEY");
    let keys = (keys_list.is_some() || key_single.is_some())
        .then(|| keys_from_env(keys_list.as_deref(), key_single.as_deref()));

    let configs = match set("OPENAI_API_CONFIGS") {
        None => None,
        Some(raw) => match serde_json::from_str::<Value>(&raw) {
            Ok(Value::Object(map)) => Some(map),
            Ok(_) => {
                return Err(ConfigError::new(
                    "OPENAI_API_CONFIGS",
                    "must be a JSON object keyed by connection index or URL",
                ));
            }
            Err(e) => {
                return Err(ConfigError::new(
                    "OPENAI_API_CONFIGS",
                    format!("is not valid JSON: {e}"),
                ));
            }
        },
    };

    let timeout = lookup("AIOHTTP_CLIENT_TIMEOUT")
        .map(|v| seconds("AIOHTTP_CLIENT_TIMEOUT", &v))
        .transpose()?;
    let timeout_model_list = match lookup("AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST") {
        Some(v) => Some(seconds("AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST", &v)?),
        None => lookup("AIOHTTP_CLIENT_TIMEOUT_OPENAI_MODEL_LIST")
            .map(|v| seconds("AIOHTTP_CLIENT_TIMEOUT_OPENAI_MODEL_LIST", &v))
            .transpose()?,
    };
    let models_cache_ttl = lookup("MODELS_CACHE_TTL").map(|v| ttl(&v)).transpose()?;

    Ok(SettingsSource {
        enable: lookup("ENABLE_OPENAI_API").map(|v| flag(&v)),
        base_urls,
        keys,
        configs,
        timeout,
        timeout_model_list,
        // Open WebUI 0.10+: only "false" turns verification off; any other value is a CA
        // bundle's path (see `ca_bundles`), with verification on.
        ssl_verify: lookup("AIOHTTP_CLIENT_SESSION_SSL")
            .filter(|v| !v.trim().is_empty())
            .map(|v| !v.trim().eq_ignore_ascii_case("false")),
        models_cache_ttl,
        bypass_model_access_control: lookup("BYPASS_MODEL_ACCESS_CONTROL").map(|v| flag(&v)),
        forward_user_info_headers: lookup("ENABLE_FORWARD_USER_INFO_HEADERS").map(|v| flag(&v)),
    })
}
