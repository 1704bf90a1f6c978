//! Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) on every
//! connection, so Claude Code and the Anthropic SDKs can use any OpenAI-compatible upstream
//! through the same keys, model access, limits and metrics as Chat Completions callers.
//!
//! For a request whose [`ApiRoute`](tower_openai_core::ApiRoute) is `Messages` or
//! `MessagesCountTokens`, [`AnthropicLayer`] looks at the selected connection:
//!
//! - an **Anthropic connection**
//!   ([`Connection::is_anthropic`](tower_openai_settings::Connection::is_anthropic)): the
//!   request goes on as it is (the path `…/messages`, the body with its model); the answer,
//!   its errors and its stream come back byte for byte. (The auth layer gives such a
//!   connection its key as `x-api-key` with an `anthropic-version`.)
//! - **any other connection**: `messages` is sent as `chat/completions` with the body
//!   translated by [`messages_to_chat`], as [`ApiRoute::ChatCompletions`](tower_openai_core::ApiRoute)
//!   (so the layers below treat it as any chat: reasoning rewrites, Azure, the Responses
//!   conversion, auth, headers); a JSON answer comes back through [`chat_to_message`] and a
//!   stream through [`MessagesStream`]. A request that cannot be translated is refused with
//!   400 `invalid_request_error` naming the member, and nothing is sent. `count_tokens` is
//!   answered here with [`estimate_input_tokens`] (an estimate, documented there) and nothing
//!   is sent.
//!
//! Error answers (status ≥ 400) pass through this layer untouched; stack
//! [`AnthropicErrorsLayer`] above everything that can refuse a request (identity, the route
//! policy, limits, access) to give every error of an Anthropic request Anthropic's shape,
//! `{"type": "error", "error": {"type", "message"}}`, its type from the status.
//!
//! Stack [`AnthropicLayer`] below select (or a group layer, so each attempt is translated
//! for its own connection) and above the per-connection layers and the usage layer.
//!
//! # Extensions
//! - reads [`ApiRoute`](tower_openai_core::ApiRoute),
//!   [`SelectedConnection`](tower_openai_core::SelectedConnection) and the
//!   [`Payload`](tower_openai_core::Payload);
//! - writes the payload (replaced by the translated one), the route
//!   (`ChatCompletions` for a translated request) and the request URI.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use serde_json::{Value, json};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_anthropic::{AnthropicErrorsLayer, AnthropicLayer};
//! use tower_openai_core::{ApiRoute, Payload, SelectedConnection};
//! use tower_openai_settings::SettingsSource;
//!
//! let settings = SettingsSource {
//!     base_urls: Some(vec!["http://vllm.internal:8000/v1".into()]),
//!     ..Default::default()
//! }
//! .build()
//! .unwrap();
//! // Stands for the upstream: it must be asked for a chat completion.
//! let upstream = service_fn(|req: Request<()>| async move {
//!     assert_eq!(req.uri().path(), "/chat/completions");
//!     let sent: Value = serde_json::from_slice(&req.extensions().get::<Payload>().unwrap().to_bytes()).unwrap();
//!     assert_eq!(sent["messages"][0], json!({"role": "system", "content": "Be brief."}));
//!     let answer = json!({"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0,
//!         "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi."}}],
//!         "usage": {"prompt_tokens": 9, "completion_tokens": 2}});
//!     Response::builder()
//!         .header("content-type", "application/json")
//!         .body(Full::new(Bytes::from(answer.to_string())))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(AnthropicErrorsLayer::new())
//!     .layer(AnthropicLayer::new())
//!     .service(upstream);
//! let mut req = Request::post("/messages").body(()).unwrap();
//! req.extensions_mut().insert(ApiRoute::Messages);
//! req.extensions_mut().insert(SelectedConnection(settings.connection(0).unwrap().clone()));
//! let messages = json!({"model": "m", "max_tokens": 64, "system": "Be brief.",
//!     "messages": [{"role": "user", "content": "Hello"}]});
//! req.extensions_mut().insert(Payload::new(Bytes::from(messages.to_string())));
//! let res = svc.oneshot(req).await.unwrap();
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! let answer: Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(answer["type"], "message");
//! assert_eq!(answer["content"], json!([{"type": "text", "text": "Hi."}]));
//! assert_eq!(answer["stop_reason"], "end_turn");
//! assert_eq!(answer["usage"], json!({"input_tokens": 9, "output_tokens": 2}));
//! # }
//! ```

mod answer;
mod count;
mod errors;
mod output;
mod request;
mod service;
mod stream;

pub use crate::answer::{chat_to_message, stop_reason};
pub use crate::count::estimate_input_tokens;
pub use crate::errors::{
    AnthropicErrors, AnthropicErrorsLayer, ErrorsBody, ErrorsFuture, MAX_ERROR_BYTES,
    anthropic_error, error_type,
};
pub use crate::request::{ConvertError, messages_to_chat};
pub use crate::service::{
    Anthropic, AnthropicLayer, Conversion, JsonAnswer, MAX_ANSWER_BYTES, ResponseBody,
    ResponseFuture,
};
pub use crate::stream::{MAX_EVENT_BYTES, MAX_TOOL_CALLS, MessagesStream};
/// The trait [`MessagesStream`] converts through (`push`, `finish`, `is_finished`).
pub use tower_openai_util::body::Reframe;
