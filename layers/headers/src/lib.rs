//! Upstream request headers (Open WebUI rules H-2 … H-5; the names are configurable as in later Open WebUI releases).
//!
//! For a request with a [`SelectedConnection`](tower_openai_core::SelectedConnection), the
//! headers layer adds, as [`UpstreamHeaders`](tower_openai_core::UpstreamHeaders) at their
//! H-5 steps:
//!
//! - **OpenRouter attribution** (H-2), when the connection URL contains `openrouter.ai`:
//!   `HTTP-Referer` and `X-Title` (this project's URL and name by default; configurable).
//! - **User info** (H-3), when `ENABLE_FORWARD_USER_INFO_HEADERS` is on and a
//!   [`User`](tower_openai_core::User) is known: `X-OpenWebUI-User-Name` (percent-encoded as
//!   UTF-8: only space and `A–Z a–z 0–9 _ . - ~` stay literal), `-User-Id`, `-User-Email` and
//!   `-User-Role`. The names are configurable with Open WebUI's later
//!   `FORWARD_USER_INFO_HEADER_USER_NAME` / `_ID` / `_EMAIL` / `_ROLE` variables.
//! - **The chat id** (H-4), under the same condition, from the body's `metadata.chat_id`:
//!   `X-OpenWebUI-Chat-Id` (`FORWARD_SESSION_INFO_HEADER_CHAT_ID`). On chat completions the
//!   `metadata` member is removed from the upstream body (CC-1).
//! - **The user token** instead of the four user headers when [`HeadersConfig::jwt`] is set
//!   ([`UserJwt`], `FORWARD_USER_INFO_HEADER_JWT_SECRET`, Open WebUI 0.9.6+): an HS256 JWT
//!   minted per request; the chat id is still sent.
//! - **The connection's custom `headers`** (H-5 step 6: they override the steps before them,
//!   `Authorization` included). Values may use Open WebUI 0.11's placeholders: `{{CHAT_ID}}`,
//!   `{{MESSAGE_ID}}`, `{{USER_MESSAGE_ID}}`, `{{USER_MESSAGE_PARENT_ID}}`, `{{FILE_ID}}`,
//!   `{{FILE_NAME}}`, `{{FILE_CONTENT_TYPE}}`, `{{TASK}}` (from a chat's `metadata`),
//!   `{{USER_ID}}`, `{{USER_NAME}}`, `{{USER_EMAIL}}`, `{{USER_ROLE}}`, `{{USER_GROUPS}}` (the
//!   group names, comma-joined), `{{USER_GROUP_IDS}}`,
//!   `{{USER_AGENT}}` (the caller's `User-Agent`, else `metadata.user_agent`) and
//!   `{{MODEL_ID}}` (the model as the caller named it); a placeholder with nothing to fill
//!   becomes empty, and a filled-in value that is not a valid header value is sent
//!   percent-encoded. Names and templates were validated when the settings were loaded.
//!
//! # Connection options
//! [`ConnectionHeaders`]: `headers`, an object of header names to values (which may hold
//! `{{…}}` placeholders), read through
//! [`Connection::options`](tower_openai_settings::Connection::options); check them when the
//! settings load with `settings.check::<ConnectionHeaders>()` (an unchecked bad section sends
//! no custom header and logs an error).
//!
//! # Extensions
//! - reads [`SelectedConnection`](tower_openai_core::SelectedConnection),
//!   [`SettingsSnapshot`](tower_openai_settings::SettingsSnapshot),
//!   [`User`](tower_openai_core::User), [`RequestedModel`](tower_openai_core::RequestedModel)
//!   and [`Payload`](tower_openai_core::Payload) (removes `metadata` on chat completions,
//!   the [`ApiRoute`](tower_openai_core::ApiRoute) says which);
//! - writes [`UpstreamHeaders`](tower_openai_core::UpstreamHeaders).
//!
//! # Example
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::{SelectedConnection, UpstreamHeaders};
//! use tower_openai_settings::{Settings, SettingsSnapshot};
//! use tower_openai_headers::HeadersLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let settings = std::sync::Arc::new(Settings::for_urls(["https://openrouter.ai/api/v1"]).unwrap());
//! let svc = ServiceBuilder::new()
//!     .layer(HeadersLayer::default())
//!     .service_fn(|req: Request<()>| async move {
//!         let headers = req.extensions().get::<UpstreamHeaders>().unwrap().merged();
//!         Ok::<_, Infallible>(Response::new(headers["x-title"].to_str().unwrap().to_owned()))
//!     });
//! let mut req = Request::new(());
//! req.extensions_mut().insert(SettingsSnapshot(settings.clone()));
//! req.extensions_mut().insert(SelectedConnection(settings.connection(0).unwrap().clone()));
//! assert_eq!(svc.oneshot(req).await.unwrap().body(), "tower-openai");
//! # }
//! ```

mod config;
mod encode;
mod layer;
mod options;
mod service;

pub use crate::config::{HeaderNames, HeadersConfig, UserJwt};
pub use crate::encode::encode_user_name;
pub use crate::layer::HeadersLayer;
pub use crate::options::ConnectionHeaders;
pub use crate::service::Headers;
