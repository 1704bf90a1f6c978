//! Admin routes, persisted settings and hot reload (Open WebUI rules C-4, C-5).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use openai_gateway::{Args, Gateway, GatewayConfig};
use serde_json::json;
use tower_openai_test_util::{MockUpstream, Sse};

use common::*;

const ADMIN_AND_USER: &str = "[[users]]\nid = \"root\"\nrole = \"admin\"\napi_key = \"sk-root\"\n\n[[users]]\nid = \"alice\"\napi_key = \"sk-alice\"\n";

fn config_file(dir: &std::path::Path, extra: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, format!("{ADMIN_AND_USER}{extra}")).unwrap();
    path
}

async fn gateway(
    dir: &std::path::Path,
    env_pairs: &[(&str, &str)],
) -> openai_gateway::RunningGateway {
    let args = Args {
        config: Some(config_file(dir, "")),
        data_dir: Some(dir.join("data")),
        ..Args::default()
    };
    start_with(args, env_pairs).await
}

fn as_root(
    mut req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    req.headers_mut()
        .insert("authorization", "Bearer sk-root".parse().unwrap());
    req
}

fn admin_url(gw: &openai_gateway::RunningGateway, path: &str) -> String {
    format!("http://{}/openai/{path}", gw.addr())
}

#[tokio::test]
async fn cfg1_the_config_is_for_admins_with_keys_in_plain_text() {
    let dir = temp_dir();
    let gw = gateway(
        &dir,
        &[
            (
                "OPENAI_API_BASE_URLS",
                "http://127.0.0.1:9/v1;http://127.0.0.1:10/v1",
            ),
            ("OPENAI_API_KEYS", "sk-one"),
        ],
    )
    .await;
    let res = answer(as_root(get(&admin_url(&gw, "config")))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.json(),
        json!({
            "ENABLE_OPENAI_API": true,
            "OPENAI_API_BASE_URLS": ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"],
            "OPENAI_API_KEYS": ["sk-one", ""],
            "OPENAI_API_CONFIGS": {},
        })
    );
    let mut alice = get(&admin_url(&gw, "config"));
    alice
        .headers_mut()
        .insert("authorization", "Bearer sk-alice".parse().unwrap());
    let res = answer(alice).await;
    assert_eq!(
        (res.status, error_code(&res)),
        (StatusCode::FORBIDDEN, "admin_only".to_owned())
    );
    assert_eq!(
        answer(get(&admin_url(&gw, "config"))).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong_method = answer(as_root(post_json(&admin_url(&gw, "config"), "{}"))).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&wrong_method), "method_not_allowed");
    let wrong_method = answer(as_root(get(&admin_url(&gw, "config/update")))).await;
    assert_eq!(
        (wrong_method.status, error_code(&wrong_method)),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed".to_owned()
        )
    );
}

#[tokio::test]
async fn an_update_is_read_back_routes_at_once_and_survives_a_restart() {
    let old = MockUpstream::builder().models(["old-model"]).start().await;
    let new = MockUpstream::builder().models(["new-model"]).start().await;
    let dir = temp_dir();
    let gw = gateway(&dir, &[("OPENAI_API_BASE_URLS", &old.url())]).await;
    // Warm the catalog on the old settings.
    assert_eq!(
        answer(as_root(post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"old-model"}"#
        )))
        .await
        .status,
        StatusCode::OK
    );

    let update = json!({
        "ENABLE_OPENAI_API": true,
        "OPENAI_API_BASE_URLS": [new.url(), "http://127.0.0.1:9/v1"],
        "OPENAI_API_KEYS": ["sk-new", "sk-x", "sk-extra-is-dropped"],
        "OPENAI_API_CONFIGS": {"0": {"prefix_id": "n"}, "1": {"enable": false}, "2": {"prefix_id": "gone"}, "http://legacy/v1": {}},
    });
    let res = answer(as_root(post_json(
        &admin_url(&gw, "config/update"),
        &update.to_string(),
    )))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let expected = json!({
        "ENABLE_OPENAI_API": true,
        "OPENAI_API_BASE_URLS": [new.url(), "http://127.0.0.1:9/v1"],
        "OPENAI_API_KEYS": ["sk-new", "sk-x"],
        "OPENAI_API_CONFIGS": {"0": {"prefix_id": "n"}, "1": {"enable": false}},
    });
    assert_eq!(res.json(), expected);
    assert_eq!(
        answer(as_root(get(&admin_url(&gw, "config")))).await.json(),
        expected
    );

    // The next request sees the new settings: a new catalog, the new key.
    let res = answer(as_root(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"n.new-model"}"#,
    )))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let seen = new.last_request().unwrap();
    assert_eq!(
        (seen.json()["model"].clone(), seen.header("authorization")),
        (json!("new-model"), Some("Bearer sk-new"))
    );
    assert_eq!(
        answer(as_root(post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"old-model"}"#
        )))
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // Restart on the same data dir: the persisted settings win over the environment.
    assert!(gw.shutdown(Duration::from_secs(10)).await);
    let again = gateway(&dir, &[("OPENAI_API_BASE_URLS", &old.url())]).await;
    assert_eq!(
        answer(as_root(get(&admin_url(&again, "config"))))
            .await
            .json(),
        expected
    );
    drop(again);
    // Unless persistence is turned off.
    let fresh = gateway(
        &dir,
        &[
            ("OPENAI_API_BASE_URLS", &old.url()),
            ("ENABLE_PERSISTENT_CONFIG", "false"),
        ],
    )
    .await;
    assert_eq!(
        answer(as_root(get(&admin_url(&fresh, "config"))))
            .await
            .json()["OPENAI_API_BASE_URLS"],
        json!([old.url()])
    );
}

