//! Spend and budgets through the real gateway, over sockets: exact costs of JSON answers,
//! streams and cached tokens; the spend report four ways; a user budget and a key budget
//! each refusing the first request after they are reached (nothing forwarded); the estimate
//! charged for a stream cut without usage; the usage chunk asked for a budgeted caller and
//! removed; a budget held across two gateways on one Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{answer, error_code, get, post_json, start_toml, temp_dir};
use http::{Request, StatusCode};
use http_body_util::Full;
use openai_gateway::RunningGateway;
use serde_json::{Value, json};
use tower_openai_test_util::{MockUpstream, Sse};

/// `m` at 2.5 / 10 / 1.25 USD per million input / output / cached input tokens.
const PRICES: &str = "[[prices]]\nmodel = \"m\"\ninput = 2.5\noutput = 10.0\ncached_input = 1.25\n\n\
                      [[prices]]\nmodel = \"c*\"\ninput = 2.5\noutput = 10.0\ncached_input = 1.25\n";

fn authed(mut req: Request<Full<Bytes>>, key: &str) -> Request<Full<Bytes>> {
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

/// A gateway on `urls`, with `PRICES`, admin `root` (`sk-root`), and `extra` TOML.
async fn gateway(urls: &[String], extra: &str, env: &[(&str, &str)]) -> RunningGateway {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let text = format!(
        "[openai]\nbase_urls = [{}]\nbypass_model_access_control = true\n\n{PRICES}\n\
         [[users]]\nid = \"root\"\nrole = \"admin\"\napi_key = \"sk-root\"\n\n{extra}",
        urls.join(", ")
    );
    start_toml(&text, env).await
}

async fn chat(gw: &RunningGateway, key: &str, body: Value) -> common::Answer {
    answer(authed(
        post_json(&format!("{}/chat/completions", gw.url()), &body.to_string()),
        key,
    ))
    .await
}

/// `GET /admin/spend?group_by=…` (today), as `{group: row}`.
async fn spend(gw: &RunningGateway, group_by: &str) -> serde_json::Map<String, Value> {
    let url = format!(
        "{}/admin/spend?group_by={group_by}",
        gw.url().trim_end_matches("/v1")
    );
    let res = answer(authed(get(&url), "sk-root")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row[group_by].as_str().unwrap().to_owned(), row.clone()))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test]
