//! Observability for a tower-openai stack: what each request did, reported once, when its
//! response body ends.
//!
//! - [`ObserveLayer`] (near the top), when each response body ends (completed, broken by the
//!   upstream, left by the caller, cut by shutdown), writes one access log line and records
//!   the metrics in [`names`] through the [`metrics`] facade: your application installs the
//!   recorder (Prometheus, StatsD, …), or nothing is recorded. With
//!   [`ObserveLayer::ledger`], each answer of a model route is also told to a [`Ledger`]
//!   (caller, key, model, usage, cost): the gateway's spend records.
//! - [`UsageLayer`] (below select) reads the token usage of each answer into a
//!   [`UsageReport`] in its response extensions: from a JSON answer's `usage`, or a stream's
//!   usage chunk, as the bytes pass.
//!
//! Nothing is shared between them but the response: data flows down through the request
//! extensions and up through the response extensions, and the layers above read the usage
//! report when their own watch of the body ends (after the usage layer's).
//!
//! # Extensions
//! - [`ObserveLayer`] reads [`User`](tower_openai_core::User) from the request, and from the
//!   response [`ApiRoute`](tower_openai_core::ApiRoute),
//!   [`RequestedModel`](tower_openai_core::RequestedModel),
//!   [`SelectedConnection`](tower_openai_core::SelectedConnection), [`UsageReport`],
//!   [`EndingReport`](tower_openai_core::EndingReport) and
//!   [`UpstreamFailure`](tower_openai_core::error::UpstreamFailure); it writes nothing.
//! - [`UsageLayer`] reads [`ApiRoute`](tower_openai_core::ApiRoute),
//!   [`RequestedModel`](tower_openai_core::RequestedModel),
//!   [`SelectedConnection`](tower_openai_core::SelectedConnection),
//!   [`MeterUsage`](tower_openai_core::MeterUsage) and the
//!   [`Payload`](tower_openai_core::Payload) from the request (it may add
//!   `stream_options.include_usage` to the payload); it writes [`UsageReport`] (priced, with
//!   [`UsageLayer::prices`]) and copies the model and the connection into the response.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::extensions::ApiRoute;
//! use tower_openai_observe::{ObserveLayer, UsageLayer};
//!
//! // Stands for the rest of a stack: an upstream's answer with its usage.
//! let upstream = service_fn(|_req: Request<Full<Bytes>>| async move {
//!     let body = r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5}}"#;
//!     Response::builder()
//!         .header("content-type", "application/json")
//!         .body(Full::new(Bytes::from(body)))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(ObserveLayer::new())
//!     // The policy layer writes the route, in the request and on the answer.
//!     .map_request(|mut req: Request<Full<Bytes>>| {
//!         req.extensions_mut().insert(ApiRoute::ChatCompletions);
//!         req
//!     })
//!     .map_response(|mut res: Response<_>| {
//!         res.extensions_mut().insert(ApiRoute::ChatCompletions);
//!         res
//!     })
//!     .layer(UsageLayer::new())
//!     .service(upstream);
//!
//! let req = Request::post("/chat/completions").body(Full::new(Bytes::from("{}"))).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! // The body passes unchanged; the access line and the metrics are written at its end.
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! assert!(body.ends_with(br#""completion_tokens":5}}"#));
//! # }
//! ```

mod events;
mod handles;
mod ledger;
pub mod names;
mod report;
mod scan;
mod text;
pub mod usage;

pub use crate::ledger::{Ledger, LedgerEntry};
pub use crate::report::{
    ACCESS_LOG_TARGET, MAX_LOGGED_PATH, Observe, ObserveLayer, Outcome, Report, ResponseBody,
    ResponseFuture, logged_path,
};
pub use crate::usage::{Usage, UsageLayer};
pub use tower_openai_core::{Ending, TokenUsage, UsageReport};
