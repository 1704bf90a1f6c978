//! Model groups through the real gateway (`GATEWAY_MODEL_GROUPS=true`), with several mock
//! upstreams over real sockets: spread by weight, priority tiers, failover before the head for
//! each retryable status and for a refused connection (streamed and not), no retry after the
//! head or of 400/401/404, cooldown and probe, `Retry-After`, the attempt limit, the retry
//! budget, the list with `urlIdxs`, and first-wins when groups are off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{answer, dead_url, get, post_json, send, start_with, temp_dir};
use http::StatusCode;
use http_body_util::BodyExt;
use openai_gateway::{Args, RunningGateway};
use serde_json::{Value, json};
use tower_openai_test_util::{MockUpstream, Reply, Sse};

const CHAT: &str = "/v1/chat/completions";

/// A gateway in front of `urls`, each serving model `g` (static `model_ids`, so a dead
/// connection is still a member), with `configs` merged into each connection's config.
async fn grouped(urls: &[String], configs: &[Value], env: &[(&str, &str)]) -> RunningGateway {
    let mut all = serde_json::Map::new();
    for (i, _) in urls.iter().enumerate() {
        let mut c = json!({"model_ids": ["g"]});
        if let Some(extra) = configs.get(i) {
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
        }
        all.insert(i.to_string(), c);
    }
    let urls = urls.join(";");
    let configs = Value::Object(all).to_string();
    let mut pairs = vec![
        ("OPENAI_API_BASE_URLS", urls.as_str()),
        ("OPENAI_API_CONFIGS", configs.as_str()),
        ("GATEWAY_MODEL_GROUPS", "true"),
    ];
    pairs.extend_from_slice(env);
    start_with(Args::default(), &pairs).await
}

async fn chat(gw: &RunningGateway, body: &str) -> (StatusCode, String) {
    let res = answer(post_json(&format!("{}/chat/completions", gw.url()), body)).await;
    (res.status, res.text())
}

async fn failing(status: u16) -> MockUpstream {
    MockUpstream::builder()
        .status(CHAT, status, json!({"error": {"message": "nope"}}))
        .start()
        .await
}

async fn working() -> MockUpstream {
    MockUpstream::builder().start().await
}

