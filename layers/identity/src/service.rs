//! [`IdentifyLayer`] and its service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, Request, StatusCode, header};
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_openai_core::{ErrorResponse, Role, User};
use tower_service::Service;

use crate::store::{KeyStore, digest};

/// The answer a request whose caller could not be identified is owed (401
/// `invalid_api_key`, or a guard's refusal) on a route that needs a caller. Written by
/// [`Identify`] instead of a [`User`].
#[derive(Clone, Debug)]
pub struct Unidentified(ErrorResponse);

impl Unidentified {
    /// `refusal` is what such a request is answered.
    pub fn new(refusal: ErrorResponse) -> Self {
        Self(refusal)
    }

    /// What the request is answered.
    pub fn refusal(&self) -> &ErrorResponse {
        &self.0
    }
}

/// The header a caller may send its key in instead of `Authorization` (Anthropic clients do),
/// by default: `x-api-key`.
pub const DEFAULT_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// Identifies each request's caller from a [`KeyStore`]. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct IdentifyLayer<K> {
    store: Arc<K>,
    key_header: HeaderName,
}

impl<K> IdentifyLayer<K> {
    /// Callers from `store`; keys in `Authorization: Bearer` or [`DEFAULT_KEY_HEADER`].
    pub fn new(store: K) -> Self {
        Self {
            store: Arc::new(store),
            key_header: DEFAULT_KEY_HEADER,
        }
    }

    /// The header a caller may send its key in when it sends no `Authorization` (Open
    /// WebUI's `CUSTOM_API_KEY_HEADER`; default `x-api-key`). It is removed from every
    /// request: the caller's key goes no further than this layer.
    pub fn key_header(mut self, name: HeaderName) -> Self {
        self.key_header = name;
        self
    }
}

impl<S, K> Layer<S> for IdentifyLayer<K> {
    type Service = Identify<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Identify {
            inner,
            store: self.store.clone(),
            key_header: self.key_header.clone(),
            last: LastCaller::default(),
        }
    }
}

/// Puts the caller ([`User`]) or [`Unidentified`] in each request's extensions.
///
/// One per connection behind a server (a server keeps one stack per connection): it
/// remembers the last key that identified a caller, so a kept-alive connection's key is
/// compared, not hashed, on its next requests.
#[derive(Clone, Debug)]
pub struct Identify<S, K> {
    inner: S,
    store: Arc<K>,
    key_header: HeaderName,
    last: LastCaller,
}

impl<S, K> Identify<S, K> {
    /// `inner`, its callers identified from `store`.
    pub fn new(inner: S, store: K) -> Self {
        IdentifyLayer::new(store).layer(inner)
    }

    /// A layer identifying callers from `store`.
    pub fn layer(store: K) -> IdentifyLayer<K> {
        IdentifyLayer::new(store)
    }

    tower_openai_util::define_inner_service_accessors!();
}

impl<S, K: KeyStore> Identify<S, K> {
    /// The caller of a request with these headers, or the refusal.
    fn identify(&mut self, headers: &HeaderMap) -> Result<User, ErrorResponse> {
        if !self.store.needs_key() {
            return self.store.user(&digest(b"")).ok_or_else(invalid_key);
        }
        let presented = presented_key(headers, &self.key_header)?;
        let generation = self.store.generation();
        if let Some(last) = &self.last.0
            && last.generation == generation
            && last.key.len() == presented.len()
            && bool::from(last.key.as_bytes().ct_eq(presented.as_bytes()))
        {
            return Ok(last.user.clone());
        }
        let user = self
            .store
            .user(&digest(presented.as_bytes()))
            .ok_or_else(invalid_key)?;
        self.last.0 = Some(Remembered {
            key: presented.into(),
            generation,
            user: user.clone(),
        });
        Ok(user)
    }
}

/// The key a request presents: `Authorization: Bearer <key>` (scheme in any case, key
/// trimmed), or the key header's value when there is no `Authorization`. Refused: neither, an
/// `Authorization` that is not a bearer key, either header given twice, and both headers with
/// different keys (which one would be checked cannot be told).
fn presented_key<'h>(
    headers: &'h HeaderMap,
    key_header: &HeaderName,
) -> Result<&'h str, ErrorResponse> {
    let one = |name: &HeaderName| -> Result<Option<&'h str>, ErrorResponse> {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => Ok(Some(v.to_str().map_err(|_| invalid_key())?.trim())),
            (Some(_), Some(_)) => Err(ErrorResponse::unauthorized(format!(
                "Send one API key: the request has several `{name}` headers"
            ))
            .with_code("invalid_api_key")),
        }
    };
    let authorization = one(&header::AUTHORIZATION)?;
    let custom = one(key_header)?.filter(|k| !k.is_empty());
    let missing = || {
        ErrorResponse::unauthorized(format!(
            "Missing API key: send it as `Authorization: Bearer <key>` or in `{key_header}`"
        ))
        .with_code("invalid_api_key")
    };
    let Some(authorization) = authorization else {
        return custom.ok_or_else(missing);
    };
    let bearer = authorization
        .split_once(' ')
        .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()))
        .filter(|t| !t.is_empty())
        .ok_or_else(missing)?;
    match custom {
        Some(other) if other != bearer => Err(ErrorResponse::unauthorized(format!(
            "Two different API keys: `Authorization` and `{key_header}` disagree"
        ))
        .with_code("invalid_api_key")),
        _ => Ok(bearer),
    }
}

