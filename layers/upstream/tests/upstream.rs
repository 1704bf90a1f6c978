//! The upstream service over real sockets, against the mock upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};
use tower_openai_core::extensions::HeaderStep;
use tower_openai_core::{
    Payload, RequestTimeout, ResponseBody, SelectedConnection, UpstreamHeaders,
};
use tower_openai_rescue::RescueLayer;
use tower_openai_settings::{Settings, SettingsSource};
use tower_openai_test_util::{MockUpstream, Reply, Sse};
use tower_openai_upstream::{ResponseBody as UpstreamBody, Upstream};

type Res = Response<ResponseBody<UpstreamBody>>;

fn settings(url: &str) -> Settings {
    Settings::for_urls([url]).unwrap()
}

fn select(req: &mut Request<Full<Bytes>>, settings: &Settings) {
    req.extensions_mut()
        .insert(SelectedConnection(settings.connection(0).unwrap().clone()));
}

async fn send(settings: &Settings, mut req: Request<Full<Bytes>>) -> Res {
    select(&mut req, settings);
    ServiceBuilder::new()
        .layer(RescueLayer::new())
        .service(Upstream::new())
        .oneshot(req)
        .await
        .unwrap()
}

async fn body_text(res: Res) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn json_post(path: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Full::from(body))
        .unwrap()
}

#[tokio::test]
async fn joins_base_url_path_and_query_and_forwards_the_payload_byte_for_byte() {
    let mock = MockUpstream::start().await;
    let s = settings(&format!("{}/", mock.url())); // a trailing slash joins cleanly
    let raw =
        "{ \"model\": \"gpt-4o-mini\",\n  \"messages\": [] , \"x-unknown\": {\"kept\": true}}";
    let mut req = Request::post("/chat/completions?trace=1&b=2")
        .header("content-type", "application/json")
        .body(Full::default())
        .unwrap();
    req.extensions_mut()
        .insert(Payload::new(Bytes::from_static(raw.as_bytes())));
    let res = send(&s, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(body["object"], "chat.completion");

    let seen = mock.last_request().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.query.as_deref(), Some("trace=1&b=2"));
    assert_eq!(&seen.body[..], raw.as_bytes());
    assert_eq!(
        seen.header("content-length"),
        Some(raw.len().to_string().as_str())
    );
}