#[tokio::test]
async fn an_invalid_update_changes_nothing() {
    let dir = temp_dir();
    let gw = gateway(&dir, &[("OPENAI_API_BASE_URLS", "http://127.0.0.1:9/v1")]).await;
    let before = answer(as_root(get(&admin_url(&gw, "config")))).await.json();
    for (body, field) in [
        (
            json!({"OPENAI_API_KEYS": [], "OPENAI_API_CONFIGS": {}}),
            "OPENAI_API_BASE_URLS",
        ),
        (
            json!({"OPENAI_API_BASE_URLS": ["http://a/v1"], "OPENAI_API_CONFIGS": {}}),
            "OPENAI_API_KEYS",
        ),
        (
            json!({"OPENAI_API_BASE_URLS": ["http://a/v1"], "OPENAI_API_KEYS": []}),
            "OPENAI_API_CONFIGS",
        ),
        (
            json!({"OPENAI_API_BASE_URLS": "http://a/v1", "OPENAI_API_KEYS": [], "OPENAI_API_CONFIGS": {}}),
            "OPENAI_API_BASE_URLS",
        ),
        (
            json!({"OPENAI_API_BASE_URLS": ["not a url"], "OPENAI_API_KEYS": [], "OPENAI_API_CONFIGS": {}}),
            "OPENAI_API_BASE_URLS[0]",
        ),
        (
            json!({"OPENAI_API_BASE_URLS": ["http://a/v1"], "OPENAI_API_KEYS": [], "OPENAI_API_CONFIGS": {"0": {"auth_type": "magic"}}}),
            "auth_type",
        ),
        (
            json!({"OPENAI_API_BASE_URLS": ["http://a/v1"], "OPENAI_API_KEYS": [], "OPENAI_API_CONFIGS": {"0": {"headers": {"bad name": "x"}}}}),
            "headers.bad name",
        ),
        (
            json!({"OPENAI_API_BASE_URLS": ["http://a/v1"], "OPENAI_API_KEYS": [], "OPENAI_API_CONFIGS": {}, "ENABLE_OPENAI_API": "yes"}),
            "ENABLE_OPENAI_API",
        ),
    ] {
        let res = answer(as_root(post_json(
            &admin_url(&gw, "config/update"),
            &body.to_string(),
        )))
        .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}");
        let message = res.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(field), "{field}: {message}");
    }
    let res = answer(as_root(post_json(
        &admin_url(&gw, "config/update"),
        "not json",
    )))
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer(as_root(get(&admin_url(&gw, "config")))).await.json(),
        before
    );
    assert!(
        !dir.join("data/config.json").exists(),
        "an invalid update was persisted"
    );
}

