use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response, StatusCode};
use tower_openai_core::payload::Form;
use tower_openai_core::routing::{ModelRoutes, Route};
use tower_openai_core::{
    ApiRoute, ConnectionGroup, ErrorResponse, Payload, PayloadError, RequestedModel, ResponseBody,
    SelectedConnection,
};
use tower_openai_settings::{Settings, SettingsSnapshot};
use tower_openai_util::future::Deferred;
use tower_service::Service;

use crate::layer::SelectLayer;

/// The endpoints that cannot work without a model.
const MODEL_ENDPOINTS: [&str; 5] = [
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/responses",
    "/audio/speech",
];

/// Routes requests by model. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct Select<S, R> {
    inner: S,
    routes: R,
}

impl<S, R> Select<S, R> {
    /// Wrap `inner`, routing with `routes`.
    pub fn new(inner: S, routes: R) -> Self {
        Self { inner, routes }
    }

    /// A layer routing with `routes`.
    pub fn layer(routes: R) -> SelectLayer<R> {
        SelectLayer::new(routes)
    }

    tower_openai_util::define_inner_service_accessors!();
}

/// What to do with a request before any lookup.
pub(crate) enum Decision {
    /// Already routed: pass it on.
    Forward,
    /// Send it to connection 0 (no model).
    Default(Arc<Settings>),
    /// Route it by this model.
    Model(Arc<Settings>, String),
    /// Refuse it.
    Reject(ErrorResponse),
}

pub(crate) fn decide<B>(req: &Request<B>) -> Decision {
    if req.extensions().get::<SelectedConnection>().is_some() {
        return Decision::Forward;
    }
    let Some(SettingsSnapshot(settings)) = req.extensions().get::<SettingsSnapshot>() else {
        return Decision::Reject(ErrorResponse::internal(
            "The select layer needs LoadSettingsLayer above it",
        ));
    };
    if !settings.enable() {
        return Decision::Reject(
            ErrorResponse::new(StatusCode::SERVICE_UNAVAILABLE, "OpenAI API is disabled")
                .with_code("openai_api_disabled"),
        );
    }
    let route = req.extensions().get::<ApiRoute>();
    let needs_model = match route {
        Some(route) => route.needs_model(),
        // No policy layer classified the request: the endpoints that cannot work without one.
        None => req.method() == Method::POST && MODEL_ENDPOINTS.contains(&req.uri().path()),
    };
    let model = match (
        req.extensions().get::<Payload>(),
        req.extensions().get::<Form>(),
    ) {
        (Some(payload), _) => model_of(payload),
        (None, Some(form)) => Ok(Some(form.model().to_owned())),
        (None, None) => Err(PayloadError::InvalidJson(
            "expected a JSON body (Content-Type: application/json)".to_owned(),
        )),
    };
    match model {
        Ok(Some(model)) => Decision::Model(settings.clone(), model),
        Ok(None) if needs_model => Decision::Reject(
            ErrorResponse::bad_request("you must provide a model parameter")
                .with_code("missing_model"),
        ),
        Err(e) if needs_model => Decision::Reject(e.to_response()),
        // A classified passthrough whose JSON `model` cannot be read is refused (fail
        // closed); the collector refuses it first when it is stacked.
        Err(e) if route.is_some() && req.extensions().get::<Payload>().is_some() => {
            Decision::Reject(e.to_response())
        }
        // The pass-through proxy forwards what it cannot read as it is, to connection 0.
        Ok(None) | Err(_) => Decision::Default(settings.clone()),
    }
}

fn model_of(payload: &Payload) -> Result<Option<String>, PayloadError> {
    payload.model().map(|m| m.map(str::to_owned))
}

/// Select connection `index` for `model`, stripping its prefix from the payload.
pub(crate) fn apply<B>(
    req: &mut Request<B>,
    settings: &Settings,
    index: Option<usize>,
    model: String,
) -> Result<(), ErrorResponse> {
    let Some(connection) = index.and_then(|i| settings.connection(i)).cloned() else {
        return Err(ErrorResponse::not_found(format!(
            "The model `{model}` does not exist or you do not have access to it."
        ))
        .with_code("model_not_found"));
    };
    let upstream: std::sync::Arc<str> = connection.upstream_model(&model).into();
    if *upstream != *model {
        if let Some(payload) = req.extensions_mut().get_mut::<Payload>() {
            payload
                .set_str("model", &upstream)
                .map_err(|e| e.to_response())?;
        } else if let Some(form) = req.extensions_mut().get_mut::<Form>() {
            form.set_model(&upstream);
        }
    }
    let ext = req.extensions_mut();
    ext.insert(SelectedConnection(connection));
    ext.insert(RequestedModel {
        requested: model.into(),
        upstream,
    });
    Ok(())
}

