//! Where callers are looked up: [`KeyStore`], and the stores that come with the layer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tower_openai_core::User;

/// SHA-256 of an API key: what a [`KeyStore`] is asked for, and what one keeps.
pub fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Callers by their API key's SHA-256 [`digest`].
///
/// Looked up on the request path: answer from memory (a store backed by a database keeps
/// its records in memory and swaps them when they change).
pub trait KeyStore: Send + Sync + 'static {
    /// The user whose key has this digest, if any.
    fn user(&self, digest: &[u8; 32]) -> Option<User>;

    /// Whether a request needs a key at all; `false` for a store that identifies every caller
    /// ([`Everyone`]), which is then asked with an empty key's digest.
    fn needs_key(&self) -> bool {
        true
    }

    /// A number that changes whenever a key is added, changed or removed, so that a
    /// connection's remembered key is looked up again (default: never changes).
    fn generation(&self) -> u64 {
        0
    }
}

impl<K: KeyStore + ?Sized> KeyStore for Arc<K> {
    fn user(&self, digest: &[u8; 32]) -> Option<User> {
        (**self).user(digest)
    }

    fn needs_key(&self) -> bool {
        (**self).needs_key()
    }

    fn generation(&self) -> u64 {
        (**self).generation()
    }
}

/// Keys held in memory (the gateway's `[[users]]`).
#[derive(Clone, Debug, Default)]
pub struct MemoryKeys {
    users: Arc<HashMap<[u8; 32], User, BuildHasherDefault<DigestHasher>>>,
}

impl MemoryKeys {
    /// Keys from `(digest, user)` pairs; a digest given twice keeps the last user.
    pub fn new(keys: impl IntoIterator<Item = ([u8; 32], User)>) -> Self {
        Self {
            users: Arc::new(keys.into_iter().collect()),
        }
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl KeyStore for MemoryKeys {
    fn user(&self, digest: &[u8; 32]) -> Option<User> {
        self.users.get(digest).cloned()
    }
}

/// Every caller is one user, key or not (a single-user deployment; guard it yourself: who can
/// reach it is that user).
#[derive(Clone, Debug)]
pub struct Everyone(pub User);

impl KeyStore for Everyone {
    fn user(&self, _: &[u8; 32]) -> Option<User> {
        Some(self.0.clone())
    }

    fn needs_key(&self) -> bool {
        false
    }
}

/// Hashes a SHA-256 digest by taking its first eight bytes: they are already uniformly
/// spread, and an attacker who could steer them could break SHA-256. (std's SipHash would
/// hash all 32 bytes again on every look-up.)
#[derive(Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its bytes: keep the first word.
        if let Some(word) = bytes.first_chunk::<8>() {
            self.0 = u64::from_ne_bytes(*word);
        }
    }

    fn write_usize(&mut self, _length: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_digest_hashes_as_its_first_word() {
        let hash = |d: &[u8; 32]| BuildHasherDefault::<DigestHasher>::default().hash_one(d);
        let a = digest(b"sk-alice");
        assert_eq!(hash(&a), u64::from_ne_bytes(*a.first_chunk::<8>().unwrap()));
        assert_ne!(hash(&a), hash(&digest(b"sk-bob")));
    }

    #[test]
    fn memory_keys_find_a_user_by_digest_only() {
        let alice = User {
            id: "alice".into(),
            ..User::default()
        };
        let keys = MemoryKeys::new([(digest(b"sk-alice"), alice)]);
        assert_eq!(
            keys.user(&digest(b"sk-alice")).unwrap().id.as_ref(),
            "alice"
        );
        assert!(keys.user(&digest(b"sk-alicf")).is_none());
        assert_eq!(keys.len(), 1);
    }
}
