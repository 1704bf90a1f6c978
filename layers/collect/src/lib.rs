//! The payload collector: the request body read once, under a size cap, into the
//! [`Payload`](tower_openai_core::Payload) (JSON) or [`Form`](tower_openai_core::payload::Form)
//! (multipart) every layer below reads and edits.
//!
//! [`CollectPayloadLayer`] sits near the top of a stack. It reads the whole body under the
//! limit and puts a [`Payload`] (JSON) or a [`Form`] (multipart) in the request extensions;
//! every layer below reads and edits the body through that one value, and the upstream
//! service sends its `to_bytes()` (the caller's bytes when nothing changed).
//!
//! What it reads depends on the [`ApiRoute`](tower_openai_core::ApiRoute) the policy layer wrote:
//!
//! - a JSON model route: the body, whatever its `Content-Type` says, which must be a JSON
//!   object (RFC 8259: no BOM, no `NaN`, nothing after it) of at most
//!   [`MAX_MEMBERS`] members with one string `model` (400 `invalid_json`, `invalid_body`
//!   or `missing_model` otherwise); it is sent upstream as `application/json`;
//! - a multipart model route: a `multipart/form-data` body (415 otherwise) with one
//!   `model` field ([`Form`]);
//! - the passthrough: a JSON body (a JSON `Content-Type`, or none) must be an object whose
//!   `model`, if any, is a string; a body said to be something else is read whole if it
//!   starts with `{` (an upstream may parse it as JSON whatever its type says), and checked
//!   the same way if it is a JSON object; any other body streams through untouched;
//! - no route (a stack without the policy layer): a JSON body is collected and parsed only
//!   when a layer asks; other bodies stream through.
//!
//! A body the gateway cannot read cannot be checked, so it is refused: that includes a
//! `Content-Encoding` other than identity (415) on anything it must read.
//!
//! A body that sends nothing for the read timeout (30 s by default,
//! [`CollectPayloadLayer::read_timeout`]), or is not complete within the total timeout (300 s
//! by default, [`CollectPayloadLayer::total_timeout`]), is refused with 408 and nothing is
//! forwarded. With a [`BufferBudget`] ([`CollectPayloadLayer::budget`]), the bytes being
//! buffered are counted in all and per user, and a body that would cross either cap is
//! refused with 503 `gateway_overloaded` (`Retry-After: 1`).
//!
//! A body larger than the limit is refused with 413 *before* it is read when its
//! `Content-Length` says so, and as soon as the limit is crossed otherwise. A body that
//! cannot be read (the caller hung up) is answered with 400. The payload is not parsed here:
//! a layer that needs the JSON asks for it and answers 400 itself when it is not an object.
//!
//! # Extensions
//! - reads [`ApiRoute`](tower_openai_core::ApiRoute) and [`User`](tower_openai_core::User)
//!   (whose share of the [`BufferBudget`] a body counts against);
//! - writes [`Payload`] or [`Form`] (when the body was collected), and a JSON model route's
//!   `Content-Type`.
//!
//! The request body below this layer is a [`Body`](tower_openai_core::Body): empty when a `Payload` or
//! `Form` was made (it *is* the body from then on), the caller's stream otherwise.
//!
//! # Example
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_collect::CollectPayloadLayer;
//! use tower_openai_core::{Body, Payload};
//!
//! async fn upstream(req: Request<Body>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
//!     let model: String = req.extensions().get::<Payload>().unwrap().get("model").unwrap().unwrap();
//!     Ok(Response::new(Full::from(model)))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(CollectPayloadLayer::new(1024))
//!     .service_fn(upstream);
//!
//! let req = Request::post("/chat/completions")
//!     .header("content-type", "application/json")
//!     .body(Full::from(r#"{"model":"gpt-4o"}"#))
//!     .unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"gpt-4o");
//!
//! let too_big = Request::post("/chat/completions")
//!     .body(Full::from(vec![b' '; 2048]))
//!     .unwrap();
//! assert_eq!(svc.oneshot(too_big).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
//! # }
//! ```

//! [`Payload`]: tower_openai_core::Payload
//! [`Form`]: tower_openai_core::payload::Form
//! [`MAX_MEMBERS`]: tower_openai_core::payload::MAX_MEMBERS

mod budget;
mod future;
mod layer;
mod prefixed;
mod service;

pub use self::budget::{
    BufferBudget, DEFAULT_MAX_BUFFERED, DEFAULT_MAX_BUFFERED_PER_USER, Overloaded,
};
pub use self::future::ResponseFuture;
pub use self::layer::{
    CollectPayloadLayer, DEFAULT_LIMIT, DEFAULT_READ_TIMEOUT, DEFAULT_TOTAL_TIMEOUT,
};
pub use self::service::CollectPayload;
