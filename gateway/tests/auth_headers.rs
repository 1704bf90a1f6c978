//! Upstream credentials and headers through the real gateway: what the upstream received,
//! and what it did not (Open WebUI rules: docs/rules.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use http::{Method, StatusCode};
use openai_gateway::{Args, Gateway, GatewayConfig};
use serde_json::json;
use tower_openai::settings::ApiKey;
use tower_openai::settings::SettingsSource;
use tower_openai_test_util::{MockUpstream, Reply};

use common::*;

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"metadata":{"chat_id":"chat-42"}}"#;

#[tokio::test]
async fn a1_each_connection_gets_its_own_key_for_chat_and_for_model_discovery() {
    let a = MockUpstream::builder().models(["model-a"]).start().await;
    let b = MockUpstream::builder().models(["model-b"]).start().await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &format!("{};{}", a.url(), b.url())),
            ("OPENAI_API_KEYS", "sk-a;sk-b"),
        ],
    )
    .await;
    let mut req = post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"model-b"}"#,
    );
    req.headers_mut()
        .insert("authorization", "Bearer caller-own-key".parse().unwrap());
    assert_eq!(answer(req).await.status, StatusCode::OK);
    assert_eq!(
        b.last_request().unwrap().header("authorization"),
        Some("Bearer sk-b")
    );
    // Discovery used each connection's own key too.
    assert_eq!(
        a.requests_to("/v1/models")[0].header("authorization"),
        Some("Bearer sk-a")
    );
    assert_eq!(
        b.requests_to("/v1/models")[0].header("authorization"),
        Some("Bearer sk-b")
    );
    for r in a.requests().iter().chain(b.requests().iter()) {
        assert_ne!(r.header("authorization"), Some("Bearer caller-own-key"));
    }
}

#[tokio::test]
async fn a3_session_forwards_the_callers_credential_and_cookies() {
    let mock = MockUpstream::builder().models(["m"]).start().await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            (
                "OPENAI_API_CONFIGS",
                r#"{"0": {"auth_type": "session", "model_ids": ["m"]}}"#,
            ),
        ],
    )
    .await;
    let mut req = post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"m"}"#,
    );
    req.headers_mut().insert(
        "authorization",
        "Bearer user-session-token".parse().unwrap(),
    );
    req.headers_mut().insert("cookie", "sid=1".parse().unwrap());
    assert_eq!(answer(req).await.status, StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer user-session-token")
    );
    assert_eq!(seen.header("cookie"), Some("sid=1"));
    // Without a credential: 401, and nothing reaches the upstream.
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"m"}"#,
    ))
    .await;
    assert_eq!(
        (res.status, error_code(&res)),
        (StatusCode::UNAUTHORIZED, "missing_credential".to_owned())
    );
    assert_eq!(mock.count("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn a7_azure_connections_get_both_credentials() {
    let mock = MockUpstream::builder().start().await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("OPENAI_API_KEYS", "az-key"),
            (
                "OPENAI_API_CONFIGS",
                r#"{"0": {"azure": true, "model_ids": ["gpt-4o-mini"]}}"#,
            ),
        ],
    )
    .await;
    answer(post_json(&format!("{}/chat/completions", gw.url()), CHAT)).await;
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.header("authorization"), Some("Bearer az-key"));
    assert_eq!(seen.header("api-key"), Some("az-key"));
}

#[tokio::test]
async fn a5_entra_id_end_to_end_against_a_mock_authority() {
    let authority = MockUpstream::builder()
        .route(
            Method::POST,
            "/tenant/oauth2/v2.0/token",
            Reply::json(json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "entra-access-token"})),
        )
        .start()
        .await;
    let upstream = MockUpstream::builder().models(["dep-1"]).start().await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &upstream.url()),
            ("OPENAI_API_KEYS", "key-never-sent"),
            (
                "OPENAI_API_CONFIGS",
                r#"{"0": {"auth_type": "microsoft_entra_id", "azure": true}}"#,
            ),
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_CLIENT_ID", "client"),
            ("AZURE_CLIENT_SECRET", "secret"),
            ("AZURE_AUTHORITY_HOST", &authority.root_url()),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9"),
        ],
    )
    .await;
    for _ in 0..5 {
        let res = answer(post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"dep-1"}"#,
        ))
        .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    }
    for r in upstream.requests() {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer entra-access-token"),
            "{}",
            r.path
        );
        assert_eq!(
            r.header("api-key"),
            None,
            "Entra ID connections send no api-key"
        );
    }
    // Discovery and five chats: one token.
    assert_eq!(authority.count("/tenant/oauth2/v2.0/token"), 1);
}

