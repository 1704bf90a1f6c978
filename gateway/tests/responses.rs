//! `api_type: "responses"` connections through the real gateway, over sockets: a chat sent
//! to a mock that speaks only the Responses API goes out as `POST …/responses` with the
//! conversation converted, and its JSON answer and its stream come back as Chat
//! Completions, tool calls included; a connection without it is untouched; a bad
//! `api_type` stops start-up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{answer, post_json, start_with};
use http::StatusCode;
use openai_gateway::{Args, GatewayConfig, RunningGateway};
use serde_json::{Value, json};
use tower_openai_test_util::{MockUpstream, Sse};

/// A Responses answer: a reasoning summary, text, and a function call.
fn response() -> Value {
    json!({
        "id": "resp_1", "object": "response", "created_at": 1_700_000_000, "model": "r-model",
        "status": "completed",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Need data."}]},
            {"type": "message", "id": "msg_1", "role": "assistant",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_abc", "name": "weather",
             "arguments": "{\"city\":\"Paris\"}"}
        ],
        "usage": {"input_tokens": 20, "output_tokens": 9, "total_tokens": 29,
                  "input_tokens_details": {"cached_tokens": 8}}
    })
}

/// The same answer as Responses events.
fn events() -> Sse {
    Sse::events(
        [
            json!({"type": "response.created", "response": {"id": "resp_2", "created_at": 1_700_000_001, "model": "r-model"}}),
            json!({"type": "response.output_text.delta", "delta": "Check"}),
            json!({"type": "response.output_text.delta", "delta": "ing."}),
            json!({"type": "response.output_item.added", "item": {"type": "function_call", "id": "fc_1", "call_id": "call_abc", "name": "weather", "arguments": ""}}),
            json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "{\"city\":"}),
            json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "\"Paris\"}"}),
            json!({"type": "response.completed", "response": {"status": "completed", "usage": {"input_tokens": 20, "output_tokens": 9, "total_tokens": 29}}}),
        ]
        .iter()
        .map(Value::to_string),
    )
    .done(false)
}

async fn gateway(
    json_upstream: &MockUpstream,
    stream_upstream: &MockUpstream,
    plain: &MockUpstream,
) -> RunningGateway {
    let urls = format!(
        "{};{};{}",
        json_upstream.url(),
        stream_upstream.url(),
        plain.url()
    );
    start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &urls),
            (
                "OPENAI_API_CONFIGS",
                r#"{"0": {"api_type": "responses"}, "1": {"api_type": "responses", "prefix_id": "s"}}"#,
            ),
        ],
    )
    .await
}

fn conversation(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 50,
        "stop": ["\n\n"],
        "messages": [
            {"role": "system", "content": "You report weather."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Lyon\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_0", "content": "12 C"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    })
}

#[tokio::test]
async fn a_chat_to_a_responses_connection_is_converted_both_ways() {
    let json_upstream = MockUpstream::builder()
        .models(["r-model"])
        .json("/v1/responses", response())
        .start()
        .await;
    let stream_upstream = MockUpstream::builder()
        .models(["r-stream"])
        .sse("/v1/responses", events())
        .start()
        .await;
    let plain = MockUpstream::builder().models(["c-model"]).start().await;
    let gw = gateway(&json_upstream, &stream_upstream, &plain).await;
    let chat_url = format!("{}/chat/completions", gw.url());

    // JSON.
    let res = answer(post_json(&chat_url, &conversation("r-model").to_string())).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let sent = json_upstream.last_request().unwrap();
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(
        sent.json(),
        json!({
            "model": "r-model",
            "instructions": "You report weather.",
            "input": [
                {"role": "user", "content": "Weather in Paris?"},
                {"type": "function_call", "call_id": "call_0", "name": "weather", "arguments": "{\"city\":\"Lyon\"}"},
                {"type": "function_call_output", "call_id": "call_0", "output": "12 C"}
            ],
            "max_output_tokens": 50,
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}]
        })
    );
    assert_eq!(json_upstream.count("/v1/chat/completions"), 0);
    let chat = res.json();
    assert_eq!(chat["object"], "chat.completion");
    let message = &chat["choices"][0]["message"];
    assert_eq!(message["content"], "Checking.");
    assert_eq!(message["reasoning_content"], "Need data.");
    assert_eq!(
        message["tool_calls"],
        json!([{"id": "call_abc", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chat["usage"]["prompt_tokens"], 20);
    assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
    assert!(
        res.headers
            .get("content-length")
            .is_none_or(|l| l.to_str().unwrap() == res.text().len().to_string())
    );

    // A stream, with the usage chunk asked for; the connection's prefix is stripped.
    let mut streamed = conversation("s.r-stream");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let res = answer(post_json(&chat_url, &streamed.to_string())).await;
    assert_eq!(res.status, StatusCode::OK);
    let sent = stream_upstream.last_request().unwrap().json();
    assert_eq!(sent["model"], "r-stream");
    assert_eq!(sent["stream"], true);
    assert!(sent.get("stream_options").is_none(), "{sent}");
    let chunks: Vec<Value> = res
        .text()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.into())))
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Checking.");
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{\"city\":\"Paris\"}");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"] == "call_abc")
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
    assert_eq!(chunks[chunks.len() - 2]["usage"]["completion_tokens"], 9);
    assert_eq!(chunks.last().unwrap(), &json!("[DONE]"));

    // `POST responses` is routed by its model, the connection's prefix stripped, and sent
    // as it is.
    let res = answer(post_json(
        &format!("{}/responses", gw.url()),
        &json!({"model": "s.r-stream", "input": "hi", "stream": true}).to_string(),
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let sent = stream_upstream.last_request().unwrap();
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(
        sent.json(),
        json!({"model": "r-stream", "input": "hi", "stream": true})
    );

    // A chat connection is untouched.
    let res = answer(post_json(&chat_url, &conversation("c-model").to_string())).await;
    assert_eq!(res.status, StatusCode::OK);
    let sent = plain.last_request().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.json()["messages"][0]["role"], "system");

    // A chat the Responses API cannot take: refused, nothing sent.
    let before = json_upstream.count("/v1/responses");
    let res = answer(post_json(
        &chat_url,
        &json!({"model": "r-model", "n": 3, "messages": []}).to_string(),
    ))
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.text().contains("`n`"), "{}", res.text());
    assert_eq!(json_upstream.count("/v1/responses"), before);
}

