//! Observability through the real gateway: `/metrics` scraped over a socket and read with a
//! Prometheus text parser; token counts from answers and streams, per user; streams accounted
//! when they end (completed, broken by the upstream, left by the caller); `--metrics-listen`;
//! `GATEWAY_STREAM_USAGE`.
//!
//! The tests of this file share one process, so one Prometheus recorder: each test uses
//! users and models of its own and asserts on their series only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{answer, get, post_json, send, start_with, temp_dir};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use openai_gateway::{Args, RunningGateway};
use prometheus_parse::{Scrape, Value};
use serde_json::json;
use tower_openai_test_util::{MockUpstream, Sse};

fn authed(mut req: Request<Full<Bytes>>, key: &str) -> Request<Full<Bytes>> {
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

/// A gateway with users `{prefix}-alice`, `{prefix}-bob` (keys `sk-{prefix}-alice`, …) and
/// an admin `{prefix}-root`, access control bypassed, in front of `urls`.
async fn gateway(
    prefix: &str,
    urls: &[String],
    configs: serde_json::Value,
    env: &[(&str, &str)],
) -> RunningGateway {
    let users: String = ["alice", "bob"]
        .iter()
        .map(|u| format!("[[users]]\nid = \"{prefix}-{u}\"\napi_key = \"sk-{prefix}-{u}\"\n\n"))
        .collect();
    let text = format!(
        "{users}[[users]]\nid = \"{prefix}-root\"\nrole = \"admin\"\napi_key = \"sk-{prefix}-root\"\n"
    );
    let path = temp_dir().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let urls = urls.join(";");
    let configs = configs.to_string();
    let mut pairs = vec![
        ("OPENAI_API_BASE_URLS", urls.as_str()),
        ("OPENAI_API_CONFIGS", configs.as_str()),
        ("BYPASS_MODEL_ACCESS_CONTROL", "true"),
    ];
    pairs.extend_from_slice(env);
    start_with(
        Args {
            config: Some(path),
            ..Args::default()
        },
        &pairs,
    )
    .await
}

async fn scrape(url: &str, key: Option<&str>) -> Scrape {
    let mut req = get(url);
    if let Some(key) = key {
        req = authed(req, key);
    }
    let res = answer(req).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(
        res.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    let text = res.text();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// The value of the one sample named `name` whose labels include `labels`; 0 when none.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
    matching.first().copied().unwrap_or(0.0)
}

/// Read a streamed answer to its end; its text.
async fn stream_text(req: Request<Full<Bytes>>) -> String {
    let res = send(req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn metrics_count_requests_tokens_per_user_and_each_stream_outcome() {
    let ok = MockUpstream::builder().models(["m1"]).start().await;
    let broken = MockUpstream::builder()
        .models(["m1"])
        .sse(
            "/v1/chat/completions",
            Sse::chat("m1", &["a", "b", "c", "d"], false).reset_after(2),
        )
        .start()
        .await;
    let hanging = MockUpstream::builder()
        .models(["m1"])
        .sse(
            "/v1/chat/completions",
            Sse::chat("m1", &["a", "b", "c"], false).hang_after(1),
        )
        .start()
        .await;
    let gw = gateway(
        "t1",
        &[ok.url(), broken.url(), hanging.url()],
        json!({"1": {"prefix_id": "broken"}, "2": {"prefix_id": "hang"}}),
        &[],
    )
    .await;
    let chat = format!("{}/chat/completions", gw.url());

    // A plain answer: usage {5, 6} from the mock.
    let res = answer(authed(post_json(&chat, r#"{"model":"m1"}"#), "sk-t1-alice")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["usage"]["prompt_tokens"], 5);
    // A stream that asked for usage: its last chunk carries it.
    let text = stream_text(authed(
        post_json(
            &chat,
            r#"{"model":"m1","stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        "sk-t1-alice",
    ))
    .await;
    let usage_line = text
        .lines()
        .find(|l| l.contains(r#""usage":{"#))
        .expect("a usage chunk");
    let usage: serde_json::Value =
        serde_json::from_str(usage_line.trim_start_matches("data: ")).unwrap();
    let streamed_output = usage["usage"]["completion_tokens"].as_f64().unwrap();
    // Bob's answer is counted under bob.
    let res = answer(authed(post_json(&chat, r#"{"model":"m1"}"#), "sk-t1-bob")).await;
    assert_eq!(res.status, StatusCode::OK);

    // A stream the upstream breaks: the caller gets the terminal error event.
    let text = stream_text(authed(
        post_json(&chat, r#"{"model":"broken.m1","stream":true}"#),
        "sk-t1-alice",
    ))
    .await;
    assert!(text.contains("upstream_stream_error"), "{text}");

    // A stream the caller leaves after its first chunk.
    let res = send(authed(
        post_json(&chat, r#"{"model":"hang.m1","stream":true}"#),
        "sk-t1-alice",
    ))
    .await;
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some());
    drop(body);

    let metrics_url = format!("http://{}/metrics", gw.addr());
    // /metrics is for admins.
    assert_eq!(
        answer(get(&metrics_url)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        answer(authed(get(&metrics_url), "sk-t1-alice"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // The caller's hang-up reaches the gateway asynchronously: wait for it.
    let mut s = scrape(&metrics_url, Some("sk-t1-root")).await;
    for _ in 0..100 {
        if value(&s, "gateway_requests_total", &[("model", "hang.m1")]) == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s = scrape(&metrics_url, Some("sk-t1-root")).await;
    }

    let chat_m = [
        ("route", "chat/completions"),
        ("model", "m1"),
        ("connection", "0"),
    ];
    assert_eq!(
        value(
            &s,
            "gateway_requests_total",
            &[chat_m[0], chat_m[1], chat_m[2], ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        value(&s, "gateway_request_duration_seconds_count", &chat_m),
        3.0
    );
    assert_eq!(
        value(&s, "gateway_time_to_first_byte_seconds_count", &chat_m),
        3.0
    );
    let tokens = |user: &str, direction: &str| {
        value(
            &s,
            "gateway_tokens_total",
            &[
                ("user", user),
                ("direction", direction),
                ("model", "m1"),
                ("connection", "0"),
            ],
        )
    };
    assert_eq!(tokens("t1-alice", "input"), 10.0);
    assert_eq!(tokens("t1-alice", "output"), 6.0 + streamed_output);
    assert_eq!(tokens("t1-bob", "input"), 5.0);
    assert_eq!(tokens("t1-bob", "output"), 6.0);

    assert_eq!(
        value(
            &s,
            "gateway_requests_total",
            &[("model", "broken.m1"), ("connection", "1")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "gateway_upstream_errors_total",
            &[("connection", "1"), ("kind", "stream")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "gateway_requests_total",
            &[("model", "hang.m1"), ("connection", "2")]
        ),
        1.0
    );
    // Other tests of this process share the stream series: at least ours are there, and
    // nothing of ours is still counted as in flight once every stream ended.
    assert!(
        value(
            &s,
            "gateway_stream_outcomes_total",
            &[("outcome", "upstream_broke")]
        ) >= 1.0
    );
    assert!(
        value(
            &s,
            "gateway_stream_outcomes_total",
            &[("outcome", "caller_left")]
        ) >= 1.0
    );
    assert!(
        value(
            &s,
            "gateway_stream_outcomes_total",
            &[("outcome", "completed")]
        ) >= 1.0
    );
    assert_eq!(
        value(&s, "gateway_connection_up", &[("connection", "0")]),
        1.0
    );
}

#[tokio::test]
async fn the_metrics_listener_serves_only_metrics_without_a_key() {
    let mock = MockUpstream::builder().models(["m"]).start().await;
    let gw = common::start_with_metrics_listener(&mock.url()).await;
    let addr = gw.metrics_addr().expect("a metrics listener");
    let s = scrape(&format!("http://{addr}/metrics"), None).await;
    assert!(
        s.samples
            .iter()
            .any(|s| s.metric == "gateway_connection_up")
    );
    let other = answer(get(&format!("http://{addr}/v1/models"))).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let post = answer(post_json(&format!("http://{addr}/metrics"), "{}")).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    // The main listener still serves it (single-user mode: the caller is an admin).
    let main = scrape(&format!("http://{}/metrics", gw.addr()), None).await;
    assert!(!main.samples.is_empty());
}

#[tokio::test]
async fn stream_usage_is_asked_for_and_the_extra_chunk_removed_for_callers_that_did_not_ask() {
    let mock = MockUpstream::builder().models(["m3"]).start().await;
    let gw = gateway(
        "t3",
        &[mock.url()],
        json!({}),
        &[("GATEWAY_STREAM_USAGE", "true")],
    )
    .await;
    let chat = format!("{}/chat/completions", gw.url());
    for (asked, body) in [
        (false, r#"{"model":"m3","stream":true}"#),
        (
            false,
            r#"{"model":"m3","stream":true,"stream_options":{"include_usage":false}}"#,
        ),
        (
            true,
            r#"{"model":"m3","stream":true,"stream_options":{"include_usage":true}}"#,
        ),
    ] {
        let text = stream_text(authed(post_json(&chat, body), "sk-t3-alice")).await;
        let sent = mock.last_request().unwrap().json();
        assert_eq!(sent["stream_options"]["include_usage"], true, "{sent}");
        assert_eq!(text.contains(r#""usage":{"#), asked, "{body}: {text}");
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    }
    // Non-streamed chats are sent as they came.
    let res = answer(authed(post_json(&chat, r#"{"model":"m3"}"#), "sk-t3-bob")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        mock.last_request().unwrap().body,
        Bytes::from(r#"{"model":"m3"}"#)
    );

    let s = scrape(&format!("http://{}/metrics", gw.addr()), Some("sk-t3-root")).await;
    // Three streams counted for alice, although she asked only once.
    assert_eq!(
        value(
            &s,
            "gateway_tokens_total",
            &[("user", "t3-alice"), ("direction", "input")]
        ),
        15.0
    );
}

#[tokio::test]
async fn without_stream_usage_the_payload_is_what_the_caller_sent() {
    let mock = MockUpstream::builder().models(["m4"]).start().await;
    let gw = gateway("t4", &[mock.url()], json!({}), &[]).await;
    let body = r#"{"model":"m4","stream":true}"#;
    let text = stream_text(authed(
        post_json(&format!("{}/chat/completions", gw.url()), body),
        "sk-t4-alice",
    ))
    .await;
    assert!(!text.contains(r#""usage":{"#));
    assert_eq!(mock.last_request().unwrap().body, Bytes::from(body));
}

#[tokio::test]
async fn every_answer_is_counted_under_its_route_refusals_and_the_model_list_included() {
    let up = MockUpstream::builder().models(["m1"]).start().await;
    let gw = gateway("routes", &[up.url()], serde_json::json!({}), &[]).await;
    let metrics = format!("http://{}/metrics", gw.addr());
    let count = |scrape: &Scrape, route: &str, status: &str| {
        value(
            scrape,
            "gateway_requests_total",
            &[("route", route), ("status", status), ("model", "")],
        )
    };
    let before = scrape(&metrics, Some("sk-routes-root")).await;
    let base = gw.url();
    let list = answer(authed(get(&format!("{base}/models")), "sk-routes-alice")).await;
    assert_eq!(list.status, StatusCode::OK);
    // Refused above the usage layer: an unknown model, a path that is not accepted.
    let unknown = answer(authed(
        post_json(&format!("{base}/chat/completions"), r#"{"model":"nope"}"#),
        "sk-routes-alice",
    ))
    .await;
    // (404 here: access control is bypassed, so the model is plainly unknown.)
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let odd = answer(authed(
        post_json(&format!("{base}//chat/completions"), r#"{"model":"m1"}"#),
        "sk-routes-alice",
    ))
    .await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST);
    let after = scrape(&metrics, Some("sk-routes-root")).await;
    for (route, status) in [
        ("models", "200"),
        ("chat/completions", "404"),
        ("passthrough", "400"),
    ] {
        assert!(
            count(&after, route, status) >= count(&before, route, status) + 1.0,
            "{route} {status}"
        );
    }
}
