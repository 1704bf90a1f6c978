//! Route each request to the connection that serves its model.
//!
//! For a request whose JSON [`Payload`](tower_openai_core::Payload) or multipart
//! [`Form`](tower_openai_core::payload::Form) names a `model`, the
//! select layer asks a [`ModelRoutes`](tower_openai_core::routing::ModelRoutes) (the models
//! layer's `Catalog`) which connection serves it (rule CC-3), selects that connection, and
//! strips the connection's `prefix_id` from the outgoing `model` — only a leading
//! `{prefix}.`, unlike Open WebUI's CC-5, which deletes the string anywhere.
//!
//! - A model route (an [`ApiRoute`](tower_openai_core::ApiRoute) the policy layer wrote;
//!   without one, `POST /chat/completions`, `/completions`, `/embeddings`, `/responses` and
//!   `/audio/speech`) needs a string `model`: anything else is 400.
//! - Any other request (the pass-through proxy) is routed by its body's `model` when it
//!   has one, and goes to connection 0 otherwise (rule P-2), query string and all.
//! - A model no connection serves is 404 `model_not_found`. With `ENABLE_OPENAI_API=false`
//!   every request is 503 `openai_api_disabled` (Open WebUI keeps routing with a stale map, CC-16).
//! - A request that already carries a
//!   [`SelectedConnection`](tower_openai_core::SelectedConnection) (the catalog's own
//!   fetches, the admin connection check) passes through unchanged.
//!
//! On a warm catalog routing is a hash lookup; while the first list is being built the
//! request waits for it.
//!
//! # Extensions
//! - reads [`SettingsSnapshot`](tower_openai_settings::SettingsSnapshot) (required),
//!   [`ApiRoute`](tower_openai_core::ApiRoute), [`Payload`](tower_openai_core::Payload) and
//!   [`Form`](tower_openai_core::payload::Form);
//! - writes [`SelectedConnection`](tower_openai_core::SelectedConnection) (a request that
//!   has one already keeps it) and [`RequestedModel`](tower_openai_core::RequestedModel), and
//!   edits the payload's (or the form's) `model`; for a model several connections serve
//!   (model groups), [`ConnectionGroup`](tower_openai_core::ConnectionGroup) instead: the
//!   group layer, stacked below, binds each attempt (a request is bound to a connection
//!   once, by one step).
//!
//! # Example
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_collect::CollectPayloadLayer;
//! use tower_openai_select::StaticRoutes;
//! use tower_openai_core::{Body, Payload, SelectedConnection};
//! use tower_openai_settings::{LoadSettingsLayer, SettingsHandle, SettingsSource};
//! use tower_openai_select::SelectLayer;
//!
//! async fn upstream(req: Request<Body>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     let conn = req.extensions().get::<SelectedConnection>().unwrap().connection().index();
//!     let model: String = req.extensions().get::<Payload>().unwrap().get("model").unwrap().unwrap();
//!     Ok(Response::new(Full::from(format!("{conn}:{model}"))))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let settings = SettingsSource {
//!     base_urls: Some(vec!["http://a/v1".into(), "http://b/v1".into()]),
//!     configs: serde_json::json!({"1": {"prefix_id": "b"}}).as_object().cloned(),
//!     ..Default::default()
//! }
//! .build()
//! .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(LoadSettingsLayer::new(SettingsHandle::new(settings)))
//!     .layer(CollectPayloadLayer::default())
//!     .layer(SelectLayer::new(StaticRoutes::new([("b.llama3", 1)])))
//!     .service_fn(upstream);
//!
//! let req = Request::post("/chat/completions").body(Body::from(r#"{"model":"b.llama3"}"#)).unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"1:llama3");
//!
//! let unknown = Request::post("/chat/completions").body(Body::from(r#"{"model":"gpt-9"}"#)).unwrap();
//! assert_eq!(svc.oneshot(unknown).await.unwrap().status(), StatusCode::NOT_FOUND);
//! # }
//! ```

mod layer;
mod routes;
mod service;

pub use crate::layer::SelectLayer;
pub use crate::routes::StaticRoutes;
tower_openai_util::deferred_response_future! {
    /// Response future of [`Select`].
}
pub use crate::service::Select;