async fn answers_cost_their_tokens_and_the_report_groups_them_four_ways() {
    let plain = MockUpstream::builder().models(["m"]).start().await;
    // 1000 prompt tokens, 400 of them cached, 200 completion tokens.
    let cached = MockUpstream::builder()
        .models(["c1"])
        .json(
            "/v1/chat/completions",
            json!({"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 200,
                   "prompt_tokens_details": {"cached_tokens": 400}}}),
        )
        .start()
        .await;
    let gw = gateway(
        &[plain.url(), cached.url()],
        "[[users]]\nid = \"bob\"\napi_key = \"sk-bob\"\n",
        &[],
    )
    .await;
    // JSON: 5 × 2.5 + 6 × 10 per million.
    assert_eq!(
        chat(&gw, "sk-bob", json!({"model": "m"})).await.status,
        StatusCode::OK
    );
    // A stream that asked for usage: 5 × 2.5 + 5 × 10.
    let stream = chat(
        &gw,
        "sk-bob",
        json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert!(stream.text().contains("\"usage\""), "{}", stream.text());
    // Cached tokens at their price: 600 × 2.5 + 400 × 1.25 + 200 × 10 (a `c*` prefix).
    assert_eq!(
        chat(&gw, "sk-root", json!({"model": "c1"})).await.status,
        StatusCode::OK
    );
    // A model without a price costs nothing but is counted.
    let by_model = spend(&gw, "model").await;
    let m = &by_model["m"];
    assert_eq!(m["requests"], 2);
    assert_eq!(m["input_tokens"], 10);
    assert_eq!(m["output_tokens"], 11);
    assert!(
        close(m["cost_usd"].as_f64().unwrap(), 0.0000725 + 0.0000625),
        "{m}"
    );
    let c = &by_model["c1"];
    assert_eq!(
        (c["input_tokens"].clone(), c["cached_tokens"].clone()),
        (json!(1000), json!(400))
    );
    assert!(close(c["cost_usd"].as_f64().unwrap(), 0.004), "{c}");
    let by_user = spend(&gw, "user").await;
    assert!(close(
        by_user["bob"]["cost_usd"].as_f64().unwrap(),
        0.000135
    ));
    assert!(close(by_user["root"]["cost_usd"].as_f64().unwrap(), 0.004));
    let by_key = spend(&gw, "key").await;
    assert_eq!(by_key.len(), 2, "{by_key:?}");
    assert!(by_key.values().all(|k| k["estimated_requests"] == 0));
    let by_day = spend(&gw, "day").await;
    assert_eq!(by_day.len(), 1);
    let today = by_day.values().next().unwrap();
    assert_eq!(today["requests"], 3);
    assert!(close(today["cost_usd"].as_f64().unwrap(), 0.004135));
    // Days outside the range, and bad parameters.
    let root = gw.url().trim_end_matches("/v1").to_owned();
    let past = answer(authed(
        get(&format!("{root}/admin/spend?from=2001-01-01&to=2001-01-31")),
        "sk-root",
    ))
    .await;
    assert_eq!(past.json()["data"], json!([]));
    for bad in [
        "group_by=team",
        "from=yesterday",
        "to=2026-13-01",
        "limit=3",
    ] {
        let res = answer(authed(get(&format!("{root}/admin/spend?{bad}")), "sk-root")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Admins only.
    let res = answer(authed(get(&format!("{root}/admin/spend")), "sk-bob")).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_user_budget_and_a_key_budget_refuse_the_first_request_after_they_are_reached() {
    let mock = MockUpstream::builder().models(["m"]).start().await;
    // 0.0001 USD a day: each chat costs 0.0000725, so the third is refused.
    let gw = gateway(
        &[mock.url()],
        "[[users]]\nid = \"bob\"\napi_key = \"sk-bob\"\nbudget = { usd = 0.0001, period = \"day\" }\n\n\
         [[users]]\nid = \"carol\"\napi_key = \"sk-carol\"\n",
        &[],
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            chat(&gw, "sk-bob", json!({"model": "m"})).await.status,
            StatusCode::OK
        );
    }
    let refused = chat(&gw, "sk-bob", json!({"model": "m"})).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&refused), "budget_exceeded");
    assert_eq!(refused.json()["error"]["type"], "insufficient_quota");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(mock.count("/v1/chat/completions"), 2);
    // Carol has no budget.
    assert_eq!(
        chat(&gw, "sk-carol", json!({"model": "m"})).await.status,
        StatusCode::OK
    );

    // A key with a budget of its own: carol's other key is not held to it.
    let root = gw.url().trim_end_matches("/v1").to_owned();
    let created = answer(authed(
        post_json(
            &format!("{root}/admin/keys"),
            r#"{"user": "carol", "budget": {"usd": 0.0001, "period": "month"}}"#,
        ),
        "sk-root",
    ))
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let key = created.json()["key"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(
            chat(&gw, &key, json!({"model": "m"})).await.status,
            StatusCode::OK
        );
    }
    let refused = chat(&gw, &key, json!({"model": "m"})).await;
    assert_eq!(error_code(&refused), "budget_exceeded");
    assert_eq!(
        chat(&gw, "sk-carol", json!({"model": "m"})).await.status,
        StatusCode::OK
    );
    // Bob's two, carol's two, the key's two.
    assert_eq!(mock.count("/v1/chat/completions"), 6);
    // The spend report has the key's two answers under its id.
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(spend(&gw, "key").await[&id]["requests"], 2);
}

