//! Anthropic's Messages API through the real gateway, over sockets: translated to Chat
//! Completions for an OpenAI-compatible connection (JSON, streams, tool use, a broken
//! stream), sent as it is to an Anthropic connection (its key as `x-api-key`, the
//! caller's `anthropic-*` headers, answers and streams byte for byte, its paged model
//! list), `count_tokens` both ways, every refusal in Anthropic's error shape, and the
//! official Anthropic Python SDK as the caller.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{Answer, answer, get, post_json, start_toml, start_with};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use openai_gateway::{Args, RunningGateway};
use serde_json::{Value, json};
use tower_openai_test_util::{MockUpstream, Reply, Sse};

/// An Anthropic answer with text and a tool call.
fn native_message() -> Value {
    json!({
        "id": "msg_native", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Native."},
                    {"type": "tool_use", "id": "toolu_n", "name": "weather", "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 30, "output_tokens": 7}
    })
}

/// An Anthropic event stream, as Anthropic sends it.
const NATIVE_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_s\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\n\
data: {\"type\":\"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Streamed natively.\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

/// A chat answer with text and a tool call.
fn chat_answer() -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.",
            "tool_calls": [{"id": "call_abc", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}
    })
}

/// The OpenAI-compatible upstream: `gpt-x` answers JSON with a tool call, `gpt-s` streams.
async fn openai_upstream() -> MockUpstream {
    MockUpstream::builder()
        .models(["gpt-x", "secret"])
        .json("/v1/chat/completions", chat_answer())
        .start()
        .await
}

/// The Anthropic upstream: messages, count_tokens, and a paged model list.
async fn anthropic_upstream(messages: Reply) -> MockUpstream {
    MockUpstream::builder()
        .route(
            Method::GET,
            "/v1/models",
            Reply::json(json!({
                "data": [{"type": "model", "id": "claude-x", "display_name": "Claude X", "created_at": "2025-01-01T00:00:00Z"}],
                "has_more": true, "first_id": "claude-x", "last_id": "claude-x"
            })),
        )
        .route(Method::POST, "/v1/messages", messages)
        .json("/v1/messages/count_tokens", json!({"input_tokens": 77}))
        .start()
        .await
}

/// A gateway: connection 0 OpenAI-compatible, connection 1 Anthropic's (prefix `a`);
/// admin `root`, user `bob` who may use `gpt-x` and `a.claude-x` but not `secret`.
async fn gateway(openai: &MockUpstream, anthropic: &MockUpstream, extra: &str) -> RunningGateway {
    let text = format!(
        "[openai]\nbase_urls = [\"{}\", \"{}\"]\nkeys = [\"sk-up\", \"sk-ant-up\"]\n\n\
         [openai.configs.\"1\"]\nprovider = \"anthropic\"\nprefix_id = \"a\"\n\n\
         [[users]]\nid = \"root\"\nrole = \"admin\"\napi_key = \"sk-root\"\n\n\
         [[users]]\nid = \"bob\"\napi_key = \"sk-bob\"\n\n\
         [[models]]\nid = \"gpt-x\"\nowner = \"root\"\naccess = \"public\"\n\n\
         [[models]]\nid = \"a.claude-x\"\nowner = \"root\"\naccess = \"public\"\n\n\
         [[models]]\nid = \"secret\"\nowner = \"root\"\naccess = \"private\"\n\n{extra}",
        openai.url(),
        anthropic.url()
    );
    start_toml(&text, &[]).await
}

/// `http://ADDR`: the Anthropic SDKs add `/v1/messages` themselves.
fn root(gw: &RunningGateway) -> String {
    format!("http://{}", gw.addr())
}

fn messages(
    gw: &RunningGateway,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> Request<Full<Bytes>> {
    let mut req = post_json(&format!("{}{path}", root(gw)), &body.to_string());
    req.headers_mut()
        .insert("anthropic-version", "2023-06-01".parse().unwrap());
    if let Some(key) = key {
        req.headers_mut().insert("x-api-key", key.parse().unwrap());
    }
    req
}

fn conversation(model: &str) -> Value {
    json!({
        "model": model, "max_tokens": 100, "system": "You report weather.",
        "tools": [{"name": "weather", "description": "Weather now", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": "Weather in Lyon?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_0", "name": "weather", "input": {"city": "Lyon"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_0", "content": "12 C"}, {"type": "text", "text": "And Paris?"}]}
        ]
    })
}

