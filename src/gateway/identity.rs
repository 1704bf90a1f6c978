//! Who is calling: `Authorization: Bearer <api key>` → [`User`].

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_openai_core::{ErrorResponse, Role, User};

use super::config::{KeyDigest, UserRecord};

/// SHA-256 of an API key.
pub(crate) fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// The gateway's callers: single-user mode, or users identified by API key.
#[derive(Clone, Debug)]
pub struct Callers {
    inner: Arc<Mode>,
}

#[derive(Debug)]
enum Mode {
    /// No `[[users]]`: every caller is this admin.
    Single(User),
    /// Keys are looked up by their SHA-256 digest; the stored digest is then compared in
    /// constant time.
    Keys(HashMap<[u8; 32], UserRecord>),
}

impl Callers {
    /// Callers from `[[users]]`; none means single-user mode.
    pub fn new(users: &[UserRecord]) -> Self {
        let inner = if users.is_empty() {
            Mode::Single(User {
                id: "admin".to_owned(),
                name: "Admin".to_owned(),
                email: String::new(),
                role: Role::Admin,
                groups: Vec::new(),
            })
        } else {
            Mode::Keys(
                users
                    .iter()
                    .map(|u| {
                        let KeyDigest::Sha256(d) = &u.key;
                        (*d, u.clone())
                    })
                    .collect(),
            )
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Identify the caller of a request, or the 401 to answer.
    pub fn identify(&self, headers: &HeaderMap) -> Result<User, ErrorResponse> {
        let users = match &*self.inner {
            Mode::Single(admin) => return Ok(admin.clone()),
            Mode::Keys(users) => users,
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ErrorResponse::unauthorized(
                    "Missing API key: send it as `Authorization: Bearer <key>`",
                )
                .with_code("invalid_api_key")
            })?;
        let d = digest(presented.as_bytes());
        match users.get(&d) {
            Some(record) => {
                let KeyDigest::Sha256(stored) = &record.key;
                if bool::from(stored.ct_eq(&d)) {
                    return Ok(record.user.clone());
                }
                Err(invalid_key())
            }
            None => Err(invalid_key()),
        }
    }
}

fn invalid_key() -> ErrorResponse {
    ErrorResponse::unauthorized("Incorrect API key provided").with_code("invalid_api_key")
}
