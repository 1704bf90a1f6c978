use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, FutureExt};
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use tower_openai_core::extensions::{HeaderStep, UpstreamHeaders};
use tower_openai_core::{ErrorResponse, ResponseBody, SelectedConnection};
use tower_openai_settings::Connection;
use tower_openai_util::future::Deferred;
use tower_service::Service;

use crate::entra::{COGNITIVE_SERVICES_SCOPE, EntraTokens};
use crate::layer::AuthLayer;
use crate::oauth::SessionTokens;
use crate::options::{AuthOptions, AuthType};
use crate::token::TokenLookup;

/// The cookie that names a caller's OAuth session (rule A-4).
pub const OAUTH_SESSION_COOKIE: &str = "oauth_session_id";

/// A credential found later (a token being fetched): the `Authorization` value, if any.
pub(crate) type PendingAuth = BoxFuture<'static, Result<Option<HeaderValue>, ErrorResponse>>;

/// Adds each connection's upstream credentials. See the [crate docs](crate).
#[derive(Clone)]
pub struct Auth<S> {
    pub(crate) inner: S,
    pub(crate) entra: Option<EntraTokens>,
    pub(crate) sessions: Option<Arc<dyn SessionTokens>>,
}

impl<S> Auth<S> {
    /// Wrap `inner` with bearer, none and session auth only.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            entra: None,
            sessions: None,
        }
    }

    /// A layer (configure token sources on it).
    pub fn layer() -> AuthLayer {
        AuthLayer::new()
    }

    tower_openai_util::define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("entra", &self.entra)
            .field("sessions", &self.sessions.is_some())
            .finish()
    }
}

/// All of the caller's cookies as one `Cookie` value (HTTP/2 may split them).
fn cookies(headers: &HeaderMap) -> Option<HeaderValue> {
    let parts: Vec<&str> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if parts.is_empty() {
        return None;
    }
    let mut v = HeaderValue::from_str(&parts.join("; ")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn bearer_value(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Anthropic's key header.
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The version of Anthropic's API sent when the caller names none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// An Anthropic connection's protocol headers: the caller's `anthropic-version` (or
/// [`ANTHROPIC_VERSION`]) and `anthropic-beta`, each a single visible-ASCII value.
fn anthropic_headers(request: &HeaderMap, headers: &mut UpstreamHeaders) {
    let callers = |name: &'static str| {
        let mut values = request.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) if v.to_str().is_ok_and(|s| !s.trim().is_empty()) => Some(v.clone()),
            _ => None,
        }
    };
    let version =
        callers("anthropic-version").unwrap_or_else(|| HeaderValue::from_static(ANTHROPIC_VERSION));
    headers.insert(HeaderStep::Auth, "anthropic-version", version);
    if let Some(beta) = callers("anthropic-beta") {
        headers.insert(HeaderStep::Auth, "anthropic-beta", beta);
    }
}

fn entra_failed(connection: &Connection, message: &str) -> ErrorResponse {
    ErrorResponse::bad_gateway(format!(
        "Could not get a Microsoft Entra ID token for upstream connection {}: {message}",
        connection.index()
    ))
    .with_code("upstream_auth_failed")
}

