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

/// An OAuth access token and when it expires. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    token: Arc<str>,
    expires_at: Instant,
}

impl AccessToken {
    /// A token valid for `lifetime` from now.
    pub fn new(token: impl Into<Arc<str>>, lifetime: Duration) -> Self {
        Self {
            token: token.into(),
            expires_at: Instant::now() + lifetime,
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
#[derive(Clone, Debug, PartialEq, Eq)]
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

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TokenError {}

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
            let result = fetch.await;
            let mut slots = cache.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.entry(key).or_default();
            slot.inflight = None;
            if let Ok(token) = &result {
                slot.token = Some(token.clone());
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