fn invalid_key() -> ErrorResponse {
    ErrorResponse::unauthorized("Incorrect API key provided").with_code("invalid_api_key")
}

impl<S, K, B> Service<Request<B>> for Identify<S, K>
where
    S: Service<Request<B>>,
    K: KeyStore,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let decided = req.extensions().get::<User>().is_some()
            || req.extensions().get::<Unidentified>().is_some();
        if !decided {
            match self.identify(req.headers()) {
                Ok(user) => {
                    if user.role == Role::Pending {
                        // Identified (the access line names them), and refused everywhere.
                        req.extensions_mut().insert(Unidentified(
                            ErrorResponse::new(
                                StatusCode::FORBIDDEN,
                                "This account is pending: an administrator has to approve it",
                            )
                            .with_code("pending_user"),
                        ));
                    }
                    req.extensions_mut().insert(user);
                }
                Err(refusal) => {
                    req.extensions_mut().insert(Unidentified(refusal));
                }
            }
        }
        // The caller's key header is the gateway's business only: it never goes further.
        req.headers_mut().remove(&self.key_header);
        self.inner.call(req)
    }
}

/// The last key that identified a caller on one connection, who it was, and the store's
/// generation then.
#[derive(Clone, Default)]
struct LastCaller(Option<Remembered>);

#[derive(Clone)]
struct Remembered {
    key: Box<str>,
    generation: u64,
    user: User,
}

impl std::fmt::Debug for LastCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_tuple("LastCaller")
            .field(&self.0.as_ref().map(|r| &r.user.id))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use http::StatusCode;

    use super::*;
    use crate::MemoryKeys;

    /// Counts its look-ups; its generation is set by the test.
    #[derive(Debug)]
    struct Counted {
        keys: MemoryKeys,
        lookups: AtomicUsize,
        generation: AtomicU64,
    }

    impl KeyStore for Counted {
        fn user(&self, digest: &[u8; 32]) -> Option<User> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.keys.user(digest)
        }

        fn generation(&self) -> u64 {
            self.generation.load(Ordering::SeqCst)
        }
    }

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            ..User::default()
        }
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", value.parse().unwrap());
        h
    }

    #[test]
    fn a_connection_remembers_its_last_key_until_the_store_changes() {
        let store = Arc::new(Counted {
            keys: MemoryKeys::new([
                (digest(b"sk-alice"), user("alice")),
                (digest(b"sk-bob0"), user("bob")),
            ]),
            lookups: AtomicUsize::new(0),
            generation: AtomicU64::new(1),
        });
        let mut svc = Identify::new((), store.clone());
        let mut who = |value: &str| {
            svc.identify(&headers(value))
                .map(|u| u.id.to_string())
                .map_err(|e| e.status())
        };
        assert_eq!(who("Bearer sk-alice"), Ok("alice".to_owned()));
        assert_eq!(who("bearer  sk-alice "), Ok("alice".to_owned()));
        assert_eq!(store.lookups.load(Ordering::SeqCst), 1, "remembered");
        // A key of the same length that is not it is looked up, not taken for alice's.
        assert_eq!(who("Bearer sk-alicf"), Err(StatusCode::UNAUTHORIZED));
        assert_eq!(who("Bearer sk-bob0"), Ok("bob".to_owned()));
        // The store changed (a key revoked, say): looked up again.
        store.generation.store(2, Ordering::SeqCst);
        let before = store.lookups.load(Ordering::SeqCst);
        assert_eq!(who("Bearer sk-bob0"), Ok("bob".to_owned()));
        assert_eq!(store.lookups.load(Ordering::SeqCst), before + 1);
        for missing in ["", "Basic dTpw", "Bearer ", "Bearer"] {
            let mut h = HeaderMap::new();
            if !missing.is_empty() {
                h.insert("authorization", missing.parse().unwrap());
            }
            let err = svc.identify(&h).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{missing:?}");
        }
        // The key never shows in its debug form.
        assert!(!format!("{svc:?}").contains("sk-"));
    }

    /// GATEWAY "Callers": the key header when there is no `Authorization`; both headers with
    /// different keys, or either twice, are 401; the same key in both is that key.
    #[test]
    fn the_key_header_counts_when_there_is_no_authorization() {
        let name = HeaderName::from_static("x-api-key");
        let key = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            presented_key(&h, &name)
                .map(str::to_owned)
                .map_err(|e| (e.status(), e.to_string()))
        };
        assert_eq!(key(&[("x-api-key", " sk-a ")]), Ok("sk-a".to_owned()));
        assert_eq!(
            key(&[("authorization", "Bearer sk-a")]),
            Ok("sk-a".to_owned())
        );
        assert_eq!(
            key(&[("authorization", "Bearer sk-a"), ("x-api-key", "sk-a")]),
            Ok("sk-a".to_owned())
        );
        for refused in [
            &[][..],
            &[("x-api-key", "")][..],
            &[("authorization", "Bearer sk-a"), ("x-api-key", "sk-b")][..],
            &[("x-api-key", "sk-a"), ("x-api-key", "sk-a")][..],
            &[
                ("authorization", "Bearer sk-a"),
                ("authorization", "Bearer sk-b"),
            ][..],
            // An `Authorization` that is not a bearer key is not passed over for the header.
            &[("authorization", "Basic dTpw"), ("x-api-key", "sk-a")][..],
        ] {
            let (status, _) = key(refused).unwrap_err();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused:?}");
        }
    }
}