impl<S> Auth<S> {
    /// Put the credentials of `connection` for a request with the caller's `request` headers
    /// into `headers`; a credential still being fetched is returned as a future.
    fn authorize(
        &self,
        request: &HeaderMap,
        connection: &Arc<Connection>,
        headers: &mut UpstreamHeaders,
    ) -> Result<Option<PendingAuth>, ErrorResponse> {
        let config = connection.config();
        let options: &AuthOptions = connection.options().map_err(|e| {
            ErrorResponse::internal(format!(
                "Upstream connection {} has a config the gateway cannot use: {e}",
                connection.index()
            ))
        })?;
        let mut pending = None;
        match options.auth_type {
            // the connection's key, when there is one; Anthropic's API takes it as
            // `x-api-key`.
            AuthType::Bearer if connection.is_anthropic() => {
                if let Some(v) = connection.api_key_header() {
                    headers.insert(HeaderStep::Auth, X_API_KEY, v.clone());
                }
            }
            AuthType::Bearer => {
                if let Some(v) = connection.bearer() {
                    headers.insert(HeaderStep::Auth, AUTHORIZATION, v.clone());
                }
            }
            //
            AuthType::None => {}
            // the caller's own bearer credential and cookies. Without one: 401, where
            // Open WebUI fails with a 500.
            AuthType::Session => {
                let bearer = request.get(AUTHORIZATION).cloned().filter(|v| {
                    v.to_str().ok().and_then(|s| s.split_once(' ')).is_some_and(
                        |(scheme, token)| {
                            scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
                        },
                    )
                });
                let Some(mut value) = bearer else {
                    return Err(ErrorResponse::unauthorized(
                        "This connection forwards the caller's own credential, and the request has no bearer token",
                    )
                    .with_code("missing_credential"));
                };
                value.set_sensitive(true);
                headers.insert(HeaderStep::Auth, AUTHORIZATION, value);
                if let Some(c) = cookies(request) {
                    headers.insert(HeaderStep::Auth, COOKIE, c);
                }
            }
            // the caller's cookies, and their OAuth token if their session is known.
            AuthType::SystemOauth => {
                if let Some(c) = cookies(request) {
                    headers.insert(HeaderStep::Auth, COOKIE, c);
                }
                let session_id = cookie(request, OAUTH_SESSION_COOKIE);
                if let (Some(sessions), Some(id)) = (&self.sessions, session_id) {
                    let lookup = sessions.access_token(&id);
                    pending = Some(
                        async move {
                            match lookup.await {
                                Ok(Some(token)) => Ok(bearer_value(token.secret())),
                                Ok(None) => Ok(None),
                                Err(e) => {
                                    // As in Open WebUI: logged, and no Authorization is sent.
                                    tracing::warn!(error = %e, "no OAuth token for the caller's session");
                                    Ok(None)
                                }
                            }
                        }
                        .boxed(),
                    );
                }
            }
            // a real Entra ID token; a failure is a 502 that says so.
            AuthType::AzureAd | AuthType::MicrosoftEntraId => {
                let Some(entra) = &self.entra else {
                    return Err(entra_failed(
                        connection,
                        "no Entra ID credential is configured",
                    ));
                };
                let scope = options
                    .entra_scope
                    .as_deref()
                    .unwrap_or(COGNITIVE_SERVICES_SCOPE);
                match entra.token(scope) {
                    TokenLookup::Ready(Ok(token)) => {
                        if let Some(v) = bearer_value(token.secret()) {
                            headers.insert(HeaderStep::Auth, AUTHORIZATION, v);
                        }
                    }
                    TokenLookup::Ready(Err(e)) => {
                        return Err(entra_failed(connection, e.message()));
                    }
                    TokenLookup::Pending(f) => {
                        let connection = connection.clone();
                        pending = Some(
                            async move {
                                match f.await {
                                    Ok(token) => Ok(bearer_value(token.secret())),
                                    Err(e) => Err(entra_failed(&connection, e.message())),
                                }
                            }
                            .boxed(),
                        );
                    }
                }
            }
        }
        if connection.is_anthropic() {
            anthropic_headers(request, headers);
        }
        // Azure connections also get `api-key`, unless they use Entra ID.
        if config.azure
            && !options.auth_type.is_entra_id()
            && let Some(v) = connection.api_key_header()
        {
            headers.insert(HeaderStep::Azure, "api-key", v.clone());
        }
        Ok(pending)
    }
}

impl<S, B, ResBody> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    B: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = crate::ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The connection is borrowed, not cloned (its reference count is shared by every
        // request): the credentials are gathered first and stored once it is released.
        let mut added = UpstreamHeaders::default();
        let authorized = match req.extensions().get::<SelectedConnection>() {
            Some(SelectedConnection(connection)) => {
                self.authorize(req.headers(), connection, &mut added)
            }
            None => return Deferred::called(self.inner.call(req)).into(),
        };
        if authorized.is_ok() && !added.is_empty() {
            match req.extensions_mut().get_mut::<UpstreamHeaders>() {
                Some(headers) => headers.append(added),
                None => {
                    req.extensions_mut().insert(added);
                }
            }
        }
        let deferred = match authorized {
            Ok(None) => Deferred::called(self.inner.call(req)),
            Ok(Some(pending)) => {
                // Call the service `poll_ready` readied once the token is here.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                Deferred::waiting(
                    Box::pin(async move {
                        if let Some(value) = pending.await? {
                            req.extensions_mut()
                                .get_or_insert_default::<UpstreamHeaders>()
                                .insert(HeaderStep::Auth, AUTHORIZATION, value);
                        }
                        Ok(req)
                    }),
                    inner,
                )
            }
            Err(e) => Deferred::rejected(e),
        };
        deferred.into()
    }
}
