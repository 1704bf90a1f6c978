//! Azure OpenAI and reasoning rewrites through the real gateway, against the mock's Azure
//! deployment paths (rule CC-7, CC-12, A-7, P-4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use openai_gateway::Args;
use serde_json::{Value, json};
use tower_openai_test_util::{MockUpstream, Sse};

use common::*;

async fn azure_gateway(mock: &MockUpstream, config: Value) -> openai_gateway::RunningGateway {
    start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.root_url()),
            ("OPENAI_API_KEYS", "az-key"),
            ("OPENAI_API_CONFIGS", &json!({"0": config}).to_string()),
        ],
    )
    .await
}

fn query(seen: &tower_openai_test_util::RecordedRequest) -> String {
    seen.query.clone().unwrap_or_default()
}

#[tokio::test]
async fn a_chat_goes_to_its_deployment_with_version_credentials_and_the_allowlisted_body() {
    let mock = MockUpstream::start().await;
    let gw = azure_gateway(&mock, json!({"azure": true, "api_version": "2024-10-21", "model_ids": ["gpt-4o-dep"], "prefix_id": "az"})).await;
    // (Streamed: `stream_options` goes unless `stream` is true, Open WebUI 0.7+.)
    let body = r#"{"model":"az.gpt-4o-dep","messages":[{"role":"user","content":"hi"}],"stream":true,"store":true,"parallel_tool_calls":false,"stream_options":{"include_usage":true},"max_tokens":5,"temperature":0.3}"#;
    let res = answer(post_json(
        &format!("{}/chat/completions?foo=1", gw.url()),
        body,
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.path, "/openai/deployments/gpt-4o-dep/chat/completions");
    // A model route's own query string is never forwarded; Azure's version is the gateway's.
    assert_eq!(query(&seen), "api-version=2024-10-21");
    assert_eq!(seen.header("api-key"), Some("az-key"));
    assert_eq!(seen.header("authorization"), Some("Bearer az-key"));
    assert_eq!(seen.header("api-version"), Some("2024-10-21"));
    assert_eq!(
        std::str::from_utf8(&seen.body).unwrap(),
        r#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"temperature":0.3}"#
    );
}

#[tokio::test]
async fn a_reasoning_deployment_gets_both_rewrites() {
    let mock = MockUpstream::start().await;
    let gw = azure_gateway(
        &mock,
        json!({"azure": true, "api_version": "2024-12-01-preview", "model_ids": ["o3-mini"]}),
    )
    .await;
    let body = r#"{"model":"o3-mini","messages":[{"role":"system","content":"be brief"}],"max_tokens":50,"temperature":0.2,"reasoning_effort":"low"}"#;
    assert_eq!(
        answer(post_json(&format!("{}/chat/completions", gw.url()), body))
            .await
            .status,
        StatusCode::OK
    );
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.path, "/openai/deployments/o3-mini/chat/completions");
    assert_eq!(
        seen.json(),
        json!({"messages": [{"role": "developer", "content": "be brief"}], "max_completion_tokens": 50, "reasoning_effort": "low"})
    );
}

#[tokio::test]
async fn other_endpoints_keep_their_members() {
    let mock = MockUpstream::start().await;
    let gw = azure_gateway(&mock, json!({"azure": true, "model_ids": ["emb"]})).await;
    let res = answer(post_json(
        &format!("{}/embeddings", gw.url()),
        r#"{"model":"emb","input":"text"}"#,
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.path, "/openai/deployments/emb/embeddings");
    // No api_version configured: the default, here as everywhere.
    assert_eq!(query(&seen), "api-version=2023-03-15-preview");
    assert_eq!(seen.json(), json!({"model": "emb", "input": "text"}));
    let res = answer(post_json(
        &format!("{}/audio/speech", gw.url()),
        r#"{"model":"emb","input":"hi","voice":"alloy"}"#,
    ))
    .await;
    assert_eq!(res.headers["content-type"], "audio/mpeg");
    assert_eq!(
        mock.last_request().unwrap().path,
        "/openai/deployments/emb/audio/speech"
    );
}

#[tokio::test]
async fn stream_options_follow_the_version_compared_as_a_date() {
    for (version, kept) in [
        ("2024-09-01", true),
        ("2024-09-01-preview", true),
        ("2024-08-01-preview", false),
        ("", false),
    ] {
        let mock = MockUpstream::start().await;
        let gw = azure_gateway(
            &mock,
            json!({"azure": true, "api_version": version, "model_ids": ["d"]}),
        )
        .await;
        answer(post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"d","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
        ))
        .await;
        let seen = mock.last_request().unwrap();
        assert_eq!(
            seen.json().get("stream_options").is_some(),
            kept,
            "{version:?}"
        );
        let expected = if version.is_empty() {
            "2023-03-15-preview"
        } else {
            version
        };
        assert_eq!(query(&seen), format!("api-version={expected}"));
    }
}

