//! The select layer's rules (rule CC-3, CC-5 with our fix, E-2, P-2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_openai_collect::CollectPayloadLayer;
use tower_openai_core::routing::{ModelRoutes, Route};
use tower_openai_core::{Body, ConnectionGroup, Payload, RequestedModel, SelectedConnection};
use tower_openai_select::SelectLayer;
use tower_openai_select::StaticRoutes;
use tower_openai_settings::{LoadSettingsLayer, Settings, SettingsHandle, SettingsSource};

/// Echoes what the upstream would receive: connection, body, requested model.
async fn echo_upstream(req: Request<Body>) -> Result<Response<Full<Bytes>>, Infallible> {
    let conn = req
        .extensions()
        .get::<SelectedConnection>()
        .map(|c| c.connection().index());
    let payload = req.extensions().get::<Payload>();
    let body = payload.map(|p| String::from_utf8(p.to_bytes().to_vec()).unwrap());
    let changed = payload.map(Payload::is_changed);
    let requested = req.extensions().get::<RequestedModel>().cloned();
    let out = json!({
        "connection": conn,
        "body": body,
        "changed": changed,
        "requested": requested.as_ref().map(|r| r.requested.to_string()),
        "upstream_model": requested.map(|r| r.upstream.to_string()),
        "path": req.uri().to_string(),
    });
    Ok(Response::new(Full::from(out.to_string())))
}

fn settings(enable: bool) -> Settings {
    SettingsSource {
        enable: Some(enable),
        base_urls: Some(vec![
            "http://zero/v1".into(),
            "http://one/v1".into(),
            "http://two/v1".into(),
        ]),
        configs: json!({"1": {"prefix_id": "a"}, "2": {"prefix_id": "local"}})
            .as_object()
            .cloned(),
        ..Default::default()
    }
    .build()
    .unwrap()
}

fn routes() -> StaticRoutes {
    StaticRoutes::new([
        ("gpt-4o", 0),
        ("a.gpt-a.b", 1),
        ("a.llama3", 1),
        ("local.x.local.y", 2),
        ("ghost", 7),
    ])
}