#[tokio::test]
async fn a_missing_enable_flag_keeps_the_current_value() {
    let dir = temp_dir();
    let gw = gateway(&dir, &[("ENABLE_OPENAI_API", "false")]).await;
    let body = json!({"OPENAI_API_BASE_URLS": ["http://a/v1"], "OPENAI_API_KEYS": ["k"], "OPENAI_API_CONFIGS": {}});
    let res = answer(as_root(post_json(
        &admin_url(&gw, "config/update"),
        &body.to_string(),
    )))
    .await;
    assert_eq!(res.json()["ENABLE_OPENAI_API"], false);
    let body = json!({"ENABLE_OPENAI_API": true, "OPENAI_API_BASE_URLS": ["http://a/v1"], "OPENAI_API_KEYS": ["k"], "OPENAI_API_CONFIGS": {}});
    answer(as_root(post_json(
        &admin_url(&gw, "config/update"),
        &body.to_string(),
    )))
    .await;
    let body = json!({"OPENAI_API_BASE_URLS": ["http://a/v1"], "OPENAI_API_KEYS": ["k"], "OPENAI_API_CONFIGS": {}});
    let res = answer(as_root(post_json(
        &admin_url(&gw, "config/update"),
        &body.to_string(),
    )))
    .await;
    assert_eq!(res.json()["ENABLE_OPENAI_API"], true);
}

#[tokio::test]
async fn a_stream_in_flight_during_an_update_finishes_on_the_old_settings() {
    let old = MockUpstream::builder()
        .models(["m"])
        .sse(
            "/v1/chat/completions",
            Sse::chunks("m", 10).gap(Duration::from_millis(40)),
        )
        .start()
        .await;
    let new = MockUpstream::builder().models(["m"]).start().await;
    let dir = temp_dir();
    let gw = gateway(&dir, &[("OPENAI_API_BASE_URLS", &old.url())]).await;
    let res = send(as_root(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"m","stream":true}"#,
    )))
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let reader = tokio::spawn(async move { res.into_body().collect().await.map(|c| c.to_bytes()) });

    let body = json!({"OPENAI_API_BASE_URLS": [new.url()], "OPENAI_API_KEYS": [""], "OPENAI_API_CONFIGS": {}});
    assert_eq!(
        answer(as_root(post_json(
            &admin_url(&gw, "config/update"),
            &body.to_string()
        )))
        .await
        .status,
        StatusCode::OK
    );
    let next = answer(as_root(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"m"}"#,
    )))
    .await;
    assert_eq!(next.status, StatusCode::OK);
    assert_eq!(new.count("/v1/chat/completions"), 1);

    let streamed = String::from_utf8(reader.await.unwrap().unwrap().to_vec()).unwrap();
    assert!(
        streamed.contains("tok9") && streamed.ends_with("data: [DONE]\n\n"),
        "{streamed}"
    );
    assert_eq!(old.count("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn a_crash_between_write_and_rename_leaves_the_old_file_and_a_corrupt_file_stops_start_up() {
    let dir = temp_dir();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let persisted = json!({"ENABLE_OPENAI_API": true, "OPENAI_API_BASE_URLS": ["http://127.0.0.1:7/v1"], "OPENAI_API_KEYS": ["k"], "OPENAI_API_CONFIGS": {}});
    std::fs::write(data.join("config.json"), persisted.to_string()).unwrap();
    // What a crash after writing the temp file, before the rename, leaves behind.
    std::fs::write(data.join("config.json.tmp"), "{\"ENABLE_OPENAI_API\": tr").unwrap();
    let gw = gateway(&dir, &[]).await;
    assert_eq!(
        answer(as_root(get(&admin_url(&gw, "config")))).await.json()["OPENAI_API_BASE_URLS"],
        json!(["http://127.0.0.1:7/v1"])
    );
    drop(gw);

    std::fs::write(data.join("config.json"), "{ not json").unwrap();
    let args = Args {
        config: Some(config_file(&dir, "")),
        data_dir: Some(data.clone()),
        listen: Some("127.0.0.1:0".into()),
        ..Args::default()
    };
    let err = Gateway::new(GatewayConfig::load(&args, &env(&[])).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("corrupt"),
        "{err}"
    );
    // The corrupt file is still there, untouched.
    assert_eq!(
        std::fs::read_to_string(data.join("config.json")).unwrap(),
        "{ not json"
    );
}

#[tokio::test]
async fn v4_verify_checks_a_plain_connection_with_its_key_and_saves_nothing() {
    let mock = MockUpstream::builder().models(["x"]).start().await;
    let dir = temp_dir();
    let gw = gateway(&dir, &[]).await;
    let before = answer(as_root(get(&admin_url(&gw, "config")))).await.json();
    let body =
        json!({"url": mock.url(), "key": "sk-check", "config": {"headers": {"X-Probe": "1"}}});
    let res = answer(as_root(post_json(
        &admin_url(&gw, "verify"),
        &body.to_string(),
    )))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["data"][0]["id"], "x");
    let seen = mock.last_request().unwrap();
    assert_eq!(
        (
            seen.path.as_str(),
            seen.header("authorization"),
            seen.header("x-probe")
        ),
        ("/v1/models", Some("Bearer sk-check"), Some("1"))
    );
    assert_eq!(
        answer(as_root(get(&admin_url(&gw, "config")))).await.json(),
        before
    );
    assert!(!dir.join("data/config.json").exists());
}

