//! Upstream credentials for each connection (Open WebUI rules A-1 … A-7).
//!
//! For a request with a [`SelectedConnection`](tower_openai_core::SelectedConnection), the
//! auth layer sets the credentials its `auth_type` calls for, as
//! [`UpstreamHeaders`](tower_openai_core::UpstreamHeaders) at the `Auth` step of rule H-5
//! (so a connection's custom headers can still override them, and Azure's `api-key` comes
//! last):
//!
//! | `auth_type` | upstream gets |
//! |---|---|
//! | `bearer` (default) | `Authorization: Bearer <key>` when the key is not empty (A-1) |
//! | `none` | nothing (A-2) |
//! | `session` | the caller's own `Authorization: Bearer …` and cookies (A-3); a caller without a bearer token gets 401 `missing_credential`, not Open WebUI's 500 |
//! | `system_oauth` | the caller's cookies, and the access token of their `oauth_session_id` session from a [`SessionTokens`] (A-4); no session, no `Authorization` |
//! | `azure_ad`, `microsoft_entra_id` | `Authorization: Bearer <Entra ID token>` from [`EntraTokens`] for the connection's `entra_scope` (A-5); when no token can be had, 502 `upstream_auth_failed` saying why — Open WebUI silently sends no credentials |
//!
//! Connections with `azure: true` also get `api-key: <key>`, unless they use Entra ID (A-7).
//! Anthropic connections ([`Connection::is_anthropic`](tower_openai_settings::Connection::is_anthropic):
//! `provider: "anthropic"` or `api.anthropic.com`) get the key as `x-api-key: <key>` instead of
//! a bearer token, and, whatever their `auth_type`, `anthropic-version` (the caller's, else
//! [`ANTHROPIC_VERSION`]) and the caller's `anthropic-beta`.
//! The caller's own `Authorization` and cookies never reach an upstream otherwise: the
//! upstream service drops them, and only this layer puts them back, for `session` and
//! `system_oauth`.
//!
//! Entra ID tokens are cached per scope and refreshed 5 minutes before they expire, one
//! fetch at a time; concurrent requests share it. See [`entra`] for the credential chain and
//! [`oauth`] for registering sessions. Header values for keys are prepared once per settings
//! snapshot; the bearer path allocates nothing.
//!
//! # Connection options
//! [`AuthOptions`]: `auth_type` (`bearer`, `none`, `session`, `system_oauth`, `azure_ad`,
//! `microsoft_entra_id`) and `entra_scope`, read through
//! [`Connection::options`](tower_openai_settings::Connection::options). Check them when the
//! settings load with `settings.check::<AuthOptions>()`; a connection whose section does not
//! parse is answered 500, naming the member, and nothing is sent.
//!
//! # Extensions
//! - reads [`SelectedConnection`](tower_openai_core::SelectedConnection);
//! - writes (adds to) [`UpstreamHeaders`](tower_openai_core::UpstreamHeaders);
//! - its own token requests (Entra ID, OAuth refresh) carry a
//!   [`RequestTimeout`](tower_openai_core::RequestTimeout).
//!
//! # Example
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_auth::AuthLayer;
//! use tower_openai_core::{SelectedConnection, UpstreamHeaders};
//! use tower_openai_settings::SettingsSource;
//! use tower_openai_settings::ApiKey;
//!
//! async fn upstream(req: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     let headers = req.extensions().get::<UpstreamHeaders>().unwrap().merged();
//!     Ok(Response::new(Full::from(headers["authorization"].to_str().unwrap().to_owned())))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let settings = SettingsSource {
//!     base_urls: Some(vec!["https://api.openai.com/v1".into()]),
//!     keys: Some(vec![ApiKey::new("sk-upstream")]),
//!     ..Default::default()
//! }
//! .build()
//! .unwrap();
//! let svc = ServiceBuilder::new().layer(AuthLayer::new()).service_fn(upstream);
//! let mut req = Request::new(());
//! req.extensions_mut().insert(SelectedConnection(settings.connection(0).unwrap().clone()));
//! let res = svc.oneshot(req).await.unwrap();
//! # use http_body_util::BodyExt;
//! assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"Bearer sk-upstream");
//! # }
//! ```

pub mod entra;
mod http;
mod layer;
pub mod oauth;
mod options;
mod service;
mod token;

pub use crate::entra::EntraTokens;
tower_openai_util::deferred_response_future! {
    /// Response future of [`Auth`].
}
pub use crate::layer::AuthLayer;
pub use crate::oauth::{InMemorySessions, OAuthSession, SessionTokens};
pub use crate::options::{AuthOptions, AuthType};
pub use crate::service::{ANTHROPIC_VERSION, Auth, OAUTH_SESSION_COOKIE};
pub use crate::token::{
    AccessToken, DEFAULT_REFRESH_MARGIN, MAX_TOKEN_LIFETIME, TokenError, TokenFuture, TokenLookup,
};
