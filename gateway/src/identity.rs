//! Who is calling: the gateway's callers as a key store for the identity layer
//! (`tower-openai-identity`), and single-user mode's guard.

use std::sync::Arc;

use http::Request;
use tower_openai_core::{Role, User};
use tower_openai_identity::{Everyone, KeyStore, MemoryKeys, Unidentified};

use super::config::{KeyDigest, UserRecord};
use super::security::SecurityConfig;

pub(crate) use tower_openai_identity::digest;

/// The gateway's callers: users identified by API key (`[[users]]`), or single-user mode's
/// one caller.
#[derive(Clone, Debug)]
pub struct Callers {
    inner: Arc<Mode>,
}

#[derive(Debug)]
enum Mode {
    /// No `[[users]]`: every caller is this user.
    Single(Everyone),
    /// Keys looked up by their SHA-256 digest.
    Keys(MemoryKeys),
}

impl Callers {
    /// Callers from `[[users]]`; none means single-user mode, whose caller is an admin, or
    /// a plain user when `anonymous` (`--allow-anonymous`: anybody who can reach the
    /// gateway is that caller, so it is not trusted with the admin routes).
    pub fn new(users: &[UserRecord], anonymous: bool) -> Self {
        let inner = if users.is_empty() {
            let (id, name, role) = if anonymous {
                ("anonymous", "Anonymous", Role::User)
            } else {
                ("admin", "Admin", Role::Admin)
            };
            Mode::Single(Everyone(User {
                id: id.into(),
                name: name.into(),
                email: "".into(),
                role,
                groups: Vec::new().into(),
            }))
        } else {
            Mode::Keys(MemoryKeys::new(users.iter().map(|u| {
                let KeyDigest::Sha256(d) = &u.key;
                (*d, u.user.clone())
            })))
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Whether there are no `[[users]]` (single-user mode).
    pub fn single_user(&self) -> bool {
        matches!(&*self.inner, Mode::Single(_))
    }
}

impl KeyStore for Callers {
    fn user(&self, digest: &[u8; 32]) -> Option<User> {
        match &*self.inner {
            Mode::Single(everyone) => everyone.user(digest),
            Mode::Keys(keys) => keys.user(digest),
        }
    }

    fn needs_key(&self) -> bool {
        !self.single_user()
    }
}

/// Single-user mode's guard, above the identity layer: a request that does not name a
/// loopback (or allowed) host, or comes from a browser origin that is not allowed, is owed a
/// 403 instead of being the one caller (DNS rebinding, cross-site requests).
pub(crate) fn guard_single_user<B>(
    callers: &Callers,
    security: &SecurityConfig,
    mut req: Request<B>,
) -> Request<B> {
    if callers.single_user()
        && let Err(refusal) = security.check_single_user(&req)
    {
        req.extensions_mut().insert(Unidentified::new(refusal));
    }
    req
}
