use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use pin_project::pin_project;
use tower_openai_core::extensions::{HeaderStep, UpstreamHeaders};
use tower_openai_core::{ErrorResponse, ResponseBody};
use tower_service::Service;

use crate::service::PendingAuth;

/// Response future of [`Auth`](crate::Auth).
#[pin_project]
pub struct ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[pin]
    state: State<S, B>,
}

#[pin_project(project = StateProj)]
enum State<S, B>
where
    S: Service<Request<B>>,
{
    Called {
        #[pin]
        future: S::Future,
    },
    Rejected {
        error: Option<ErrorResponse>,
    },
    Waiting {
        token: PendingAuth,
        pending: Option<(Request<B>, S)>,
    },
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn called(future: S::Future) -> Self {
        Self {
            state: State::Called { future },
        }
    }

    pub(crate) fn rejected(error: ErrorResponse) -> Self {
        Self {
            state: State::Rejected { error: Some(error) },
        }
    }

    pub(crate) fn waiting(token: PendingAuth, req: Request<B>, inner: S) -> Self {
        Self {
            state: State::Waiting {
                token,
                pending: Some((req, inner)),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    return Poll::Ready(ready!(future.poll(cx)).map(ResponseBody::inner));
                }
                StateProj::Rejected { error } => {
                    let error = error
                        .take()
                        .unwrap_or_else(|| ErrorResponse::internal("polled after completion"));
                    return Poll::Ready(Ok(ResponseBody::rejected(error)));
                }
                StateProj::Waiting { token, pending } => {
                    let result = ready!(token.as_mut().poll(cx));
                    let Some((mut req, mut inner)) = pending.take() else {
                        return Poll::Ready(Ok(ResponseBody::rejected(ErrorResponse::internal(
                            "polled after completion",
                        ))));
                    };
                    match result {
                        Ok(value) => {
                            if let Some(value) = value {
                                req.extensions_mut()
                                    .get_or_insert_default::<UpstreamHeaders>()
                                    .insert(HeaderStep::Auth, AUTHORIZATION, value);
                            }
                            State::Called {
                                future: inner.call(req),
                            }
                        }
                        Err(e) => State::Rejected { error: Some(e) },
                    }
                }
            };
            this.state.set(next);
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
