//! The whole gateway over real sockets: a mock upstream on 127.0.0.1:0, the gateway built by
//! the same `Gateway` that `main` runs, and a real HTTP client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use openai_gateway::Args;
use serde_json::{Value, json};
use tower_openai::settings::SettingsSource;
use tower_openai_test_util::{MockUpstream, Reply, Sse};

use common::*;

const CHAT: &str = r#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "x_vendor": {"kept": [1, 2]}}"#;

#[tokio::test]
async fn a_plain_chat_completion_reaches_connection_0_byte_for_byte() {
    let mock = MockUpstream::start().await;
    let gw = start(&mock.url()).await;
    for prefix in ["/v1", "/openai"] {
        let res = answer(post_json(
            &format!("http://{}{prefix}/chat/completions", gw.addr()),
            CHAT,
        ))
        .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert_eq!(
            res.json()["choices"][0]["message"]["content"],
            "Hello from the mock upstream."
        );
        let seen = mock.last_request().unwrap();
        assert_eq!(seen.path, "/v1/chat/completions");
        assert_eq!(
            &seen.body[..],
            CHAT.as_bytes(),
            "{prefix}: the body was not forwarded as sent"
        );
    }
    assert_eq!(mock.count("/v1/chat/completions"), 2);
}

#[tokio::test]
async fn the_query_string_and_method_are_kept_on_other_paths() {
    let mock = MockUpstream::builder()
        .any(
            "/v1/files",
            Reply::json(json!({"object": "list", "data": []})),
        )
        .start()
        .await;
    let gw = start_passthrough(&mock.url()).await;
    let res = answer(get(&format!(
        "http://{}/v1/files?purpose=batch&limit=2",
        gw.addr()
    )))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/v1/files")
    );
    assert_eq!(seen.query.as_deref(), Some("purpose=batch&limit=2"));
    let del = Request::delete(format!("http://{}/openai/files/file-1", gw.addr()))
        .body(Full::default())
        .unwrap();
    // The mock has no such route: its own 404 comes back, so the request reached it.
    let res = answer(del).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());
    let seen = mock.last_request().unwrap();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("DELETE", "/v1/files/file-1")
    );
}

#[tokio::test]
async fn a_streamed_chat_reaches_the_caller_before_the_upstream_finishes() {
    // The upstream sends two events, then holds the stream open without ending it.
    let mock = MockUpstream::builder()
        .sse(
            "/v1/chat/completions",
            Sse::chunks("gpt-4o-mini", 6).hang_after(2),
        )
        .start()
        .await;
    let gw = start(&mock.url()).await;
    let res = send(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"gpt-4o-mini","stream":true}"#,
    ))
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let mut seen = String::new();
    while !seen.contains("tok1") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect(
                "events sent by the upstream did not reach the caller while the stream was open",
            )
            .expect("the stream ended early")
            .unwrap();
        if let Some(data) = frame.data_ref() {
            seen.push_str(std::str::from_utf8(data).unwrap());
        }
    }
    assert!(seen.contains("tok0") && !seen.contains("tok2"), "{seen}");
    assert_eq!(mock.disconnects(), 0);
}

#[tokio::test]
async fn a_complete_stream_is_relayed_event_for_event() {
    let mock = MockUpstream::builder()
        .sse(
            "/v1/chat/completions",
            Sse::chat("gpt-4o-mini", &["a", "b", "c"], true).gap(Duration::from_millis(5)),
        )
        .start()
        .await;
    let gw = start(&mock.url()).await;
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"gpt-4o-mini","stream":true}"#,
    ))
    .await;
    let text = res.text();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 6, "{text}"); // 3 pieces, finish, usage, [DONE]
    let usage: Value = serde_json::from_str(events[4].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(events[5], "data: [DONE]");
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502_json_error() {
    // The model is listed statically, so routing needs no call; the chat then cannot connect.
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &dead_url()),
            (
                "OPENAI_API_CONFIGS",
                r#"{"0": {"model_ids": ["gpt-4o-mini"]}}"#,
            ),
            ("ENABLE_OPENAI_API_PASSTHROUGH", "true"),
        ],
    )
    .await;
    let res = answer(post_json(&format!("{}/chat/completions", gw.url()), CHAT)).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(&res), "upstream_unavailable");
    // Without a model, through the passthrough to connection 0: the same.
    let res = answer(get(&format!("{}/files", gw.url()))).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_silent_upstream_is_a_504_json_error_within_the_timeout() {
    let mock = MockUpstream::builder()
        .never_answer("/v1/chat/completions")
        .start()
        .await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("AIOHTTP_CLIENT_TIMEOUT", "1"),
        ],
    )
    .await;
    let started = tokio::time::Instant::now();
    let res = answer(post_json(&format!("{}/chat/completions", gw.url()), CHAT)).await;
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error_code(&res), "upstream_timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(20),
        "{took:?}"
    );
}