#[tokio::test]
async fn requests_spread_by_weight() {
    // Two upstreams of the same speed (2 ms an answer, so that scheduling noise on a busy
    // machine is small beside it): the load-aware part sees no difference, the weights
    // decide.
    let same_speed = || {
        MockUpstream::builder()
            .delay(CHAT, Duration::from_millis(2))
            .start()
    };
    let (a, b) = (same_speed().await, same_speed().await);
    let gw = grouped(
        &[a.url(), b.url()],
        &[json!({"weight": 3}), json!({"weight": 1})],
        &[],
    )
    .await;
    let n = 400;
    for _ in 0..n {
        assert_eq!(chat(&gw, r#"{"model":"g"}"#).await.0, StatusCode::OK);
    }
    let share = a.count(CHAT) as f64 / n as f64;
    assert_eq!(a.count(CHAT) + b.count(CHAT), n);
    // Binomial(400, 0.75): three standard deviations are 0.065.
    assert!((share - 0.75).abs() < 0.075, "connection 0 got {share}");
}

#[tokio::test]
async fn a_lower_priority_tier_waits_until_the_better_one_cools_down() {
    let (a, b) = (working().await, working().await);
    let gw = grouped(
        &[a.url(), b.url()],
        &[json!({}), json!({"priority": 1})],
        &[],
    )
    .await;
    for _ in 0..20 {
        assert_eq!(chat(&gw, r#"{"model":"g"}"#).await.0, StatusCode::OK);
    }
    assert_eq!((a.count(CHAT), b.count(CHAT)), (20, 0));
}

#[tokio::test]
async fn each_retryable_status_fails_over_before_the_head_streamed_or_not() {
    for status in [429, 500, 502, 503, 504] {
        let bad = MockUpstream::builder()
            .status(CHAT, status, json!({"error": {"message": "busy"}}))
            .start()
            .await;
        let good = working().await;
        let gw = grouped(
            &[bad.url(), good.url()],
            &[json!({}), json!({"priority": 1})],
            &[("GATEWAY_COOLDOWN_FAILURES", "1000")],
        )
        .await;
        let (got, text) = chat(&gw, r#"{"model":"g"}"#).await;
        assert_eq!(got, StatusCode::OK, "{status}: {text}");
        let res = send(post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"g","stream":true}"#,
        ))
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{status}");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(body.ends_with(b"data: [DONE]\n\n"), "{status}");
        assert_eq!((bad.count(CHAT), good.count(CHAT)), (2, 2), "{status}");
        // The same bytes were sent to both.
        assert_eq!(
            bad.requests_to(CHAT)[1].body,
            good.requests_to(CHAT)[1].body
        );
    }
}

#[tokio::test]
async fn a_refused_connection_fails_over() {
    let good = working().await;
    let gw = grouped(
        &[dead_url(), good.url()],
        &[json!({}), json!({"priority": 1})],
        &[],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(chat(&gw, r#"{"model":"g"}"#).await.0, StatusCode::OK);
    }
    assert_eq!(good.count(CHAT), 3);
}

#[tokio::test]
async fn no_retry_once_the_head_went_out_nor_of_400_401_404() {
    let breaking = MockUpstream::builder()
        .sse(CHAT, Sse::chunks("g", 4).reset_after(2))
        .start()
        .await;
    let good = working().await;
    let gw = grouped(
        &[breaking.url(), good.url()],
        &[json!({}), json!({"priority": 1})],
        &[],
    )
    .await;
    let res = send(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"g","stream":true}"#,
    ))
    .await;
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("upstream_stream_error"), "{text}");
    assert_eq!(good.count(CHAT), 0);

    for status in [400, 401, 404] {
        let bad = failing(status).await;
        let good = working().await;
        let gw = grouped(
            &[bad.url(), good.url()],
            &[json!({}), json!({"priority": 1})],
            &[],
        )
        .await;
        assert_eq!(chat(&gw, r#"{"model":"g"}"#).await.0.as_u16(), status);
        assert_eq!((bad.count(CHAT), good.count(CHAT)), (1, 0), "{status}");
    }
}

#[tokio::test]
async fn a_failing_connection_cools_down_then_gets_one_probe() {
    let bad = failing(503).await;
    let good = working().await;
    let gw = grouped(
        &[bad.url(), good.url()],
        &[json!({}), json!({"priority": 1})],
        &[
            ("GATEWAY_COOLDOWN_FAILURES", "2"),
            ("GATEWAY_COOLDOWN_SECONDS", "1"),
        ],
    )
    .await;
    // Two failures in a row cool it down; then it is skipped.
    for _ in 0..5 {
        assert_eq!(chat(&gw, r#"{"model":"g"}"#).await.0, StatusCode::OK);
    }
    assert_eq!(bad.count(CHAT), 2);
    let status = answer(get(&format!("http://{}/openai/status", gw.addr())))
        .await
        .json();
    let until = &status["connections"][0]["cooldown_until"];
    assert!(until.is_u64(), "{status}");
    assert!(
        status["connections"][1]["cooldown_until"].is_null(),
        "{status}"
    );
    // After the cooldown: exactly one probe, which fails and cools it down again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..5 {
        assert_eq!(chat(&gw, r#"{"model":"g"}"#).await.0, StatusCode::OK);
    }
    assert_eq!(bad.count(CHAT), 3);
    assert_eq!(good.count(CHAT), 10);
}

#[tokio::test]
async fn retry_after_cools_a_connection_down_at_once() {
    let limited = MockUpstream::builder()
        .any(
            CHAT,
            Reply::status(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": {"message": "slow down"}}),
            )
            .with_header("retry-after", "30"),
        )
        .start()
        .await;
    let good = working().await;
    let gw = grouped(
        &[limited.url(), good.url()],
        &[json!({}), json!({"priority": 1})],
        &[("GATEWAY_COOLDOWN_FAILURES", "1000")],
    )
    .await;
    for _ in 0..4 {
        assert_eq!(chat(&gw, r#"{"model":"g"}"#).await.0, StatusCode::OK);
    }
    assert_eq!(limited.count(CHAT), 1);
    let status = answer(get(&format!("http://{}/openai/status", gw.addr())))
        .await
        .json();
    let until = status["connections"][0]["cooldown_until"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 25..=now + 31).contains(&until), "{until} vs {now}");
}

#[tokio::test]
async fn attempts_stop_at_the_limit_and_the_last_answer_is_returned() {
    let mocks = [failing(503).await, failing(503).await, failing(503).await];
    let urls: Vec<String> = mocks.iter().map(MockUpstream::url).collect();
    let gw = grouped(
        &urls,
        &[],
        &[
            ("GATEWAY_MAX_ATTEMPTS", "2"),
            ("GATEWAY_COOLDOWN_FAILURES", "1000"),
        ],
    )
    .await;
    let (status, _) = chat(&gw, r#"{"model":"g"}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(mocks.iter().map(|m| m.count(CHAT)).sum::<usize>(), 2);
}

#[tokio::test]
async fn the_retry_budget_bounds_the_load_of_a_fully_failing_group() {
    let mocks = [failing(500).await, failing(500).await, failing(500).await];
    let urls: Vec<String> = mocks.iter().map(MockUpstream::url).collect();
    let gw = grouped(&urls, &[], &[("GATEWAY_COOLDOWN_FAILURES", "100000")]).await;
    let n = 300;
    for _ in 0..n {
        assert_eq!(
            chat(&gw, r#"{"model":"g"}"#).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    let attempts: usize = mocks.iter().map(|m| m.count(CHAT)).sum();
    // Without a budget: 900. With it: the first attempts, plus a reserve of 100 retries
    // (10 a second over 10 s) and 20 % of the first attempts.
    assert!(attempts >= n, "{attempts}");
    assert!(attempts <= n + 100 + n / 5 + 10, "{attempts}");
}

#[tokio::test]
async fn a_grouped_model_is_listed_once_with_every_connection() {
    let (a, b) = (working().await, working().await);
    let gw = grouped(&[a.url(), b.url()], &[], &[]).await;
    let list = answer(get(&format!("{}/models", gw.url()))).await.json();
    let g: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["id"] == "g")
        .collect();
    assert_eq!(g.len(), 1, "{list}");
    assert_eq!(g[0]["urlIdxs"], json!([0, 1]));
    assert_eq!(g[0]["urlIdx"], 0);
}

#[tokio::test]
async fn without_groups_the_first_connection_wins_as_in_open_webui() {
    let (a, b) = (working().await, working().await);
    let urls = format!("{};{}", a.url(), b.url());
    let configs = json!({"0": {"model_ids": ["g"]}, "1": {"model_ids": ["g"]}}).to_string();
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", urls.as_str()),
            ("OPENAI_API_CONFIGS", configs.as_str()),
        ],
    )
    .await;
    for _ in 0..10 {
        assert_eq!(chat(&gw, r#"{"model":"g"}"#).await.0, StatusCode::OK);
    }
    assert_eq!((a.count(CHAT), b.count(CHAT)), (10, 0));
    let list = answer(get(&format!("{}/models", gw.url()))).await.json();
    assert!(list["data"][0].get("urlIdxs").is_none(), "{list}");
}

#[tokio::test]
async fn one_callers_500s_do_not_cool_a_connection_down_for_everyone() {
    let bad = failing(500).await;
    let good = working().await;
    let users = temp_dir().join("users.toml");
    std::fs::write(
        &users,
        "[openai]\nbypass_model_access_control = true\n\
         [[users]]\nid = \"mallory\"\napi_key = \"sk-mallory\"\n\
         [[users]]\nid = \"bob\"\napi_key = \"sk-bob\"\n",
    )
    .unwrap();
    let urls = format!("{};{}", bad.url(), good.url());
    let configs =
        json!({"0": {"model_ids": ["g"]}, "1": {"model_ids": ["g"], "priority": 1}}).to_string();
    let gw = start_with(
        Args {
            config: Some(users),
            ..Args::default()
        },
        &[
            ("OPENAI_API_BASE_URLS", &urls),
            ("OPENAI_API_CONFIGS", &configs),
            ("GATEWAY_MODEL_GROUPS", "true"),
            ("GATEWAY_COOLDOWN_FAILURES", "2"),
        ],
    )
    .await;
    let chat_as = |key: &'static str| {
        let url = format!("{}/chat/completions", gw.url());
        async move {
            let mut req = post_json(&url, r#"{"model":"g","temperature":1e999}"#);
            req.headers_mut()
                .insert("authorization", format!("Bearer {key}").parse().unwrap());
            answer(req).await.status
        }
    };
    // Mallory's payload makes the preferred connection answer 500, again and again: each
    // fails over, and the connection stays in use for everyone.
    for _ in 0..5 {
        assert_eq!(chat_as("sk-mallory").await, StatusCode::OK);
    }
    assert_eq!(bad.count(CHAT), 5);
    // A 500 from a second caller too: now it is the connection, and it cools down.
    assert_eq!(chat_as("sk-bob").await, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(chat_as("sk-bob").await, StatusCode::OK);
    }
    assert_eq!(bad.count(CHAT), 6);
}
