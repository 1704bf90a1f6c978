//! Chat Completions on an upstream that speaks only OpenAI's Responses API (Open WebUI
//! 0.7+'s per-connection `api_type: "responses"`), converted completely: callers that speak
//! Chat Completions get Chat Completions back, tool calls and streams included.
//!
//! For a `chat/completions` request whose selected connection has `api_type: "responses"`,
//! [`ResponsesLayer`]:
//!
//! - sends it as `POST …/responses` with the payload converted by [`chat_to_responses`]
//!   (system messages → `instructions`, messages → `input` items, assistant `tool_calls` →
//!   `function_call` items, `tool` messages → `function_call_output` items,
//!   `max_tokens`/`max_completion_tokens` → `max_output_tokens`, tools flattened;
//!   `stream_options`, `logit_bias`, `frequency_penalty`, `presence_penalty`, `stop` and the
//!   other members Responses does not take dropped). A request that cannot be converted is
//!   refused with 400 `invalid_value`, naming the member, and nothing is sent.
//! - turns a JSON answer back with [`responses_to_chat`] (text → `content`, `function_call`
//!   items → `tool_calls` with their call ids, names and arguments, reasoning summaries →
//!   `reasoning_content`, `finish_reason` `tool_calls`/`length`/`stop`, usage mapped), and a
//!   stream event by event with [`ChatStream`] (`delta.content`, `delta.tool_calls`,
//!   `delta.reasoning_content`, the usage chunk when the caller asked for it, `data: [DONE]`;
//!   `response.failed` or an `error` event → the terminal error event).
//! - passes error answers (status ≥ 400) as the upstream sent them, and every other request
//!   untouched (no cost beyond one look-up of the connection's options).
//!
//! Stack it below select (or a group layer), where the connection is known, below layers
//! that edit the chat payload (reasoning), and below the usage layer (which then reads the
//! converted chat answer). Check the options when settings load with
//! `settings.check::<ResponsesOptions>()`.
//!
//! # Extensions
//! - reads [`ApiRoute`](tower_openai_core::ApiRoute),
//!   [`SelectedConnection`](tower_openai_core::SelectedConnection) and the
//!   [`Payload`](tower_openai_core::Payload);
//! - writes the payload (replaced by the converted one) and the request URI.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use serde_json::{Value, json};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::{ApiRoute, Payload, SelectedConnection};
//! use tower_openai_responses::{ResponsesLayer, ResponsesOptions};
//! use tower_openai_settings::SettingsSource;
//!
//! let settings = SettingsSource {
//!     base_urls: Some(vec!["https://api.example.com/v1".into()]),
//!     configs: json!({"0": {"api_type": "responses"}}).as_object().cloned(),
//!     ..Default::default()
//! }
//! .build()
//! .unwrap();
//! settings.check::<ResponsesOptions>().unwrap();
//! // Stands for the upstream: it must be asked for a Responses answer.
//! let upstream = service_fn(|req: Request<()>| async move {
//!     assert_eq!(req.uri().path(), "/responses");
//!     let sent: Value = serde_json::from_slice(&req.extensions().get::<Payload>().unwrap().to_bytes()).unwrap();
//!     assert_eq!(sent["instructions"], "Be brief.");
//!     let answer = json!({"id": "resp_1", "model": "m", "status": "completed", "output": [
//!         {"type": "message", "content": [{"type": "output_text", "text": "Hi."}]}]});
//!     Response::builder()
//!         .header("content-type", "application/json")
//!         .body(Full::new(Bytes::from(answer.to_string())))
//! });
//! let svc = ServiceBuilder::new().layer(ResponsesLayer::new()).service(upstream);
//! let mut req = Request::post("/chat/completions").body(()).unwrap();
//! req.extensions_mut().insert(ApiRoute::ChatCompletions);
//! req.extensions_mut().insert(SelectedConnection(settings.connection(0).unwrap().clone()));
//! let chat = json!({"model": "m", "messages": [
//!     {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]});
//! req.extensions_mut().insert(Payload::new(Bytes::from(chat.to_string())));
//! let res = svc.oneshot(req).await.unwrap();
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! let answer: Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(answer["object"], "chat.completion");
//! assert_eq!(answer["choices"][0]["message"]["content"], "Hi.");
//! # }
//! ```

mod answer;
mod options;
mod request;
mod service;
mod stream;

pub use crate::answer::responses_to_chat;
pub use crate::options::{ApiType, ResponsesOptions};
pub use crate::request::{ConvertError, chat_to_responses};
pub use crate::service::{
    Conversion, JsonAnswer, MAX_ANSWER_BYTES, ResponseBody, ResponseFuture, Responses,
    ResponsesLayer,
};
pub use crate::stream::{ChatStream, MAX_EVENT_BYTES};
/// The trait [`ChatStream`] converts through (`push`, `finish`, `is_finished`).
pub use tower_openai_util::body::Reframe;
