//! Routing: `/healthz`, the admin routes, and the OpenAI API under both `/v1` and `/openai`.
//!
//! The admin routes are an axum router (`Admin::router`: typed bodies, one handler a route).
//! The API's own dispatch stays this small match: it runs on every request, and strips the
//! prefix without an allocation for the common paths, where axum's nesting would look the
//! path up, rewrite the URI and record the original and matched paths per request (the
//! gateway's per-request instruction budget is checked in CI).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::{Parts, PathAndQuery};
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Either, Full};
use tower::{Service, ServiceExt};
use tower_openai_core::{Body, BoxBody, BoxError, ErrorResponse, User};

use super::admin::AdminRoute;
use super::security::SecurityConfig;
use tower_openai_identity::Unidentified;

/// The API prefixes; both serve the same routes (GATEWAY contract).
const PREFIXES: [&str; 2] = ["/v1", "/openai"];

/// The paths most requests take, rewritten without an allocation.
const STATIC_PATHS: [&str; 6] = [
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
    "/models",
    "/audio/speech",
];

/// Routes a request: `/healthz`, the admin routes, the API under its prefixes. A route that
/// needs a caller refuses a request whose caller the identity layer
/// could not identify.
#[derive(Clone, Debug)]
pub(crate) struct Router<A> {
    api: A,
    /// The admin routes (`Admin::router`).
    admin: axum::Router,
    security: Arc<SecurityConfig>,
}

impl<A> Router<A> {
    pub(crate) fn new(api: A, admin: axum::Router, security: Arc<SecurityConfig>) -> Self {
        Self {
            api,
            admin,
            security,
        }
    }
}

/// The caller the identity layer found, or the answer owed to a caller it
/// could not identify.
fn caller(req: &Request<Body>) -> Result<&User, ErrorResponse> {
    // A refusal wins over a user: a pending user is identified and refused.
    if let Some(refused) = req.extensions().get::<Unidentified>() {
        return Err(refused.refusal().clone());
    }
    match req.extensions().get::<User>() {
        Some(user) => Ok(user),
        None => Err(req
            .extensions()
            .get::<Unidentified>()
            .map(|u| u.refusal().clone())
            // Nothing identified the caller: refused, not let through.
            .unwrap_or_else(|| {
                ErrorResponse::unauthorized("The caller could not be identified")
                    .with_code("invalid_api_key")
            })),
    }
}

/// An admin write (`POST`, `PUT`, `PATCH`, `DELETE`) must not come from a browser origin that
/// is not allowed, and one with a body must be JSON (a browser cannot send that cross-site
/// without a preflight).
fn check_admin_write(req: &Request<Body>, security: &SecurityConfig) -> Result<(), ErrorResponse> {
    // Every write (POST, PUT, PATCH, DELETE) from an allowed origin only; a body as JSON only.
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    security.check_origin(req.headers())?;
    if *req.method() == Method::DELETE {
        return Ok(());
    }
    let json = tower_openai_util::body::media_type(req.headers())
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ErrorResponse::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Admin requests must be sent as Content-Type: application/json",
        )
        .with_code("unsupported_media_type"));
    }
    Ok(())
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The router's response future: the API stack's own (not boxed: it is most requests), an
/// answer made here, or an admin route's.
#[pin_project::pin_project(project = RouterFutureProj)]
pub(crate) enum RouterFuture<F, B> {
    Api(#[pin] F),
    Answered(Option<Response<RouterBody<B>>>),
    Admin(BoxFuture<Response<BoxBody>>),
}

impl<F, B> Future for RouterFuture<F, B>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<RouterBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RouterFutureProj::Api(future) => {
                let Ok(res) = std::task::ready!(future.poll(cx));
                Poll::Ready(Ok(res.map(Either::Left)))
            }
            RouterFutureProj::Answered(res) => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Ready(Ok(error(ErrorResponse::internal(
                    "polled after completion",
                )))),
            },
            RouterFutureProj::Admin(future) => Poll::Ready(Ok(std::task::ready!(
                future.as_mut().poll(cx)
            )
            .map(Either::Right))),
        }
    }
}

