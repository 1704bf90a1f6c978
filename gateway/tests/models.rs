//! The model catalog and routing through the real gateway, against several mock upstreams
//! (rule M-1 … M-11, CC-3, CC-5, E-2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use http::StatusCode;
use openai_gateway::{Args, Gateway, GatewayConfig};
use serde_json::{Value, json};
use tower_openai::settings::SettingsSource;
use tower_openai_test_util::{MockUpstream, Reply};

use common::*;

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn start_config(config: GatewayConfig) -> openai_gateway::RunningGateway {
    Gateway::new(config).await.unwrap().spawn().await.unwrap()
}

#[tokio::test]
async fn the_list_merges_every_connection_by_open_webuis_rules() {
    let a = MockUpstream::builder()
        .models(["llama3", "shared", "qwen"])
        .start()
        .await;
    let b = MockUpstream::builder()
        .models(["shared", "mistral", "only-b"])
        .start()
        .await;
    let c = MockUpstream::builder().models(["llama3"]).start().await;
    let disabled = MockUpstream::builder().models(["hidden"]).start().await;
    let urls = format!(
        "{};{};{};{};http://azure.invalid",
        a.url(),
        b.url(),
        c.url(),
        disabled.url()
    );
    let configs = json!({
        "2": {"prefix_id": "c", "tags": [{"name": "local"}], "connection_type": "local"},
        "3": {"enable": false},
        "4": {"model_ids": ["dep-1"], "azure": true},
    })
    .to_string();
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &urls),
            ("OPENAI_API_CONFIGS", &configs),
        ],
    )
    .await;

    let res = answer(get(&format!("{}/models", gw.url()))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["content-type"], "application/json");
    let list = res.json();
    assert_eq!(list["object"], "list");
    // Index order, arrival order, first wins (M-7); the prefix keeps c's llama3 apart.
    assert_eq!(
        ids(&list),
        [
            "llama3", "shared", "qwen", "mistral", "only-b", "c.llama3", "dep-1"
        ]
    );

    let data = list["data"].as_array().unwrap();
    let shared = &data[1];
    assert_eq!(shared["urlIdx"], 0);
    assert_eq!(shared["owned_by"], "openai");
    assert_eq!(shared["openai"]["owned_by"], "mock");
    assert_eq!(shared["connection_type"], "external");
    assert!(shared.get("tags").is_none());
    let prefixed = &data[5];
    assert_eq!(
        (prefixed["urlIdx"].clone(), prefixed["name"].clone()),
        (json!(2), json!("c.llama3"))
    );
    assert_eq!(prefixed["tags"], json!([{"name": "local"}]));
    assert_eq!(prefixed["connection_type"], "local");
    assert_eq!(data[6]["urlIdx"], 4);

    // The disabled connection was never asked; the static one needs no network.
    assert_eq!(disabled.count("/v1/models"), 0);
    assert_eq!(
        (
            a.count("/v1/models"),
            b.count("/v1/models"),
            c.count("/v1/models")
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn a_prefixed_model_reaches_its_upstream_with_the_bare_id() {
    let a = MockUpstream::builder().models(["llama3"]).start().await;
    let b = MockUpstream::builder()
        .models(["llama3", "gpt-a.b"])
        .start()
        .await;
    let urls = format!("{};{}", a.url(), b.url());
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &urls),
            ("OPENAI_API_CONFIGS", r#"{"1": {"prefix_id": "a"}}"#),
        ],
    )
    .await;
    let chat = |model: &str| {
        format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
    };

    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        &chat("a.llama3"),
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let seen = b.last_request().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.json()["model"], "llama3");
    assert_eq!(a.count("/v1/chat/completions"), 0);

    // The prefix elsewhere in the id is kept (Open WebUI would send "gpt-b").
    answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        &chat("a.gpt-a.b"),
    ))
    .await;
    assert_eq!(b.last_request().unwrap().json()["model"], "gpt-a.b");

    // The unprefixed id is connection 0's, and its body goes byte for byte.
    let raw = chat("llama3");
    answer(post_json(&format!("{}/chat/completions", gw.url()), &raw)).await;
    assert_eq!(&a.last_request().unwrap().body[..], raw.as_bytes());

    // Embeddings route by model with the prefix stripped too (fix of E-2).
    let res = answer(post_json(
        &format!("{}/embeddings", gw.url()),
        r#"{"model":"a.llama3","input":"x"}"#,
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        b.last_request().unwrap().json(),
        json!({"model": "llama3", "input": "x"})
    );
}

#[tokio::test]
async fn an_unknown_model_is_a_404_that_never_reaches_an_upstream() {
    let a = MockUpstream::builder().models(["llama3"]).start().await;
    let gw = start(&a.url()).await;
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"gpt-9"}"#,
    ))
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&res), "model_not_found");
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"messages":[]}"#,
    ))
    .await;
    assert_eq!(
        (res.status, error_code(&res)),
        (StatusCode::BAD_REQUEST, "missing_model".to_owned())
    );
    assert_eq!(a.count("/v1/chat/completions"), 0);
}

