use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::entra::EntraTokens;
use crate::oauth::SessionTokens;
use crate::service::Auth;

/// Adds each connection's upstream credentials. See the [crate docs](crate).
#[derive(Clone, Default)]
pub struct AuthLayer {
    pub(crate) entra: Option<EntraTokens>,
    pub(crate) sessions: Option<Arc<dyn SessionTokens>>,
}

impl AuthLayer {
    /// Bearer, none and session auth; Entra ID and system OAuth need their token sources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where `azure_ad` / `microsoft_entra_id` connections get their tokens. Shared by every
    /// service this layer makes (one cache per layer).
    pub fn entra(mut self, tokens: EntraTokens) -> Self {
        self.entra = Some(tokens);
        self
    }

    /// Where `system_oauth` connections get the caller's token.
    pub fn sessions(mut self, sessions: impl SessionTokens) -> Self {
        self.sessions = Some(Arc::new(sessions));
        self
    }
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("entra", &self.entra)
            .field("sessions", &self.sessions.is_some())
            .finish()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            entra: self.entra.clone(),
            sessions: self.sessions.clone(),
        }
    }
}