#[tokio::test]
async fn a_budgeted_callers_streams_are_metered_and_a_cut_stream_is_charged_an_estimate() {
    let mock = MockUpstream::builder().models(["m"]).start().await;
    let cut = MockUpstream::builder()
        .models(["m-cut"])
        .sse(
            "/v1/chat/completions",
            Sse::chat("m-cut", &["abcdefgh", "ijklmnop", "qrstuvwx"], false).reset_after(2),
        )
        .start()
        .await;
    let gw = gateway(
        &[mock.url(), cut.url()],
        "[[prices]]\nmodel = \"m-cut\"\ninput = 1000.0\noutput = 1000.0\n\n\
         [[users]]\nid = \"bob\"\napi_key = \"sk-bob\"\nbudget = { usd = 100.0, period = \"total\" }\n",
        &[],
    )
    .await;
    // Bob did not ask for usage: it is asked for, and its chunk is not passed on.
    let stream = chat(&gw, "sk-bob", json!({"model": "m", "stream": true})).await;
    assert_eq!(stream.status, StatusCode::OK);
    assert!(!stream.text().contains("\"usage\""), "{}", stream.text());
    let sent = mock.last_request().unwrap().json();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    // The upstream breaks off before any usage: the request's and the answer's text are
    // charged, 4 bytes a token, and marked estimated.
    let message = "x".repeat(400);
    let _ = chat(
        &gw,
        "sk-bob",
        json!({"model": "m-cut", "stream": true, "messages": [{"role": "user", "content": message}]}),
    )
    .await;
    let by_model = spend(&gw, "model").await;
    let exact = &by_model["m"];
    assert_eq!(
        (
            exact["input_tokens"].clone(),
            exact["output_tokens"].clone()
        ),
        (json!(5), json!(5))
    );
    assert_eq!(exact["estimated_requests"], 0);
    let estimated = &by_model["m-cut"];
    assert_eq!(estimated["estimated_requests"], 1, "{estimated}");
    assert_eq!(estimated["input_tokens"], 100, "{estimated}");
    // The two chunks that arrived: 16 bytes of text.
    assert_eq!(estimated["output_tokens"], 4, "{estimated}");
    assert!(
        close(estimated["cost_usd"].as_f64().unwrap(), 0.104),
        "{estimated}"
    );
}

mod support;

/// Wait (at most 2 s) until Redis holds at least `nanos` for `account`'s spend today.
async fn wait_for_spend(redis: &support::Redis, account: &str, nanos: u64) {
    use std::io::{Read, Write};
    use tower_openai_ratelimit::{Clock, Period, SystemClock};
    let key = format!(
        "openai-gateway:spend:{account}:{}",
        Period::Day.id(SystemClock.now())
    );
    let read = || {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        write!(conn, "GET {key}\r\nQUIT\r\n").unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        // `$N\r\n<value>\r\n` or `$-1` (none).
        out.lines()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    for _ in 0..40 {
        if read() >= nanos {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "Redis never counted {nanos} nano-dollars for {account} (it has {})",
        read()
    );
}

#[tokio::test]
async fn a_budget_holds_across_two_gateways_on_one_redis() {
    let Some(redis) = support::redis_or_skip() else {
        return;
    };
    let mock = MockUpstream::builder().models(["m"]).start().await;
    let bob = "[[users]]\nid = \"bob\"\napi_key = \"sk-bob\"\nbudget = { usd = 0.0001, period = \"day\" }\n";
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str())];
    // Two gateways, each with a database of its own: only Redis is shared.
    let a = gateway(&[mock.url()], bob, &env).await;
    let b = gateway(&[mock.url()], bob, &env).await;
    assert_eq!(
        chat(&a, "sk-bob", json!({"model": "m"})).await.status,
        StatusCode::OK
    );
    wait_for_spend(&redis, "user:bob", 72_500).await;
    assert_eq!(
        chat(&b, "sk-bob", json!({"model": "m"})).await.status,
        StatusCode::OK
    );
    wait_for_spend(&redis, "user:bob", 145_000).await;
    // Spent on B, refused on A (and on B).
    for gw in [&a, &b] {
        let refused = chat(gw, "sk-bob", json!({"model": "m"})).await;
        assert_eq!(error_code(&refused), "budget_exceeded");
    }
    assert_eq!(mock.count("/v1/chat/completions"), 2);
}

