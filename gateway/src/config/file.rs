//! The TOML file's schema, and how its users and model records become the gateway's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tower_openai_core::Role;
use tower_openai_settings::SettingsSource;
use tower_openai_settings::{ApiKey, ConfigError};

use super::{KeyDigest, ModelAccess, ModelRecord, StartError, UserRecord};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) speech_cache_max_bytes: Option<u64>,
    pub(super) openai: Option<OpenAiSection>,
    #[serde(default)]
    pub(super) users: Vec<UserEntry>,
    #[serde(default)]
    pub(super) models: Vec<ModelEntry>,
    /// Model prices, USD per million tokens (seed the identity store).
    #[serde(default)]
    pub(super) prices: Vec<PriceEntry>,
    /// Every user's limits, unless their `[[users]]` entry sets its own.
    pub(super) rate_limit: Option<LimitsEntry>,
}

/// A `[[prices]]` entry: `model` (a trailing `*` matches a prefix), USD per million tokens.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PriceEntry {
    model: String,
    input: f64,
    output: f64,
    cached_input: Option<f64>,
}

pub(super) fn prices_from(
    entries: Vec<PriceEntry>,
    in_file: &dyn Fn(&str) -> String,
) -> Result<Vec<tower_openai_store::Price>, ConfigError> {
    let mut models = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let field = |member: &str| in_file(&format!("prices[{i}].{member}"));
        let model = e.model.trim().to_owned();
        if model.is_empty() || model.find('*').is_some_and(|at| at != model.len() - 1) {
            return Err(ConfigError::new(
                field("model"),
                "must be a model id, or a prefix ending in `*`",
            ));
        }
        if !models.insert(model.clone()) {
            return Err(ConfigError::new(
                field("model"),
                format!("{model:?} has another price"),
            ));
        }
        for (name, usd) in [
            ("input", Some(e.input)),
            ("output", Some(e.output)),
            ("cached_input", e.cached_input),
        ] {
            if usd.is_some_and(|usd| !(usd.is_finite() && usd >= 0.0)) {
                return Err(ConfigError::new(
                    field(name),
                    "must be USD per million tokens, 0 or more",
                ));
            }
        }
        out.push(tower_openai_store::Price {
            model,
            input: e.input,
            output: e.output,
            cached_input: e.cached_input,
        });
    }
    Ok(out)
}

/// `{ rpm = 60, tpm = 200000 }`: requests and tokens per minute.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsEntry {
    rpm: Option<u64>,
    tpm: Option<u64>,
}

impl LimitsEntry {
    pub(super) fn limits(self) -> tower_openai_ratelimit::Limits {
        tower_openai_ratelimit::Limits {
            rpm: self.rpm,
            tpm: self.tpm,
            budgets: Vec::new(),
        }
    }
}

impl FileConfig {
    pub(super) fn read(path: &Path) -> Result<Self, StartError> {
        let text = std::fs::read_to_string(path).map_err(|e| StartError::File {
            path: path.to_owned(),
            message: format!("cannot read the config file: {e}"),
        })?;
        toml::from_str(&text).map_err(|e| StartError::File {
            path: path.to_owned(),
            message: format!("invalid config file: {}", e.message().trim()).replace('\n', " ")
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        })
    }
}

/// Seconds, or `""` for none (as the environment variables allow).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Seconds {
    Whole(u64),
    Text(String),
}

