//! [`RateLimitLayer`] and its service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_openai_core::body::{BodyEnd, BodyWatch, WatchedBody};
use tower_openai_core::{
    ApiRoute, ErrorResponse, MeterUsage, ResponseBody, RouteKind, UsageReport,
};
use tower_service::Service;

use crate::{Admission, LimitStore, Limits, Window};

/// Limits each caller's requests and tokens per minute. See the [crate docs](crate).
///
/// `key` names the caller and their limits from the request's extensions (`None`: not
/// limited).
#[derive(Clone)]
pub struct RateLimitLayer<K> {
    store: Arc<dyn LimitStore>,
    key: K,
}

impl<K> std::fmt::Debug for RateLimitLayer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer").finish_non_exhaustive()
    }
}

impl<K> RateLimitLayer<K>
where
    K: Fn(&http::Extensions) -> Option<(String, Limits)> + Clone,
{
    /// Limits counted in `store`, per the caller `key` names.
    pub fn new(store: Arc<dyn LimitStore>, key: K) -> Self {
        Self { store, key }
    }
}

impl<S, K: Clone> Layer<S> for RateLimitLayer<K> {
    type Service = RateLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            store: self.store.clone(),
            key: self.key.clone(),
        }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S, K> {
    inner: S,
    store: Arc<dyn LimitStore>,
    key: K,
}

impl<S, K> std::fmt::Debug for RateLimit<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").finish_non_exhaustive()
    }
}

impl<S, K> RateLimit<S, K> {
    tower_openai_core::define_inner_service_accessors!();
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Response future of [`RateLimit`]: the inner service's future for a caller without
/// limits (no allocation), or the admission and then the call for one with limits.
#[pin_project(project = ResponseFutureProj)]
pub enum ResponseFuture<F, R, E> {
    /// Not limited: the inner future, its body wrapped.
    Direct {
        /// The inner service's future.
        #[pin]
        future: F,
    },
    /// Limited: admitted (or refused), then called.
    Limited {
        /// The admission and the call.
        future: BoxFuture<Result<R, E>>,
    },
}

impl<F, R, E> std::fmt::Debug for ResponseFuture<F, R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, Response<LimitedBody<ResponseBody<B>>>, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<LimitedBody<ResponseBody<B>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Direct { future } => {
                let res = std::task::ready!(future.poll(cx))?;
                Poll::Ready(Ok(
                    res.map(|b| LimitedBody::new(ResponseBody::Inner(b), None))
                ))
            }
            ResponseFutureProj::Limited { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, K, B, ResBody> Service<Request<B>> for RateLimit<S, K>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    K: Fn(&http::Extensions) -> Option<(String, Limits)>,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<LimitedBody<ResponseBody<ResBody>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Self::Response, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // Model routes and the passthrough; not the model list.
        let limited = req
            .extensions()
            .get::<ApiRoute>()
            .is_none_or(|r| r.kind != RouteKind::Models);
        let who = limited
            .then(|| (self.key)(req.extensions()))
            .flatten()
            .filter(|(_, limits)| !limits.is_unlimited());
        let Some((key, limits)) = who else {
            // Not limited: no clone of the stack below, no store.
            return ResponseFuture::Direct {
                future: self.inner.call(req),
            };
        };
        if limits.tpm.is_some() {
            // Tokens are counted: no answer may go unmetered (streams are asked for usage,
            // an answer without it is estimated).
            req.extensions_mut().insert(MeterUsage);
        }
        // Call the service `poll_ready` readied once admitted; leave a fresh clone here.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = self.store.clone();
        ResponseFuture::Limited {
            future: Box::pin(async move {
                let window = match store.admit(&key, limits).await {
                    Ok(Admission::Allowed(window)) => Some(window),
                    Ok(Admission::Refused(window)) => {
                        let mut res = ResponseBody::rejected(refusal(&limits, &window));
                        headers(res.headers_mut(), &limits, &window, true);
                        return Ok(res.map(|b| LimitedBody::new(b, None)));
                    }
                    Err(e) => {
                        // Limits fail open: a store that cannot answer does not stop traffic.
                        // Logged once per 10 s, not once per request of an outage.
                        if outage_log_due() {
                            tracing::warn!(error = %e, "rate-limit store unavailable; requests are let through");
                        }
                        None
                    }
                };
                let res = inner.call(req).await?;
                let (mut parts, body) = res.into_parts();
                if let Some(window) = &window {
                    headers(&mut parts.headers, &limits, window, false);
                }
                // The answer's tokens, as the usage layer below reports them when its body
                // ends (before this one's: see `WatchedBody`).
                let tally = parts
                    .extensions
                    .get::<UsageReport>()
                    .cloned()
                    .map(|report| Tally { store, key, report });
                Ok(Response::from_parts(
                    parts,
                    LimitedBody::new(ResponseBody::Inner(body), tally),
                ))
            }),
        }
    }
}

/// Whether a store outage should be logged now (at most once per 10 s per process).
fn outage_log_due() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    now >= last + 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

fn refusal(limits: &Limits, window: &Window) -> ErrorResponse {
    let which = if limits.rpm.is_some_and(|rpm| window.requests >= rpm) {
        "requests"
    } else {
        "tokens"
    };
    ErrorResponse::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "Rate limit reached: too many {which} this minute; try again in {} s",
            retry_after(window)
        ),
    )
    .with_code("rate_limit_exceeded")
}

fn retry_after(window: &Window) -> u64 {
    window.resets_in.as_secs() + u64::from(window.resets_in.subsec_nanos() > 0)
}

/// `x-ratelimit-*` (and `Retry-After` on a refusal).
fn headers(headers: &mut HeaderMap, limits: &Limits, window: &Window, refused: bool) {
    let number = |n: u64| HeaderValue::from(n);
    if let Some(rpm) = limits.rpm {
        headers.insert("x-ratelimit-limit-requests", number(rpm));
        headers.insert(
            "x-ratelimit-remaining-requests",
            number(rpm.saturating_sub(window.requests)),
        );
    }
    if let Some(tpm) = limits.tpm {
        headers.insert("x-ratelimit-limit-tokens", number(tpm));
        headers.insert(
            "x-ratelimit-remaining-tokens",
            number(tpm.saturating_sub(window.tokens)),
        );
    }
    if refused {
        headers.insert(header::RETRY_AFTER, number(retry_after(window)));
    }
}

/// Adds an answer's tokens to its caller's window when the body ends or is dropped.
pub struct Tally {
    store: Arc<dyn LimitStore>,
    key: String,
    report: UsageReport,
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally").finish_non_exhaustive()
    }
}

impl BodyWatch for Tally {
    fn on_end(self, _: BodyEnd) {
        if let Some(usage) = self.report.usage() {
            let tokens = usage.input_tokens.saturating_add(usage.output_tokens);
            self.store.add_tokens(&self.key, tokens);
        }
    }
}

/// The response body of [`RateLimit`]: counts the answer's tokens when it ends (or the caller
/// leaves).
pub type LimitedBody<B> = WatchedBody<B, Tally>;
