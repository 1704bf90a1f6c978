//! [`RateLimitLayer`] and its service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_openai_core::ResponseBody as Answer;
use tower_openai_core::{ApiRoute, ErrorResponse, MeterUsage, UsageReport};
use tower_openai_util::body::{BodyEnd, BodyWatch, WatchedBody};
use tower_service::Service;

use crate::{
    Admission, Budget, Charge, LimitKey, LimitStore, Limits, SystemClock, Window, usd_nanos,
};

/// Limits each caller's requests and tokens per minute. See the [crate docs](crate).
///
/// `store` keeps the counts (its clones share them: an `Arc<MemoryStore>` per process, or a
/// store shared by several processes); `key` names the caller and their limits
/// ([`LimitKey`]).
#[derive(Clone)]
pub struct RateLimitLayer<St, K> {
    store: St,
    key: K,
}

impl<St, K> std::fmt::Debug for RateLimitLayer<St, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer").finish_non_exhaustive()
    }
}

impl<St, K> RateLimitLayer<St, K>
where
    St: LimitStore + Clone,
    K: LimitKey + Clone,
{
    /// Limits counted in `store`, per the caller `key` names.
    pub fn new(store: St, key: K) -> Self {
        Self { store, key }
    }
}

impl<S, St: Clone, K: Clone> Layer<S> for RateLimitLayer<St, K> {
    type Service = RateLimit<S, St, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            store: self.store.clone(),
            key: self.key.clone(),
        }
    }
}

/// Limits each caller's requests and tokens per minute. See the [crate docs](crate).
#[derive(Clone)]
pub struct RateLimit<S, St, K> {
    inner: S,
    store: St,
    key: K,
}

impl<S, St, K> std::fmt::Debug for RateLimit<S, St, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").finish_non_exhaustive()
    }
}

impl<S, St, K> RateLimit<S, St, K> {
    /// Wrap `inner`: limits counted in `store`, per the caller `key` names.
    pub fn new(inner: S, store: St, key: K) -> Self {
        Self { inner, store, key }
    }

    /// A layer.
    pub fn layer(store: St, key: K) -> RateLimitLayer<St, K> {
        RateLimitLayer { store, key }
    }

    tower_openai_util::define_inner_service_accessors!();
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Response future of [`RateLimit`]: the inner service's future for a caller without
/// limits (no allocation), or the admission and then the call for one with limits.
#[pin_project]
pub struct ResponseFuture<F, R, E> {
    #[pin]
    kind: Kind<F, R, E>,
}

#[pin_project(project = KindProj)]
enum Kind<F, R, E> {
    /// Not limited: the inner future, its body wrapped.
    Direct {
        #[pin]
        future: F,
    },
    /// Limited: admitted (or refused), then called.
    Limited { future: BoxFuture<Result<R, E>> },
}

impl<F, R, E> ResponseFuture<F, R, E> {
    fn direct(future: F) -> Self {
        Self {
            kind: Kind::Direct { future },
        }
    }

