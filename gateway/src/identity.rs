//! Who is calling: the gateway's callers as a key store for the identity layer
//! (`tower-openai-identity`), and single-user mode's guard.

use http::Request;
use tower_openai_core::{Role, User};
use tower_openai_identity::{KeyStore, Unidentified};
use tower_openai_store::{Directory, LiveDirectory};

use super::config::{KeyDigest, ModelRecord, UserRecord};
use super::security::SecurityConfig;

pub(crate) use tower_openai_identity::digest;

/// The gateway's callers: the identity store's users, served from memory, or single-user
/// mode's one caller while the store has no users.
#[derive(Clone, Debug)]
pub struct Callers {
    live: LiveDirectory,
}

impl Callers {
    /// Callers from `live`; while it has no users every caller is an admin, or a plain user
    /// when `anonymous` (`--allow-anonymous`: anybody who can reach the gateway is that
    /// caller, so it is not trusted with the admin routes).
    pub fn new(directory: Directory, anonymous: bool) -> Self {
        let (id, name, role) = if anonymous {
            ("anonymous", "Anonymous", Role::User)
        } else {
            ("admin", "Admin", Role::Admin)
        };
        let single = User {
            id: id.into(),
            name: name.into(),
            email: "".into(),
            role,
            groups: Vec::new().into(),
            group_names: Vec::new().into(),
            key: None,
        };
        Self {
            live: LiveDirectory::single_user(directory, single),
        }
    }

    /// Whether the store has no users (single-user mode).
    pub fn single_user(&self) -> bool {
        self.live.is_single_user()
    }

    /// The directory served (the acl layer's records too).
    pub fn directory(&self) -> &LiveDirectory {
        &self.live
    }
}

impl KeyStore for Callers {
    fn user(&self, digest: &[u8; 32]) -> Option<User> {
        self.live.user(digest)
    }

    fn needs_key(&self) -> bool {
        self.live.needs_key()
    }

    fn generation(&self) -> u64 {
        self.live.generation()
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

/// The TOML `[[users]]` as the store's seed.
pub(crate) fn seed_users(users: &[UserRecord]) -> Vec<tower_openai_store::SeedUser> {
    users
        .iter()
        .map(|u| {
            let KeyDigest::Sha256(d) = &u.key;
            tower_openai_store::SeedUser {
                id: u.user.id.to_string(),
                name: u.user.name.to_string(),
                email: u.user.email.to_string(),
                role: u.user.role,
                groups: u.user.groups.to_vec(),
                rate_limit: u
                    .rate_limit
                    .as_ref()
                    .map(|l| tower_openai_store::RateLimit {
                        rpm: l.rpm,
                        tpm: l.tpm,
                    }),
                budget: u.budget,
                keys: vec![*d],
            }
        })
        .collect()
}

/// The TOML `[[models]]` as the store's seed.
pub(crate) fn seed_models(models: &[ModelRecord]) -> Vec<tower_openai_store::ModelRecord> {
    models
        .iter()
        .map(|m| tower_openai_store::ModelRecord {
            id: m.id.clone(),
            owner: m.owner.clone(),
            access: tower_openai_store::Access(m.access.clone()),
        })
        .collect()
}
