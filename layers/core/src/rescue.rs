//! Turn transport failures into OpenAI-shaped responses, once, near the top of a stack.
//!
//! Layers answer rejections themselves; only transport failures travel as `Err` (SPEC
//! principle "rejections are responses"). [`RescueLayer`] catches them: an
//! [`UpstreamError`] anywhere in the error's source chain becomes its 502 or 504; any other
//! error becomes a 500 whose message says nothing about its cause (the cause is logged).
//! hyper closes a connection without a response when a service fails, so a stack served by
//! hyper should always have this step.
//!
//! # Example
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::{BoxError, RescueLayer, error::UpstreamError};
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

use crate::body::ResponseBody;
use crate::error::{BoxError, ErrorResponse, UpstreamError, find_cause};

/// Turns errors into responses. See the [module docs](self).
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

/// Turns errors into responses. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Rescue<S> {
    inner: S,
}

impl<S> Rescue<S> {
    /// Wrap `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A layer.
    pub fn layer() -> RescueLayer {
        RescueLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwrap the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The response an error should become.
pub fn error_to_response(err: &(dyn std::error::Error + 'static)) -> ErrorResponse {
    match find_cause::<UpstreamError>(err) {
        Some(upstream) => {
            tracing::warn!(error = %upstream, cause = ?std::error::Error::source(upstream).map(ToString::to_string), "upstream failure");
            upstream.to_response()
        }
        None => {
            tracing::error!(error = %err, "request failed");
            ErrorResponse::internal("The gateway could not complete the request")
        }
    }
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
        // An inner service that cannot become ready will fail its call too; let that call
        // produce the error response rather than failing readiness, which hyper would turn
        // into a closed connection.
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
        }
    }
}

/// Response future of [`Rescue`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(match ready!(self.project().inner.poll(cx)) {
            Ok(res) => ResponseBody::inner(res),
            Err(err) => {
                let err: BoxError = err.into();
                ResponseBody::rejected(error_to_response(&*err))
            }
        }))
    }
}