#[tokio::test]
async fn the_caller_hanging_up_mid_stream_closes_the_upstream_request() {
    let mock = MockUpstream::builder()
        .models(["m"])
        .sse("/v1/chat/completions", Sse::chunks("m", 5).hang_after(1))
        .start()
        .await;
    let gw = start(&mock.url()).await;
    let res = send(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"m","stream":true}"#,
    ))
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    body.frame().await.unwrap().unwrap();
    // Drop the response: the client closes its connection to the gateway.
    drop(body);
    tokio::time::timeout(Duration::from_secs(10), mock.wait_for_disconnects(1))
        .await
        .expect("the upstream request outlived the caller");
}

#[tokio::test]
async fn an_upstream_reset_mid_stream_gives_the_caller_a_terminal_error_event() {
    let mock = MockUpstream::builder()
        .models(["m"])
        .sse("/v1/chat/completions", Sse::chunks("m", 4).reset_after(2))
        .start()
        .await;
    let gw = start(&mock.url()).await;
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"m","stream":true}"#,
    ))
    .await;
    let text = res.text();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let event: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(event["error"]["code"], "upstream_stream_error", "{text}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let mock = MockUpstream::builder()
        .any(
            "/v1/files",
            Reply::json(json!({"data": []}))
                .with_header("keep-alive", "timeout=5")
                .with_header("proxy-authenticate", "Basic")
                .with_header("set-cookie", "up=1")
                .with_header("x-upstream", "kept"),
        )
        .start()
        .await;
    // Both allowlists extended by the operator.
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("ENABLE_OPENAI_API_PASSTHROUGH", "true"),
            ("GATEWAY_FORWARD_HEADERS", "x-caller"),
            ("GATEWAY_EXPOSE_HEADERS", "x-upstream"),
        ],
    )
    .await;
    let req = Request::get(format!("{}/files", gw.url()))
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic abc")
        .header("x-caller", "kept")
        .body(Full::default())
        .unwrap();
    let res = answer(req).await;
    assert_eq!(res.headers["x-upstream"], "kept");
    for gone in ["keep-alive", "proxy-authenticate", "set-cookie"] {
        assert!(!res.headers.contains_key(gone), "{gone} reached the caller");
    }
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.header("x-caller"), Some("kept"));
    for gone in ["x-drop-me", "keep-alive", "te", "proxy-authorization"] {
        assert_eq!(seen.header(gone), None, "{gone} reached the upstream");
    }
}

#[tokio::test]
async fn the_callers_authorization_never_reaches_the_upstream() {
    let mock = MockUpstream::start().await;
    // Single-user mode: the caller's bearer token is not needed, and must not leak.
    let gw = start(&mock.url()).await;
    let mut req = post_json(&format!("{}/chat/completions", gw.url()), CHAT);
    req.headers_mut()
        .insert("authorization", "Bearer sk-caller-secret".parse().unwrap());
    req.headers_mut()
        .insert("cookie", "session=caller".parse().unwrap());
    assert_eq!(answer(req).await.status, StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("cookie"), None);
    for (_, v) in seen.headers.iter() {
        assert!(!v.to_str().unwrap_or("").contains("sk-caller-secret"));
    }
}