#[test]
fn an_api_type_that_does_not_exist_stops_start_up() {
    let env = common::env(&[
        ("OPENAI_API_BASE_URLS", "http://127.0.0.1:9/v1"),
        ("OPENAI_API_CONFIGS", r#"{"0": {"api_type": "soap"}}"#),
    ]);
    let dir = common::temp_dir();
    let args = Args {
        data_dir: Some(dir),
        ..Args::default()
    };
    let message = match GatewayConfig::load(&args, &env) {
        Err(e) => e.to_string(),
        Ok(config) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            match rt.block_on(openai_gateway::Gateway::new(config)) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("started with api_type soap"),
            }
        }
    };
    assert!(message.contains("api_type"), "{message}");
}

/// The official OpenAI Python SDK (`pip install openai`) as the caller: skipped without it,
/// unless `TOWER_OPENAI_REQUIRE_PYTHON` is set (as in CI), where it fails instead.
#[tokio::test(flavor = "multi_thread")]
async fn the_openai_sdk_drives_a_responses_connection_through_a_tool_round_trip() {
    let have_sdk = std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    if !have_sdk {
        assert!(
            std::env::var_os("TOWER_OPENAI_REQUIRE_PYTHON").is_none(),
            "python3 with the openai package is needed (pip install openai)"
        );
        eprintln!("skipped: python3 with the openai package is not installed");
        return;
    }
    let json_upstream = MockUpstream::builder()
        .models(["r-model"])
        .json("/v1/responses", response())
        .start()
        .await;
    let stream_upstream = MockUpstream::builder()
        .models(["r-stream"])
        .sse("/v1/responses", events())
        .start()
        .await;
    let plain = MockUpstream::builder().models(["c-model"]).start().await;
    let gw = gateway(&json_upstream, &stream_upstream, &plain).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/openai_sdk_chat.py"
    );
    let url = gw.url();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &url, "sk-none", "r-model", "s.r-stream"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(got["content"], "Checking.");
    assert_eq!(
        got["tool_calls"],
        json!([{"id": "call_abc", "name": "weather", "arguments": "{\"city\":\"Paris\"}"}])
    );
    assert_eq!(got["finish_reason"], "tool_calls");
    assert_eq!(got["prompt_tokens"], 20);
    // The round trip: the SDK's assistant message and the tool's result reached the
    // upstream as Responses items, with the call id kept.
    let second = json_upstream.last_request().unwrap().json();
    let input = second["input"].as_array().unwrap();
    assert!(input.contains(&json!({"type": "function_call", "call_id": "call_abc", "name": "weather", "arguments": "{\"city\":\"Paris\"}"})), "{second}");
    assert!(
        input.contains(
            &json!({"type": "function_call_output", "call_id": "call_abc", "output": "21 C"})
        ),
        "{second}"
    );
    assert_eq!(
        got["stream"],
        json!({
            "content": "Checking.",
            "tool_calls": [{"id": "call_abc", "name": "weather", "arguments": "{\"city\":\"Paris\"}"}],
            "completion_tokens": 9,
            "finish_reason": "tool_calls"
        })
    );
}
