//! Access tokens and the cache that hands them out.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

/// How long before expiry a token is refreshed (in the background while it is still valid).
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The longest a token is kept, whatever lifetime its endpoint claims (Entra ID's tokens
/// live at most a day): an absurd `expires_in` neither overflows the clock nor pins a token
/// for years.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// An OAuth access token and when it expires. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    token: Arc<str>,
    expires_at: Instant,
}

impl AccessToken {
    /// A token valid for `lifetime` from now, at most [`MAX_TOKEN_LIFETIME`].
    pub fn new(token: impl Into<Arc<str>>, lifetime: Duration) -> Self {
        let now = Instant::now();
        Self {
            token: token.into(),
            expires_at: now
                .checked_add(lifetime.min(MAX_TOKEN_LIFETIME))
                .unwrap_or(now),
        }
    }

    /// The token itself. Do not log it.
    pub fn secret(&self) -> &str {
        &self.token
    }

    /// When it expires.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why no token could be had. The message names the credential and the endpoint's answer,
/// never a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    message: Arc<str>,
}

impl TokenError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into().into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A token fetch, as a future a cache can share.
pub type TokenFuture = BoxFuture<'static, Result<AccessToken, TokenError>>;

/// The answer of a cache: a token now, or one being fetched.
pub enum TokenLookup {
    /// A valid token (possibly with a refresh under way in the background).
    Ready(Result<AccessToken, TokenError>),
    /// Being fetched; every concurrent caller awaits the same fetch.
    Pending(TokenFuture),
}

impl fmt::Debug for TokenLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenLookup::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            TokenLookup::Pending(_) => f.write_str("Pending"),
        }
    }
}

impl TokenLookup {
    /// Wait for the token.
    pub async fn get(self) -> Result<AccessToken, TokenError> {
        match self {
            TokenLookup::Ready(r) => r,
            TokenLookup::Pending(f) => f.await,
        }
    }
}

/// Ends a fetch task's in-flight state when the task ends, however it ends.
struct ClearInflight<K: Eq + Hash + Clone + Send + 'static> {
    cache: Arc<TokenCache<K>>,
    key: Option<K>,
}

impl<K: Eq + Hash + Clone + Send + 'static> ClearInflight<K> {
    fn store(mut self, token: AccessToken) {
        if let Some(key) = self.key.take() {
            self.cache.clear_inflight(&key, Some(token));
        }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static> Drop for ClearInflight<K> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.cache.clear_inflight(&key, None);
        }
    }
}

/// Tokens by key, each fetched by one task at a time and refreshed ahead of expiry.
///
/// - A token more than the refresh margin from expiry is returned at once.
/// - A token inside the margin is still returned at once, and one background refresh
///   starts.
/// - No token, or an expired one: the caller waits for the fetch, which every concurrent
///   caller shares. The fetch runs on its own task, so a caller that goes away does not
///   cancel it.
/// - A failed fetch is not cached: the next request tries again.
pub(crate) struct TokenCache<K> {
    margin: Duration,
    slots: Mutex<HashMap<K, Slot>>,
}

#[derive(Default)]
struct Slot {
    token: Option<AccessToken>,
    inflight: Option<Shared<TokenFuture>>,
}

impl<K: Eq + Hash + Clone + Send + 'static> TokenCache<K> {
    pub(crate) fn new(margin: Duration) -> Arc<Self> {
        Arc::new(Self {
            margin,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// The token for `key`, fetching it with `fetch` when needed.
    pub(crate) fn get(
        self: &Arc<Self>,
        key: &K,
        fetch: impl FnOnce() -> TokenFuture,
    ) -> TokenLookup {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(key.clone()).or_default();
        if let Some(token) = &slot.token {
            if token.expires_at > now + self.margin {
                return TokenLookup::Ready(Ok(token.clone()));
            }
            if token.expires_at > now {
                // Still valid: hand it out, refresh behind it.
                let token = token.clone();
                if slot.inflight.is_none() {
                    slot.inflight = Some(self.spawn(key.clone(), fetch()));
                }
                return TokenLookup::Ready(Ok(token));
            }
        }
        let shared = match &slot.inflight {
            Some(f) => f.clone(),
            None => {
                let f = self.spawn(key.clone(), fetch());
                slot.inflight = Some(f.clone());
                f
            }
        };
        TokenLookup::Pending(shared.boxed())
    }

    fn spawn(self: &Arc<Self>, key: K, fetch: TokenFuture) -> Shared<TokenFuture> {
        let cache = self.clone();
        let task = tokio::spawn(async move {
            // Clears the in-flight fetch however the task ends (a panic included), so the
            // next request starts a new one instead of awaiting this one forever.
            let guard = ClearInflight {
                cache,
                key: Some(key),
            };
            let result = fetch.await;
            if let Ok(token) = &result {
                guard.store(token.clone());
            }
            result
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(TokenError::new(format!("the token fetch failed: {e}"))))
        }
        .boxed()
        .shared()
    }

    fn clear_inflight(&self, key: &K, token: Option<AccessToken>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(key.clone()).or_default();
        slot.inflight = None;
        if let Some(token) = token {
            slot.token = Some(token);
        }
    }

    /// Store a token for `key` (e.g. the one a login produced).
    pub(crate) fn put(&self, key: K, token: AccessToken) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(key).or_default().token = Some(token);
    }

    /// Forget `key`'s token.
    pub(crate) fn remove(&self, key: &K) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fetch_that_panics_does_not_leave_its_key_stuck() {
        let cache: Arc<TokenCache<&'static str>> = TokenCache::new(DEFAULT_REFRESH_MARGIN);
        let first = cache
            .get(&"k", || {
                async { panic!("a token endpoint's answer broke the fetch") }.boxed()
            })
            .get()
            .await;
        assert!(first.is_err());
        // The next request starts a fetch of its own, instead of awaiting the dead one.
        let second = cache
            .get(&"k", || {
                async { Ok(AccessToken::new("t", Duration::from_secs(60))) }.boxed()
            })
            .get()
            .await;
        assert_eq!(second.unwrap().secret(), "t");
    }
}