#[tokio::test]
async fn m6_an_api_openai_com_connection_hides_non_chat_models() {
    // The mock answers for api.openai.com through a resolve override: no real network.
    let mock = MockUpstream::builder()
        .models([
            "gpt-4o",
            "text-embedding-3-small",
            "tts-1-hd",
            "whisper-1",
            "dall-e-3",
            "davinci-002",
            "gpt-4o-transcribe",
            "gpt-image-1",
        ])
        .start()
        .await;
    let mut config = GatewayConfig::for_settings(SettingsSource {
        base_urls: Some(vec![format!(
            "http://api.openai.com:{}/v1",
            mock.addr().port()
        )]),
        ..Default::default()
    });
    config.resolve = vec![(
        "api.openai.com".to_owned(),
        std::net::Ipv4Addr::LOCALHOST.into(),
    )];
    let gw = start_config(config).await;
    let list = answer(get(&format!("{}/models", gw.url()))).await.json();
    assert_eq!(ids(&list), ["gpt-4o", "gpt-4o-transcribe", "gpt-image-1"]);
    // The per-connection list applies the same rule.
    let one = answer(get(&format!("{}/models/0", gw.url()))).await.json();
    assert_eq!(ids(&one), ["gpt-4o", "gpt-4o-transcribe", "gpt-image-1"]);
    assert_eq!(
        mock.last_request().unwrap().header("host"),
        Some(format!("api.openai.com:{}", mock.addr().port()).as_str())
    );
}

#[tokio::test]
async fn a_dead_connection_delays_the_first_list_by_its_timeout_once_and_then_never() {
    let alive = MockUpstream::builder().models(["alive"]).start().await;
    let dead = MockUpstream::builder()
        .never_answer("/v1/models")
        .start()
        .await;
    let urls = format!("{};{}", dead.url(), alive.url());
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &urls),
            ("AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST", "2"),
            ("MODELS_CACHE_TTL", "1"),
        ],
    )
    .await;

    let started = tokio::time::Instant::now();
    let list = answer(get(&format!("{}/models", gw.url()))).await.json();
    let first = started.elapsed();
    assert_eq!(ids(&list), ["alive"]);
    assert!(
        first >= Duration::from_secs(2) && first < Duration::from_secs(8),
        "first list took {first:?}"
    );

    // Later lists come from the cache, even while the dead connection is retried behind them.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await; // past the 1 s TTL
        let started = tokio::time::Instant::now();
        let list = answer(get(&format!("{}/models", gw.url()))).await.json();
        assert_eq!(ids(&list), ["alive"]);
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "a cached list waited {:?}",
            started.elapsed()
        );
    }
    // A chat for the live connection's model does not wait either.
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"alive"}"#,
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_cold_requests_make_one_fetch_per_connection() {
    let a = MockUpstream::builder()
        .models(["a1"])
        .delay("/v1/models", Duration::from_millis(200))
        .start()
        .await;
    let b = MockUpstream::builder()
        .models(["b1"])
        .delay("/v1/models", Duration::from_millis(200))
        .start()
        .await;
    let urls = format!("{};{}", a.url(), b.url());
    let gw = start_with(
        Args::default(),
        &[("OPENAI_API_BASE_URLS", &urls), ("MODELS_CACHE_TTL", "60")],
    )
    .await;
    let url = gw.url();
    let requests = (0..100).map(|i| {
        let url = url.clone();
        tokio::spawn(async move {
            if i % 2 == 0 {
                answer(get(&format!("{url}/models"))).await.status
            } else {
                answer(post_json(
                    &format!("{url}/chat/completions"),
                    r#"{"model":"b1"}"#,
                ))
                .await
                .status
            }
        })
    });
    for r in join_spawned(requests).await {
        assert_eq!(r, StatusCode::OK);
    }
    assert_eq!((a.count("/v1/models"), b.count("/v1/models")), (1, 1));
    assert_eq!(b.count("/v1/chat/completions"), 50);
}