    fn limited(future: BoxFuture<Result<R, E>>) -> Self {
        Self {
            kind: Kind::Limited { future },
        }
    }
}

impl<F, R, E> std::fmt::Debug for ResponseFuture<F, R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, St, E> Future for ResponseFuture<F, Response<ResponseBody<B, St>>, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    St: LimitStore,
{
    type Output = Result<Response<ResponseBody<B, St>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct { future } => {
                let res = std::task::ready!(future.poll(cx))?;
                Poll::Ready(Ok(res.map(|b| ResponseBody::new(Answer::Inner(b), None))))
            }
            KindProj::Limited { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, St, K, B, ResBody> Service<Request<B>> for RateLimit<S, St, K>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    St: LimitStore + Clone,
    K: LimitKey,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody, St>>;
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
            .is_none_or(|r| *r != ApiRoute::Models);
        let who = limited
            .then(|| self.key.key(req.extensions()))
            .flatten()
            .filter(|(_, limits)| !limits.is_unlimited());
        let Some((key, limits)) = who else {
            // Not limited: no clone of the stack below, no store.
            return ResponseFuture::direct(self.inner.call(req));
        };
        if limits.counts_tokens() {
            // Tokens (or their cost) are counted: no answer may go unmetered (streams are
            // asked for usage, an answer without it is estimated).
            req.extensions_mut().insert(MeterUsage);
        }
        // Call the service `poll_ready` readied once admitted; leave a fresh clone here.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = self.store.clone();
        ResponseFuture::limited(Box::pin(async move {
            let window = match store.admit(&key, &limits).await {
                Ok(Admission::Allowed(window)) => Some(window),
                Ok(Admission::Refused(window)) => {
                    let mut res = Answer::rejected(refusal(&limits, &window));
                    headers(res.headers_mut(), &limits, &window, true);
                    return Ok(res.map(|b| ResponseBody::new(b, None)));
                }
                Ok(Admission::OverBudget(budget)) => {
                    let res = Answer::rejected(over_budget(&budget));
                    return Ok(res.map(|b| ResponseBody::new(b, None)));
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
                .map(|report| {
                    Tally(Box::new(TallyParts {
                        store,
                        key,
                        report,
                        budgets: limits.budgets,
                    }))
                });
            Ok(Response::from_parts(
                parts,
                ResponseBody::new(Answer::Inner(body), tally),
            ))
        }))
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

/// 429 `budget_exceeded` (type `insufficient_quota`), with `Retry-After` to the period's end.
fn over_budget(budget: &Budget) -> ErrorResponse {
    let period = match budget.period {
        crate::Period::Day => "today (UTC)",
        crate::Period::Month => "this month (UTC)",
        crate::Period::Total => "in total",
    };
    let refusal = ErrorResponse::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "Budget reached: the spend allowed {period} (${}) has been used",
            budget.usd
        ),
    )
    .with_type("insufficient_quota")
    .with_code("budget_exceeded");
    use crate::Clock;
    match budget.period.resets_in(SystemClock.now()) {
        Some(left) => refusal.with_retry_after(left.as_secs() + u64::from(left.subsec_nanos() > 0)),
        None => refusal,
    }
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

/// Adds an answer's tokens to its caller's window, and its cost to their budgets, when the
/// body ends or is dropped. (Boxed: every answer's body, limited or not, has room for it, and
/// is moved by each layer above.)
pub struct Tally<St>(Box<TallyParts<St>>);

struct TallyParts<St> {
    store: St,
    key: String,
    report: UsageReport,
    budgets: Vec<Budget>,
}

impl<St> std::fmt::Debug for Tally<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally").finish_non_exhaustive()
    }
}

impl<St: LimitStore> BodyWatch for Tally<St> {
    fn on_end(self, _: BodyEnd) {
        let this = *self.0;
        if let Some(usage) = this.report.usage() {
            let tokens = usage.input_tokens.saturating_add(usage.output_tokens);
            let nanos = this.report.cost().map_or(0, usd_nanos);
            this.store.add(
                &this.key,
                Charge {
                    tokens,
                    nanos,
                    budgets: &this.budgets,
                },
            );
        }
    }
}

/// The response body of [`RateLimit`]: the answer (or its refusal), whose tokens are counted
/// when it ends (or the caller leaves).
pub type ResponseBody<B, St> = WatchedBody<Answer<B>, Tally<St>>;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http::{Request, Response, StatusCode};
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    use tower_openai_core::User;

    use crate::{Limits, MemoryStore, PerUser, RateLimitLayer, TokioClock};

    fn alice() -> Request<()> {
        let mut req = Request::new(());
        req.extensions_mut().insert(User {
            id: "alice".into(),
            ..User::default()
        });
        req
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_caller_is_admitted_again_in_the_next_minute() {
        // 30 s into a minute, on tokio's paused clock.
        let store = Arc::new(MemoryStore::with_clock(TokioClock::at_unix(
            Duration::from_secs(60 * 5000 + 30),
        )));
        let svc = ServiceBuilder::new()
            .layer(RateLimitLayer::new(
                store,
                PerUser(Limits {
                    rpm: Some(1),
                    ..Limits::default()
                }),
            ))
            .service(service_fn(|_: Request<()>| async {
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            }));
        assert_eq!(
            svc.clone().oneshot(alice()).await.unwrap().status(),
            StatusCode::OK
        );
        let refused = svc.clone().oneshot(alice()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "30");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(
            svc.clone().oneshot(alice()).await.unwrap().status(),
            StatusCode::OK
        );
        // Without a user, no limit.
        let anonymous = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_limited_request_calls_the_service_poll_ready_readied() {
        let layer = RateLimitLayer::new(
            Arc::new(MemoryStore::new()),
            PerUser(Limits {
                rpm: Some(10),
                ..Limits::default()
            }),
        );
        let (mut svc, mut handle) =
            tower_test::mock::spawn_layer::<Request<()>, Response<String>, _>(layer);
        handle.allow(0);
        assert_pending!(svc.poll_ready());
        handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        // The readied instance goes with the request (a clone that was never readied would
        // make the mock panic).
        let call = tokio::spawn(svc.call(alice()));
        let (req, respond) = handle.next_request().await.unwrap();
        assert!(req.extensions().get::<User>().is_some());
        respond.send_response(Response::new("ok".to_owned()));
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}