#[tokio::test]
async fn a_deployment_name_with_a_path_in_it_is_refused() {
    let mock = MockUpstream::start().await;
    let gw = azure_gateway(&mock, json!({"azure": true, "model_ids": ["../admin"]})).await;
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"../admin","messages":[]}"#,
    ))
    .await;
    assert_eq!(
        (res.status, error_code(&res)),
        (StatusCode::BAD_REQUEST, "invalid_deployment".to_owned())
    );
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn a_streamed_azure_chat_arrives_unbuffered() {
    let mock = MockUpstream::builder()
        .sse(
            "/openai/deployments/*/chat/completions",
            Sse::chunks("d", 5).hang_after(1),
        )
        .start()
        .await;
    let gw = azure_gateway(&mock, json!({"azure": true, "model_ids": ["d"]})).await;
    let res = send(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"d","stream":true,"messages":[]}"#,
    ))
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the first event did not arrive while the upstream held the rest")
        .unwrap()
        .unwrap();
    assert!(
        std::str::from_utf8(frame.data_ref().unwrap())
            .unwrap()
            .contains("tok0")
    );
}

#[tokio::test]
async fn cc7_reasoning_rewrites_on_a_plain_openai_compatible_upstream() {
    let mock = MockUpstream::builder()
        .models(["o4-mini", "llama3"])
        .start()
        .await;
    let gw = start(&mock.url()).await;
    answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"o4-mini","messages":[{"role":"system","content":"x"}],"max_tokens":9,"logit_bias":"50256:-200"}"#,
    ))
    .await;
    assert_eq!(
        mock.last_request().unwrap().json(),
        json!({"model": "o4-mini", "messages": [{"role": "developer", "content": "x"}], "max_completion_tokens": 9, "logit_bias": {"50256": -100}})
    );
    // A non-reasoning model on a server that is not api.openai.com gets max_tokens.
    answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"llama3","max_completion_tokens":9}"#,
    ))
    .await;
    assert_eq!(
        mock.last_request().unwrap().json(),
        json!({"model": "llama3", "max_tokens": 9})
    );
    // Untouched otherwise: byte for byte.
    let raw = r#"{"model" : "llama3", "messages": []}"#;
    answer(post_json(&format!("{}/chat/completions", gw.url()), raw)).await;
    assert_eq!(&mock.last_request().unwrap().body[..], raw.as_bytes());
    // A malformed logit_bias never reaches the upstream.
    let before = mock.count("/v1/chat/completions");
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"llama3","logit_bias":"x"}"#,
    ))
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(mock.count("/v1/chat/completions"), before);
}

/// Open WebUI 0.7+: a `…/openai/v1` URL is Azure's v1 API: OpenAI's own paths, the model
/// in the payload, nothing filtered, no `api-version`; `provider: "azure"` is Azure too.
#[tokio::test]
async fn an_azure_v1_url_is_sent_as_openai_and_provider_azure_is_azure() {
    let mock = MockUpstream::start().await;
    let url = format!("{}/openai/v1", mock.root_url());
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &url),
            ("OPENAI_API_KEYS", "az-key"),
            (
                "OPENAI_API_CONFIGS",
                &json!({"0": {"provider": "azure", "model_ids": ["gpt-4o-dep"]}}).to_string(),
            ),
        ],
    )
    .await;
    let body = r#"{"model":"gpt-4o-dep","messages":[],"store":true}"#;
    for route in ["chat/completions", "embeddings"] {
        let res = answer(post_json(&format!("{}/{route}", gw.url()), body)).await;
        assert_eq!(res.status, StatusCode::OK, "{route}: {}", res.text());
        let seen = mock.last_request().unwrap();
        assert_eq!(seen.path, format!("/openai/v1/{route}"));
        assert_eq!(seen.query, None);
        assert!(seen.header("api-version").is_none());
        assert_eq!(seen.header("api-key"), Some("az-key"));
        let sent: Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(sent["model"], "gpt-4o-dep");
        assert_eq!(sent["store"], true);
    }
}
