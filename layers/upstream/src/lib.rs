//! The upstream HTTP service at the bottom of every tower-openai stack.
//!
//! [`Upstream`] sends a request to the connection a layer above selected
//! ([`SelectedConnection`](tower_openai_core::SelectedConnection)) and streams the answer
//! back:
//!
//! - **URL**: the connection's base URL joined with the request's path and query
//!   (`http://host/v1` + `/chat/completions?x=1`). Layers see paths relative to the API
//!   root, as if nested under `/v1`.
//! - **One pooled client** (hyper-util) with rustls and Mozilla's roots, HTTP/1.1 and HTTP/2
//!   (ALPN), keep-alive, `TCP_NODELAY`. A connection with `ssl_verify = false`
//!   (`AIOHTTP_CLIENT_SESSION_SSL=false`) uses a second pool that skips certificate checks.
//! - **Body**: the [`Payload`](tower_openai_core::Payload)'s bytes when there is one (the
//!   caller's bytes, unless a layer changed them), or the
//!   [`Form`](tower_openai_core::payload::Form)'s, otherwise the caller's body, streamed.
//! - **Headers, both ways through allowlists**. Caller → upstream: only `content-type`,
//!   `accept`, `user-agent`, `openai-beta`, `idempotency-key`, `x-stainless-*`,
//!   `traceparent`, `tracestate`, `x-request-id` and the names added with
//!   [`UpstreamBuilder::forward_headers`]; then
//!   [`UpstreamHeaders`](tower_openai_core::UpstreamHeaders) on top (the connection's
//!   credentials, user info, custom headers). A caller's `Authorization`,
//!   `OpenAI-Organization` or forged `X-OpenWebUI-User-*` never reach an upstream.
//!   Upstream → caller: only `content-type`, `content-length` (not on a stream),
//!   `content-encoding`, `retry-after`, `openai-processing-ms`, `openai-version`,
//!   `x-ratelimit-*` and the names added with [`UpstreamBuilder::expose_headers`]; the
//!   upstream's `x-request-id` arrives as `x-upstream-request-id`.
//! - **Proxies**: with [`UpstreamBuilder::proxies_from`], `HTTP_PROXY`, `HTTPS_PROXY`,
//!   `ALL_PROXY` and `NO_PROXY` are honoured as curl honours them: a `CONNECT` tunnel for an
//!   HTTPS upstream, absolute-form requests to the proxy for a plain-HTTP one.
//! - **Timeouts** (no total cap, so a long stream is never cut while it flows): a connect
//!   timeout, and an idle-read timeout — the longest wait for the response head or for the
//!   next body frame — from the connection's settings or a
//!   [`RequestTimeout`](tower_openai_core::RequestTimeout).
//! - **Streaming**: body frames are passed on as they arrive ([`ResponseBody`]). When the
//!   caller goes away the response body is dropped and so is the upstream request. A failure
//!   in the middle of an SSE stream ends it with a final `data: {"error": …}` event
//!   (Anthropic's `event: error` for a Messages request).
//! - **Limits** (off by default): [`UpstreamBuilder::max_in_flight_per_host`] caps the
//!   requests in flight to one host, each holding its place until its answer's body is
//!   dropped; [`UpstreamBuilder::dns_ttl`] reuses a host's DNS answer for new connections.
//! - **Errors**: transport failures are returned as `Err` holding an
//!   [`UpstreamError`](tower_openai_core::error::UpstreamError) (connect → 502, timeout →
//!   504 once `Rescue` (`tower-openai-rescue`) turns them into responses). Upstream
//!   error responses pass through with their own status and body.
//!
//! # Extensions
//! - reads [`SelectedConnection`](tower_openai_core::SelectedConnection) (required),
//!   [`Payload`](tower_openai_core::Payload),
//!   [`Form`](tower_openai_core::payload::Form),
//!   [`UpstreamHeaders`](tower_openai_core::UpstreamHeaders),
//!   [`RequestTimeout`](tower_openai_core::RequestTimeout),
//!   [`ApiRoute`](tower_openai_core::ApiRoute) (a broken `Messages` stream ends with
//!   Anthropic's `event: error`, any other with `data: {"error": …}`);
//! - writes [`EndingReport`](tower_openai_core::EndingReport) in the response of an event
//!   stream (how it ended, for the layers above).
//!
//! # Example
//! ```
//! use http::{Request, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_openai_core::SelectedConnection;
//! use tower_openai_settings::Settings;
//! use tower_openai_rescue::RescueLayer;
//! use tower_openai_test_util::MockUpstream;
//! use tower_openai_upstream::Upstream;
//!
//! # #[tokio::main] async fn main() {
//! let mock = MockUpstream::builder().models(["llama3"]).start().await;
//! let settings = Settings::for_urls([mock.url()]).unwrap();
//! let svc = ServiceBuilder::new().layer(RescueLayer::new()).service(Upstream::new());
//!
//! let mut req = Request::get("/models?limit=5").body(Full::<bytes::Bytes>::default()).unwrap();
//! req.extensions_mut().insert(SelectedConnection(settings.connection(0).unwrap().clone()));
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! assert!(String::from_utf8_lossy(&body).contains("llama3"));
//! assert_eq!(mock.last_request().unwrap().query.as_deref(), Some("limit=5"));
//! # }
//! //! ```

mod body;
mod client;
mod future;
mod headers;
mod limit;
mod proxy;
mod redirect;
mod resolve;
mod service;

pub use crate::body::{MAX_ERROR_BODY, ResponseBody};
pub use crate::future::ResponseFuture;
pub use crate::headers::{HeaderNotAllowed, UPSTREAM_REQUEST_ID};
pub use crate::service::{Upstream, UpstreamBuilder};

/// The stack sent a request to [`Upstream`] without selecting a connection: a layer that
/// selects one (select, or your own) must sit above it. `Rescue` (`tower-openai-rescue`)
/// answers it with 500.
#[derive(Debug, thiserror::Error)]
#[error("no upstream connection was selected for the request")]
pub struct NoConnectionSelected;
