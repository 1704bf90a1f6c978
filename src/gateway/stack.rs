//! The one function that assembles the gateway's stack.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, Request, Response, header};
use http_body_util::BodyExt;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tower_openai_core::payload::CollectPayloadLayer;
use tower_openai_core::{Body, BoxBody, BoxError, ErrorResponse, LoadSettingsLayer, RescueLayer};
use tower_openai_models::ModelsLayer;
use tower_openai_select::SelectLayer;
use tracing::Level;

use super::Gateway;
use super::router::Router;

/// The gateway as one type-erased service: what hyper serves and what tests drive.
pub type App = BoxCloneSyncService<Request<Body>, Response<BoxBody>, Infallible>;

/// The OpenAI API part of the gateway, below routing and identity.
pub(crate) type Api = BoxCloneSyncService<Request<Body>, Response<BoxBody>, Infallible>;

/// The part of the stack that acts on a selected connection (today the upstream service;
/// azure, auth and headers join it). The catalog fetches `GET /models` through it, so
/// model discovery uses each connection's own auth.
pub(crate) type Lower = tower_openai_upstream::Upstream;

/// The stack below select, built once and shared by the API stack and the catalog.
pub(crate) fn lower(upstream: tower_openai_upstream::Upstream) -> Lower {
    upstream
}

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
        // `GET /models` answered from the shared catalog, above select: listing needs no
        // connection, and a list request never reaches an upstream here.
        .layer(ModelsLayer::new(gateway.catalog.clone()))
        // Model → connection (prefix stripped); no model → connection 0. Everything below
        // acts on the selected connection.
        .layer(SelectLayer::new(gateway.catalog.clone()))
        .service(gateway.lower.clone());
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
