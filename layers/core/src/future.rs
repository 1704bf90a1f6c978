//! A response future for layers that either call the inner service or answer themselves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project::pin_project;

use crate::body::ResponseBody;
use crate::error::ErrorResponse;

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
