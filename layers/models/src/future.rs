use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Response;
use http_body_util::Full;
use pin_project::pin_project;
use tower_openai_core::ResponseBody;

/// Response future of [`Models`](crate::Models).
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
enum Kind<F> {
    Inner(#[pin] F),
    Ready(Option<Response<Full<Bytes>>>),
    // A cold catalog or a per-connection fetch: rare, so boxed.
    Boxed(BoxFuture<'static, Response<Full<Bytes>>>),
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner(future),
        }
    }

    pub(crate) fn ready(res: Response<Full<Bytes>>) -> Self {
        Self {
            kind: Kind::Ready(Some(res)),
        }
    }

    pub(crate) fn boxed(
        future: impl Future<Output = Response<Full<Bytes>>> + Send + 'static,
    ) -> Self {
        Self {
            kind: Kind::Boxed(Box::pin(future)),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner(f) => Poll::Ready(ready!(f.poll(cx)).map(ResponseBody::inner)),
            KindProj::Ready(res) => Poll::Ready(Ok(ResponseBody::local(
                res.take().unwrap_or_else(|| Response::new(Full::default())),
            ))),
            KindProj::Boxed(f) => Poll::Ready(Ok(ResponseBody::local(ready!(f.as_mut().poll(cx))))),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
