//! Rate limits per user through the real gateway (one process, counts in memory):
//! requests per minute, tokens per minute from the usage answers report, `[rate_limit]`
//! defaults and per-user limits, the 429 and its headers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{answer, error_code, get, post_json, start_toml};
use http::{Request, StatusCode};
use http_body_util::Full;
use openai_gateway::RunningGateway;
use tower_openai_test_util::{MockUpstream, Sse};

fn authed(mut req: Request<Full<Bytes>>, key: &str) -> Request<Full<Bytes>> {
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

/// The windows are the minutes of the clock: start a test well inside one.
async fn away_from_a_minute_boundary() {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into >= 55 {
        tokio::time::sleep(Duration::from_secs(61 - into)).await;
    }
}

async fn gateway(mock: &MockUpstream, limits: &str) -> RunningGateway {
    let text = format!(
        "[openai]\nbase_urls = [\"{}\"]\nbypass_model_access_control = true\n\n{limits}\n\n\
         [[users]]\nid = \"alice\"\napi_key = \"sk-alice\"\n\n[[users]]\nid = \"bob\"\napi_key = \"sk-bob\"\n",
        mock.url(),
    );
    start_toml(&text, &[]).await
}

#[tokio::test]
async fn the_request_limit_refuses_the_request_past_it_with_429_and_headers() {
    away_from_a_minute_boundary().await;
    let mock = MockUpstream::builder().models(["m"]).start().await;
    let gw = gateway(&mock, "[rate_limit]\nrpm = 2").await;
    let chat = format!("{}/chat/completions", gw.url());
    for remaining in ["1", "0"] {
        let res = answer(authed(post_json(&chat, r#"{"model":"m"}"#), "sk-alice")).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.headers["x-ratelimit-limit-requests"], "2");
        assert_eq!(res.headers["x-ratelimit-remaining-requests"], remaining);
    }
    let refused = answer(authed(post_json(&chat, r#"{"model":"m"}"#), "sk-alice")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&refused), "rate_limit_exceeded");
    let wait: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(refused.headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(mock.count("/v1/chat/completions"), 2);
    // Bob has a window of his own; the model list is not a model call.
    let bob = answer(authed(post_json(&chat, r#"{"model":"m"}"#), "sk-bob")).await;
    assert_eq!(bob.status, StatusCode::OK);
    let list = answer(authed(get(&format!("{}/models", gw.url())), "sk-alice")).await;
    assert_eq!(list.status, StatusCode::OK);
}

#[tokio::test]
async fn tokens_reported_by_answers_and_streams_count_against_the_token_limit() {
    away_from_a_minute_boundary().await;
    let mock = MockUpstream::builder().models(["m"]).start().await;
    // The mock's chats report 5 + 6 tokens; alice's own limit replaces the default.
    let text = format!(
        "[openai]\nbase_urls = [\"{}\"]\nbypass_model_access_control = true\n\n\
         [rate_limit]\nrpm = 100\n\n\
         [[users]]\nid = \"alice\"\napi_key = \"sk-alice\"\nrate_limit = {{ tpm = 15 }}\n\n\
         [[users]]\nid = \"bob\"\napi_key = \"sk-bob\"\n",
        mock.url()
    );
    let gw = start_toml(&text, &[]).await;
    let chat = format!("{}/chat/completions", gw.url());
    // 0 tokens so far: passes (11 counted at its end).
    let first = answer(authed(post_json(&chat, r#"{"model":"m"}"#), "sk-alice")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.headers["x-ratelimit-limit-tokens"], "15");
    // 11 ≤ 15: passes; a stream whose usage chunk reports 5 + n more.
    let second = answer(authed(
        post_json(
            &chat,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        "sk-alice",
    ))
    .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.headers["x-ratelimit-remaining-tokens"], "4");
    // Over 15 now: refused.
    let third = answer(authed(post_json(&chat, r#"{"model":"m"}"#), "sk-alice")).await;
    assert_eq!(
        third.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        third.text()
    );
    assert_eq!(third.headers["x-ratelimit-remaining-tokens"], "0");
    assert!(third.text().contains("tokens"), "{}", third.text());
    // Bob's default has no token limit.
    for _ in 0..3 {
        let res = answer(authed(post_json(&chat, r#"{"model":"m"}"#), "sk-bob")).await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(!res.headers.contains_key("x-ratelimit-limit-tokens"));
    }
}

/// A gateway whose user alice has `limit` (a `rate_limit` inline table), with these extra
/// variables.
async fn limited(mock: &MockUpstream, limit: &str, extra: &[(&str, &str)]) -> RunningGateway {
    let text = format!(
        "[openai]\nbase_urls = [\"{}\"]\nbypass_model_access_control = true\n\n\
         [[users]]\nid = \"alice\"\napi_key = \"sk-alice\"\nrate_limit = {limit}\n",
        mock.url()
    );
    start_toml(&text, extra).await
}

/// Sends alice's chat until one is refused (the tokens of an answer are added when its body
/// ends, which for a caller who left is when the gateway notices); whether one was within
/// 3 s.
async fn refused_soon(chat: &str) -> bool {
    for _ in 0..30 {
        let res = answer(authed(post_json(chat, r#"{"model":"m"}"#), "sk-alice")).await;
        if res.status == StatusCode::TOO_MANY_REQUESTS {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_caller_with_a_token_limit_never_gets_an_unmetered_stream() {
    away_from_a_minute_boundary().await;
    let mock = MockUpstream::builder().models(["m"]).start().await;
    let gw = limited(&mock, "{ tpm = 15 }", &[]).await;
    let chat = format!("{}/chat/completions", gw.url());
    // A stream that did not ask for usage: the gateway asks, and keeps the chunk to itself.
    let res = answer(authed(
        post_json(&chat, r#"{"model":"m","stream":true}"#),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let sent = mock.last_request().unwrap().json();
    assert_eq!(sent["stream_options"]["include_usage"], true, "{sent}");
    assert!(!res.text().contains("\"usage\":{"), "{}", res.text());
    assert!(res.text().contains("[DONE]"));
    // Its 10 tokens counted: one more stream passes (10 ≤ 15), then 20 > 15.
    let res = answer(authed(
        post_json(&chat, r#"{"model":"m","stream":true}"#),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["x-ratelimit-remaining-tokens"], "5");
    assert!(refused_soon(&chat).await);
}

#[tokio::test]
async fn a_stream_that_ends_without_usage_is_charged_an_estimate() {
    away_from_a_minute_boundary().await;
    // An upstream that ignores `include_usage`: 40 bytes of text, no usage.
    let mock = MockUpstream::builder()
        .models(["m"])
        .sse(
            "/v1/chat/completions",
            Sse::chat(
                "m",
                &["0123456789", "0123456789", "0123456789", "0123456789"],
                false,
            ),
        )
        .start()
        .await;
    let gw = limited(&mock, "{ tpm = 8 }", &[]).await;
    let chat = format!("{}/chat/completions", gw.url());
    let res = answer(authed(
        post_json(
            &chat,
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    // 1 input token (2 bytes) and 10 output (40 bytes), estimated: over 8.
    let next = answer(authed(post_json(&chat, r#"{"model":"m"}"#), "sk-alice")).await;
    assert_eq!(
        next.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        next.text()
    );
}

#[tokio::test]
async fn hanging_up_before_the_usage_chunk_still_counts() {
    away_from_a_minute_boundary().await;
    // The content comes, then the upstream holds the stream open before its usage chunk.
    let mock = MockUpstream::builder()
        .models(["m"])
        .sse(
            "/v1/chat/completions",
            Sse::chat("m", &["0123456789", "0123456789", "0123456789"], true).hang_after(4),
        )
        .start()
        .await;
    let gw = limited(&mock, "{ tpm = 5 }", &[]).await;
    let chat = format!("{}/chat/completions", gw.url());
    let res = common::send(authed(
        post_json(&chat, r#"{"model":"m","stream":true}"#),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Read the content, then hang up.
    let mut body = res.into_body();
    let mut seen = String::new();
    while !seen.contains("\"finish_reason\":\"stop\"") {
        let frame = http_body_util::BodyExt::frame(&mut body)
            .await
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    drop(body);
    // 30 bytes of text: 8 tokens, estimated, over 5.
    assert!(refused_soon(&chat).await, "the stream counted nothing");
}

#[tokio::test]
async fn the_passthrough_counts_against_the_request_limit() {
    away_from_a_minute_boundary().await;
    let mock = MockUpstream::builder()
        .models(["m"])
        .any(
            "/v1/batches",
            tower_openai_test_util::Reply::json(serde_json::json!({"id": "batch_1"})),
        )
        .start()
        .await;
    let gw = limited(
        &mock,
        "{ rpm = 2 }",
        &[("ENABLE_OPENAI_API_PASSTHROUGH", "true")],
    )
    .await;
    let chat = format!("{}/chat/completions", gw.url());
    for _ in 0..2 {
        let res = answer(authed(post_json(&chat, r#"{"model":"m"}"#), "sk-alice")).await;
        assert_eq!(res.status, StatusCode::OK);
    }
    let batch = answer(authed(
        post_json(&format!("{}/batches", gw.url()), r#"{"input_file_id":"f"}"#),
        "sk-alice",
    ))
    .await;
    assert_eq!(
        batch.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        batch.text()
    );
    assert_eq!(mock.count("/v1/batches"), 0);
}
