//! Messages requests in the Prometheus metrics, through the real gateway over sockets: the
//! route is named `messages`, and the tokens of a translated and of a native answer are
//! counted. (Alone in its binary: the metrics recorder is the process's.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{answer, get, post_json, start_toml};
use http::StatusCode;
use serde_json::json;
use tower_openai_test_util::{MockUpstream, Reply};

#[tokio::test]
async fn messages_requests_and_their_tokens_are_in_the_metrics() {
    let openai = MockUpstream::builder().models(["gpt-x"]).start().await;
    let anthropic = MockUpstream::builder()
        .route(
            http::Method::GET,
            "/v1/models",
            Reply::json(json!({"data": [{"id": "claude-x"}], "has_more": false})),
        )
        .json(
            "/v1/messages",
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [{"type": "text", "text": "Hi."}], "stop_reason": "end_turn",
                "stop_sequence": null, "usage": {"input_tokens": 30, "output_tokens": 7}}),
        )
        .start()
        .await;
    let toml = format!(
        "[openai]\nbase_urls = [\"{}\", \"{}\"]\nkeys = [\"\", \"sk-ant\"]\n\
         bypass_model_access_control = true\n\n\
         [openai.configs.\"1\"]\nprovider = \"anthropic\"\n\n\
         [[users]]\nid = \"root\"\nrole = \"admin\"\napi_key = \"sk-root\"\n",
        openai.url(),
        anthropic.url()
    );
    let gw = start_toml(&toml, &[]).await;
    for model in ["gpt-x", "claude-x"] {
        let body = json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        let mut req = post_json(
            &format!("http://{}/v1/messages", gw.addr()),
            &body.to_string(),
        );
        req.headers_mut()
            .insert("x-api-key", "sk-root".parse().unwrap());
        let res = answer(req).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    }
    let mut req = get(&format!("http://{}/metrics", gw.addr()));
    req.headers_mut()
        .insert("authorization", "Bearer sk-root".parse().unwrap());
    let metrics = answer(req).await.text();
    let value = |name: &str, labels: &[&str]| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        value(
            "gateway_requests_total",
            &["route=\"messages\"", "status=\"200\""]
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        value(
            "gateway_tokens_total",
            &["model=\"claude-x\"", "direction=\"output\""]
        ),
        7.0,
        "{metrics}"
    );
    assert_eq!(
        value(
            "gateway_tokens_total",
            &["model=\"claude-x\"", "direction=\"input\""]
        ),
        30.0,
        "{metrics}"
    );
    // The mock's default chat answer reports its usage.
    assert!(
        value(
            "gateway_tokens_total",
            &["model=\"gpt-x\"", "direction=\"output\""]
        ) > 0.0,
        "{metrics}"
    );
}
