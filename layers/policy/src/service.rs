use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_openai_core::future::Rejectable;
use tower_openai_core::{ApiRoute, ErrorResponse, ResponseBody, RouteKind, User};
use tower_service::Service;

use crate::layer::PolicyLayer;
use crate::path::{classify, names_deployment};

/// Classifies each request as a model route or the passthrough, and refuses what the
/// policy does not admit. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct Policy<S> {
    inner: S,
    passthrough: bool,
}

impl<S> Policy<S> {
    /// Wrap `inner` with the passthrough off.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            passthrough: false,
        }
    }

    /// A layer with the passthrough off.
    pub fn layer() -> PolicyLayer {
        PolicyLayer::new()
    }

    /// Forward paths that are not model routes (`ENABLE_OPENAI_API_PASSTHROUGH`).
    pub fn passthrough(mut self, on: bool) -> Self {
        self.passthrough = on;
        self
    }

    tower_openai_core::define_inner_service_accessors!();

    fn admit<B>(&self, req: &Request<B>) -> Result<ApiRoute, ErrorResponse> {
        let path = req.uri().path();
        let route = classify(req.method(), path).map_err(|e| e.to_response())?;
        let admin = req.extensions().get::<User>().is_some_and(User::is_admin);
        if route.kind == RouteKind::Passthrough {
            if !self.passthrough {
                return Err(ErrorResponse::forbidden(format!(
                    "{} {path} is not a model route, and the passthrough to the upstream is \
                     off (ENABLE_OPENAI_API_PASSTHROUGH)",
                    req.method()
                ))
                .with_code("passthrough_disabled"));
            }
            if !admin && names_deployment(path) {
                // The deployment a request reaches comes from its checked model, never from
                // a caller's own Azure path.
                return Err(ErrorResponse::new(
                    StatusCode::FORBIDDEN,
                    "Azure deployment paths are for admins only; name the model in the body",
                )
                .with_code("forbidden_path"));
            }
        }
        Ok(route)
    }
}

impl<S, B, ResBody> Service<Request<B>> for Policy<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = Rejectable<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.admit(&req) {
            Ok(route) => {
                req.extensions_mut().insert(route);
                Rejectable::inner(self.inner.call(req))
            }
            Err(e) => Rejectable::rejected(e),
        }
    }
}
