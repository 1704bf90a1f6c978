//! Auth's section of a connection's config: `auth_type` and `entra_scope`.

use serde_json::{Map, Value};
use tower_openai_settings::{ConnectionOptions, OptionsError};

/// How a connection authenticates to its upstream (C-6 `auth_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthType {
    /// `Authorization: Bearer <key>` when the key is not empty. The default.
    #[default]
    Bearer,
    /// No credentials.
    None,
    /// The caller's own bearer credential and cookies.
    Session,
    /// The caller's OAuth session token.
    SystemOauth,
    /// A Microsoft Entra ID token, spelled `azure_ad`.
    AzureAd,
    /// A Microsoft Entra ID token, spelled `microsoft_entra_id`.
    MicrosoftEntraId,
}

impl AuthType {
    /// Parse Open WebUI's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "bearer" => Self::Bearer,
            "none" => Self::None,
            "session" => Self::Session,
            "system_oauth" => Self::SystemOauth,
            "azure_ad" => Self::AzureAd,
            "microsoft_entra_id" => Self::MicrosoftEntraId,
            _ => return None,
        })
    }

    /// Open WebUI's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::None => "none",
            Self::Session => "session",
            Self::SystemOauth => "system_oauth",
            Self::AzureAd => "azure_ad",
            Self::MicrosoftEntraId => "microsoft_entra_id",
        }
    }

    /// Whether this is Microsoft Entra ID under either name.
    pub fn is_entra_id(&self) -> bool {
        matches!(self, Self::AzureAd | Self::MicrosoftEntraId)
    }
}

/// The members of a connection's config the auth layer reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthOptions {
    /// `auth_type` (default bearer).
    pub auth_type: AuthType,
    /// `entra_scope`: the scope of Microsoft Entra ID tokens (default
    /// [`COGNITIVE_SERVICES_SCOPE`](crate::entra::COGNITIVE_SERVICES_SCOPE)). Not an Open
    /// WebUI key.
    pub entra_scope: Option<String>,
}

impl ConnectionOptions for AuthOptions {
    fn from_config(config: &Map<String, Value>) -> Result<Self, OptionsError> {
        let mut options = AuthOptions::default();
        if let Some(value) = config.get("auth_type") {
            let s = value
                .as_str()
                .ok_or_else(|| OptionsError::new("auth_type", "must be a string"))?;
            options.auth_type = AuthType::parse(s).ok_or_else(|| {
                OptionsError::new(
                    "auth_type",
                    "must be one of bearer, none, session, system_oauth, azure_ad, microsoft_entra_id",
                )
            })?;
        }
        if let Some(value) = config.get("entra_scope") {
            let scope = value
                .as_str()
                .ok_or_else(|| OptionsError::new("entra_scope", "must be a string"))?;
            options.entra_scope = (!scope.is_empty()).then(|| scope.to_owned());
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<AuthOptions, OptionsError> {
        AuthOptions::from_config(v.as_object().unwrap())
    }

    /// C-6: `auth_type` defaults to bearer; every spelling round-trips; anything else names
    /// the member.
    #[test]
    fn c6_auth_type_and_entra_scope() {
        assert_eq!(parse(json!({})).unwrap(), AuthOptions::default());
        for auth in [
            "bearer",
            "none",
            "session",
            "system_oauth",
            "azure_ad",
            "microsoft_entra_id",
        ] {
            let options = parse(json!({"auth_type": auth})).unwrap();
            assert_eq!(options.auth_type.as_str(), auth);
        }
        assert!(
            parse(json!({"auth_type": "microsoft_entra_id"}))
                .unwrap()
                .auth_type
                .is_entra_id()
        );
        assert_eq!(
            parse(json!({"auth_type": "kerberos"}))
                .unwrap_err()
                .member(),
            "auth_type"
        );
        assert_eq!(
            parse(json!({"auth_type": 1})).unwrap_err().member(),
            "auth_type"
        );
        assert_eq!(parse(json!({"entra_scope": ""})).unwrap().entra_scope, None);
        assert_eq!(
            parse(json!({"entra_scope": "api://x/.default"}))
                .unwrap()
                .entra_scope
                .as_deref(),
            Some("api://x/.default")
        );
        assert_eq!(
            parse(json!({"entra_scope": 2})).unwrap_err().member(),
            "entra_scope"
        );
    }
}
