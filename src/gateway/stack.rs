//! The one function that assembles the gateway's stack.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, Request, Response, header};
use http_body_util::BodyExt;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tower_openai_core::payload::CollectPayloadLayer;
use tower_openai_core::{
    Body, BoxBody, BoxError, ErrorResponse, LoadSettingsLayer, RescueLayer, ResponseBody,
    SelectedConnection, SettingsSnapshot,
};
use tracing::Level;

use super::Gateway;
use super::router::Router;

/// The gateway as one type-erased service: what hyper serves and what tests drive.
pub type App = BoxCloneSyncService<Request<Body>, Response<BoxBody>, Infallible>;

/// The OpenAI API part of the gateway, below routing and identity.
pub(crate) type Api = BoxCloneSyncService<Request<Body>, Response<BoxBody>, Infallible>;

/// Build the gateway's service.
///
/// In a `ServiceBuilder`, the first layer added is the outermost: a request walks the layers
/// top to bottom, the response walks back up.
pub(crate) fn app(gateway: &Gateway) -> App {
    let api = ServiceBuilder::new()
        // Transport failures from below (connect, timeout) become 502/504 JSON here; above
        // this point everything is a response.
        .layer(RescueLayer::new())
        // One settings snapshot per request, before anything reads settings, so an update
        // in flight never mixes old and new values.
        .layer(LoadSettingsLayer::new(gateway.settings.clone()))
        // Read the JSON body once, under the cap, before any layer needs the model.
        .layer(CollectPayloadLayer::new(gateway.config.max_body_bytes))
        // Until the select layer routes by model: connection 0 (SPEC P-2), and 503 when the
        // OpenAI API is disabled.
        .layer(DefaultConnectionLayer)
        .service(gateway.upstream.clone());
    let api: Api =
        BoxCloneSyncService::new(ServiceExt::<Request<Body>>::map_response(api, |res| {
            res.map(box_body)
        }));

    let sensitive: Arc<[HeaderName]> = Arc::new([
        header::AUTHORIZATION,
        header::COOKIE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("api-key"),
        HeaderName::from_static("x-api-key"),
    ]);
    let app = ServiceBuilder::new()
        // Mark credentials sensitive before tracing sees the request.
        .layer(SetSensitiveRequestHeadersLayer::from_shared(sensitive))
        // One span per request (method, URI, status, latency); headers are not recorded.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        // A bug below must cost one request a 500, not the connection.
        .layer(CatchPanicLayer::custom(|_| {
            ErrorResponse::internal("The gateway hit an internal error").into_response()
        }))
        .service(Router::new(api, gateway.callers.clone()))
        .map_response(|res| res.map(box_body));
    BoxCloneSyncService::new(app)
}

fn box_body<B>(body: B) -> BoxBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BodyExt::map_err(body, Into::into).boxed_unsync()
}

/// Sends every request to connection 0 (SPEC P-2) until the select layer exists.
#[derive(Clone, Copy, Debug)]
struct DefaultConnectionLayer;

impl<S> Layer<S> for DefaultConnectionLayer {
    type Service = DefaultConnection<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DefaultConnection { inner }
    }
}

#[derive(Clone, Debug)]
struct DefaultConnection<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> Service<Request<B>> for DefaultConnection<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let selected = req.extensions().get::<SettingsSnapshot>().and_then(|s| {
            if !s.0.enable() {
                return None;
            }
            s.0.connection(0).cloned()
        });
        match selected {
            Some(connection) => {
                req.extensions_mut().insert(SelectedConnection(connection));
                let fut = self.inner.call(req);
                Box::pin(async move { fut.await.map(ResponseBody::inner) })
            }
            None => Box::pin(async {
                Ok(ResponseBody::rejected(
                    ErrorResponse::new(
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "OpenAI API is disabled",
                    )
                    .with_code("api_disabled"),
                ))
            }),
        }
    }
}
