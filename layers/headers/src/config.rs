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

/// The user-info headers as one signed token (Open WebUI 0.9.6+,
/// `FORWARD_USER_INFO_HEADER_JWT_SECRET`): an HS256 JWT with the claims `sub`, `email`,
/// `name`, `role`, `iss: "open-webui"`, `iat` and `exp`, minted per request, in place of the
/// four user headers. The secret never appears in `Debug`.
#[derive(Clone)]
pub struct UserJwt {
    /// The header it is sent in (`X-OpenWebUI-User-Jwt`).
    pub header: HeaderName,
    /// Seconds from `iat` to `exp` (300).
    pub expires_in: u64,
    key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for UserJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserJwt")
            .field("header", &self.header)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// The claims of a [`UserJwt`].
#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    email: &'a str,
    name: &'a str,
    role: &'a str,
    iss: &'static str,
    iat: u64,
    exp: u64,
}

impl UserJwt {
    /// Tokens signed with `secret`, sent in `X-OpenWebUI-User-Jwt`, valid for 300 s; `None`
    /// when the secret cannot sign (empty).
    pub fn new(secret: &[u8]) -> Option<Self> {
        Some(Self {
            header: HeaderName::from_static("x-openwebui-user-jwt"),
            expires_in: 300,
            key: jsonwebtoken::EncodingKey::from_secret(secret).ok()?,
        })
    }

    /// `user`'s token, issued at `now` (Unix seconds).
    pub fn mint(&self, user: &tower_openai_core::User, now: u64) -> Option<HeaderValue> {
        let claims = Claims {
            sub: &user.id,
            email: &user.email,
            name: &user.name,
            role: user.role.as_str(),
            iss: "open-webui",
            iat: now,
            exp: now.saturating_add(self.expires_in),
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        match jsonwebtoken::encode(&header, &claims, &self.key) {
            Ok(token) => HeaderValue::from_str(&token).ok(),
            Err(e) => {
                tracing::error!(error = %e, "could not sign the user-info token; sending the plain headers");
                None
            }
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
    /// The user info as one signed token instead of the four headers.
    pub jwt: Option<UserJwt>,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        Self {
            openrouter_referer: HeaderValue::from_static(
                "https://github.com/tower-openai/tower-openai",
            ),
            openrouter_title: HeaderValue::from_static("tower-openai"),
            names: HeaderNames::default(),
            jwt: None,
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
    /// `FORWARD_SESSION_INFO_HEADER_CHAT_ID`, `OPENROUTER_HTTP_REFERER`, `OPENROUTER_X_TITLE`,
    /// and the signed token: `FORWARD_USER_INFO_HEADER_JWT_SECRET` (blank: off),
    /// `FORWARD_USER_INFO_HEADER_JWT` (its header), `FORWARD_USER_INFO_HEADER_JWT_EXPIRES_SECONDS`
    /// (300; not a whole number: 300, as Open WebUI).
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
        if let Some(secret) = lookup("FORWARD_USER_INFO_HEADER_JWT_SECRET")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
        {
            let mut jwt = UserJwt::new(secret.as_bytes()).ok_or_else(|| {
                ConfigError::new(
                    "FORWARD_USER_INFO_HEADER_JWT_SECRET",
                    "cannot sign tokens with this secret",
                )
            })?;
            name("FORWARD_USER_INFO_HEADER_JWT", &mut jwt.header)?;
            if let Some(seconds) = lookup("FORWARD_USER_INFO_HEADER_JWT_EXPIRES_SECONDS")
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                jwt.expires_in = seconds;
            }
            config.jwt = Some(jwt);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use tower_openai_core::{Role, User};

    use super::HeadersConfig;

    #[test]
    fn the_user_token_is_hs256_with_open_webuis_claims_and_verifies_with_its_secret() {
        let env = |k: &str| match k {
            "FORWARD_USER_INFO_HEADER_JWT_SECRET" => Some("  s3cret  ".to_owned()),
            "FORWARD_USER_INFO_HEADER_JWT" => Some("X-User-Token".to_owned()),
            "FORWARD_USER_INFO_HEADER_JWT_EXPIRES_SECONDS" => Some("60".to_owned()),
            _ => None,
        };
        let config = HeadersConfig::from_env(env).unwrap();
        let jwt = config.jwt.unwrap();
        assert_eq!(jwt.header, "x-user-token");
        assert!(!format!("{jwt:?}").contains("s3cret"));
        let user = User {
            id: "u-1".into(),
            name: "José Müller".into(),
            email: "jose@example.com".into(),
            role: Role::Admin,
            ..User::default()
        };
        let token = jwt.mint(&user, 1_700_000_000).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_issuer(&["open-webui"]);
        validation.validate_exp = false;
        let key = jsonwebtoken::DecodingKey::from_secret(b"s3cret").unwrap();
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token.to_str().unwrap(), &key, &validation)
                .unwrap();
        assert_eq!(
            data.claims,
            serde_json::json!({"sub": "u-1", "email": "jose@example.com", "name": "José Müller",
                "role": "admin", "iss": "open-webui", "iat": 1_700_000_000, "exp": 1_700_000_060})
        );
        // A wrong secret does not verify; a blank secret is off; a bad expiry is 300.
        let wrong = jsonwebtoken::DecodingKey::from_secret(b"other").unwrap();
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(token.to_str().unwrap(), &wrong, &validation)
                .is_err()
        );
        let blank = HeadersConfig::from_env(|k: &str| {
            (k == "FORWARD_USER_INFO_HEADER_JWT_SECRET").then(|| "   ".to_owned())
        })
        .unwrap();
        assert!(blank.jwt.is_none());
        let bad = HeadersConfig::from_env(|k: &str| match k {
            "FORWARD_USER_INFO_HEADER_JWT_SECRET" => Some("k".to_owned()),
            "FORWARD_USER_INFO_HEADER_JWT_EXPIRES_SECONDS" => Some("soon".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(bad.jwt.unwrap().expires_in, 300);
    }
}
