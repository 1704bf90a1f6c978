//! Rescue: turn transport failures into OpenAI-shaped responses, once, near the top of a stack.
//!
//! Layers answer rejections themselves; only transport failures travel as `Err` (Open WebUI rule
//! principle "rejections are responses"). [`RescueLayer`] catches them: an
//! [`UpstreamError`] anywhere in the error's source chain becomes its 502 or 504; any other
//! error becomes a 500 whose message says nothing about its cause (the cause is logged).
//! hyper closes a connection without a response when a service fails, so a stack served by
//! hyper should always have this step.
//!
//! # Extensions
//! - writes [`UpstreamFailure`] in the response it
//!   makes of an [`UpstreamError`] (which connection failed, and how).
//!
//! # Example
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::{BoxError, error::UpstreamError};
//! use tower_openai_rescue::RescueLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(RescueLayer::new())
//!     .service_fn(|_: Request<()>| async {
//!         Err::<Response<http_body_util::Empty<bytes::Bytes>>, BoxError>(
//!             UpstreamError::connect(0, "connection refused").into(),
//!         )
//!     });
//! let res = svc.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use tower_openai_core::body::ResponseBody;
use tower_openai_core::error::{
    BoxError, ErrorResponse, UpstreamError, UpstreamFailure, find_cause,
};

/// Turns errors into responses. See the [crate docs](crate).
#[derive(Clone, Copy, Debug, Default)]
pub struct RescueLayer {
    _priv: (),
}

impl RescueLayer {
    /// A new rescue layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rescue::new(inner)
    }
}

/// Turns errors into responses. See the [crate docs](crate).
#[derive(Debug)]
pub struct Rescue<S> {
    inner: S,
    /// The error the inner service became "ready" with: the next call answers it, without
    /// calling a service that is not ready.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for Rescue<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone())
    }
}

impl<S> Rescue<S> {
    /// Wrap `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            not_ready: None,
        }
    }

    /// A layer.
    pub fn layer() -> RescueLayer {
        RescueLayer::new()
    }

    tower_openai_util::define_inner_service_accessors!();
}

impl<S, Req, ResBody> Service<Req> for Rescue<S>
where
    S: Service<Req, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // An inner service that fails readiness is not called: the next call answers its
        // error as a response (failing readiness here would make hyper close the
        // connection).
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.not_ready = Some(e.into());
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.not_ready.take() {
            Some(error) => ResponseFuture {
                kind: Kind::Failed(Some(error)),
            },
            None => ResponseFuture {
                kind: Kind::Inner(self.inner.call(req)),
            },
        }
    }
}

/// Response future of [`Rescue`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<F> {
    Inner(#[pin] F),
    Failed(Option<BoxError>),
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = match self.project().kind.project() {
            KindProj::Inner(inner) => ready!(inner.poll(cx)).map_err(Into::into),
            KindProj::Failed(error) => Err(error
                .take()
                .unwrap_or_else(|| "rescue future polled after completion".into())),
        };
        Poll::Ready(Ok(match result {
            Ok(res) => ResponseBody::inner(res),
            Err(err) => {
                let failure = find_cause::<UpstreamError>(&*err).map(|e| UpstreamFailure {
                    kind: e.kind(),
                    connection: e.connection(),
                });
                let mut res = ResponseBody::rejected(ErrorResponse::from_error(&*err));
                if let Some(failure) = failure {
                    res.extensions_mut().insert(failure);
                }
                res
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    /// Fails readiness; counts the calls it should never get.
    #[derive(Clone)]
    struct Broken(Arc<AtomicUsize>);

    impl Service<Request<()>> for Broken {
        type Response = Response<http_body_util::Empty<bytes::Bytes>>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Self::Response, BoxError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Err("the pool is closed".into()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Response::new(http_body_util::Empty::new())))
        }
    }

    #[tokio::test]
    async fn a_readiness_error_is_answered_without_calling_the_service() {
        let calls = Arc::new(AtomicUsize::new(0));
        let res = Rescue::new(Broken(calls.clone()))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
