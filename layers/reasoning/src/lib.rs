//! Payload rewrites for OpenAI reasoning models (rule CC-7, CC-8).
//!
//! On `POST /chat/completions`, with the outgoing model (any `prefix_id` already stripped by
//! select):
//!
//! - **Reasoning models** (by default `o<digit>…` and `gpt-N` with N ≥ 5, optionally after a
//!   provider prefix ending in `openai.`; replace the rule with [`ReasoningLayer::rule`]):
//!   `max_tokens` becomes `max_completion_tokens`, and a first `system` message becomes
//!   `user` for `o1-mini*`/`o1-preview*` and `developer` otherwise. Empty or missing
//!   `messages` are forwarded untouched (Open WebUI crashes).
//! - **Other models on a URL that is not `api.openai.com`**: `max_completion_tokens`
//!   becomes `max_tokens`, for older OpenAI-compatible servers.
//! - Never both: if both keys remain, `max_tokens` is removed.
//! - **`logit_bias`**: OpenAI's object form passes unchanged (Open WebUI crashes on it);
//!   Open WebUI's string form `"token:bias,…"` is converted to an object with each bias
//!   clamped to −100..100; a malformed string is 400 `invalid_value`.
//! - **`stream_options`** is removed unless `stream` is `true`, and a **`tool` message**
//!   whose content is a list of parts is sent as their text joined (Open WebUI 0.7+).
//!
//! A request these rules leave alone is forwarded byte for byte. Only the first message is
//! parsed; the rest of the conversation is copied as raw JSON.
//!
//! # Extensions
//! - reads [`Payload`](tower_openai_core::Payload),
//!   [`SelectedConnection`](tower_openai_core::SelectedConnection) and
//!   [`ApiRoute`](tower_openai_core::ApiRoute);
//! - writes [`ReasoningModel`](tower_openai_core::extensions::ReasoningModel) (the azure layer
//!   uses the same decision) and edits the payload.
//!
//! # Example
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::Payload;
//! use tower_openai_reasoning::ReasoningLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ReasoningLayer::new())
//!     .service_fn(|req: Request<()>| async move {
//!         let sent = req.extensions().get::<Payload>().unwrap().to_bytes();
//!         Ok::<_, Infallible>(Response::new(sent))
//!     });
//! let mut req = Request::post("/chat/completions").body(()).unwrap();
//! req.extensions_mut().insert(Payload::new(Bytes::from_static(
//!     br#"{"model":"o3-mini","max_tokens":50,"messages":[{"role":"system","content":"Be brief."}]}"#,
//! )));
//! let res = svc.oneshot(req).await.unwrap();
//! # let tower_openai_core::ResponseBody::Inner(body) = res.into_body() else { panic!() };
//! assert_eq!(
//!     &body[..],
//!     br#"{"model":"o3-mini","max_completion_tokens":50,"messages":[{"content":"Be brief.","role":"developer"}]}"#
//! );
//! # }
//! ```

mod layer;
mod rewrite;
mod rule;
mod service;
mod strategy;

pub use crate::layer::ReasoningLayer;
pub use crate::rule::is_reasoning_model;
pub use crate::service::{Reasoning, ResponseFuture};
pub use crate::strategy::{DefaultReasoningModels, ReasoningModels};
