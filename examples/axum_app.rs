//! An existing axum app with its own API-key middleware that inserts the caller as a
//! `User`, and the OpenAI API served by tower-openai under `/v1` — several upstreams, routing
//! by model, per-user model lists. Runs offline against two in-process mock upstreams.
//!
//! Run: `cargo run --features full --example axum_app`

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use tower::ServiceBuilder;
use tower_openai::ServiceBuilderExt;
use tower_openai::acl::{AccessControl, ModelAccess, StaticRecords};
use tower_openai::core::{Role, User};
use tower_openai::endpoint::Endpoint;
use tower_openai::models::Catalog;
use tower_openai::settings::ApiKey;
use tower_openai::settings::{SettingsHandle, SettingsSource};
use tower_openai::upstream::Upstream;
use tower_openai_test_util::MockUpstream;

/// The app's own authentication: here a fixed key table; yours would check a session or a
/// database. The layers only need the `User` in the request extensions.
async fn api_key_auth(mut req: Request, next: Next) -> Response {
    let key = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let user = match key {
        Some("key-alice") => User {
            id: "alice".into(),
            name: "Alice".into(),
            groups: vec!["research".into()].into(),
            ..User::default()
        },
        Some("key-admin") => User {
            id: "root".into(),
            name: "Root".into(),
            role: Role::Admin,
            ..User::default()
        },
        _ => return (StatusCode::UNAUTHORIZED, "unknown key").into_response(),
    };
    req.extensions_mut().insert(user);
    next.run(req).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Two OpenAI-compatible upstreams; both check their key, as real ones do.
    let local = MockUpstream::builder()
        .models(["llama3", "qwen"])
        .require_key("sk-local")
        .start()
        .await;
    let cloud = MockUpstream::builder()
        .models(["gpt-4o", "gpt-4o-mini"])
        .require_key("sk-cloud")
        .start()
        .await;

    // Connections as Open WebUI configures them: the local one's models are prefixed.
    let settings = SettingsHandle::new(
        SettingsSource {
            base_urls: Some(vec![local.url(), cloud.url()]),
            keys: Some(vec![ApiKey::new("sk-local"), ApiKey::new("sk-cloud")]),
            configs: serde_json::json!({"0": {"prefix_id": "local"}})
                .as_object()
                .cloned(),
            ..Default::default()
        }
        .build()?,
    );
    // Who may use what: research may use the local models, everyone gpt-4o-mini.
    let research = AccessControl::Read {
        groups: vec!["research".into()],
        users: vec![],
    };
    let records = StaticRecords::new([
        (
            "local.llama3".to_owned(),
            ModelAccess {
                owner: "root".into(),
                access: research.clone(),
            },
        ),
        (
            "local.qwen".to_owned(),
            ModelAccess {
                owner: "root".into(),
                access: research,
            },
        ),
        (
            "gpt-4o-mini".to_owned(),
            ModelAccess {
                owner: "root".into(),
                access: AccessControl::Public,
            },
        ),
    ]);

    // The endpoint stack (azure → auth → headers → upstream) acts on the selected
    // connection; the catalog lists each connection's models through the same stack, so
    // discovery sends the connection's key as chat requests do.
    let endpoint = Endpoint::builder(Upstream::new()).build();
    let catalog = Catalog::new(endpoint.clone());
    let openai = ServiceBuilder::new()
        .rescue()
        .policy() // model routes only (the passthrough is off); odd paths refused
        .load_settings(settings)
        .collect_payload(16 << 20)
        .acl(records)
        .models(catalog.clone())
        .select(catalog)
        .reasoning()
        .service(endpoint);

    let app = Router::new()
        .route("/", get(|| async { "my existing app" }))
        .nest_service("/v1", openai)
        .layer(middleware::from_fn(api_key_auth));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("axum app on http://{addr}, OpenAI API under /v1");

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for key in ["key-alice", "key-admin"] {
        let req = http::Request::get(format!("http://{addr}/v1/models"))
            .header("authorization", format!("Bearer {key}"))
            .body(Default::default())?;
        let res = client.request(req).await?;
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await?
            .to_bytes();
        let list: serde_json::Value = serde_json::from_slice(&body)?;
        let ids: Vec<&str> = list["data"]
            .as_array()
            .map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect())
            .unwrap_or_default();
        println!("{key} sees: {}", ids.join(", "));
    }
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("authorization", "Bearer key-alice")
        .header("content-type", "application/json")
        .body(r#"{"model":"local.llama3","messages":[{"role":"user","content":"hi"}]}"#.into())?;
    let res = client.request(req).await?;
    println!("alice's chat with local.llama3: {}", res.status());
    println!(
        "the local upstream got model {:?}",
        local.last_request().map(|r| r.json()["model"].clone())
    );
    println!(
        "the local upstream's model list was asked for with {:?}",
        local
            .requests_to("/v1/models")
            .first()
            .and_then(|r| r.header("authorization").map(str::to_owned))
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
