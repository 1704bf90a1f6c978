//! The opt-in for a stack of your own that applies each connection's credentials.

use std::task::{Context, Poll};

use http::Request;
use tower_openai_core::endpoint::ConnectionEndpoint;
use tower_service::Service;

/// Declares that a service applies each connection's credentials and headers itself, so
/// the catalog may fetch model lists through it (see [`ConnectionEndpoint`]).
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::service_fn;
/// use tower_openai_core::Body;
/// use tower_openai_core::endpoint::ConnectionEndpoint;
/// use tower_openai_models::AppliesCredentials;
///
/// // A stack of your own that adds the key itself (here: a stub).
/// let mine = AppliesCredentials(service_fn(|_: Request<Body>| async {
///     Ok::<_, Infallible>(Response::new(Body::empty()))
/// }));
/// fn catalog_accepts(_: &impl ConnectionEndpoint) {}
/// catalog_accepts(&mine);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct AppliesCredentials<S>(pub S);

impl<S> ConnectionEndpoint for AppliesCredentials<S> {}

impl<S, B> Service<Request<B>> for AppliesCredentials<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.0.call(req)
    }
}