async fn call_with<R>(routes: R, enable: bool, req: Request<Body>) -> (StatusCode, Value)
where
    R: ModelRoutes + Clone,
{
    let svc = ServiceBuilder::new()
        .layer(LoadSettingsLayer::new(SettingsHandle::new(settings(
            enable,
        ))))
        .layer(CollectPayloadLayer::default())
        .layer(SelectLayer::new(routes))
        .service_fn(echo_upstream);
    let res = svc.oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn call(req: Request<Body>) -> (StatusCode, Value) {
    call_with(routes(), true, req).await
}

fn post(path: &str, body: &'static str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn cc3_a_model_is_routed_to_its_connection_and_the_body_is_untouched_without_a_prefix() {
    let raw = r#"{"model" : "gpt-4o", "messages":[]}"#;
    let (status, v) = call(post("/chat/completions", raw)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["connection"], 0);
    assert_eq!(v["body"], raw);
    assert_eq!(v["changed"], false);
    assert_eq!(v["requested"], "gpt-4o");
}

#[tokio::test]
async fn cc5_only_a_leading_prefix_is_stripped() {
    // Open WebUI deletes every "a." and would send "gpt-b".
    let (_, v) = call(post(
        "/chat/completions",
        r#"{"model":"a.gpt-a.b","stream":true}"#,
    ))
    .await;
    assert_eq!(v["connection"], 1);
    assert_eq!(v["upstream_model"], "gpt-a.b");
    assert_eq!(v["body"], r#"{"model":"gpt-a.b","stream":true}"#);
    let (_, v) = call(post("/chat/completions", r#"{"model":"local.x.local.y"}"#)).await;
    assert_eq!(v["upstream_model"], "x.local.y");
}

#[tokio::test]
async fn e2_embeddings_route_by_model_with_the_prefix_stripped() {
    let (_, v) = call(post("/embeddings", r#"{"model":"a.llama3","input":"hi"}"#)).await;
    assert_eq!(v["connection"], 1);
    assert_eq!(v["body"], r#"{"model":"llama3","input":"hi"}"#);
}

#[tokio::test]
async fn every_model_endpoint_routes_by_model() {
    for path in [
        "/chat/completions",
        "/completions",
        "/embeddings",
        "/responses",
        "/audio/speech",
    ] {
        let (status, v) = call(post(path, r#"{"model":"a.llama3"}"#)).await;
        assert_eq!(
            (status, v["connection"].clone()),
            (StatusCode::OK, json!(1)),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_unknown_model_is_a_404_model_not_found() {
    for body in [r#"{"model":"gpt-9"}"#, r#"{"model":"ghost"}"#] {
        let (status, v) = call(post("/chat/completions", body)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("does not exist")
        );
    }
}

#[tokio::test]
async fn a_model_endpoint_without_a_usable_model_is_400() {
    for (body, code) in [
        (r#"{"messages":[]}"#, "missing_model"),
        (r#"{"model":null}"#, "missing_model"),
        (r#"{"model":5}"#, "invalid_value"),
        (r#"{"model":"gpt-4o""#, "invalid_json"),
        (r#"["gpt-4o"]"#, "invalid_body"),
    ] {
        let (status, v) = call(post("/chat/completions", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(v["error"]["code"], code, "{body}");
    }
    let form = Request::post("/chat/completions")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("model=gpt-4o"))
        .unwrap();
    assert_eq!(call(form).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn p2_requests_without_a_model_go_to_connection_0_with_the_query_kept() {
    let get = Request::get("/files?purpose=batch")
        .body(Body::empty())
        .unwrap();
    let (status, v) = call(get).await;
    assert_eq!(
        (status, v["connection"].clone()),
        (StatusCode::OK, json!(0))
    );
    assert_eq!(v["path"], "/files?purpose=batch");
    let batch = post(
        "/batches",
        r#"{"input_file_id":"f","endpoint":"/v1/chat/completions"}"#,
    );
    assert_eq!(call(batch).await.1["connection"], 0);
    // A body the proxy cannot read is forwarded as it is.
    let (status, v) = call(post("/files", "not json")).await;
    assert_eq!(
        (status, v["connection"].clone()),
        (StatusCode::OK, json!(0))
    );
    let upload = Request::post("/audio/transcriptions")
        .header("content-type", "multipart/form-data; boundary=x")
        .body(Body::from("--x--"))
        .unwrap();
    assert_eq!(call(upload).await.1["connection"], 0);
}

#[tokio::test]
async fn the_pass_through_proxy_routes_by_model_when_the_body_names_one() {
    let (_, v) = call(post(
        "/fine_tuning/jobs",
        r#"{"model":"a.llama3","training_file":"f"}"#,
    ))
    .await;
    assert_eq!(v["connection"], 1);
    assert_eq!(v["body"], r#"{"model":"llama3","training_file":"f"}"#);
    assert_eq!(
        call(post("/fine_tuning/jobs", r#"{"model":"nope"}"#))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_disabled_api_is_503_for_every_request() {
    let (status, v) = call_with(
        routes(),
        false,
        post("/chat/completions", r#"{"model":"gpt-4o"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["code"], "openai_api_disabled");
    let get = Request::get("/files").body(Body::empty()).unwrap();
    assert_eq!(
        call_with(routes(), false, get).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_request_with_a_selected_connection_passes_through() {
    let s = Arc::new(settings(true));
    let mut req = post("/chat/completions", r#"{"model":"unknown-model"}"#);
    req.extensions_mut()
        .insert(SelectedConnection(s.connection(2).unwrap().clone()));
    let (status, v) = call(req).await;
    assert_eq!(
        (status, v["connection"].clone()),
        (StatusCode::OK, json!(2))
    );
    assert_eq!(v["changed"], false);
}

#[tokio::test]
async fn without_load_settings_above_it_select_answers_500_not_a_panic() {
    let svc = ServiceBuilder::new()
        .layer(SelectLayer::new(routes()))
        .service_fn(echo_upstream);
    let res = svc.oneshot(post("/chat/completions", "{}")).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// Routes that are "being built": every lookup resolves after a delay.
#[derive(Clone)]
struct SlowRoutes(StaticRoutes);

impl ModelRoutes for SlowRoutes {
    fn route(&self, settings: &Arc<Settings>, model: &str) -> Route {
        let answer = self.0.route(settings, model);
        Route::Pending(Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            answer
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn a_cold_catalog_is_waited_for_then_routed() {
    let (status, v) = call_with(
        SlowRoutes(routes()),
        true,
        post("/chat/completions", r#"{"model":"a.llama3"}"#),
    )
    .await;
    assert_eq!(
        (status, v["upstream_model"].clone()),
        (StatusCode::OK, json!("llama3"))
    );
    let (status, _) = call_with(
        SlowRoutes(routes()),
        true,
        post("/chat/completions", r#"{"model":"zzz"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A service that must be readied before each call; its clones start unready, as a
/// service with per-instance reservations would.
struct MustBeReady {
    ready: bool,
}

impl Clone for MustBeReady {
    fn clone(&self) -> Self {
        Self { ready: false }
    }
}

impl Service<Request<Body>> for MustBeReady {
    type Response = Response<Full<Bytes>>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.ready = true;
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        let was_ready = std::mem::replace(&mut self.ready, false);
        std::future::ready(if was_ready {
            Ok(Response::new(Full::default()))
        } else {
            Err("called without poll_ready")
        })
    }
}

#[tokio::test(start_paused = true)]
async fn while_waiting_the_readied_service_is_the_one_called() {
    let mut svc = SelectLayer::new(SlowRoutes(routes())).layer(MustBeReady { ready: false });
    let mut req = post("/chat/completions", r#"{"model":"gpt-4o"}"#);
    req.extensions_mut()
        .insert(tower_openai_settings::SettingsSnapshot(Arc::new(settings(
            true,
        ))));
    req.extensions_mut()
        .insert(Payload::new(Bytes::from_static(br#"{"model":"gpt-4o"}"#)));
    let ready = svc.ready().await.unwrap();
    let res = ready.call(req).await;
    assert_eq!(res.map(|r| r.status()), Ok(StatusCode::OK));
}

/// Routes `grouped` to connections 1 and 2 (model groups on).
#[derive(Clone)]
struct Grouped;

impl ModelRoutes for Grouped {
    fn route(&self, _: &Arc<Settings>, model: &str) -> Route {
        match model {
            "grouped" => Route::Group(Arc::from([1usize, 2])),
            "alone" => Route::Group(Arc::from([2usize])),
            _ => Route::Unknown,
        }
    }
}

/// A model several connections serve is not bound here: select writes the group and the model
/// as the caller named it, and leaves the payload as sent; the group layer binds each attempt
/// (a request is bound once, by one step). A group of one is an ordinary connection.
#[tokio::test]
async fn a_grouped_model_is_left_for_the_group_layer_to_bind() {
    let svc = ServiceBuilder::new()
        .layer(LoadSettingsLayer::new(SettingsHandle::new(settings(true))))
        .layer(CollectPayloadLayer::default())
        .layer(SelectLayer::new(Grouped))
        .service_fn(|req: Request<Body>| async move {
            let group = req.extensions().get::<ConnectionGroup>().cloned();
            let out = json!({
                "group": group.as_ref().map(|g| g.connections.to_vec()),
                "model": group.map(|g| g.model.to_string()),
                "selected": req.extensions().get::<SelectedConnection>().map(|c| c.0.index()),
                "requested": req.extensions().get::<RequestedModel>().is_some(),
                "changed": req.extensions().get::<Payload>().map(Payload::is_changed),
            });
            Ok::<_, Infallible>(Response::new(Full::from(out.to_string())))
        });
    let read = |res: Response<_>| async move {
        let bytes = BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    let res = svc
        .clone()
        .oneshot(post("/chat/completions", r#"{"model":"grouped"}"#))
        .await
        .unwrap();
    assert_eq!(
        read(res).await,
        json!({"group": [1, 2], "model": "grouped", "selected": null, "requested": false, "changed": false})
    );
    let res = svc
        .oneshot(post("/chat/completions", r#"{"model":"alone"}"#))
        .await
        .unwrap();
    assert_eq!(
        read(res).await,
        json!({"group": null, "model": null, "selected": 2, "requested": true, "changed": false})
    );
}
