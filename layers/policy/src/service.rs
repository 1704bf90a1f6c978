use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use tower_openai_core::{ApiRoute, ErrorResponse, ResponseBody, User};
use tower_openai_util::future::Rejectable;
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

    tower_openai_util::define_inner_service_accessors!();

    fn admit<B>(&self, req: &Request<B>) -> Result<ApiRoute, ErrorResponse> {
        let path = req.uri().path();
        let route = classify(req.method(), path).map_err(|e| e.to_response())?;
        let admin = req.extensions().get::<User>().is_some_and(User::is_admin);
        if route == ApiRoute::Passthrough {
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

/// The route of the answers to requests that are not a model route.
const PASSTHROUGH: ApiRoute = ApiRoute::Passthrough;

/// Response future of [`Policy`]: the answer (the inner service's or the policy's own),
/// with the request's [`ApiRoute`] in its extensions, so the layers above (metrics) know
/// the route of every answer, refusals made below included.
#[pin_project::pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: Rejectable<F>,
    route: ApiRoute,
}

impl<F> ResponseFuture<F> {
    fn new(inner: Rejectable<F>, route: ApiRoute) -> Self {
        Self { inner, route }
    }
}

impl<F, B, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.inner.poll(cx))?;
        res.extensions_mut().insert(*this.route);
        Poll::Ready(Ok(res))
    }
}

/// Remove the query string from `uri` (a model route's query string never reaches an
/// upstream: some, LiteLLM among them, take `?model=` over the body's checked model).
fn drop_query(uri: &mut Uri) -> Option<()> {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = parts
        .path_and_query
        .and_then(|pq| PathAndQuery::try_from(pq.path()).ok());
    *uri = Uri::from_parts(parts).ok()?;
    Some(())
}

impl<S, B, ResBody> Service<Request<B>> for Policy<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let inner = match self.admit(&req) {
            Ok(route) => {
                if route != ApiRoute::Passthrough
                    && req.uri().query().is_some()
                    && drop_query(req.uri_mut()).is_none()
                {
                    return ResponseFuture::new(
                        Rejectable::rejected(
                            ErrorResponse::bad_request("The request URI cannot be read")
                                .with_code("invalid_path"),
                        ),
                        PASSTHROUGH,
                    );
                }
                req.extensions_mut().insert(route);
                return ResponseFuture::new(Rejectable::inner(self.inner.call(req)), route);
            }
            Err(e) => Rejectable::rejected(e),
        };
        // Refused by the policy itself: an odd path or the passthrough switched off, counted
        // as the passthrough.
        ResponseFuture::new(inner, PASSTHROUGH)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use tower::{ServiceExt, service_fn};

    use super::Policy;

    /// What the service below saw of the URI.
    async fn forwarded(method: http::Method, uri: &str, passthrough: bool) -> String {
        let inner = service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(req.uri().to_string()))
        });
        let res = Policy::new(inner)
            .passthrough(passthrough)
            .oneshot(Request::builder().method(method).uri(uri).body(()).unwrap())
            .await
            .unwrap();
        match res.into_body() {
            tower_openai_core::ResponseBody::Inner(uri) => uri,
            other => panic!("refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_model_route_never_forwards_the_query_string_and_the_passthrough_keeps_it() {
        use http::Method;
        for path in ["/chat/completions", "/embeddings", "/audio/transcriptions"] {
            let uri = format!("{path}?model=secret&x=1");
            assert_eq!(forwarded(Method::POST, &uri, false).await, path);
        }
        assert_eq!(
            forwarded(Method::GET, "/models?model=secret", false).await,
            "/models"
        );
        // Absolute form (HTTP/2, proxies): scheme and authority are kept.
        assert_eq!(
            forwarded(
                Method::POST,
                "http://gw.example/chat/completions?model=secret",
                false
            )
            .await,
            "http://gw.example/chat/completions"
        );
        assert_eq!(
            forwarded(Method::GET, "/files?purpose=batch", true).await,
            "/files?purpose=batch"
        );
    }
}