/// The router's response body: the API stack's own (not boxed again), or the router's.
pub(crate) type RouterBody<B> = Either<B, BoxBody>;

fn error<B>(err: ErrorResponse) -> Response<RouterBody<B>> {
    err.into_response()
        .map(|b| Either::Right(b.map_err(|never| match never {}).boxed_unsync()))
}

fn json<B>(status: StatusCode, body: &'static str) -> Response<RouterBody<B>> {
    let mut res = Response::new(Either::Right(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    ));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The path below an API prefix (`/v1/chat/completions` → `/chat/completions`).
pub(crate) fn strip_prefix(path: &str) -> Option<&str> {
    PREFIXES.iter().find_map(|prefix| {
        let rest = path.strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    })
}

impl<A, B> Service<Request<Body>> for Router<A>
where
    A: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    A::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<RouterBody<B>>;
    type Error = Infallible;
    type Future = RouterFuture<A::Future, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.api.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let path = req.uri().path();
        if path == "/healthz" {
            return RouterFuture::Answered(Some(json(StatusCode::OK, r#"{"status":"ok"}"#)));
        }
        if AdminRoute::of(path).is_some() {
            let user = match caller(&req) {
                Ok(user) => user,
                Err(e) => return RouterFuture::Answered(Some(error(e))),
            };
            if !user.is_admin() {
                return RouterFuture::Answered(Some(error(
                    ErrorResponse::forbidden("This route is for admins only")
                        .with_code("admin_only"),
                )));
            }
            if let Err(e) = check_admin_write(&req, &self.security) {
                return RouterFuture::Answered(Some(error(e)));
            }
            let admin = self.admin.clone();
            return RouterFuture::Admin(Box::pin(async move {
                let Ok(res) = admin.oneshot(req).await;
                res.map(|b| BodyExt::map_err(b, BoxError::from).boxed_unsync())
            }));
        }
        let Some(rest) = strip_prefix(path) else {
            let message = format!("Unknown path {path:?}: the API is served under /v1 and /openai");
            return RouterFuture::Answered(Some(error(
                ErrorResponse::not_found(message).with_code("unknown_url"),
            )));
        };
        let rest = if rest.is_empty() { "/" } else { rest };
        let pq = match req.uri().query() {
            Some(q) => PathAndQuery::try_from(format!("{rest}?{q}")),
            None => match STATIC_PATHS.iter().find(|p| **p == rest) {
                Some(p) => Ok(PathAndQuery::from_static(p)),
                None => PathAndQuery::try_from(rest),
            },
        };
        if let Err(e) = caller(&req) {
            return RouterFuture::Answered(Some(error(e)));
        }
        // The layers below see the path under the prefix. (No `OriginalUri` is recorded:
        // nothing below the router reads it.)
        let mut parts = Parts::default();
        parts.scheme = req.uri().scheme().cloned();
        parts.authority = req.uri().authority().cloned();
        parts.path_and_query = pq.ok();
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        // `poll_ready` readied `self.api`, and it is called right here: its future owns what
        // it needs, so no clone of the stack is moved into it.
        RouterFuture::Api(self.api.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::strip_prefix;

    #[test]
    fn prefixes_are_whole_segments() {
        assert_eq!(
            strip_prefix("/v1/chat/completions"),
            Some("/chat/completions")
        );
        assert_eq!(strip_prefix("/openai/models"), Some("/models"));
        assert_eq!(strip_prefix("/v1"), Some(""));
        assert_eq!(strip_prefix("/v10/models"), None);
        assert_eq!(strip_prefix("/openaix"), None);
        assert_eq!(strip_prefix("/models"), None);
    }
}