#[tokio::test]
async fn healthz_and_unknown_paths() {
    let mock = MockUpstream::start().await;
    let gw = start(&mock.url()).await;
    let res = answer(get(&format!("http://{}/healthz", gw.addr()))).await;
    assert_eq!(
        (res.status, res.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let res = answer(get(&format!("http://{}/v2/models", gw.addr()))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&res), "unknown_url");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_before_the_upstream_sees_it() {
    let mock = MockUpstream::start().await;
    let gw = start_with(
        Args {
            max_body_bytes: Some(1024),
            ..Args::default()
        },
        &[("OPENAI_API_BASE_URLS", &mock.url())],
    )
    .await;
    let big = format!(r#"{{"model":"m","pad":"{}"}}"#, "x".repeat(2000));
    let res = answer(post_json(&format!("{}/chat/completions", gw.url()), &big)).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&res), "request_too_large");
    let ok = answer(post_json(&format!("{}/chat/completions", gw.url()), CHAT)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(mock.count("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn with_users_a_missing_or_unknown_key_is_401() {
    let mock = MockUpstream::start().await;
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users.toml");
    std::fs::write(
        &file,
        format!(
            "[openai]\nbase_urls = [\"{}\"]\n\n[[users]]\nid = \"alice\"\napi_key = \"sk-alice\"\n\n[[users]]\nid = \"bob\"\nrole = \"admin\"\napi_key_sha256 = \"{}\"\n\n[[models]]\nid = \"gpt-4o-mini\"\nowner = \"bob\"\naccess = \"public\"\n",
            mock.url(),
            // sha256("sk-bob")
            "36c76b48bb2ee1d9d37140550e9d7ed7d395cf56f41050dc2a72e5291c0011f0"
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
    let url = format!("{}/chat/completions", gw.url());

    let res = answer(post_json(&url, CHAT)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&res), "invalid_api_key");

    let mut wrong = post_json(&url, CHAT);
    wrong
        .headers_mut()
        .insert("authorization", "Bearer sk-nobody".parse().unwrap());
    assert_eq!(answer(wrong).await.status, StatusCode::UNAUTHORIZED);
    assert!(mock.requests().is_empty());

    let mut alice = post_json(&url, CHAT);
    alice
        .headers_mut()
        .insert("authorization", "Bearer sk-alice".parse().unwrap());
    assert_eq!(answer(alice).await.status, StatusCode::OK);
    // Alice's key is not forwarded.
    assert_eq!(mock.last_request().unwrap().header("authorization"), None);
    // Bob's key is stored as a digest only.
    let mut bob = post_json(&url, CHAT);
    bob.headers_mut()
        .insert("authorization", "bearer  sk-bob ".parse().unwrap());
    assert_eq!(answer(bob).await.status, StatusCode::OK);
    // The health check needs no key.
    assert_eq!(
        answer(get(&format!("http://{}/healthz", gw.addr())))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_disabled_openai_api_answers_503() {
    let mock = MockUpstream::start().await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("ENABLE_OPENAI_API", "false"),
        ],
    )
    .await;
    let res = answer(post_json(&format!("{}/chat/completions", gw.url()), CHAT)).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&res), "openai_api_disabled");
    // The model lists too (Open WebUI 0.7+).
    for path in ["models", "models/0", "models/m"] {
        let res = answer(get(&format!("{}/{path}", gw.url()))).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(error_code(&res), "openai_api_disabled", "{path}");
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn the_gateway_speaks_http2_with_prior_knowledge() {
    let mock = MockUpstream::start().await;
    let gw = start(&mock.url()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let res = client
        .request(post_json(&format!("{}/chat/completions", gw.url()), CHAT))
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), StatusCode::OK);
    // Many requests at once on the one HTTP/2 connection: each is served by the
    // connection's instance of the stack, none waits for another.
    let answers = futures_util::future::join_all((0..32).map(|_| {
        let client = client.clone();
        let req = post_json(&format!("{}/chat/completions", gw.url()), CHAT);
        async move {
            let res = client.request(req).await.unwrap();
            let status = res.status();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    }))
    .await;
    for (status, body) in answers {
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("chat.completion"));
    }
    let chats = mock
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count();
    assert_eq!(chats, 33);
}

#[tokio::test]
async fn shutdown_lets_a_stream_in_flight_finish_and_stops_accepting() {
    let mock = MockUpstream::builder()
        .models(["m"])
        .sse(
            "/v1/chat/completions",
            Sse::chunks("m", 10).gap(Duration::from_millis(30)),
        )
        .start()
        .await;
    let gw = start(&mock.url()).await;
    let addr = gw.addr();
    let res = send(post_json(
        &format!("http://{addr}/v1/chat/completions"),
        r#"{"model":"m","stream":true}"#,
    ))
    .await;
    let reader = tokio::spawn(async move { res.into_body().collect().await.map(|c| c.to_bytes()) });
    tokio::time::timeout(
        Duration::from_secs(10),
        mock.wait_for_requests("/v1/chat/completions", 1),
    )
    .await
    .expect("the chat request never reached the upstream");
    assert!(
        gw.shutdown(Duration::from_secs(20)).await,
        "the server did not stop"
    );
    let body = reader.await.unwrap().expect("the stream in flight was cut");
    assert!(String::from_utf8_lossy(&body).ends_with("data: [DONE]\n\n"));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn settings_built_in_code_serve_the_same_way() {
    let mock = MockUpstream::start().await;
    let gw = start_settings(SettingsSource {
        base_urls: Some(vec![mock.url()]),
        ..Default::default()
    })
    .await;
    assert_eq!(
        answer(get(&format!("{}/models", gw.url()))).await.status,
        StatusCode::OK
    );
}

/// Open WebUI 0.7+: an error status an upstream sends as an event stream reaches the caller
/// as a JSON error with that status.
#[tokio::test]
async fn an_error_status_sent_as_an_event_stream_is_answered_as_json() {
    let error =
        json!({"error": {"message": "Slow down", "type": "rate_limit", "code": "rate_limited"}});
    let json_error = MockUpstream::builder()
        .models(["a"])
        .sse(
            "/v1/chat/completions",
            Sse::events([error.to_string()])
                .done(false)
                .status(StatusCode::TOO_MANY_REQUESTS),
        )
        .start()
        .await;
    let text_error = MockUpstream::builder()
        .models(["b"])
        .sse(
            "/v1/chat/completions",
            Sse::events(["overloaded"])
                .done(false)
                .status(StatusCode::SERVICE_UNAVAILABLE),
        )
        .start()
        .await;
    let urls = format!("{};{}", json_error.url(), text_error.url());
    let gw = start_with(Args::default(), &[("OPENAI_API_BASE_URLS", &urls)]).await;
    let chat = format!("{}/chat/completions", gw.url());
    let res = answer(post_json(&chat, r#"{"model":"a","stream":true}"#)).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers["content-type"], "application/json");
    assert_eq!(res.json(), error);
    let res = answer(post_json(&chat, r#"{"model":"b","stream":true}"#)).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.json(),
        json!({"error": {"message": "data: overloaded", "code": 503}})
    );
}

/// Open WebUI 0.7+ `AIOHTTP_CLIENT_STREAM_IDLE_TIMEOUT`: a streamed request waits at most
/// that long for the head (504) and between reads (the terminal error event); a request
/// that does not stream keeps the connection's own timeout.
#[tokio::test]
async fn the_stream_idle_timeout_applies_to_streamed_requests_only() {
    let stalls = MockUpstream::builder()
        .models(["s"])
        .sse(
            "/v1/chat/completions",
            Sse::chat("s", &["one", "two"], false).gap(Duration::from_secs(3)),
        )
        .start()
        .await;
    let slow = MockUpstream::builder()
        .models(["d"])
        .delay("/v1/chat/completions", Duration::from_secs(3))
        .start()
        .await;
    let urls = format!("{};{}", stalls.url(), slow.url());
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &urls),
            ("AIOHTTP_CLIENT_STREAM_IDLE_TIMEOUT", "1"),
        ],
    )
    .await;
    let chat = format!("{}/chat/completions", gw.url());
    let res = answer(post_json(&chat, r#"{"model":"s","stream":true}"#)).await;
    assert_eq!(res.status, StatusCode::OK);
    let text = res.text();
    assert!(text.contains("\"one\""), "{text}");
    assert!(!text.contains("\"two\""), "{text}");
    assert!(text.contains("upstream_stream_error"), "{text}");
    let res = answer(post_json(&chat, r#"{"model":"d","stream":true}"#)).await;
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT, "{}", res.text());
    // Not streamed: the 3 s answer arrives.
    let res = answer(post_json(&chat, r#"{"model":"d"}"#)).await;
    assert_eq!(res.status, StatusCode::OK);
}
