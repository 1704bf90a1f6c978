//! Azure OpenAI with Microsoft Entra ID: tokens from a client-secret credential (pointed at a
//! local mock authority, so it runs offline), cached and refreshed ahead of expiry; requests
//! rewritten to `/openai/deployments/{deployment}/…?api-version=`.
//!
//! Run: `cargo run --features full --example azure_entra`

use std::convert::Infallible;

use http::{Method, Request};
use tower::{ServiceBuilder, ServiceExt};
use tower_openai::ServiceBuilderExt;
use tower_openai::auth::entra::ClientSecret;
use tower_openai::auth::{AuthLayer, EntraTokens};
use tower_openai::core::Body;
use tower_openai::endpoint::Endpoint;
use tower_openai::models::Catalog;
use tower_openai::settings::{SettingsHandle, SettingsSource};
use tower_openai::upstream::Upstream;
use tower_openai_test_util::{MockUpstream, Reply};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Stand-ins for login.microsoftonline.com and an Azure OpenAI resource.
    let authority = MockUpstream::builder()
        .route(
            Method::POST,
            "/my-tenant/oauth2/v2.0/token",
            Reply::json(serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "eyJ-entra-token"})),
        )
        .start()
        .await;
    let azure = MockUpstream::start().await;

    let settings = SettingsHandle::new(
        SettingsSource {
            base_urls: Some(vec![azure.root_url()]),
            configs: serde_json::json!({"0": {
                "azure": true,
                "api_version": "2024-10-21",
                "auth_type": "microsoft_entra_id",
                "model_ids": ["gpt-4o-deployment"],
            }})
            .as_object()
            .cloned(),
            ..Default::default()
        }
        .build()?,
    );

    let upstream = Upstream::new();
    // The token endpoint is called through the same pooled client.
    let client = upstream.http_client();
    let tokens = EntraTokens::new(ClientSecret::new(
        client,
        &authority.root_url(),
        "my-tenant",
        "my-client-id",
        "my-client-secret",
    ));
    // azure → auth → headers → upstream, built once: the catalog and the requests share it.
    let endpoint = Endpoint::builder(upstream)
        .auth(AuthLayer::new().entra(tokens))
        .build();
    let catalog = Catalog::new(endpoint.clone());
    let stack = ServiceBuilder::new()
        .rescue()
        .policy() // model routes only (the passthrough is off); odd paths refused
        .load_settings(settings)
        .collect_payload(1 << 20)
        .models(catalog.clone())
        .select(catalog)
        .reasoning()
        .service(endpoint);

    for _ in 0..3 {
        let req = Request::post("/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"model":"gpt-4o-deployment","messages":[{"role":"user","content":"hi"}],"store":true}"#))?;
        let res = stack
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|never: Infallible| match never {});
        println!("status {}", res.status());
    }
    let seen = azure.last_request().ok_or("Azure saw nothing")?;
    println!(
        "Azure got: {} ?{}",
        seen.path,
        seen.query.clone().unwrap_or_default()
    );
    println!(
        "  authorization: {}",
        seen.header("authorization").unwrap_or("-")
    );
    println!("  body: {}", String::from_utf8_lossy(&seen.body));
    println!(
        "tokens issued by the authority: {}",
        authority.count("/my-tenant/oauth2/v2.0/token")
    );
    Ok(())
}