#[tokio::test]
async fn a_changed_payload_is_serialized_once_with_its_new_length() {
    let mock = MockUpstream::start().await;
    let s = settings(&mock.url());
    let mut payload = Payload::new(Bytes::from_static(
        br#"{"model":"p.gpt-4o-mini","max_tokens":3}"#,
    ));
    payload.set("model", "gpt-4o-mini").unwrap();
    let mut req = Request::post("/chat/completions")
        .body(Full::default())
        .unwrap();
    req.extensions_mut().insert(payload);
    assert_eq!(send(&s, req).await.status(), StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(&seen.body[..], br#"{"model":"gpt-4o-mini","max_tokens":3}"#);
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("content-length"), Some("38"));
}

#[tokio::test]
async fn a_streaming_request_body_is_forwarded_untouched() {
    let mock = MockUpstream::builder()
        .json("/v1/audio/transcriptions", json!({"text": "hi"}))
        .start()
        .await;
    let s = settings(&mock.url());
    let multipart =
        "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b--\r\n";
    let req = Request::post("/audio/transcriptions")
        .header("content-type", "multipart/form-data; boundary=b")
        .body(Full::from(multipart))
        .unwrap();
    assert_eq!(send(&s, req).await.status(), StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(
        seen.header("content-type"),
        Some("multipart/form-data; boundary=b")
    );
    assert_eq!(&seen.body[..], multipart.as_bytes());
}

#[tokio::test]
async fn caller_credentials_and_hop_by_hop_headers_never_reach_the_upstream() {
    let mock = MockUpstream::start().await;
    let s = settings(&mock.url());
    let mut req = Request::get("/models")
        .header("authorization", "Bearer caller-secret")
        .header("cookie", "session=caller")
        .header("api-key", "caller-key")
        .header("x-api-key", "caller-key")
        .header("proxy-authorization", "Basic abc")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("te", "trailers")
        .header("accept-encoding", "gzip")
        .header("openai-organization", "org-1")
        .body(Full::default())
        .unwrap();
    let mut extra = UpstreamHeaders::default();
    extra.insert(
        HeaderStep::Auth,
        "authorization",
        HeaderValue::from_static("Bearer sk-upstream"),
    );
    extra.insert(
        HeaderStep::Custom,
        "x-added",
        HeaderValue::from_static("yes"),
    );
    req.extensions_mut().insert(extra);
    assert_eq!(send(&s, req).await.status(), StatusCode::OK);

    let seen = mock.last_request().unwrap();
    assert_eq!(seen.header("authorization"), Some("Bearer sk-upstream"));
    assert_eq!(seen.header("x-added"), Some("yes"));
    // The caller cannot move the gateway's key to another organization.
    assert_eq!(seen.header("openai-organization"), None);
    for gone in [
        "cookie",
        "api-key",
        "x-api-key",
        "proxy-authorization",
        "x-hop",
        "te",
        "accept-encoding",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(seen.header("host"), Some(mock.addr().to_string().as_str()));
}

#[tokio::test]
async fn without_upstream_headers_no_authorization_is_sent() {
    let mock = MockUpstream::start().await;
    let s = settings(&mock.url());
    let req = Request::get("/models")
        .header("authorization", "Bearer caller-secret")
        .body(Full::default())
        .unwrap();
    send(&s, req).await;
    assert_eq!(mock.last_request().unwrap().header("authorization"), None);
}

#[tokio::test]
async fn response_hop_by_hop_headers_and_cookies_are_removed() {
    let mock = MockUpstream::builder()
        .any(
            "/v1/models",
            Reply::json(json!({"data": []}))
                .with_header("set-cookie", "upstream=1")
                .with_header("keep-alive", "timeout=5")
                .with_header("proxy-authenticate", "Basic")
                .with_header("x-request-id", "req-1"),
        )
        .start()
        .await;
    let res = send(
        &settings(&mock.url()),
        Request::get("/models").body(Full::default()).unwrap(),
    )
    .await;
    // The gateway's own request id is `x-request-id`: the upstream's is renamed.
    assert_eq!(res.headers()["x-upstream-request-id"], "req-1");
    assert!(!res.headers().contains_key("x-request-id"));
    for gone in ["set-cookie", "keep-alive", "proxy-authenticate"] {
        assert!(
            !res.headers().contains_key(gone),
            "{gone} reached the caller"
        );
    }
    // No copy of the socket's addresses rides on every response (the connector reports none).
    assert!(
        res.extensions()
            .get::<hyper_util::client::legacy::connect::HttpInfo>()
            .is_none()
    );
}

#[tokio::test]
async fn upstream_errors_pass_through_with_their_status_and_body() {
    let mock = MockUpstream::builder()
        .status(
            "/v1/chat/completions",
            429,
            json!({"error": {"message": "slow down", "type": "rate_limit"}}),
        )
        .start()
        .await;
    let res = send(&settings(&mock.url()), json_post("/chat/completions", "{}")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body_text(res).await,
        r#"{"error":{"message":"slow down","type":"rate_limit"}}"#
    );
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_json_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let res = send(
        &settings(&format!("http://127.0.0.1:{port}/v1")),
        json_post("/chat/completions", "{}"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1")
    );
}

#[tokio::test]
async fn a_silent_upstream_is_a_504_json_error_after_the_idle_timeout() {
    let mock = MockUpstream::builder()
        .never_answer("/v1/chat/completions")
        .start()
        .await;
    let s = settings(&mock.url());
    let mut req = json_post("/chat/completions", "{}");
    req.extensions_mut()
        .insert(RequestTimeout(Some(Duration::from_millis(200))));
    let started = tokio::time::Instant::now();
    let res = send(&s, req).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: Value = serde_json::from_str(&body_text(res).await).unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The timed-out request was dropped, and with it the upstream connection.
    tokio::time::timeout(Duration::from_secs(10), mock.wait_for_disconnects(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_idle_timeout_comes_from_the_connection_settings() {
    let mock = MockUpstream::builder()
        .never_answer("/v1/chat/completions")
        .start()
        .await;
    let s = SettingsSource {
        base_urls: Some(vec![mock.url()]),
        timeout: Some(Some(Duration::from_secs(1))),
        ..Default::default()
    }
    .build()
    .unwrap();
    let res = send(&s, json_post("/chat/completions", "{}")).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn the_first_sse_event_arrives_before_the_upstream_has_sent_the_last() {
    // The mock sends one event and then holds the stream open: the caller can only see that
    // event if the proxy relays frames as they arrive.
    let mock = MockUpstream::builder()
        .sse("/v1/chat/completions", Sse::chunks("m", 5).hang_after(1))
        .start()
        .await;
    let res = send(&settings(&mock.url()), json_post("/chat/completions", "{}")).await;
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert!(!res.headers().contains_key("content-length"));
    let mut body = Box::pin(res.into_body());
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the first event did not arrive while the upstream held the rest")
        .unwrap()
        .unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(
        text.starts_with("data: ") && text.contains("tok0"),
        "{text}"
    );
    assert_eq!(mock.disconnects(), 0);
}

#[tokio::test]
async fn every_event_arrives_in_order_as_sent() {
    let mock = MockUpstream::builder()
        .sse(
            "/v1/chat/completions",
            Sse::chunks("m", 20).gap(Duration::from_millis(2)),
        )
        .start()
        .await;
    let text =
        body_text(send(&settings(&mock.url()), json_post("/chat/completions", "{}")).await).await;
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 22, "{text}"); // 20 pieces, the finish chunk, [DONE]
    for (i, event) in events.iter().take(20).enumerate() {
        assert!(event.contains(&format!("\"tok{i}\"")), "event {i}: {event}");
    }
    assert_eq!(events[21], "data: [DONE]");
}

#[tokio::test]
async fn the_caller_hanging_up_mid_stream_closes_the_upstream_connection() {
    let mock = MockUpstream::builder()
        .sse("/v1/chat/completions", Sse::chunks("m", 5).hang_after(1))
        .start()
        .await;
    let res = send(&settings(&mock.url()), json_post("/chat/completions", "{}")).await;
    let mut body = Box::pin(res.into_body());
    body.frame().await.unwrap().unwrap();
    drop(body);
    tokio::time::timeout(Duration::from_secs(10), mock.wait_for_disconnects(1))
        .await
        .expect("the upstream never saw the caller go away");
}

#[tokio::test]
async fn an_upstream_reset_mid_stream_ends_with_a_terminal_error_event() {
    let mock = MockUpstream::builder()
        .sse("/v1/chat/completions", Sse::chunks("m", 5).reset_after(2))
        .start()
        .await;
    let res = send(&settings(&mock.url()), json_post("/chat/completions", "{}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = body_text(res).await;
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3, "{text}");
    assert!(events[1].contains("tok1"));
    let last: Value = serde_json::from_str(events[2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn a_stalled_stream_ends_with_a_terminal_error_event_after_the_idle_timeout() {
    let mock = MockUpstream::builder()
        .sse("/v1/chat/completions", Sse::chunks("m", 5).hang_after(2))
        .start()
        .await;
    let s = settings(&mock.url());
    let mut req = json_post("/chat/completions", "{}");
    req.extensions_mut()
        .insert(RequestTimeout(Some(Duration::from_millis(300))));
    let text = body_text(send(&s, req).await).await;
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3, "{text}");
    assert!(
        events[2].contains("upstream_stream_error") && events[2].contains("stalled"),
        "{text}"
    );
}

#[tokio::test]
async fn a_long_stream_that_keeps_flowing_outlives_the_idle_timeout() {
    // 12 events 50 ms apart take ~600 ms; the idle timeout is 300 ms.
    let mock = MockUpstream::builder()
        .sse(
            "/v1/chat/completions",
            Sse::chunks("m", 12).gap(Duration::from_millis(50)),
        )
        .start()
        .await;
    let s = settings(&mock.url());
    let mut req = json_post("/chat/completions", "{}");
    req.extensions_mut()
        .insert(RequestTimeout(Some(Duration::from_millis(300))));
    let text = body_text(send(&s, req).await).await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("error"));
}

#[tokio::test]
async fn a_broken_plain_body_fails_instead_of_ending_cleanly() {
    let mock = MockUpstream::builder()
        .sse(
            "/v1/files",
            Sse::chunks("m", 3)
                .reset_after(1)
                .content_type("application/json"),
        )
        .start()
        .await;
    let res = send(
        &settings(&mock.url()),
        Request::get("/files").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Not an event stream: the break must surface as a body error (hyper then closes the
    // caller's connection), never as a short body that looks complete.
    let err = res.into_body().collect().await.unwrap_err();
    assert!(
        err.to_string().contains("upstream connection 0 failed"),
        "{err}"
    );
}

#[tokio::test]
async fn no_selected_connection_is_a_500_not_a_panic() {
    let res = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .service(Upstream::new())
        .oneshot(
            Request::get("/models")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_resolve_override_sends_a_public_host_to_a_local_address() {
    let mock = MockUpstream::start().await;
    let s = settings(&format!("http://api.openai.com:{}/v1", mock.addr().port()));
    let upstream = Upstream::builder()
        .resolve("api.openai.com", std::net::Ipv4Addr::LOCALHOST.into())
        .build();
    let mut req = Request::get("/models")
        .body(Full::<Bytes>::default())
        .unwrap();
    select(&mut req, &s);
    let res = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .service(upstream)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(
        seen.header("host"),
        Some(format!("api.openai.com:{}", mock.addr().port()).as_str())
    );
}

#[tokio::test]
async fn a_request_with_an_absolute_uri_and_no_connection_goes_to_that_uri() {
    let mock = MockUpstream::builder()
        .json(
            "/oauth2/token",
            json!({"access_token": "t", "expires_in": 3600}),
        )
        .start()
        .await;
    let req = Request::post(format!("{}/oauth2/token", mock.root_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", "Basic kept-in-direct-mode")
        .body(Full::from("grant_type=client_credentials"))
        .unwrap();
    let res = ServiceExt::<Request<Full<Bytes>>>::oneshot(Upstream::new(), req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(&seen.body[..], b"grant_type=client_credentials");
    assert_eq!(
        seen.header("authorization"),
        Some("Basic kept-in-direct-mode")
    );
}

/// `AIOHTTP_POOL_CONNECTIONS_PER_HOST`: at most that many requests reach one host at a time;
/// the next waits until an answer's body is done with, and a host apart is not held up.
#[tokio::test(flavor = "multi_thread")]
async fn requests_in_flight_per_host_are_limited() {
    let mock = MockUpstream::builder()
        .never_answer("/v1/chat/completions")
        .sse("/v1/stream", Sse::chunks("m", 3).hang_after(1))
        .start()
        .await;
    let other = MockUpstream::builder().start().await;
    let upstream = Upstream::builder().max_in_flight_per_host(2).build();
    let s = settings(&mock.url());
    let call = |path: &str, settings: &Settings| {
        let mut req = Request::post(path).body(Full::new(Bytes::new())).unwrap();
        select(&mut req, settings);
        upstream.clone().oneshot(req)
    };
    let wait_for = |n: usize, path: &'static str| {
        let mock = &mock;
        async move {
            for _ in 0..500 {
                if mock.count(path) >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{path} never had {n} requests");
        }
    };
    // A stream whose body stays open holds its place; one request that never answers holds
    // the other.
    let streaming = tokio::spawn(call("/stream", &s));
    wait_for(1, "/v1/stream").await;
    let stuck = tokio::spawn(call("/chat/completions", &s));
    wait_for(1, "/v1/chat/completions").await;
    let third = tokio::spawn(call("/chat/completions", &s));
    // Another host is not held up.
    call("/models", &settings(&other.url())).await.unwrap();
    assert_eq!(other.count("/v1/models"), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mock.count("/v1/chat/completions"),
        1,
        "the third went out early"
    );
    // The stream's body is dropped: its place goes to the third.
    let body = streaming.await.unwrap().unwrap();
    drop(body);
    wait_for(2, "/v1/chat/completions").await;
    stuck.abort();
    third.abort();
}

#[tokio::test]
async fn the_answer_carries_none_of_the_requests_extensions() {
    // The answer reuses the request's extension map, emptied: what the layers below put on
    // the request (the caller, the payload, a marker here) is not on the answer.
    #[derive(Clone, Debug)]
    struct Marker;
    let mock = MockUpstream::start().await;
    let mut req = json_post("/chat/completions", r#"{"model":"m"}"#);
    req.extensions_mut().insert(Marker);
    req.extensions_mut()
        .insert(Payload::new(Bytes::from_static(br#"{"model":"m"}"#)));
    let res = send(&settings(&mock.url()), req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.extensions().get::<Marker>().is_none());
    assert!(res.extensions().get::<Payload>().is_none());
    assert!(res.extensions().get::<SelectedConnection>().is_none());
}