async fn join_spawned<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn m11_one_connections_own_list() {
    let a = MockUpstream::builder().models(["x"]).start().await;
    let b = MockUpstream::builder().models(["y", "z"]).start().await;
    let broken = MockUpstream::builder()
        .status("/v1/models", 401, json!({"error": {"message": "bad key"}}))
        .start()
        .await;
    let urls = format!(
        "{};{};{};https://res.openai.azure.com",
        a.url(),
        b.url(),
        broken.url()
    );
    let configs =
        r#"{"1": {"prefix_id": "b"}, "3": {"azure": true, "model_ids": ["dep-1", "dep-2"]}}"#;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &urls),
            ("OPENAI_API_CONFIGS", configs),
        ],
    )
    .await;

    // Undecorated upstream answer: no prefix, no urlIdx.
    let one = answer(get(&format!("{}/models/1", gw.url()))).await.json();
    assert_eq!(ids(&one), ["y", "z"]);
    assert!(one["data"][0].get("urlIdx").is_none());
    // Azure: the deployments as strings, no call.
    let azure = answer(get(&format!("{}/openai/models/3", gw.addr_url())))
        .await
        .json();
    assert_eq!(azure, json!({"data": ["dep-1", "dep-2"], "object": "list"}));
    // Upstream errors keep their status and body.
    let res = answer(get(&format!("{}/models/2", gw.url()))).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.json()["error"]["message"], "bad key");
    // No such connection.
    let res = answer(get(&format!("{}/models/9", gw.url()))).await;
    assert_eq!(
        (res.status, error_code(&res)),
        (StatusCode::NOT_FOUND, "connection_not_found".to_owned())
    );
}

trait AddrUrl {
    fn addr_url(&self) -> String;
}

impl AddrUrl for openai_gateway::RunningGateway {
    fn addr_url(&self) -> String {
        format!("http://{}", self.addr())
    }
}

#[tokio::test]
async fn retrieving_one_model_by_id_works_like_openai() {
    let a = MockUpstream::builder()
        .models(["gpt-4o", "org/model"])
        .start()
        .await;
    let gw = start(&a.url()).await;
    let res = answer(get(&format!("{}/models/gpt-4o", gw.url()))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["id"], "gpt-4o");
    let res = answer(get(&format!("{}/models/org%2Fmodel", gw.url()))).await;
    assert_eq!(res.json()["id"], "org/model");
    let res = answer(get(&format!("{}/models/nope", gw.url()))).await;
    assert_eq!(
        (res.status, error_code(&res)),
        (StatusCode::NOT_FOUND, "model_not_found".to_owned())
    );
}

#[tokio::test]
async fn a_disabled_api_answers_503_on_the_list_and_routes_nothing() {
    let a = MockUpstream::builder().models(["m"]).start().await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &a.url()),
            ("ENABLE_OPENAI_API", "false"),
        ],
    )
    .await;
    // Open WebUI 0.7+ (0.6 listed nothing, M-1).
    let list = answer(get(&format!("{}/models", gw.url()))).await;
    assert_eq!(list.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(list.json()["error"]["code"], "openai_api_disabled");
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"m"}"#,
    ))
    .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.requests().is_empty());
}

#[tokio::test]
async fn discovery_fetches_send_no_caller_credentials() {
    let a = MockUpstream::builder().models(["m"]).start().await;
    let gw = start(&a.url()).await;
    let mut req = get(&format!("{}/models", gw.url()));
    req.headers_mut()
        .insert("authorization", "Bearer sk-caller".parse().unwrap());
    answer(req).await;
    assert_eq!(a.requests_to("/v1/models")[0].header("authorization"), None);
}

#[tokio::test]
async fn non_json_and_malformed_lists_contribute_nothing() {
    let html = MockUpstream::builder()
        .any(
            "/v1/models",
            Reply::Bytes {
                status: StatusCode::OK,
                content_type: "text/html".into(),
                body: "<html>".into(),
            },
        )
        .start()
        .await;
    let odd = MockUpstream::builder()
        .json("/v1/models", json!({"data": "not a list"}))
        .start()
        .await;
    let array = MockUpstream::builder()
        .json(
            "/v1/models",
            json!([{"id": "from-array"}, {"object": "no id"}]),
        )
        .start()
        .await;
    let urls = format!("{};{};{}", html.url(), odd.url(), array.url());
    let gw = start_with(Args::default(), &[("OPENAI_API_BASE_URLS", &urls)]).await;
    assert_eq!(
        ids(&answer(get(&format!("{}/models", gw.url()))).await.json()),
        ["from-array"]
    );
}

/// Open WebUI 0.7+: a connection's `provider` is on each of its listed models.
#[tokio::test]
async fn a_connections_provider_is_on_its_listed_models() {
    let a = MockUpstream::builder().models(["m"]).start().await;
    let b = MockUpstream::builder().models(["n"]).start().await;
    let urls = format!("{};{}", a.url(), b.url());
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &urls),
            ("OPENAI_API_CONFIGS", r#"{"0": {"provider": "vllm"}}"#),
        ],
    )
    .await;
    let list = answer(get(&format!("{}/models", gw.url()))).await.json();
    let models = list["data"].as_array().unwrap();
    let of = |id: &str| models.iter().find(|m| m["id"] == id).unwrap().clone();
    assert_eq!(of("m")["provider"], "vllm");
    assert!(of("n").get("provider").is_none());
}
