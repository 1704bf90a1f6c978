//! Who is calling: `Authorization: Bearer <api key>` → [`User`].
//!
//! [`Identify`] sits at the edge, above the layers that report requests: it puts the caller
//! ([`User`]) in the request extensions, or, when the caller cannot be identified, the
//! answer they are owed ([`Unidentified`]), which the router gives on the routes that need
//! a caller. So every request, refused or not, is reported with its caller when known.

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
                    id: "anonymous".into(),
                    name: "Anonymous".into(),
                    email: "".into(),
                    role: Role::User,
                    groups: Vec::new().into(),
                }
            } else {
                User {
                    id: "admin".into(),
                    name: "Admin".into(),
                    email: "".into(),
                    role: Role::Admin,
                    groups: Vec::new().into(),
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
        self.identify_with(headers, &mut LastCaller::default())
    }

    /// [`identify`](Self::identify), remembering the last key that identified a caller in
    /// `last`: a connection presents the same key on every request, and comparing it with
    /// the last one (in constant time) costs far less than hashing it.
    pub(crate) fn identify_with(
        &self,
        headers: &HeaderMap,
        last: &mut LastCaller,
    ) -> Result<User, ErrorResponse> {
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
        if let Some((key, user)) = &last.0
            && key.len() == presented.len()
            && bool::from(key.as_bytes().ct_eq(presented.as_bytes()))
        {
            return Ok(user.clone());
        }
        let d = digest(presented.as_bytes());
        match users.get(&d) {
            Some(record) => {
                let KeyDigest::Sha256(stored) = &record.key;
                if digests_equal(stored, &d) {
                    last.0 = Some((presented.into(), record.user.clone()));
                    return Ok(record.user.clone());
                }
                Err(invalid_key())
            }
            None => Err(invalid_key()),
        }
    }
}

/// The answer a request whose caller could not be identified gets (401, or single-user
/// mode's 403s) on a route that needs a caller. Written by [`Identify`] instead of a
/// [`User`].
#[derive(Clone, Debug)]
pub(crate) struct Unidentified(pub(crate) ErrorResponse);

/// Identifies each request's caller: [`User`] or [`Unidentified`] in its extensions.
///
/// One per connection (the server keeps an instance per connection), so it remembers the
/// last key that identified a caller (see [`Callers::identify_with`]).
#[derive(Clone, Debug)]
pub(crate) struct Identify<S> {
    inner: S,
    callers: Callers,
    security: Arc<crate::security::SecurityConfig>,
    last: LastCaller,
}

impl<S> Identify<S> {
    pub(crate) fn new(
        inner: S,
        callers: Callers,
        security: Arc<crate::security::SecurityConfig>,
    ) -> Self {
        Self {
            inner,
            callers,
            security,
            last: LastCaller::default(),
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Identify<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let found = if self.callers.single_user() {
            self.security
                .check_single_user(&req)
                .and_then(|()| self.callers.identify_with(req.headers(), &mut self.last))
        } else {
            self.callers.identify_with(req.headers(), &mut self.last)
        };
        match found {
            Ok(user) => {
                req.extensions_mut().insert(user);
            }
            Err(refusal) => {
                req.extensions_mut().insert(Unidentified(refusal));
            }
        }
        self.inner.call(req)
    }
}

/// The last key that identified a caller on one connection, and who it was (see
/// [`Callers::identify_with`]). Kept by the router, one per connection; valid for as long
/// as the [`Callers`] it was found in.
#[derive(Clone, Default)]
pub(crate) struct LastCaller(Option<(Box<str>, User)>);

impl std::fmt::Debug for LastCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_tuple("LastCaller")
            .field(&self.0.as_ref().map(|(_, user)| &user.id))
            .finish()
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

    use super::{Callers, DigestHasher, LastCaller, digest, digests_equal};
    use crate::config::{KeyDigest, UserRecord};

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

    #[test]
    fn a_connection_remembers_its_last_key_and_nothing_else() {
        let record = |id: &str, key: &str| UserRecord {
            user: tower_openai_core::User {
                id: id.into(),
                ..Default::default()
            },
            key: KeyDigest::Sha256(digest(key.as_bytes())),
            rate_limit: None,
        };
        let callers = Callers::new(
            &[record("alice", "sk-alice"), record("bob", "sk-bob0")],
            false,
        );
        let headers = |key: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("authorization", format!("Bearer {key}").parse().unwrap());
            h
        };
        let mut last = LastCaller::default();
        let who = |last: &mut LastCaller, key: &str| {
            callers
                .identify_with(&headers(key), last)
                .map(|u| u.id.to_string())
                .map_err(|e| e.status())
        };
        assert_eq!(who(&mut last, "sk-alice"), Ok("alice".to_owned()));
        assert!(last.0.is_some());
        // Remembered: the same key again.
        assert_eq!(who(&mut last, "sk-alice"), Ok("alice".to_owned()));
        // A key of the same length that is not it is looked up, not taken for alice's.
        assert_eq!(
            who(&mut last, "sk-alicf"),
            Err(http::StatusCode::UNAUTHORIZED)
        );
        assert_eq!(who(&mut last, "sk-bob0"), Ok("bob".to_owned()));
        assert_eq!(who(&mut last, "sk-alice"), Ok("alice".to_owned()));
        // The key never shows in its debug form.
        assert!(!format!("{last:?}").contains("sk-"));
    }
}
