//! What the model catalog may fetch model lists through.

use std::task::{Context, Poll};

use http::Request;
use tower_service::Service;

/// A service that sends a request to its selected connection **with that connection's
/// credentials and headers**, as chat requests are sent.
///
/// The model catalog fetches every connection's `GET /models` through one, so discovery
/// authenticates exactly as requests do. A bare upstream service does not implement it: an
/// upstream that checks keys would answer 401, the list would stay empty and every chat
/// would be a 404. The facade's `tower_openai::endpoint::Endpoint` (azure → auth →
/// headers → upstream) implements it; a stack of your own that applies the credentials
/// itself opts in with [`AppliesCredentials`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not apply each connection's credentials: a catalog fetching through it would list no models from an upstream that checks keys",
    note = "build the endpoint stack with `tower_openai::endpoint::Endpoint::builder(upstream).build()` and give it to `Catalog::new` (and use it below routing too), or wrap a stack of your own that applies the credentials in `AppliesCredentials`"
)]
pub trait ConnectionEndpoint {}

/// Declares that a service applies each connection's credentials and headers itself, so
/// the catalog may fetch model lists through it (see [`ConnectionEndpoint`]).
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::service_fn;
/// use tower_openai_core::Body;
/// use tower_openai_core::endpoint::{AppliesCredentials, ConnectionEndpoint};
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