#[test]
fn spend_recorded_before_sigterm_is_there_after_a_restart_and_still_counts() {
    let (_rt, mock) = support::mock_upstream();
    let dir = temp_dir();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[openai]\nbase_urls = [\"{}\"]\nbypass_model_access_control = true\n\n{PRICES}\n\
             [[users]]\nid = \"root\"\nrole = \"admin\"\napi_key = \"sk-root\"\n\n\
             [[users]]\nid = \"bob\"\napi_key = \"sk-bob\"\n\
             budget = {{ usd = 0.0002, period = \"month\" }}\n",
            mock.url()
        ),
    )
    .unwrap();
    let database = format!("sqlite://{}", dir.join("spend.db").display());
    let start = || {
        support::Gateway::start("spend-sigterm", |cmd| {
            cmd.arg("--config")
                .arg(&config)
                .env("DATABASE_URL", &database)
                .env_remove("REDIS_URL");
        })
    };
    let chat = |g: &support::Gateway, key: &str| {
        support::status_and_body(&g.post(
            "/v1/chat/completions",
            &format!("authorization: Bearer {key}\r\n"),
            r#"{"model": "m"}"#,
        ))
    };
    let g = start();
    // Bob's third chat is admitted (0.000145 < 0.0002) and reaches his budget.
    for key in ["sk-root", "sk-bob", "sk-bob", "sk-bob"] {
        let (status, body) = chat(&g, key);
        assert_eq!(status, 200, "{body}");
    }
    // Well within the 5 s between writes: only the shutdown's write can have kept them.
    assert!(g.terminate().success());
    let g = start();
    let (status, body) = g.get(
        "/admin/spend?group_by=user",
        "authorization: Bearer sk-root\r\n",
    );
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    let users: Vec<(Value, Value)> = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["user"].clone(), u["requests"].clone()))
        .collect();
    assert_eq!(
        users,
        [(json!("bob"), json!(3)), (json!("root"), json!(1))],
        "{report}"
    );
    assert!(
        close(
            report["data"][0]["cost_usd"].as_f64().unwrap(),
            3.0 * 0.0000725
        ),
        "{report}"
    );
    // The restarted process holds bob to what he spent before it started.
    let (status, body) = chat(&g, "sk-bob");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("budget_exceeded"), "{body}");
    assert_eq!(mock.count("/v1/chat/completions"), 4);
}

#[tokio::test]
async fn the_example_price_list_loads_and_the_longest_prefix_wins() {
    let mock = MockUpstream::builder()
        .models(["gpt-4o-mini-2024-07-18"])
        .start()
        .await;
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/prices-openai.toml"
    ))
    .unwrap();
    // With the test's own two prices (`m`, `c*`): eleven in all.
    let gw = gateway(&[mock.url()], &example, &[]).await;
    let root = gw.url().trim_end_matches("/v1").to_owned();
    let prices = answer(authed(get(&format!("{root}/admin/prices")), "sk-root")).await;
    assert_eq!(prices.json()["data"].as_array().unwrap().len(), 11);
    // 5 × 0.15 + 6 × 0.60 per million: gpt-4o-mini*, not gpt-4o*.
    let res = chat(&gw, "sk-root", json!({"model": "gpt-4o-mini-2024-07-18"})).await;
    assert_eq!(res.status, StatusCode::OK);
    let by_model = spend(&gw, "model").await;
    let cost = by_model["gpt-4o-mini-2024-07-18"]["cost_usd"]
        .as_f64()
        .unwrap();
    assert!(close(cost, 0.00000435), "{cost}");
}

/// The same across two `openai-gateway` processes (the binary, two OS processes), each with
/// a database of its own: only Redis is shared.
#[test]
fn a_budget_holds_across_two_processes_on_one_redis() {
    let Some(redis) = support::redis_or_skip() else {
        return;
    };
    let (_rt, mock) = support::mock_upstream();
    let dir = temp_dir();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[openai]\nbase_urls = [\"{}\"]\nbypass_model_access_control = true\n\n{PRICES}\n\
             [[users]]\nid = \"bob\"\napi_key = \"sk-bob\"\n\
             budget = {{ usd = 0.0001, period = \"day\" }}\n",
            mock.url()
        ),
    )
    .unwrap();
    let start = |name: &str| {
        let database = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
        support::Gateway::start("spend-redis", |cmd| {
            cmd.arg("--config")
                .arg(&config)
                .env("DATABASE_URL", &database)
                .env("REDIS_URL", redis.url());
        })
    };
    let (a, b) = (start("a"), start("b"));
    let chat = |g: &support::Gateway| {
        support::status_and_body(&g.post(
            "/v1/chat/completions",
            "authorization: Bearer sk-bob\r\n",
            r#"{"model": "m"}"#,
        ))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(chat(&a).0, 200);
    runtime.block_on(wait_for_spend(&redis, "user:bob", 72_500));
    assert_eq!(chat(&b).0, 200);
    runtime.block_on(wait_for_spend(&redis, "user:bob", 145_000));
    for g in [&a, &b] {
        let (status, body) = chat(g);
        assert_eq!(status, 429, "{body}");
        assert!(body.contains("budget_exceeded"), "{body}");
    }
}