impl Seconds {
    fn into_duration(self, key: &str, zero_is_none: bool) -> Result<Option<Duration>, ConfigError> {
        match self {
            Seconds::Whole(0) if zero_is_none => Ok(None),
            Seconds::Whole(n) => Ok(Some(Duration::from_secs(n))),
            Seconds::Text(t) if t.trim().is_empty() => Ok(None),
            Seconds::Text(t) => Err(ConfigError::new(
                key,
                format!("{t:?} is not a whole number of seconds"),
            )),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenAiSection {
    enable: Option<bool>,
    base_urls: Option<Vec<String>>,
    keys: Option<Vec<String>>,
    models_cache_ttl: Option<Seconds>,
    timeout: Option<Seconds>,
    timeout_model_list: Option<Seconds>,
    ssl_verify: Option<bool>,
    bypass_model_access_control: Option<bool>,
    forward_user_info_headers: Option<bool>,
    configs: Option<Map<String, Value>>,
}

impl OpenAiSection {
    pub(super) fn into_source(
        self,
        in_file: &dyn Fn(&str) -> String,
    ) -> Result<SettingsSource, ConfigError> {
        let seconds = |v: Option<Seconds>, key: &str, zero_is_none: bool| {
            v.map(|s| s.into_duration(&in_file(key), zero_is_none))
                .transpose()
        };
        Ok(SettingsSource {
            enable: self.enable,
            base_urls: self.base_urls,
            keys: self.keys.map(|k| k.into_iter().map(ApiKey::new).collect()),
            configs: self.configs,
            timeout: seconds(self.timeout, "openai.timeout", true)?,
            timeout_model_list: seconds(
                self.timeout_model_list,
                "openai.timeout_model_list",
                true,
            )?,
            ssl_verify: self.ssl_verify,
            models_cache_ttl: seconds(self.models_cache_ttl, "openai.models_cache_ttl", false)?,
            bypass_model_access_control: self.bypass_model_access_control,
            forward_user_info_headers: self.forward_user_info_headers,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserEntry {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default = "default_role")]
    role: String,
    #[serde(default)]
    groups: Vec<String>,
    api_key: Option<String>,
    api_key_sha256: Option<String>,
    rate_limit: Option<LimitsEntry>,
    budget: Option<tower_openai_store::Budget>,
}

fn default_role() -> String {
    "user".to_owned()
}

pub(super) fn users_from(
    entries: Vec<UserEntry>,
    in_file: &dyn Fn(&str) -> String,
) -> Result<Vec<UserRecord>, ConfigError> {
    let mut ids = HashSet::new();
    let mut digests = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let field = |member: &str| in_file(&format!("users[{i}].{member}"));
        if e.id.trim().is_empty() {
            return Err(ConfigError::new(field("id"), "must not be empty"));
        }
        if !ids.insert(e.id.clone()) {
            return Err(ConfigError::new(
                field("id"),
                format!("{:?} is used by another user", e.id),
            ));
        }
        let role = Role::parse(&e.role).ok_or_else(|| {
            ConfigError::new(field("role"), "must be \"user\", \"admin\" or \"pending\"")
        })?;
        let digest = match (e.api_key, e.api_key_sha256) {
            (Some(key), None) if !key.is_empty() => crate::identity::digest(key.as_bytes()),
            (None, Some(hex)) => parse_sha256(&hex).ok_or_else(|| {
                ConfigError::new(field("api_key_sha256"), "must be 64 hexadecimal digits")
            })?,
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    field("api_key"),
                    "give api_key or api_key_sha256, not both",
                ));
            }
            _ => {
                return Err(ConfigError::new(
                    field("api_key"),
                    "each user needs a non-empty api_key or an api_key_sha256",
                ));
            }
        };
        if !digests.insert(digest) {
            return Err(ConfigError::new(
                field("api_key"),
                "the same key is given to another user",
            ));
        }
        out.push(UserRecord {
            user: tower_openai_core::User {
                name: e.name.unwrap_or_else(|| e.id.clone()).into(),
                id: e.id.into(),
                email: e.email.into(),
                role,
                group_names: e.groups.clone().into(),
                groups: e.groups.into(),
                key: None,
            },
            key: KeyDigest::Sha256(digest),
            rate_limit: e.rate_limit.map(LimitsEntry::limits),
            budget: match e.budget {
                Some(b) if !(b.usd.is_finite() && b.usd >= 0.0) => {
                    return Err(ConfigError::new(
                        field("budget"),
                        "usd must be a number of dollars, 0 or more",
                    ));
                }
                budget => budget,
            },
        });
    }
    Ok(out)
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelEntry {
    id: String,
    owner: String,
    #[serde(default)]
    access: Option<AccessEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AccessEntry {
    Named(String),
    Read {
        #[serde(default)]
        read_groups: Vec<String>,
        #[serde(default)]
        read_users: Vec<String>,
    },
}

pub(super) fn models_from(
    entries: Vec<ModelEntry>,
    in_file: &dyn Fn(&str) -> String,
) -> Result<Vec<ModelRecord>, ConfigError> {
    let mut ids = HashSet::new();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let field = |member: &str| in_file(&format!("models[{i}].{member}"));
            if e.id.is_empty() {
                return Err(ConfigError::new(field("id"), "must not be empty"));
            }
            if !ids.insert(e.id.clone()) {
                return Err(ConfigError::new(field("id"), format!("{:?} has another record", e.id)));
            }
            let access = match e.access {
                None => ModelAccess::Public,
                Some(AccessEntry::Named(n)) if n == "public" => ModelAccess::Public,
                Some(AccessEntry::Named(n)) if n == "private" => ModelAccess::Private,
                Some(AccessEntry::Named(_)) => {
                    return Err(ConfigError::new(
                        field("access"),
                        "must be \"public\", \"private\" or { read_groups = [...], read_users = [...] }",
                    ));
                }
                Some(AccessEntry::Read { read_groups, read_users }) => ModelAccess::Read {
                    groups: read_groups,
                    users: read_users,
                },
            };
            Ok(ModelRecord {
                id: e.id,
                owner: e.owner,
                access,
            })
        })
        .collect()
}
