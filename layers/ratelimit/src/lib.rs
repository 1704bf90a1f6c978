//! Per-caller rate limits: requests per minute and tokens per minute.
//!
//! [`RateLimitLayer`] asks a [`LimitStore`] to admit each request of a caller (the key and the
//! limits come from a function of the request's extensions: the gateway's user, or your own
//! "who"). The window is one minute, fixed (it starts at each minute of the Unix clock, so
//! every process and a shared store agree on it).
//!
//! - A request is refused once the window's count is at the limit (`rpm`), or its tokens are
//!   over it (`tpm`). Tokens are known only when an answer ends: they are taken from the
//!   usage the answer reported (the [`UsageReport`](tower_openai_core::UsageReport) a usage
//!   layer below puts in the response and fills in; streams at their end, callers who left
//!   included) and added then. So with `tpm = 30` and 20 tokens a chat, the second chat
//!   passes and the third is refused. A caller with a `tpm` limit is marked
//!   [`MeterUsage`](tower_openai_core::MeterUsage) for the usage layer: streams are asked for
//!   usage, and an answer that ends without it is charged an estimate.
//! - Model routes and the passthrough are limited; the model list is not (nor, without an
//!   [`ApiRoute`](tower_openai_core::ApiRoute), is anything let through unlimited).
//! - Refused: `429` with code `rate_limit_exceeded`, `Retry-After` (seconds to the next
//!   window) and the `x-ratelimit-*` headers; admitted answers carry the headers too.
//! - [`MemoryStore`] keeps the counts in the process. A store shared by several processes
//!   (Redis) implements the same trait. A store that fails lets the request through (limits
//!   fail open) and logs it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::User;
//! use tower_openai_ratelimit::{Limits, MemoryStore, RateLimitLayer};
//!
//! let upstream = service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("{}"))))
//! });
//! // Every user may make two requests a minute.
//! let layer = RateLimitLayer::new(Arc::new(MemoryStore::new()), |ext: &http::Extensions| {
//!     let user = ext.get::<User>()?;
//!     Some((user.id.to_string(), Limits { rpm: Some(2), tpm: None }))
//! });
//! let svc = ServiceBuilder::new().layer(layer).service(upstream);
//! let request = || {
//!     let mut req = Request::post("/chat/completions").body(Full::new(Bytes::new())).unwrap();
//!     req.extensions_mut().insert(User { id: "alice".into(), ..User::default() });
//!     req
//! };
//! assert_eq!(svc.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(svc.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! let third = svc.clone().oneshot(request()).await.unwrap();
//! assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(third.headers().contains_key("retry-after"));
//! # }
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;
mod service;

pub use crate::memory::{MAX_KEYS, MemoryStore};
#[cfg(feature = "redis")]
pub use crate::redis::{ADMIT_TIMEOUT, RedisStore};
pub use crate::service::{LimitedBody, RateLimit, RateLimitLayer, ResponseFuture, Tally};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tower_openai_core::BoxError;

/// A caller's limits per minute; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
}

impl Limits {
    /// Whether neither limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none()
    }
}

/// A caller's counts in the current window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Requests admitted in the window (this one included, when admitted).
    pub requests: u64,
    /// Tokens the window's answers reported so far.
    pub tokens: u64,
    /// Until the next window.
    pub resets_in: Duration,
}

/// A store's answer to "may this request go?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Counted; the window's counts with it.
    Allowed(Window),
    /// Over a limit; the window's counts (not counting it).
    Refused(Window),
}

/// A boxed future of a store.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'static>>;

/// Where the counts live: in the process ([`MemoryStore`]), or shared by several processes.
pub trait LimitStore: Send + Sync + 'static {
    /// Count one request for `key` in the current window, unless the window is already at
    /// `limits.rpm` requests or over `limits.tpm` tokens. Atomic: two processes asking at
    /// once cannot both take the last request.
    fn admit(&self, key: &str, limits: Limits) -> StoreFuture<Admission>;

    /// Add the tokens of an answer that ended to `key`'s current window. Called when a body
    /// ends (or is dropped), so it must not block; a store that talks to a server sends it in
    /// the background.
    fn add_tokens(&self, key: &str, tokens: u64);
}

/// The current window: the minute of the Unix clock, and the time left in it.
pub(crate) fn current_window() -> (u64, Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let minute = now.as_secs() / 60;
    let next = Duration::from_secs((minute + 1) * 60);
    (minute, next.saturating_sub(now))
}
