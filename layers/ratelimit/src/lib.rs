//! Per-caller rate limits: requests per minute and tokens per minute.
//!
//! [`RateLimitLayer`] asks a [`LimitStore`] to admit each request of a caller. Who the caller
//! is and their limits come from a [`LimitKey`] of the request's extensions: [`PerUser`]
//! (every [`User`](tower_openai_core::User) the same limits), or a closure (the gateway's
//! per-user limits, your own "who"). The window is one minute, fixed (it starts at each
//! minute of the Unix clock, so every process and a shared store agree on it); a store reads
//! the time from a [`Clock`] ([`TokioClock`] for tests on paused time).
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
//! - The layer is generic over its store (any [`LimitStore`] + `Clone`: an
//!   `Arc<MemoryStore>`, or an `Arc<dyn LimitStore>` chosen at run time). A limited request
//!   takes the service `poll_ready` readied into its future and leaves a clone; an unlimited
//!   one costs no clone and no store.
//! - [`MemoryStore`] keeps the counts in the process. A store shared by several processes
//!   (Redis) implements the same trait. A store that fails lets the request through (limits
//!   fail open) and logs it.
//!
//! # Extensions
//! - reads [`User`](tower_openai_core::User) (through [`PerUser`], or your key) and
//!   [`ApiRoute`](tower_openai_core::ApiRoute) from the request, and the
//!   [`UsageReport`](tower_openai_core::UsageReport) from the response;
//! - writes [`MeterUsage`](tower_openai_core::MeterUsage) in the request of a caller with a
//!   token limit.
//!
//! # Example
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

mod key;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod service;

pub use crate::key::{LimitKey, PerUser};
pub use crate::memory::{MAX_KEYS, MemoryStore};
#[cfg(feature = "redis")]
pub use crate::redis::{ADMIT_TIMEOUT, RedisStore};
pub use crate::service::{RateLimit, RateLimitLayer, ResponseBody, ResponseFuture, Tally};

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

/// A store shared behind an `Arc` (`Arc<MemoryStore>`, or `Arc<dyn LimitStore>` when the
/// store is chosen at run time) is a store.
impl<T: LimitStore + ?Sized> LimitStore for std::sync::Arc<T> {
    fn admit(&self, key: &str, limits: Limits) -> StoreFuture<Admission> {
        (**self).admit(key, limits)
    }

    fn add_tokens(&self, key: &str, tokens: u64) {
        (**self).add_tokens(key, tokens);
    }
}

/// Where a store reads the time: the windows are the minutes of the Unix clock.
///
/// [`SystemClock`] (the default) reads the system's; [`TokioClock`] follows tokio's clock, so
/// a test on paused time moves to the next window with `tokio::time::advance` instead of
/// sleeping; a closure `Fn() -> Duration` (the time since the Unix epoch) is a clock too.
pub trait Clock: Send + Sync + 'static {
    /// The time since the Unix epoch.
    fn now(&self) -> Duration;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// The Unix time when it was made, moved on by tokio's clock since: on paused time (tests),
/// it moves only when the test advances it.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    unix: Duration,
    at: tokio::time::Instant,
}

impl TokioClock {
    /// The system's time now, followed by tokio's clock from here on.
    pub fn new() -> Self {
        Self::at_unix(SystemClock.now())
    }

    /// A clock that reads `unix` now (since the Unix epoch), followed by tokio's clock.
    pub fn at_unix(unix: Duration) -> Self {
        Self {
            unix,
            at: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.unix + self.at.elapsed()
    }
}

impl<F: Fn() -> Duration + Send + Sync + 'static> Clock for F {
    fn now(&self) -> Duration {
        self()
    }
}

/// The window at `now` (since the Unix epoch): its minute, and the time left in it.
pub(crate) fn window_at(now: Duration) -> (u64, Duration) {
    let minute = now.as_secs() / 60;
    let next = Duration::from_secs((minute + 1) * 60);
    (minute, next.saturating_sub(now))
}
