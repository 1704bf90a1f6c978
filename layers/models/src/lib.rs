//! The aggregated model list: `GET /models` from every connection, merged, cached, and
//! never waiting on a dead upstream.
//!
//! A [`Catalog`] builds the list by Open WebUI's rules (rule M-1 … M-13): each enabled
//! connection contributes its `model_ids` or its `GET /models` (sent through the
//! [`Fetch`](catalog::Fetch) service, so with the connection's own auth); ids get the
//! connection's `prefix_id` (on `name` too, unlike Open WebUI); `tags` and
//! `connection_type` are copied; `api.openai.com` drops its embedding, TTS, Whisper, DALL·E
//! and legacy completion models (M-6); the first model with an id wins (M-7); each entry is
//! decorated with `owned_by: "openai"`, `openai` (the raw model), `connection_type` and
//! `urlIdx` (M-8). See [`Catalog`] for how it is cached.
//!
//! [`ModelsLayer`] answers from it:
//!
//! - `GET /models`: `{"object": "list", "data": […]}`, filtered by the request's
//!   [`ListFilter`](tower_openai_core::ListFilter) if one is set (the acl layer sets it).
//! - `GET /models/{n}` with an integer `n` (M-11): connection `n`'s own list, undecorated,
//!   fetched with its full auth (Azure: its `model_ids` as strings, no call). An index with
//!   no connection is 404; upstream errors pass through with their status; an unreachable
//!   or silent upstream is 502/504.
//! - `GET /models/{id}` otherwise: OpenAI's "retrieve model" from the merged list, or 404
//!   `model_not_found`.
//!
//! Everything else goes to the inner service. With `ENABLE_OPENAI_API=false` every list answers
//! 503 `openai_api_disabled` (Open WebUI 0.7+; 0.6 listed nothing, M-1).
//!
//! # Extensions
//! - reads [`SettingsSnapshot`](tower_openai_settings::SettingsSnapshot) (required, from
//!   [`LoadSettingsLayer`](tower_openai_settings::LoadSettingsLayer)) and
//!   [`ListFilter`](tower_openai_core::ListFilter).
//! - the catalog's fetches carry [`SelectedConnection`](tower_openai_core::SelectedConnection),
//!   [`SettingsSnapshot`](tower_openai_settings::SettingsSnapshot) and
//!   [`RequestTimeout`](tower_openai_core::RequestTimeout) (the model-list timeout).
//!
//! # Example
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::{Body, SelectedConnection};
//! use tower_openai_settings::{LoadSettingsLayer, Settings, SettingsHandle};
//! use tower_openai_models::AppliesCredentials;
//! use tower_openai_models::{Catalog, ModelsLayer};
//!
//! // Stands in for the endpoint stack (it would apply each connection's key): every
//! // connection lists one model.
//! async fn upstream(req: Request<Body>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     let conn = req.extensions().get::<SelectedConnection>().unwrap().connection().index();
//!     let body = format!(r#"{{"data":[{{"id":"model-{conn}"}}]}}"#);
//!     Ok(Response::builder().header("content-type", "application/json").body(Full::from(body)).unwrap())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let settings = SettingsHandle::new(Settings::for_urls(["http://a/v1", "http://b/v1"]).unwrap());
//! let catalog = Catalog::new(AppliesCredentials(service_fn(upstream)));
//! let svc = ServiceBuilder::new()
//!     .layer(LoadSettingsLayer::new(settings))
//!     .layer(ModelsLayer::new(catalog))
//!     .service_fn(upstream);
//!
//! let res = svc.oneshot(Request::get("/models").body(Body::empty()).unwrap()).await.unwrap();
//! let list: serde_json::Value =
//!     serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
//! let ids: Vec<_> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
//! assert_eq!(ids, ["model-0", "model-1"]);
//! assert_eq!(list["data"][1]["urlIdx"], 1);
//! # }
//! ```

pub mod catalog;
mod endpoint;
mod future;
mod layer;
mod service;
mod snapshot;
mod transform;

pub use crate::catalog::{Catalog, CatalogBuilder, ConnectionHealth, Lookup};
pub use crate::endpoint::AppliesCredentials;
pub use crate::future::ResponseFuture;
pub use crate::layer::ModelsLayer;
pub use crate::service::Models;
pub use crate::snapshot::Snapshot;