#[tokio::test]
async fn a5_no_entra_token_is_a_502_not_an_unauthenticated_call() {
    let upstream = MockUpstream::builder().start().await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &upstream.url()),
            (
                "OPENAI_API_CONFIGS",
                r#"{"0": {"auth_type": "azure_ad", "model_ids": ["dep-1"]}}"#,
            ),
            // The managed identity endpoint is a closed local port.
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9"),
        ],
    )
    .await;
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"dep-1"}"#,
    ))
    .await;
    assert_eq!(
        (res.status, error_code(&res)),
        (StatusCode::BAD_GATEWAY, "upstream_auth_failed".to_owned())
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn h2_openrouter_attribution_reaches_an_openrouter_upstream() {
    let mock = MockUpstream::builder()
        .models(["gpt-4o-mini"])
        .start()
        .await;
    let mut config = GatewayConfig::for_settings(SettingsSource {
        base_urls: Some(vec![format!(
            "http://openrouter.ai:{}/api/v1",
            mock.addr().port()
        )]),
        keys: Some(vec![ApiKey::new("sk-or")]),
        ..Default::default()
    });
    config.resolve = vec![(
        "openrouter.ai".to_owned(),
        std::net::Ipv4Addr::LOCALHOST.into(),
    )];
    let gw = Gateway::new(config).await.unwrap().spawn().await.unwrap();
    let res = answer(post_json(&format!("{}/chat/completions", gw.url()), CHAT)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.path, "/api/v1/chat/completions");
    assert_eq!(seen.header("x-title"), Some("tower-openai"));
    assert_eq!(
        seen.header("http-referer"),
        Some("https://github.com/tower-openai/tower-openai")
    );
    assert_eq!(seen.header("authorization"), Some("Bearer sk-or"));
}

#[tokio::test]
async fn h3_h4_user_info_and_chat_id_for_an_identified_caller() {
    let mock = MockUpstream::builder().start().await;
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "[openai]\nbase_urls = [\"{}\"]\nforward_user_info_headers = true\n\n[openai.configs.\"0\"]\nheaders = {{ \"X-Tenant\" = \"{{{{USER_ID}}}}@acme\" }}\n\n[[users]]\nid = \"alice\"\nname = \"Alice O'Neil\"\nemail = \"alice@example.com\"\napi_key = \"sk-alice\"\n\n[[models]]\nid = \"gpt-4o-mini\"\nowner = \"admin\"\naccess = \"public\"\n",
            mock.url()
        ),
    )
    .unwrap();
    let gw = start_with(
        Args {
            config: Some(file),
            ..Args::default()
        },
        &[],
    )
    .await;
    let mut req = post_json(&format!("{}/chat/completions", gw.url()), CHAT);
    req.headers_mut()
        .insert("authorization", "Bearer sk-alice".parse().unwrap());
    let res = answer(req).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.header("x-openwebui-user-name"), Some("Alice O%27Neil"));
    assert_eq!(seen.header("x-openwebui-user-id"), Some("alice"));
    assert_eq!(
        seen.header("x-openwebui-user-email"),
        Some("alice@example.com")
    );
    assert_eq!(seen.header("x-openwebui-user-role"), Some("user"));
    assert_eq!(seen.header("x-openwebui-chat-id"), Some("chat-42"));
    assert_eq!(seen.header("x-tenant"), Some("alice@acme"));
    // CC-1: metadata never reaches the upstream; the caller's key neither.
    assert!(seen.json().get("metadata").is_none());
    assert_eq!(seen.header("authorization"), None);
    // Discovery carries no user: the shared list does not depend on who asked first.
    let discovery = &mock.requests_to("/v1/models")[0];
    assert_eq!(discovery.header("x-openwebui-user-id"), None);
}
