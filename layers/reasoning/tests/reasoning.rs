//! The reasoning layer as a service: which requests it touches, and its replaceable rule.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt, service_fn};
use tower_openai_core::extensions::ReasoningModel;
use tower_openai_core::{Payload, ResponseBody, SelectedConnection};
use tower_openai_reasoning::ReasoningLayer;
use tower_openai_settings::Settings;

async fn upstream(req: Request<()>) -> Result<Response<Value>, Infallible> {
    let body = req
        .extensions()
        .get::<Payload>()
        .map(|p| serde_json::from_slice::<Value>(&p.to_bytes()).unwrap());
    let changed = req.extensions().get::<Payload>().map(Payload::is_changed);
    let reasoning = req.extensions().get::<ReasoningModel>().map(|r| r.0);
    Ok(Response::new(
        json!({"body": body, "changed": changed, "reasoning": reasoning}),
    ))
}

async fn send<R: tower_openai_reasoning::ReasoningModels>(
    layer: ReasoningLayer<R>,
    path: &str,
    url: &str,
    body: Value,
) -> (StatusCode, Value) {
    let settings = Settings::for_urls([url]).unwrap();
    let mut req = Request::post(path).body(()).unwrap();
    req.extensions_mut()
        .insert(Payload::new(Bytes::from(body.to_string())));
    req.extensions_mut()
        .insert(SelectedConnection(settings.connection(0).unwrap().clone()));
    let res = layer
        .layer(service_fn(upstream))
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status();
    match res.into_body() {
        ResponseBody::Inner(v) => (status, v),
        ResponseBody::Local(_) => (status, Value::Null),
    }
}

#[tokio::test]
async fn reasoning_models_are_rewritten_and_marked() {
    let (status, v) = send(
        ReasoningLayer::new(),
        "/chat/completions",
        "https://api.openai.com/v1",
        json!({"model": "gpt-5-mini", "max_tokens": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v["body"],
        json!({"model": "gpt-5-mini", "max_completion_tokens": 5})
    );
    assert_eq!(v["reasoning"], true);
}

#[tokio::test]
async fn other_endpoints_and_untouched_chats_pass_byte_for_byte() {
    let (_, v) = send(
        ReasoningLayer::new(),
        "/completions",
        "http://local/v1",
        json!({"model": "o3", "max_tokens": 5}),
    )
    .await;
    assert_eq!(v["changed"], false);
    assert!(v["reasoning"].is_null());
    let (_, v) = send(
        ReasoningLayer::new(),
        "/chat/completions",
        "http://local/v1",
        json!({"model": "llama3", "max_tokens": 5}),
    )
    .await;
    // Not a reasoning model: no mark (an absent mark reads as "not one" below).
    assert_eq!(
        (v["changed"].clone(), v["reasoning"].clone()),
        (json!(false), json!(null))
    );
}

#[tokio::test]
async fn the_rule_is_replaceable() {
    let custom = ReasoningLayer::new().rule(|model: &str| model.starts_with("deepthink"));
    let (_, v) = send(
        custom,
        "/chat/completions",
        "https://api.openai.com/v1",
        json!({"model": "DeepThink-1", "max_tokens": 5}),
    )
    .await;
    assert_eq!(v["body"]["max_completion_tokens"], 5);
    let none = ReasoningLayer::new().rule(());
    let (_, v) = send(
        none,
        "/chat/completions",
        "https://api.openai.com/v1",
        json!({"model": "o3", "max_tokens": 5}),
    )
    .await;
    assert_eq!(v["body"]["max_tokens"], 5);
    assert!(v["reasoning"].is_null());
}

#[tokio::test]
async fn a_malformed_logit_bias_is_rejected_before_the_upstream() {
    let (status, v) = send(
        ReasoningLayer::new(),
        "/chat/completions",
        "http://local/v1",
        json!({"model": "m", "logit_bias": "oops"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v.is_null(), "the upstream was called");
}
