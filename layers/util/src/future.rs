//! A response future for layers that either call the inner service or answer themselves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project::pin_project;

use tower_openai_core::{ErrorResponse, ResponseBody};

/// The inner service's future, or a rejection made before calling it.
#[pin_project]
#[derive(Debug)]
pub struct Rejectable<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<F> {
    Inner(#[pin] F),
    Rejected(Option<ErrorResponse>),
}

impl<F> Rejectable<F> {
    /// The inner service's future.
    pub fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner(future),
        }
    }

    /// A rejection.
    pub fn rejected(error: ErrorResponse) -> Self {
        Self {
            kind: Kind::Rejected(Some(error)),
        }
    }
}

impl<F, B, E> Future for Rejectable<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner(f) => Poll::Ready(ready!(f.poll(cx)).map(ResponseBody::inner)),
            KindProj::Rejected(e) => {
                Poll::Ready(Ok(ResponseBody::rejected(e.take().unwrap_or_else(|| {
                    ErrorResponse::internal("polled after completion")
                }))))
            }
        }
    }
}

/// A decision still to be made before the inner service is called: it owns the request and
/// hands it back ready to send, or refuses it.
pub type Decision<B> = std::pin::Pin<
    Box<dyn Future<Output = Result<http::Request<B>, ErrorResponse>> + Send + 'static>,
>;

/// The inner service's future; a rejection; or an asynchronous decision (a model list being
/// built, a token being fetched), after which the service that `poll_ready` readied is called.
#[pin_project]
pub struct Deferred<S, B>
where
    S: tower_service::Service<http::Request<B>>,
{
    #[pin]
    state: DeferredState<S, B>,
}

#[pin_project(project = DeferredProj)]
enum DeferredState<S, B>
where
    S: tower_service::Service<http::Request<B>>,
{
    Called {
        #[pin]
        future: S::Future,
    },
    Rejected {
        error: Option<ErrorResponse>,
    },
    Waiting {
        decision: Decision<B>,
        inner: Option<S>,
    },
}

impl<S, B> Deferred<S, B>
where
    S: tower_service::Service<http::Request<B>>,
{
    /// The inner service was called.
    pub fn called(future: S::Future) -> Self {
        Self {
            state: DeferredState::Called { future },
        }
    }

    /// Refused before calling the inner service.
    pub fn rejected(error: ErrorResponse) -> Self {
        Self {
            state: DeferredState::Rejected { error: Some(error) },
        }
    }

    /// Call `inner` (the readied service, moved out with `mem::replace`) once `decision`
    /// hands the request back.
    pub fn waiting(decision: Decision<B>, inner: S) -> Self {
        Self {
            state: DeferredState::Waiting {
                decision,
                inner: Some(inner),
            },
        }
    }
}

impl<S, B, ResBody> Future for Deferred<S, B>
where
    S: tower_service::Service<http::Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                DeferredProj::Called { future } => {
                    return Poll::Ready(ready!(future.poll(cx)).map(ResponseBody::inner));
                }
                DeferredProj::Rejected { error } => {
                    let error = error
                        .take()
                        .unwrap_or_else(|| ErrorResponse::internal("polled after completion"));
                    return Poll::Ready(Ok(ResponseBody::rejected(error)));
                }
                DeferredProj::Waiting { decision, inner } => {
                    match ready!(decision.as_mut().poll(cx)) {
                        Ok(req) => match inner.take() {
                            Some(mut inner) => DeferredState::Called {
                                future: inner.call(req),
                            },
                            None => DeferredState::Rejected {
                                error: Some(ErrorResponse::internal("polled after completion")),
                            },
                        },
                        Err(e) => DeferredState::Rejected { error: Some(e) },
                    }
                }
            };
            this.state.set(next);
        }
    }
}

impl<S, B> std::fmt::Debug for Deferred<S, B>
where
    S: tower_service::Service<http::Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred").finish_non_exhaustive()
    }
}
