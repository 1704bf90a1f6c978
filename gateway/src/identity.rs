//! Who is calling: `Authorization: Bearer <api key>` → [`User`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
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
    Keys(HashMap<[u8; 32], UserRecord, BuildHasherDefault<DigestHasher>>),
}

/// Hashes a SHA-256 digest by taking its first eight bytes: they are already uniformly
/// spread, and an attacker who could steer them could break SHA-256. (std's SipHash would
/// hash all 32 bytes again on every request.)
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length, then its bytes: keep the first word of the bytes.
        if let Some(word) = bytes.first_chunk::<8>() {
            self.0 = u64::from_ne_bytes(*word);
        }
    }

    fn write_usize(&mut self, _length: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Callers {
    /// Callers from `[[users]]`; none means single-user mode, whose caller is an admin, or
    /// a plain user when `anonymous` (`--allow-anonymous`: anybody who can reach the
    /// gateway is that caller, so it is not trusted with the admin routes).
    pub fn new(users: &[UserRecord], anonymous: bool) -> Self {
        let inner = if users.is_empty() {
            Mode::Single(if anonymous {
                User {
                    id: "anonymous".to_owned(),
                    name: "Anonymous".to_owned(),
                    email: String::new(),
                    role: Role::User,
                    groups: Vec::new(),
                }
            } else {
                User {
                    id: "admin".to_owned(),
                    name: "Admin".to_owned(),
                    email: String::new(),
                    role: Role::Admin,
                    groups: Vec::new(),
                }
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

    /// Whether there are no `[[users]]` (single-user mode).
    pub fn single_user(&self) -> bool {
        matches!(&*self.inner, Mode::Single(_))
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
                if digests_equal(stored, &d) {
                    return Ok(record.user.clone());
                }
                Err(invalid_key())
            }
            None => Err(invalid_key()),
        }
    }
}

/// Whether two SHA-256 digests are equal, in constant time: compared as four words (subtle
/// compares a byte slice one byte at a time, with an optimisation barrier per byte).
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let words = |d: &[u8; 32]| -> [u64; 4] {
        std::array::from_fn(|i| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&d[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(word)
        })
    };
    bool::from(words(a)[..].ct_eq(&words(b)[..]))
}

fn invalid_key() -> ErrorResponse {
    ErrorResponse::unauthorized("Incorrect API key provided").with_code("invalid_api_key")
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::{DigestHasher, digest, digests_equal};

    #[test]
    fn a_digest_hashes_as_its_first_word() {
        let hash =
            |d: &[u8; 32]| std::hash::BuildHasherDefault::<DigestHasher>::default().hash_one(d);
        let a = digest(b"sk-alice");
        assert_eq!(hash(&a), u64::from_ne_bytes(a[..8].try_into().unwrap()));
        assert_ne!(hash(&a), hash(&digest(b"sk-bob")));
    }

    #[test]
    fn digests_are_equal_only_when_every_byte_is() {
        let a = digest(b"sk-alice");
        assert!(digests_equal(&a, &digest(b"sk-alice")));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 1;
            assert!(!digests_equal(&a, &b), "byte {i}");
        }
        assert!(!digests_equal(&a, &digest(b"sk-bob")));
    }
}
