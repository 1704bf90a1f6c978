//! Azure OpenAI (rule CC-12, A-7, P-4, V-3).
//!
//! For a request whose selected connection has `azure: true` (or `provider: "azure"`), unless
//! its URL contains `/openai/v1` (Azure's v1 API, OpenAI's own shape: sent as to any OpenAI
//! upstream, `{url}/chat/completions`, no `api-version`, nothing filtered; Open WebUI 0.7+):
//!
//! - **URL**: `{base}/openai/deployments/{deployment}/{path}?api-version={v}`, where the
//!   deployment is the outgoing `model` (any `prefix_id` already stripped). A deployment
//!   containing `/` or `..` is refused with 400 `invalid_deployment`; everything else is
//!   percent-encoded (Open WebUI inserts it as is). This covers chat completions,
//!   completions, embeddings, audio and the pass-through proxy. A request without a model
//!   goes to `{base}/openai/{path}?api-version={v}` (so the model list is Azure's
//!   `/openai/models`).
//! - **`api-version`**: the connection's `api_version`, or `2023-03-15-preview` when it is
//!   absent or empty — the same in every path. The caller's own `api-version` query
//!   parameter is replaced. It is also sent as the `api-version` header (A-7); the auth layer
//!   adds `api-key`.
//! - **Chat payload** (CC-12): reasoning deployments get `max_completion_tokens` and lose
//!   `temperature` unless it is 1; then only Azure's allowlisted members are kept
//!   ([`CHAT_ALLOWLIST`]), `stream_options` only from `2024-09-01-preview` on, with versions
//!   **compared as dates** (Open WebUI compares strings, so `2024-09-01` loses it). Other
//!   endpoints keep their own members (an embeddings body keeps `input`).
//!
//! # Connection options
//! [`AzureOptions`]: `api_version` (besides core's `azure`), read through
//! [`Connection::options`](tower_openai_settings::Connection::options); check them when the
//! settings load with `settings.check::<AzureOptions>()` (an unchecked bad section is
//! answered 500, naming the member).
//!
//! # Extensions
//! - reads [`SelectedConnection`](tower_openai_core::SelectedConnection),
//!   [`ApiRoute`](tower_openai_core::ApiRoute) (chat completions get the payload allowlist),
//!   the [`Payload`](tower_openai_core::Payload)'s or the
//!   [`Form`](tower_openai_core::payload::Form)'s `model` (the deployment), and
//!   [`ReasoningModel`](tower_openai_core::extensions::ReasoningModel) (the reasoning
//!   layer's decision: stack it above this one for reasoning deployments);
//! - writes [`UpstreamHeaders`](tower_openai_core::UpstreamHeaders) (`api-version`), the
//!   request URI, and the payload.
//!
//! # Example
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_azure::AzureLayer;
//! use tower_openai_core::{Payload, SelectedConnection};
//! use tower_openai_settings::SettingsSource;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let settings = SettingsSource {
//!     base_urls: Some(vec!["https://res.openai.azure.com".into()]),
//!     configs: serde_json::json!({"0": {"azure": true, "api_version": "2024-10-21"}}).as_object().cloned(),
//!     ..Default::default()
//! }
//! .build()
//! .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(AzureLayer::new())
//!     .service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req.uri().to_string())) });
//! let mut req = Request::post("/chat/completions").body(()).unwrap();
//! req.extensions_mut().insert(SelectedConnection(settings.connection(0).unwrap().clone()));
//! req.extensions_mut().insert(Payload::new(Bytes::from_static(br#"{"model":"gpt-4o","messages":[]}"#)));
//! let res = svc.oneshot(req).await.unwrap();
//! # let tower_openai_core::ResponseBody::Inner(uri) = res.into_body() else { panic!() };
//! assert_eq!(uri, "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21");
//! # }
//! ```

mod layer;
mod options;
mod rewrite;
mod service;

pub use crate::layer::AzureLayer;
pub use crate::options::AzureOptions;
pub use crate::rewrite::{
    CHAT_ALLOWLIST, DEFAULT_API_VERSION, STREAM_OPTIONS_SINCE, api_version, chat_payload,
    compare_versions, deployment_segment,
};
pub use crate::service::{Azure, ResponseFuture, is_azure_v1};
