//! What the store keeps, as the admin API shows it, and what a write asks for.

use serde::{Deserialize, Serialize};
use tower_openai_acl::AccessControl;
use tower_openai_core::Role;

use crate::StoreError;

/// A user, as listed (`GET /admin/users`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserInfo {
    /// Stable id (access records name it).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
    /// `admin`, `user` or `pending`.
    pub role: String,
    /// Group ids.
    pub groups: Vec<String>,
    /// Requests and tokens per minute; `None`: the gateway's default.
    pub rate_limit: Option<RateLimit>,
    /// Spend limits in USD; `None`: none.
    pub budget: Option<Budget>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A user's requests and tokens per minute (`{rpm, tpm}`; a missing one is no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

/// A spend limit on a user or a key: `usd` per UTC `period`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// USD the caller may spend in each period.
    pub usd: f64,
    /// The period the spend is counted in.
    pub period: Period,
}

/// A budget's period, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// From midnight UTC.
    Day,
    /// From the first of the month, UTC.
    Month,
    /// Since ever.
    Total,
}

impl Budget {
    #[cfg_attr(not(feature = "sql"), allow(dead_code))] // the SQL store's writes
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if !(self.usd.is_finite() && self.usd >= 0.0) {
            return Err(StoreError::invalid(
                "budget.usd must be a number of USD, 0 or more",
            ));
        }
        Ok(())
    }
}

/// `POST /admin/users`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Stable id: 1 to 128 characters, no control characters.
    pub id: String,
    /// Display name (default: the id).
    #[serde(default)]
    pub name: Option<String>,
    /// Email address (default: empty).
    #[serde(default)]
    pub email: Option<String>,
    /// `admin`, `user` or `pending`.
    pub role: String,
    /// Group ids; each must exist.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Requests and tokens per minute.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Spend limits.
    #[serde(default)]
    pub budget: Option<Budget>,
    /// Also create a key for the user (the first user always gets one).
    #[serde(default)]
    pub create_key: bool,
}

/// `PATCH /admin/users/{id}`: the members given are changed; `null` clears a limit.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Email address.
    #[serde(default)]
    pub email: Option<String>,
    /// `admin`, `user` or `pending`.
    #[serde(default)]
    pub role: Option<String>,
    /// Group ids (all of them: the list replaces the user's).
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Requests and tokens per minute (`null`: the default again).
    #[serde(default, deserialize_with = "some")]
    pub rate_limit: Option<Option<RateLimit>>,
    /// Spend limits (`null`: none).
    #[serde(default, deserialize_with = "some")]
    pub budget: Option<Option<Budget>>,
}

/// A member that is present, `null` included, as `Some`.
fn some<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A group (`GET /admin/groups`, `POST /admin/groups`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Stable id (users and access records name it).
    pub id: String,
    /// Display name (default: the id).
    #[serde(default)]
    pub name: String,
}

/// `POST /admin/keys`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The user the key identifies.
    pub user: String,
    /// A name to tell keys apart (default: empty).
    #[serde(default)]
    pub name: Option<String>,
    /// Unix seconds after which the key is refused.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// The key's own spend limit (the user's holds too).
    #[serde(default)]
    pub budget: Option<Budget>,
}

/// A key as created: the only answer that holds the key itself.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewKey {
    /// The key's id (to list or revoke it).
    pub id: String,
    /// The key: shown once, stored as its SHA-256 only.
    pub key: String,
    /// Its first characters, to recognise it in lists.
    pub prefix: String,
    /// The user it identifies.
    pub user: String,
    /// Its name.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None`: never.
    pub expires_at: Option<i64>,
    /// The key's own spend limit.
    pub budget: Option<Budget>,
}

/// A key as listed: never the key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyInfo {
    /// The key's id.
    pub id: String,
    /// Its first characters.
    pub prefix: String,
    /// The user it identifies.
    pub user: String,
    /// Its name.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None`: never.
    pub expires_at: Option<i64>,
    /// Unix seconds, to the minute; `None`: not used yet.
    pub last_used_at: Option<i64>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// The key's own spend limit.
    pub budget: Option<Budget>,
}

/// A model access record (`GET /admin/models`), the TOML `[[models]]` shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelRecord {
    /// The model id as callers name it (prefix included).
    pub id: String,
    /// The owning user's id.
    pub owner: String,
    /// Who else may read it.
    pub access: Access,
}

/// `PUT /admin/models/{id}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutModel {
    /// The owner (default: the admin who writes it).
    #[serde(default)]
    pub owner: Option<String>,
    /// Who may read it.
    pub access: Access,
}

/// A record's `access`: `"public"`, `"private"` or `{read_groups, read_users}` (rule AC-1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access(pub AccessControl);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum AccessRepr {
    Named(String),
    Read(ReadAccess),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadAccess {
    #[serde(default)]
    read_groups: Vec<String>,
    #[serde(default)]
    read_users: Vec<String>,
}