/// The events of an Anthropic stream, as (name, data).
fn events(answer: &Answer) -> Vec<(String, Value)> {
    answer
        .text()
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            (
                name.strip_prefix("event: ").unwrap().to_owned(),
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
            )
        })
        .collect()
}

fn anthropic_error(answer: &Answer) -> (u16, String) {
    let body = answer.json();
    assert_eq!(body["type"], "error", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    (
        answer.status.as_u16(),
        body["error"]["type"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn messages_to_an_openai_connection_are_translated_both_ways() {
    let openai = openai_upstream().await;
    let anthropic = anthropic_upstream(Reply::json(native_message())).await;
    let gw = gateway(&openai, &anthropic, "").await;

    let res = answer(messages(
        &gw,
        "/v1/messages",
        Some("sk-bob"),
        &conversation("gpt-x"),
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(
        res.json(),
        json!({
            "id": "msg_chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-x",
            "content": [{"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "call_abc", "name": "weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 9}
        })
    );
    let sent = openai.last_request().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-up"));
    assert_eq!(sent.header("x-api-key"), None);
    assert_eq!(sent.header("anthropic-version"), None);
    assert_eq!(
        sent.json(),
        json!({
            "model": "gpt-x", "max_tokens": 100,
            "messages": [
                {"role": "system", "content": "You report weather."},
                {"role": "user", "content": "Weather in Lyon?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_0", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Lyon\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_0", "content": "12 C"},
                {"role": "user", "content": "And Paris?"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
        })
    );
    // Under /openai too.
    let res = answer(messages(
        &gw,
        "/openai/messages",
        Some("sk-bob"),
        &conversation("gpt-x"),
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    // Claude Code's `?beta=true`: served, and (as on every model route) not forwarded.
    let res = answer(messages(
        &gw,
        "/v1/messages?beta=true",
        Some("sk-bob"),
        &conversation("gpt-x"),
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(openai.last_request().unwrap().query, None);
    // Its errors keep Anthropic's shape.
    let res = answer(messages(
        &gw,
        "/v1/messages?beta=true",
        Some("sk-bob"),
        &conversation("secret"),
    ))
    .await;
    assert_eq!(anthropic_error(&res), (403, "permission_error".to_owned()));
}

#[tokio::test]
async fn a_translated_stream_has_anthropics_events_and_a_broken_one_ends_with_an_error_event() {
    let openai = MockUpstream::builder()
        .models(["gpt-x"])
        .sse(
            "/v1/chat/completions",
            Sse::chat("gpt-x", &["Hel", "lo."], true),
        )
        .start()
        .await;
    let anthropic = anthropic_upstream(Reply::json(native_message())).await;
    let gw = gateway(&openai, &anthropic, "").await;
    let mut body = conversation("gpt-x");
    body["stream"] = json!(true);
    let res = answer(messages(&gw, "/v1/messages", Some("sk-bob"), &body)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(
        res.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let got = events(&res);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        got[2].1["delta"],
        json!({"type": "text_delta", "text": "Hel"})
    );
    assert_eq!(got[5].1["delta"]["stop_reason"], "end_turn");
    assert!(
        got[5].1["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{}",
        got[5].1
    );
    // The stream asked the upstream for its usage.
    let sent = openai.last_request().unwrap().json();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));

    // The upstream breaks after two chunks: the stream ends with an `error` event.
    let broken = MockUpstream::builder()
        .models(["gpt-x"])
        .sse(
            "/v1/chat/completions",
            Sse::chat("gpt-x", &["a", "b", "c", "d"], false).reset_after(2),
        )
        .start()
        .await;
    let gw = gateway(&broken, &anthropic, "").await;
    let res = answer(messages(&gw, "/v1/messages", Some("sk-bob"), &body)).await;
    let got = events(&res);
    assert_eq!(got.first().unwrap().0, "message_start");
    let (name, data) = got.last().unwrap();
    assert_eq!(name, "error", "{}", res.text());
    assert_eq!(data["error"]["type"], "api_error");
    assert!(!res.text().contains("message_stop"));
}

#[tokio::test]
async fn messages_to_an_anthropic_connection_pass_as_they_are() {
    let openai = openai_upstream().await;
    let anthropic = anthropic_upstream(Reply::json(native_message())).await;
    let gw = gateway(&openai, &anthropic, "").await;
    let body = conversation("a.claude-x");
    let mut req = messages(&gw, "/v1/messages", Some("sk-bob"), &body);
    req.headers_mut().insert(
        "anthropic-beta",
        "interleaved-thinking-2025-05-14".parse().unwrap(),
    );
    let res = answer(req).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json(), native_message());
    let sent = anthropic.requests_to("/v1/messages").pop().unwrap();
    // The body as the caller sent it but for the model's prefix.
    let mut expected = body.clone();
    expected["model"] = json!("claude-x");
    assert_eq!(sent.json(), expected);
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-up"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("interleaved-thinking-2025-05-14")
    );

    // count_tokens goes to Anthropic, which counts.
    let res = answer(messages(
        &gw,
        "/v1/messages/count_tokens",
        Some("sk-bob"),
        &body,
    ))
    .await;
    assert_eq!(res.json(), json!({"input_tokens": 77}));
    assert_eq!(anthropic.count("/v1/messages/count_tokens"), 1);
    assert_eq!(openai.count("/v1/chat/completions"), 0);

    // The model list: every page, with Anthropic's headers.
    let mut list = get(&format!("{}/models", gw.url()));
    list.headers_mut()
        .insert("authorization", "Bearer sk-root".parse().unwrap());
    let listed = answer(list).await.json();
    let claude = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "a.claude-x")
        .cloned();
    let claude = claude.unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(claude["name"], "a.Claude X");
    // Merged as every listed model is (M-8), Anthropic's entry kept under `openai`.
    assert_eq!(claude["openai"]["owned_by"], "anthropic");
    let pages = anthropic.requests_to("/v1/models");
    assert!(pages.len() >= 2, "{pages:?}");
    assert_eq!(pages[0].query.as_deref(), Some("limit=1000"));
    assert_eq!(
        pages[1].query.as_deref(),
        Some("limit=1000&after_id=claude-x")
    );
    assert_eq!(pages[0].header("x-api-key"), Some("sk-ant-up"));
    assert_eq!(pages[0].header("anthropic-version"), Some("2023-06-01"));
}

#[tokio::test]
async fn an_anthropic_stream_and_error_pass_byte_for_byte() {
    let openai = openai_upstream().await;
    let anthropic = anthropic_upstream(Reply::Bytes {
        status: StatusCode::OK,
        content_type: "text/event-stream".into(),
        body: Bytes::from_static(NATIVE_STREAM.as_bytes()),
    })
    .await;
    let gw = gateway(&openai, &anthropic, "").await;
    let mut body = conversation("a.claude-x");
    body["stream"] = json!(true);
    let res = answer(messages(&gw, "/v1/messages", Some("sk-bob"), &body)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.text(), NATIVE_STREAM);
    // Nothing was added to the caller's body (no stream_options).
    assert_eq!(
        anthropic.requests_to("/v1/messages").pop().unwrap().json()["stream_options"],
        Value::Null
    );

    // Anthropic's stream breaks: it ends with Anthropic's `event: error`, not OpenAI's.
    let breaking = anthropic_upstream(Reply::Sse(
        Sse::events([
            r#"{"type":"message_start","message":{"id":"msg_b","type":"message","role":"assistant","content":[],"usage":{"input_tokens":3,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hal"}}"#,
        ])
        .reset_after(2),
    ))
    .await;
    let gw = gateway(&openai, &breaking, "").await;
    let res = answer(messages(&gw, "/v1/messages", Some("sk-bob"), &body)).await;
    let text = res.text();
    let (rest, last) = text.trim_end().rsplit_once("\n\n").unwrap();
    assert!(
        rest.contains("content_block_start") && !rest.contains("Hal"),
        "{text}"
    );
    let data = last
        .strip_prefix("event: error\ndata: ")
        .unwrap_or_else(|| panic!("{text}"));
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["type"], "error");
    assert_eq!(data["error"]["type"], "api_error");

    let overloaded =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    let failing = anthropic_upstream(Reply::status(
        StatusCode::from_u16(529).unwrap(),
        overloaded.clone(),
    ))
    .await;
    let gw = gateway(&openai, &failing, "").await;
    let res = answer(messages(
        &gw,
        "/v1/messages",
        Some("sk-bob"),
        &conversation("a.claude-x"),
    ))
    .await;
    assert_eq!(res.status.as_u16(), 529);
    assert_eq!(res.json(), overloaded);
}

#[tokio::test]
async fn count_tokens_for_an_openai_connection_is_answered_here() {
    let openai = openai_upstream().await;
    let anthropic = anthropic_upstream(Reply::json(native_message())).await;
    let gw = gateway(&openai, &anthropic, "").await;
    let res = answer(messages(
        &gw,
        "/v1/messages/count_tokens",
        Some("sk-bob"),
        &conversation("gpt-x"),
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let n = res.json()["input_tokens"].as_u64().unwrap();
    assert!((20..200).contains(&n), "{n}");
    assert!(
        openai
            .requests()
            .iter()
            .all(|r| !r.path.contains("messages") && !r.path.contains("chat"))
    );
}

#[tokio::test]
async fn every_refusal_comes_in_anthropics_error_shape() {
    let openai = MockUpstream::builder()
        .models(["gpt-x", "secret", "down", "busy"])
        .json("/v1/chat/completions", chat_answer())
        .start()
        .await;
    let anthropic = anthropic_upstream(Reply::json(native_message())).await;
    let gw = gateway(
        &openai,
        &anthropic,
        "[[users]]\nid = \"slow\"\napi_key = \"sk-slow\"\nrate_limit = { rpm = 1 }\n",
    )
    .await;
    let m = |model: &str| conversation(model);
    let check = |res: Answer| anthropic_error(&res);

    assert_eq!(
        check(answer(messages(&gw, "/v1/messages", None, &m("gpt-x"))).await),
        (401, "authentication_error".into())
    );
    assert_eq!(
        check(answer(messages(&gw, "/v1/messages", Some("sk-wrong"), &m("gpt-x"))).await),
        (401, "authentication_error".into())
    );
    assert_eq!(
        check(answer(messages(&gw, "/v1/messages", Some("sk-bob"), &m("secret"))).await),
        (403, "permission_error".into())
    );
    assert_eq!(
        check(answer(messages(&gw, "/v1/messages", Some("sk-root"), &m("nope"))).await),
        (404, "not_found_error".into())
    );
    assert_eq!(
        check(
            answer(messages(
                &gw,
                "/v1/messages",
                Some("sk-bob"),
                &json!({"messages": []})
            ))
            .await
        ),
        (400, "invalid_request_error".into())
    );
    let mut bad = post_json(&format!("{}/v1/messages", root(&gw)), "{not json");
    bad.headers_mut()
        .insert("x-api-key", "sk-bob".parse().unwrap());
    assert_eq!(
        check(answer(bad).await),
        (400, "invalid_request_error".into())
    );
    // A block with no Chat Completions form: refused, nothing sent.
    let before = openai.count("/v1/chat/completions");
    let untranslatable = json!({"model": "gpt-x", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}]});
    let res = answer(messages(
        &gw,
        "/v1/messages",
        Some("sk-bob"),
        &untranslatable,
    ))
    .await;
    assert_eq!(check(res), (400, "invalid_request_error".into()));
    assert_eq!(openai.count("/v1/chat/completions"), before);
    // Rate limits: the second request in the minute.
    assert_eq!(
        answer(messages(&gw, "/v1/messages", Some("sk-slow"), &m("gpt-x")))
            .await
            .status,
        StatusCode::OK
    );
    let limited = answer(messages(&gw, "/v1/messages", Some("sk-slow"), &m("gpt-x"))).await;
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(check(limited), (429, "rate_limit_error".into()));
    // An OpenAI-compatible upstream's errors keep their status.
    for (status, kind) in [
        (500, "api_error"),
        (429, "rate_limit_error"),
        (503, "overloaded_error"),
    ] {
        let failing = MockUpstream::builder()
            .models(["gpt-x"])
            .status(
                "/v1/chat/completions",
                status,
                json!({"error": {"message": "upstream says no", "type": "server_error"}}),
            )
            .start()
            .await;
        let gw = gateway(&failing, &anthropic, "").await;
        let res = answer(messages(&gw, "/v1/messages", Some("sk-bob"), &m("gpt-x"))).await;
        assert_eq!(res.json()["error"]["message"], "upstream says no");
        assert_eq!(check(res), (status, kind.into()));
    }
    // Chat Completions callers still get OpenAI's shape.
    let mut chat = post_json(
        &format!("{}/chat/completions", gw.url()),
        &json!({"model": "secret", "messages": []}).to_string(),
    );
    chat.headers_mut()
        .insert("authorization", "Bearer sk-bob".parse().unwrap());
    let res = answer(chat).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.json()["error"]["code"].is_string());
}

#[tokio::test]
async fn messages_count_in_usage_and_spend_both_ways() {
    let openai = openai_upstream().await;
    let anthropic = anthropic_upstream(Reply::json(native_message())).await;
    let gw = gateway(&openai, &anthropic, "").await;
    for model in ["gpt-x", "a.claude-x"] {
        let res = answer(messages(
            &gw,
            "/v1/messages",
            Some("sk-bob"),
            &conversation(model),
        ))
        .await;
        assert_eq!(res.status, StatusCode::OK);
    }
    let mut req = get(&format!("{}/admin/spend?group_by=model", root(&gw)));
    req.headers_mut()
        .insert("authorization", "Bearer sk-root".parse().unwrap());
    let report = answer(req).await.json();
    let rows = report.to_string();
    let row = |model: &str| {
        report["rows"]
            .as_array()
            .or_else(|| report["data"].as_array())
            .unwrap_or_else(|| panic!("{rows}"))
            .iter()
            .find(|r| r["model"] == model)
            .cloned()
            .unwrap_or_else(|| panic!("{rows}"))
    };
    assert_eq!(
        (
            row("gpt-x")["input_tokens"].clone(),
            row("gpt-x")["output_tokens"].clone()
        ),
        (json!(20), json!(9))
    );
    assert_eq!(
        (
            row("a.claude-x")["input_tokens"].clone(),
            row("a.claude-x")["output_tokens"].clone()
        ),
        (json!(30), json!(7))
    );
}

/// The official Anthropic Python SDK (`pip install anthropic`) as the caller, against both
/// kinds of connection: skipped without it, unless `TOWER_OPENAI_REQUIRE_PYTHON` is set (as
/// in CI), where it fails instead.
#[tokio::test(flavor = "multi_thread")]
async fn the_anthropic_sdk_drives_both_kinds_of_connection() {
    let have_sdk = std::process::Command::new("python3")
        .args(["-c", "import anthropic"])
        .status()
        .is_ok_and(|s| s.success());
    if !have_sdk {
        assert!(
            std::env::var_os("TOWER_OPENAI_REQUIRE_PYTHON").is_none(),
            "python3 with the anthropic package is needed (pip install anthropic)"
        );
        eprintln!("skipped: python3 with the anthropic package is not installed");
        return;
    }
    let openai = MockUpstream::builder()
        .models(["gpt-x", "secret"])
        .json("/v1/chat/completions", chat_answer())
        .start()
        .await;
    let streaming = MockUpstream::builder().models(["gpt-s"]).start().await;
    let anthropic = anthropic_upstream(Reply::json(native_message())).await;
    let native_stream = anthropic_upstream(Reply::Bytes {
        status: StatusCode::OK,
        content_type: "text/event-stream".into(),
        body: Bytes::from_static(NATIVE_STREAM.as_bytes()),
    })
    .await;
    let overloaded = anthropic_upstream(Reply::status(
        StatusCode::from_u16(529).unwrap(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ))
    .await;
    let text = format!(
        "[openai]\nbase_urls = [\"{}\", \"{}\", \"{}\", \"{}\", \"{}\"]\n\
         keys = [\"sk-up\", \"sk-ant-up\", \"\", \"sk-ant-up\", \"sk-ant-up\"]\n\n\
         [openai.configs.\"1\"]\nprovider = \"anthropic\"\nprefix_id = \"a\"\n\n\
         [openai.configs.\"3\"]\nprovider = \"anthropic\"\nprefix_id = \"b\"\n\n\
         [openai.configs.\"4\"]\nprovider = \"anthropic\"\nprefix_id = \"c\"\n\n\
         [[users]]\nid = \"root\"\nrole = \"admin\"\napi_key = \"sk-root\"\n\n\
         [[users]]\nid = \"bob\"\napi_key = \"sk-bob\"\nrate_limit = {{ rpm = 12 }}\n\n\
         [[models]]\nid = \"gpt-x\"\nowner = \"root\"\naccess = \"public\"\n\n\
         [[models]]\nid = \"gpt-s\"\nowner = \"root\"\naccess = \"public\"\n\n\
         [[models]]\nid = \"a.claude-x\"\nowner = \"root\"\naccess = \"public\"\n\n\
         [[models]]\nid = \"b.claude-x\"\nowner = \"root\"\naccess = \"public\"\n\n\
         [[models]]\nid = \"c.claude-x\"\nowner = \"root\"\naccess = \"public\"\n\n\
         [[models]]\nid = \"secret\"\nowner = \"root\"\naccess = \"private\"\n",
        openai.url(),
        anthropic.url(),
        streaming.url(),
        native_stream.url(),
        overloaded.url(),
    );
    let gw = start_toml(&text, &[]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/anthropic_sdk.py");
    let url = root(&gw);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &url])
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

    // A plain message and the tool-use round trip through the translation.
    assert_eq!(got["tool"]["text"], "Checking.");
    assert_eq!(
        got["tool"]["tool_use"],
        json!({"id": "call_abc", "name": "weather", "input": {"city": "Paris"}})
    );
    assert_eq!(got["tool"]["stop_reason"], "tool_use");
    assert_eq!(got["tool"]["usage"], json!([20, 9]));
    // The second request of the round trip (later ones are the error probes).
    let second = openai.requests_to("/v1/chat/completions")[1].json();
    let sent = second["messages"].as_array().unwrap();
    assert!(sent.contains(&json!({"role": "assistant", "content": "Checking.", "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]})), "{second}");
    assert!(
        sent.contains(&json!({"role": "tool", "tool_call_id": "call_abc", "content": "21 C"})),
        "{second}"
    );
    assert_eq!(
        openai.last_request().unwrap().header("authorization"),
        Some("Bearer sk-up")
    );
    // The stream, as the SDK accumulated it.
    assert_eq!(got["stream"]["text"], "Hello from the mock upstream.");
    assert_eq!(got["stream"]["stop_reason"], "end_turn");
    assert!(got["stream"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        streaming.last_request().unwrap().json()["stream_options"],
        json!({"include_usage": true})
    );
    // count_tokens both ways.
    assert!(got["count_openai"].as_u64().unwrap() > 0);
    assert_eq!(got["count_anthropic"], 77);
    // The native connection.
    assert_eq!(got["native"]["text"], "Native.");
    assert_eq!(
        got["native"]["tool_use"],
        json!({"id": "toolu_n", "name": "weather", "input": {"city": "Oslo"}})
    );
    let native = anthropic.requests_to("/v1/messages").pop().unwrap();
    assert_eq!(native.json()["model"], "claude-x");
    assert_eq!(native.header("x-api-key"), Some("sk-ant-up"));
    assert!(native.header("anthropic-version").is_some());
    // Each error as the SDK's own exception.
    assert_eq!(
        got["errors"],
        json!({
            "authentication": ["AuthenticationError", 401, "authentication_error"],
            "permission": ["PermissionDeniedError", 403, "permission_error"],
            "not_found": ["NotFoundError", 404, "not_found_error"],
            "invalid_request": ["BadRequestError", 400, "invalid_request_error"],
            "rate_limit": ["RateLimitError", 429, "rate_limit_error"],
            "native_overloaded": ["OverloadedError", 529, "overloaded_error"],
        })
    );
}

/// The translation composes with the per-connection layers: a Messages request to an
/// `api_type: "responses"` connection goes out as a Responses request and its answer comes
/// back as a Message.
#[tokio::test]
async fn messages_to_a_responses_connection_go_through_both_conversions() {
    let upstream = MockUpstream::builder()
        .models(["r-model"])
        .json(
            "/v1/responses",
            json!({"id": "resp_1", "object": "response", "model": "r-model", "status": "completed",
                "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Via Responses."}]},
                           {"type": "function_call", "call_id": "call_r", "name": "weather", "arguments": "{\"city\":\"Rome\"}"}],
                "usage": {"input_tokens": 11, "output_tokens": 4}}),
        )
        .start()
        .await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &upstream.url()),
            ("OPENAI_API_CONFIGS", r#"{"0": {"api_type": "responses"}}"#),
        ],
    )
    .await;
    let res = answer(messages(
        &gw,
        "/v1/messages",
        None,
        &conversation("r-model"),
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let message = res.json();
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "Via Responses."},
               {"type": "tool_use", "id": "call_r", "name": "weather", "input": {"city": "Rome"}}])
    );
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(
        message["usage"],
        json!({"input_tokens": 11, "output_tokens": 4})
    );
    let sent = upstream.last_request().unwrap();
    assert_eq!(sent.path, "/v1/responses");
    let sent = sent.json();
    assert_eq!(sent["instructions"], "You report weather.");
    assert!(
        sent["input"].as_array().unwrap().contains(
            &json!({"type": "function_call_output", "call_id": "toolu_0", "output": "12 C"})
        ),
        "{sent}"
    );
}