#[tokio::test]
async fn v3_verify_an_azure_connection() {
    let mock = MockUpstream::builder().models(["gpt-4o"]).start().await;
    let dir = temp_dir();
    let gw = gateway(&dir, &[]).await;
    let body = json!({"url": mock.root_url(), "key": "az-key", "config": {"azure": true, "api_version": ""}});
    let res = answer(as_root(post_json(
        &admin_url(&gw, "verify"),
        &body.to_string(),
    )))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.path, "/openai/models");
    assert_eq!(
        seen.query.as_deref(),
        Some("api-version=2023-03-15-preview")
    );
    assert_eq!(seen.header("api-key"), Some("az-key"));
}

#[tokio::test]
async fn v5_verify_passes_upstream_errors_through_and_maps_transport_failures() {
    let refusing = MockUpstream::builder()
        .status("/v1/models", 401, json!({"error": {"message": "bad key"}}))
        .start()
        .await;
    let silent = MockUpstream::builder()
        .never_answer("/v1/models")
        .start()
        .await;
    let dir = temp_dir();
    let gw = gateway(&dir, &[("AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST", "1")]).await;
    let verify = |url: String| {
        let target = admin_url(&gw, "verify");
        async move {
            answer(as_root(post_json(
                &target,
                &json!({"url": url, "key": ""}).to_string(),
            )))
            .await
        }
    };
    let res = verify(refusing.url()).await;
    assert_eq!(
        (res.status, res.json()["error"]["message"].clone()),
        (StatusCode::UNAUTHORIZED, json!("bad key"))
    );
    let res = verify(dead_url()).await;
    assert_eq!(
        (res.status, error_code(&res)),
        (StatusCode::BAD_GATEWAY, "upstream_unavailable".to_owned())
    );
    let res = verify(silent.url()).await;
    assert_eq!(
        (res.status, error_code(&res)),
        (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout".to_owned())
    );
    let res = answer(as_root(post_json(
        &admin_url(&gw, "verify"),
        r#"{"key":""}"#,
    )))
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn status_shows_each_connections_health_with_the_upstreams_own_reason() {
    let good = MockUpstream::builder()
        .models(["a", "b"])
        .require_key("sk-good")
        .start()
        .await;
    let wrong = MockUpstream::builder()
        .models(["c"])
        .require_key("sk-right")
        .start()
        .await;
    let urls = format!("{};{}", good.url(), wrong.url());
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &urls),
            ("OPENAI_API_KEYS", "sk-good;sk-wrong"),
        ],
    )
    .await;
    let res = answer(get(&format!("http://{}/openai/status", gw.addr()))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let v = res.json();
    let conns = v["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2, "{v}");
    assert_eq!(conns[0]["up"], true, "{v}");
    assert_eq!(conns[0]["models"], 2, "{v}");
    assert_eq!(conns[0]["last_fetch"]["ok"], true, "{v}");
    // A wrong key reads as a wrong key, not as an empty model list.
    assert_eq!(conns[1]["up"], false, "{v}");
    assert_eq!(conns[1]["models"], 0, "{v}");
    let error = conns[1]["last_fetch"]["error"].as_str().unwrap();
    assert!(error.contains("401"), "{error}");
    assert!(error.contains("Incorrect API key provided"), "{error}");
    assert!(!res.text().contains("sk-wrong") && !res.text().contains("sk-good"));
}