impl Serialize for Access {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            AccessControl::Public => AccessRepr::Named("public".into()),
            AccessControl::Private => AccessRepr::Named("private".into()),
            AccessControl::Read { groups, users } => AccessRepr::Read(ReadAccess {
                read_groups: groups.clone(),
                read_users: users.clone(),
            }),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Access {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match AccessRepr::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "access must be \"public\", \"private\" or {read_groups, read_users}",
            )
        })? {
            AccessRepr::Named(n) if n == "public" => Ok(Access(AccessControl::Public)),
            AccessRepr::Named(n) if n == "private" => Ok(Access(AccessControl::Private)),
            AccessRepr::Named(_) => Err(serde::de::Error::custom(
                "access must be \"public\", \"private\" or {read_groups, read_users}",
            )),
            AccessRepr::Read(r) => Ok(Access(AccessControl::Read {
                groups: r.read_groups,
                users: r.read_users,
            })),
        }
    }
}

/// A model's price in USD per million tokens (`GET /admin/prices`, TOML `[[prices]]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Price {
    /// The model id callers use; a trailing `*` matches every id with that prefix.
    pub model: String,
    /// USD per million input (prompt) tokens.
    pub input: f64,
    /// USD per million output (completion) tokens.
    pub output: f64,
    /// USD per million cached input tokens; `None`: the input price.
    pub cached_input: Option<f64>,
}

impl Price {
    /// What an answer costs in USD: (prompt − cached) × input + cached × cached input +
    /// completion × output, prices per million tokens. `cached` counts within `prompt` (more
    /// than `prompt` is taken as all of it).
    pub fn cost(&self, prompt: u64, completion: u64, cached: u64) -> f64 {
        self.prices().cost(&tower_openai_core::TokenUsage {
            input_tokens: prompt,
            output_tokens: completion,
            cached_tokens: cached,
        })
    }

    /// The prices, the cached-input price filled in.
    pub fn prices(&self) -> tower_openai_core::TokenPrices {
        tower_openai_core::TokenPrices {
            input: self.input,
            output: self.output,
            cached_input: self.cached_input.unwrap_or(self.input),
        }
    }

    /// The prices and the model pattern, checked.
    #[cfg_attr(not(feature = "sql"), allow(dead_code))] // the SQL store's writes
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let m = &self.model;
        let star = m.find('*');
        if m.is_empty()
            || m.chars().count() > 256
            || m.chars().any(char::is_control)
            || star.is_some_and(|at| at != m.len() - 1)
        {
            return Err(StoreError::invalid(
                "a price's model is 1 to 256 characters, without control characters, with `*` only at its end",
            ));
        }
        for (name, usd) in [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cached_input", self.cached_input),
        ] {
            if let Some(usd) = usd
                && !(usd.is_finite() && usd >= 0.0)
            {
                return Err(StoreError::invalid(format!(
                    "{name} must be a number of USD per million tokens, 0 or more"
                )));
            }
        }
        Ok(())
    }
}

/// `PUT /admin/prices/{model}`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutPrice {
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
    /// USD per million cached input tokens (default: the input price).
    #[serde(default)]
    pub cached_input: Option<f64>,
}

/// One admin write (`GET /admin/audit`): never a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// The admin's user id.
    pub actor: String,
    /// What was done (`user.create`, `key.revoke`, `config.update`, …).
    pub action: String,
    /// What it was done to (a user, group, key or model id).
    pub target: String,
}

/// A user to seed the store with (the gateway's TOML `[[users]]`).
#[derive(Clone, Debug)]
pub struct SeedUser {
    /// The user.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Group ids (created when missing).
    pub groups: Vec<String>,
    /// Requests and tokens per minute.
    pub rate_limit: Option<RateLimit>,
    /// Their spend budget.
    pub budget: Option<Budget>,
    /// Their keys' SHA-256 digests, each stored as a key named `config`.
    pub keys: Vec<[u8; 32]>,
}

/// `role` as the API spells it.
#[cfg_attr(not(feature = "sql"), allow(dead_code))] // the SQL store's writes
pub(crate) fn parse_role(role: &str) -> Result<Role, StoreError> {
    Role::parse(role)
        .ok_or_else(|| StoreError::invalid("role must be \"admin\", \"user\" or \"pending\""))
}

/// An id: 1 to 128 characters, none of them a control character or `/`.
#[cfg_attr(not(feature = "sql"), allow(dead_code))] // the SQL store's writes
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.chars().count() > 128 || id.chars().any(|c| c.is_control() || c == '/') {
        return Err(StoreError::invalid(format!(
            "{what} must be 1 to 128 characters, without control characters or '/'"
        )));
    }
    Ok(())
}

/// A name or email: at most 256 characters, no control characters.
#[cfg_attr(not(feature = "sql"), allow(dead_code))] // the SQL store's writes
pub(crate) fn check_text(what: &str, text: &str) -> Result<(), StoreError> {
    if text.chars().count() > 256 || text.chars().any(char::is_control) {
        return Err(StoreError::invalid(format!(
            "{what} must be at most 256 characters, without control characters"
        )));
    }
    Ok(())
}
