//! Users' own OAuth tokens, for connections with `auth_type = system_oauth` (rule A-4).
//!
//! The caller's `oauth_session_id` cookie names a session; a [`SessionTokens`] turns it into
//! that user's access token. An application that embeds the layers registers sessions from
//! its own login flow — with [`InMemorySessions::insert`], or with its own implementation
//! backed by its session store.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use serde_json::Value;
use tower_openai_core::client::HttpClient;

use crate::http::{exchange, form, post_form, token_from};
use crate::token::{AccessToken, DEFAULT_REFRESH_MARGIN, TokenCache, TokenError, TokenLookup};

/// Turns an OAuth session id into the user's current access token.
pub trait SessionTokens: Send + Sync + 'static {
    /// The access token of session `session_id`; `Ok(None)` when there is no such session.
    fn access_token(
        &self,
        session_id: &str,
    ) -> BoxFuture<'static, Result<Option<AccessToken>, TokenError>>;
}

/// What a login flow hands over for a session.
#[derive(Clone)]
pub struct OAuthSession {
    /// The access token.
    pub access_token: String,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<String>,
    /// The access token's remaining lifetime.
    pub expires_in: Duration,
}

impl fmt::Debug for OAuthSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthSession")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

struct Entry {
    refresh_token: Option<String>,
}

/// Sessions kept in memory, refreshed with the standard OAuth2 refresh-token grant against a
/// token endpoint when their access token is within 5 minutes of expiry (one refresh per
/// session at a time). A failed refresh deletes the session, as Open WebUI does.
#[derive(Clone)]
pub struct InMemorySessions {
    inner: Arc<Inner>,
}

struct Inner {
    client: HttpClient,
    token_endpoint: String,
    client_id: String,
    client_secret: Option<String>,
    sessions: Mutex<HashMap<String, Entry>>,
    tokens: Arc<TokenCache<String>>,
}

impl fmt::Debug for InMemorySessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemorySessions")
            .field("token_endpoint", &self.inner.token_endpoint)
            .field("client_id", &self.inner.client_id)
            .finish_non_exhaustive()
    }
}

impl InMemorySessions {
    /// Sessions refreshed at `token_endpoint` as OAuth client `client_id`.
    pub fn new(
        client: HttpClient,
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        Self::build(client, token_endpoint.into(), client_id.into(), None)
    }

    /// The same, for a confidential client.
    pub fn with_secret(
        client: HttpClient,
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self::build(
            client,
            token_endpoint.into(),
            client_id.into(),
            Some(client_secret.into()),
        )
    }

    fn build(
        client: HttpClient,
        token_endpoint: String,
        client_id: String,
        client_secret: Option<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                token_endpoint,
                client_id,
                client_secret,
                sessions: Mutex::new(HashMap::new()),
                tokens: TokenCache::new(DEFAULT_REFRESH_MARGIN),
            }),
        }
    }

    /// Register (or replace) a session after a login.
    pub fn insert(&self, session_id: impl Into<String>, session: OAuthSession) {
        let id = session_id.into();
        self.inner.tokens.remove(&id);
        let token = AccessToken::new(session.access_token.as_str(), session.expires_in);
        self.inner.tokens.put(id.clone(), token);
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Entry {
                    refresh_token: session.refresh_token,
                },
            );
    }

    /// Forget a session (logout).
    pub fn remove(&self, session_id: &str) {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session_id);
        self.inner.tokens.remove(&session_id.to_owned());
    }

    /// Whether a session is registered.
    pub fn contains(&self, session_id: &str) -> bool {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(session_id)
    }
}

impl Inner {
    async fn refresh(self: Arc<Self>, session_id: String) -> Result<AccessToken, TokenError> {
        let what = "OAuth session refresh";
        let refresh_token = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&session_id)
            .and_then(|e| e.refresh_token.clone())
            .ok_or_else(|| {
                TokenError::new(format!(
                    "{what}: the session has expired and has no refresh token"
                ))
            })?;
        let mut pairs = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", self.client_id.as_str()),
        ];
        if let Some(secret) = &self.client_secret {
            pairs.push(("client_secret", secret.as_str()));
        }
        let req = post_form(&self.token_endpoint, form(&pairs), what)?;
        let result = match exchange(&self.client, req, what).await {
            Ok(json) => token_from(&json, what).map(|token| (token, json)),
            Err(e) => Err(e),
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok((token, json)) => {
                // Providers may rotate the refresh token.
                if let (Some(entry), Some(rotated)) = (
                    sessions.get_mut(&session_id),
                    json.get("refresh_token").and_then(Value::as_str),
                ) {
                    entry.refresh_token = Some(rotated.to_owned());
                }
                Ok(token)
            }
            Err(e) => {
                sessions.remove(&session_id);
                tracing::warn!(error = %e, "OAuth session refresh failed; the session is deleted");
                Err(e)
            }
        }
    }
}

impl SessionTokens for InMemorySessions {
    fn access_token(
        &self,
        session_id: &str,
    ) -> BoxFuture<'static, Result<Option<AccessToken>, TokenError>> {
        if !self.contains(session_id) {
            return async { Ok(None) }.boxed();
        }
        let inner = self.inner.clone();
        let id = session_id.to_owned();
        let lookup = self.inner.tokens.get(&id, {
            let id = id.clone();
            move || inner.refresh(id).boxed()
        });
        match lookup {
            TokenLookup::Ready(r) => async move { r.map(Some) }.boxed(),
            TokenLookup::Pending(f) => async move { f.await.map(Some) }.boxed(),
        }
    }
}