/// Select the first connection of `group` and record the group for a group layer below.
fn apply_group<B>(
    req: &mut Request<B>,
    settings: &Settings,
    group: std::sync::Arc<[usize]>,
    model: String,
) -> Result<(), ErrorResponse> {
    if group.len() > 1 {
        // Bound per attempt by the group layer below, not here.
        req.extensions_mut().insert(ConnectionGroup {
            connections: group,
            model: model.into(),
        });
        return Ok(());
    }
    apply(req, settings, group.first().copied(), model)
}

pub(crate) fn select_default<B>(req: &mut Request<B>, settings: &Settings) {
    if let Some(connection) = settings.connection(0) {
        req.extensions_mut()
            .insert(SelectedConnection(connection.clone()));
    }
}

impl<S, R, B, ResBody> Service<Request<B>> for Select<S, R>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    R: ModelRoutes,
    B: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = crate::ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let deferred = match decide(&req) {
            Decision::Forward => Deferred::called(self.inner.call(req)),
            Decision::Reject(e) => Deferred::rejected(e),
            Decision::Default(settings) => {
                select_default(&mut req, &settings);
                Deferred::called(self.inner.call(req))
            }
            Decision::Model(settings, model) => match self.routes.route(&settings, &model) {
                Route::Connection(i) => match apply(&mut req, &settings, Some(i), model) {
                    Ok(()) => Deferred::called(self.inner.call(req)),
                    Err(e) => Deferred::rejected(e),
                },
                Route::Group(group) => match apply_group(&mut req, &settings, group, model) {
                    Ok(()) => Deferred::called(self.inner.call(req)),
                    Err(e) => Deferred::rejected(e),
                },
                Route::Unknown => match apply(&mut req, &settings, None, model) {
                    Ok(()) => Deferred::called(self.inner.call(req)),
                    Err(e) => Deferred::rejected(e),
                },
                Route::Pending(lookup) => {
                    // The catalog is being built. Call the service `poll_ready` readied once
                    // the route is known; leave a fresh clone here.
                    let clone = self.inner.clone();
                    let inner = std::mem::replace(&mut self.inner, clone);
                    Deferred::waiting(
                        Box::pin(async move {
                            match lookup.await {
                                Route::Connection(i) => apply(&mut req, &settings, Some(i), model)?,
                                Route::Group(group) => {
                                    apply_group(&mut req, &settings, group, model)?;
                                }
                                Route::Unknown | Route::Pending(_) => {
                                    apply(&mut req, &settings, None, model)?;
                                }
                            }
                            Ok(req)
                        }),
                        inner,
                    )
                }
            },
        };
        deferred.into()
    }
}

#[cfg(test)]
mod readiness {
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Request, Response};
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower_openai_core::routing::{ModelRoutes, Route};
    use tower_openai_core::{Payload, SelectedConnection};
    use tower_openai_settings::{Settings, SettingsSnapshot};

    use crate::SelectLayer;

    /// A catalog still being built: every model's route is pending, then connection 1.
    #[derive(Clone)]
    struct Building;

    impl ModelRoutes for Building {
        fn route(&self, _: &Arc<Settings>, _: &str) -> Route {
            Route::Pending(Box::pin(async {
                tokio::task::yield_now().await;
                Route::Connection(1)
            }))
        }
    }

    #[tokio::test]
    async fn a_request_waiting_for_the_catalog_calls_the_service_poll_ready_readied() {
        let (mut svc, mut handle) = tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(
            SelectLayer::new(Building),
        );
        handle.allow(0);
        assert_pending!(svc.poll_ready());
        handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let settings = Arc::new(Settings::for_urls(["http://a/v1", "http://b/v1"]).unwrap());
        let mut req = Request::post("/chat/completions").body(()).unwrap();
        req.extensions_mut().insert(SettingsSnapshot(settings));
        req.extensions_mut()
            .insert(Payload::new(Bytes::from_static(br#"{"model":"m"}"#)));
        // The readied instance goes with the request; the one left behind is not ready (a
        // call on it would make the mock panic).
        let call = tokio::spawn(svc.call(req));
        let (seen, respond) = handle.next_request().await.unwrap();
        assert_eq!(
            seen.extensions()
                .get::<SelectedConnection>()
                .map(|c| c.0.index()),
            Some(1)
        );
        respond.send_response(Response::new(()));
        assert!(call.await.unwrap().is_ok());
        assert_pending!(svc.poll_ready());
    }
}
