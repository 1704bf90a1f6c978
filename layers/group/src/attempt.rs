//! One attempt of a grouped request: the request bound to a connection, sent, and its outcome
//! booked in that connection's health.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response, StatusCode};
use pin_project::pin_project;
use tokio::time::Instant;
use tower_openai_core::error::{UpstreamError, UpstreamErrorKind, find_cause};
use tower_openai_core::{BoxError, Payload, RequestedModel, SelectedConnection};
use tower_service::Service;

use crate::health::Candidate;
use crate::names;
use crate::service::Shared;

/// The connection an attempt is bound to: a request extension of this crate's own, read by
/// [`Book`] when it sends the attempt and by the failover policy when it moves on.
#[derive(Clone)]
pub(crate) struct Attempt {
    pub(crate) candidate: Candidate,
    /// The connection's one probe after a cooldown.
    pub(crate) probe: bool,
    /// Who is calling, as a number (a 500 cools a connection down only with two callers).
    pub(crate) caller: u64,
}

/// Bind `req` to `attempt`'s connection: the connection selected, and `requested` (the model
/// as the caller named it) as that connection is sent it, in the payload too.
pub(crate) fn bind<B>(req: &mut Request<B>, attempt: Attempt, requested: &Arc<str>) {
    let ext = req.extensions_mut();
    let connection = &attempt.candidate.connection;
    ext.insert(SelectedConnection(connection.clone()));
    let upstream = connection.upstream_model(requested);
    if let Some(payload) = ext.get_mut::<Payload>()
        && payload.model().ok().flatten() != Some(upstream)
    {
        let _ = payload.set_str("model", upstream);
    }
    ext.insert(RequestedModel {
        requested: requested.clone(),
        upstream: upstream.into(),
    });
    ext.insert::<Attempt>(attempt);
}

/// The statuses that move a request to the next connection of its group.
pub(crate) fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Whether an attempt's outcome moves the request on: a retryable status, or a connect error
/// or timeout before the head (another transport error may have reached the upstream).
pub(crate) fn moves_on<R>(result: &Result<Response<R>, BoxError>) -> bool {
    match result {
        Ok(res) => retryable_status(res.status()),
        Err(e) => matches!(
            find_cause::<UpstreamError>(&**e).map(|u| u.kind()),
            Some(UpstreamErrorKind::Connect | UpstreamErrorKind::Timeout)
        ),
    }
}

/// Sends each attempt through `inner` and books its outcome: the connection's load while it
/// runs, its latency and success, or its failure and cooldown.
#[derive(Clone, Debug)]
pub(crate) struct Book<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Book<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl<S, B, R> Service<Request<B>> for Book<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = BookFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let booking = req.extensions().get::<Attempt>().cloned().map(|attempt| {
            attempt.candidate.health.start();
            Booking {
                attempt,
                started: Instant::now(),
                shared: self.shared.clone(),
            }
        });
        BookFuture {
            inner: self.inner.call(req),
            booking,
        }
    }
}

/// An attempt in flight on its connection: its load ends when the attempt does, answered or
/// abandoned (the caller left).
struct Booking {
    attempt: Attempt,
    started: Instant,
    shared: Arc<Shared>,
}

impl Drop for Booking {
    fn drop(&mut self) {
        self.attempt.candidate.health.end();
    }
}

impl Booking {
    fn book<R>(self, result: &Result<Response<R>, BoxError>) {
        let Attempt {
            candidate, probe, ..
        } = &self.attempt;
        let policy = &self.shared.policy;
        let connection = candidate.connection.index().to_string();
        let (failure, cool_for) = match result {
            Ok(res) if retryable_status(res.status()) => {
                let wait = matches!(res.status().as_u16(), 429 | 503)
                    .then(|| crate::service::retry_after(res.headers(), policy.max_retry_after))
                    .flatten();
                (res.status().as_str().to_owned(), wait)
            }
            Ok(_) => {
                candidate
                    .health
                    .observe_latency(self.started.elapsed(), self.shared.health.now_ms());
                candidate.health.succeeded(*probe);
                metrics::counter!(names::ATTEMPTS_TOTAL, "connection" => connection, "result" => "ok")
                    .increment(1);
                return;
            }
            Err(e) => {
                let kind = find_cause::<UpstreamError>(&**e).map(|u| u.kind());
                (kind.map_or("error", |k| k.as_str()).to_owned(), None)
            }
        };
        // A 500 may be the caller's own doing (a payload the upstream chokes on): it counts
        // toward a cooldown only with another caller's.
        let own_doing =
            matches!(result, Ok(res) if res.status() == StatusCode::INTERNAL_SERVER_ERROR);
        if candidate.health.failed(
            *probe,
            self.shared.health.now_ms(),
            policy.cooldown_failures.max(1),
            policy.cooldown,
            cool_for,
            own_doing.then_some(self.attempt.caller),
        ) {
            tracing::warn!(connection = %connection, url = candidate.connection.url(), "connection cooling down");
            metrics::counter!(names::COOLDOWNS_TOTAL, "connection" => connection.clone())
                .increment(1);
        }
        metrics::counter!(
            names::ATTEMPTS_TOTAL,
            "connection" => connection,
            "result" => failure,
        )
        .increment(1);
    }
}

/// Response future of [`Book`].
#[pin_project]
pub(crate) struct BookFuture<F> {
    #[pin]
    inner: F,
    booking: Option<Booking>,
}

impl<F, R, E> Future for BookFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx)).map_err(Into::into);
        if let Some(booking) = this.booking.take() {
            booking.book(&result);
        }
        Poll::Ready(result)
    }
}
