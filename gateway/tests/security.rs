//! Access control without holes (docs/security.md), through the real gateway over sockets:
//! the route table and the passthrough switch, odd paths, bodies the gateway cannot read,
//! multipart model routes, Azure deployment paths, the header allowlists both ways, request
//! ids, single-user mode's Host and Origin checks, CORS, the admin surface, and one answer
//! for unknown and forbidden models.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use openai_gateway::{Args, RunningGateway};
use serde_json::{Value, json};
use tower_openai_test_util::{MockUpstream, Reply};

use common::*;

const USERS: &str = r#"
[[users]]
id = "alice"
api_key = "sk-alice"

[[users]]
id = "root"
role = "admin"
api_key = "sk-root"

[[models]]
id = "up.allowed"
owner = "root"
access = "public"
"#;

/// A mock serving `allowed` and `secret` (exposed as `up.allowed` and `up.secret`), with
/// routes for the passthrough paths the tests try.
async fn mock() -> MockUpstream {
    let ok = || Reply::json(json!({"ok": true}));
    MockUpstream::builder()
        .models(["allowed", "secret"])
        .any("/v1/files", ok())
        .any("/v1/files/file-1", ok())
        .any("/v1/batches", ok())
        .any("/v1/model/info", ok())
        .any(
            "/v1/audio/transcriptions",
            Reply::json(json!({"text": "hi"})),
        )
        .any("/v1/audio/translations", Reply::json(json!({"text": "hi"})))
        .any("/v1/images/generations", ok())
        .any("/v1/moderations", ok())
        .any(
            "/v1/chat/completions",
            Reply::json(json!({"object": "chat.completion"}))
                .with_header("x-litellm-key-spend", "123.45")
                .with_header("x-request-id", "upstream-req-1")
                .with_header("x-ratelimit-remaining-requests", "99"),
        )
        .start()
        .await
}

/// A gateway with users (alice may use `up.allowed` only; root is an admin) in front of
/// `mock`, with these extra variables.
async fn gateway(mock: &MockUpstream, extra: &[(&str, &str)]) -> RunningGateway {
    gateway_with_users(mock, "", extra).await
}

/// [`gateway`], with these users besides alice and root.
async fn gateway_with_users(
    mock: &MockUpstream,
    more_users: &str,
    extra: &[(&str, &str)],
) -> RunningGateway {
    let text = format!(
        "[openai]\nbase_urls = [\"{}\"]\n[openai.configs.\"0\"]\nprefix_id = \"up\"\n{USERS}\n{more_users}",
        mock.url()
    );
    start_toml(&text, extra).await
}

fn authed(mut req: Request<Full<Bytes>>, key: &str) -> Request<Full<Bytes>> {
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

fn request(
    method: Method,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.body(Full::from(body.to_vec())).unwrap()
}

/// The requests the mock received, other than model-list fetches.
fn forwarded(mock: &MockUpstream) -> Vec<String> {
    mock.requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/models"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn multipart(parts: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "----gwtestboundary";
    let mut body = String::new();
    for (name, value) in parts {
        if *name == "file" {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n{value}\r\n"
            ));
        } else {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

#[tokio::test]
async fn the_passthrough_is_off_by_default_and_nothing_reaches_an_upstream() {
    let mock = mock().await;
    let gw = gateway(&mock, &[]).await;
    let base = gw.url();
    for (method, path) in [
        (Method::GET, "/files"),
        (Method::DELETE, "/files/file-1"),
        (Method::GET, "/chat/completions"),
        (Method::GET, "/model/info"),
        (Method::POST, "/batches"),
        (Method::GET, "/responses/resp_1"),
        (Method::POST, "/fine_tuning/jobs"),
    ] {
        for key in ["sk-alice", "sk-root"] {
            let body: &[u8] = if method == Method::POST {
                br#"{"model":"up.allowed","input_file_id":"f"}"#
            } else {
                b""
            };
            let res = answer(authed(
                request(
                    method.clone(),
                    &format!("{base}{path}"),
                    Some("application/json"),
                    body,
                ),
                key,
            ))
            .await;
            assert_eq!(
                res.status,
                StatusCode::FORBIDDEN,
                "{method} {path} as {key}"
            );
            assert_eq!(error_code(&res), "passthrough_disabled");
        }
        // Identity still comes first: no key is 401.
        let res = answer(request(method.clone(), &format!("{base}{path}"), None, b"")).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    assert_eq!(forwarded(&mock), Vec::<String>::new());
}

#[tokio::test]
async fn with_the_passthrough_on_a_json_model_is_still_checked() {
    let mock = mock().await;
    let gw = gateway(&mock, &[("ENABLE_OPENAI_API_PASSTHROUGH", "true")]).await;
    let base = gw.url();
    let res = answer(authed(
        get(&format!("{base}/files?purpose=batch")),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.path, "/v1/files");
    assert_eq!(seen.query.as_deref(), Some("purpose=batch"));
    // A JSON body's model routes and is checked on the passthrough too.
    let res = answer(authed(
        post_json(&format!("{base}/batches"), r#"{"model":"up.secret"}"#),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&res), "model_not_found");
    // A JSON body it cannot read is refused, not forwarded unread.
    let res = answer(authed(
        post_json(
            &format!("{base}/batches"),
            "\u{feff}{\"model\":\"up.secret\"}",
        ),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&res), "invalid_json");
    // Whatever its Content-Type says: an upstream may parse any body as JSON.
    for ct in [
        "text/plain",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
    ] {
        let res = answer(authed(
            Request::post(format!("{base}/batches"))
                .header("content-type", ct)
                .body(Full::from(" {\"model\":\"up.secret\"}"))
                .unwrap(),
            "sk-alice",
        ))
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{ct}");
        assert_eq!(error_code(&res), "model_not_found", "{ct}");
    }
    assert_eq!(forwarded(&mock), ["GET /v1/files"]);
    // An allowed model is routed (its prefix stripped); a body that is no JSON object
    // streams on as it came.
    let res = answer(authed(
        Request::post(format!("{base}/batches"))
            .header("content-type", "text/plain")
            .body(Full::from("{\"model\":\"up.allowed\"}"))
            .unwrap(),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(mock.last_request().unwrap().json()["model"], "allowed");
    let res = answer(authed(
        Request::post(format!("{base}/files"))
            .header("content-type", "application/octet-stream")
            .body(Full::from("RIFF{\"model\":\"up.secret\"}"))
            .unwrap(),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        &mock.last_request().unwrap().body[..],
        b"RIFF{\"model\":\"up.secret\"}"
    );
}

#[tokio::test]
async fn odd_paths_are_refused_before_routing() {
    let mock = mock().await;
    let gw = gateway(&mock, &[("ENABLE_OPENAI_API_PASSTHROUGH", "true")]).await;
    let addr = gw.addr();
    for path in [
        "/v1//chat/completions",
        "/v1/chat//completions",
        "/v1/./chat/completions",
        "/v1/files/../chat/completions",
        "/v1/%2e%2e/v1/chat/completions",
        "/v1/%2E/chat/completions",
        "/v1/chat%2Fcompletions",
        "/v1/chat%5ccompletions",
        "/v1/chat/complet%69ons",
        "/v1/Chat/Completions",
        "/v1/chat/completions/",
        "/v1/chat/completions;x=1",
        "/v1//models",
        "/openai//models",
        "/v1/audio%2ftranscriptions",
    ] {
        let res = answer(authed(
            post_json(&format!("http://{addr}{path}"), r#"{"model":"up.secret"}"#),
            "sk-alice",
        ))
        .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error_code(&res), "invalid_path", "{path}");
        let res = answer(authed(get(&format!("http://{addr}{path}")), "sk-alice")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "GET {path}");
    }
    assert_eq!(forwarded(&mock), Vec::<String>::new());
    // A model id may hold a slash, raw or encoded.
    let res = answer(authed(
        get(&format!("{}/models/up.allowed", gw.url())),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let res = answer(authed(
        get(&format!("{}/models/org%2Fmodel", gw.url())),
        "sk-root",
    ))
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

/// Anthropic's routes (`/v1/messages`, its `count_tokens`) in every other spelling are
/// refused as odd paths, never routed, translated or passed through (SPEC-0.11 Anthropic;
/// GATEWAY.md, refused input): only the exact paths are Messages requests.
#[tokio::test]
async fn odd_spellings_of_the_messages_routes_are_refused_before_routing() {
    let mock = mock().await;
    let gw = gateway(&mock, &[("ENABLE_OPENAI_API_PASSTHROUGH", "true")]).await;
    let addr = gw.addr();
    for path in [
        "/v1//messages",
        "/v1/./messages",
        "/v1/%2e/messages",
        "/v1/x/../messages",
        "/v1/messages/",
        "/v1/Messages",
        "/v1/messag%65s",
        "/v1/messages;x=1",
        "/v1/messages%2Fcount_tokens",
        "/v1/messages/count_tokens/",
        "/v1/messages//count_tokens",
        "/openai//messages",
    ] {
        let res = answer(authed(
            post_json(
                &format!("http://{addr}{path}"),
                r#"{"model":"up.secret","max_tokens":1,"messages":[]}"#,
            ),
            "sk-alice",
        ))
        .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error_code(&res), "invalid_path", "{path}");
    }
    assert_eq!(forwarded(&mock), Vec::<String>::new());
    // The exact route is a model route: the caller's access applies (alice may not use
    // up.secret), whichever way the key is presented.
    let res = answer(authed(
        post_json(
            &format!("http://{addr}/v1/messages"),
            r#"{"model":"up.secret","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(forwarded(&mock), Vec::<String>::new());
}

#[tokio::test]
async fn a_model_route_body_that_cannot_be_read_is_refused() {
    let mock = mock().await;
    let gw = gateway(&mock, &[]).await;
    let url = format!("{}/chat/completions", gw.url());
    for (body, code) in [
        ("\u{feff}{\"model\":\"up.secret\"}", "invalid_json"),
        (r#"{"model":"up.secret","temperature":NaN}"#, "invalid_json"),
        (
            r#"{"model":"up.secret"} {"model":"up.allowed"}"#,
            "invalid_json",
        ),
        (r#"{"model":"up.allowed"}x"#, "invalid_json"),
        ("", "invalid_json"),
        (r#"["up.secret"]"#, "invalid_body"),
        (r#"{"model":null}"#, "invalid_body"),
        (r#"{"model":["up.secret"]}"#, "invalid_body"),
        (
            r#"{"model":"up.allowed","model":"up.secret"}"#,
            "invalid_body",
        ),
        (r#"{"messages":[]}"#, "missing_model"),
    ] {
        let res = answer(authed(post_json(&url, body), "sk-alice")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(&res), code, "{body}");
    }
    // More than 4096 top-level members.
    let mut many = String::from(r#"{"model":"up.allowed""#);
    for i in 0..4096 {
        many.push_str(&format!(",\"k{i}\":0"));
    }
    many.push('}');
    let res = answer(authed(post_json(&url, &many), "sk-alice")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&res), "invalid_body");
    // A compressed body cannot be checked.
    let mut gz = authed(post_json(&url, r#"{"model":"up.allowed"}"#), "sk-alice");
    gz.headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    let res = answer(gz).await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(&res), "unsupported_media_type");
    assert_eq!(forwarded(&mock), Vec::<String>::new());
}

#[tokio::test]
async fn a_model_route_is_read_as_json_whatever_its_content_type_says() {
    let mock = mock().await;
    let gw = gateway(&mock, &[]).await;
    let url = format!("{}/chat/completions", gw.url());
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let body = br#"{"model":"up.secret","messages":[]}"#;
        let res = answer(authed(request(Method::POST, &url, ct, body), "sk-alice")).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{ct:?}");
        assert_eq!(error_code(&res), "model_not_found");
    }
    assert_eq!(forwarded(&mock), Vec::<String>::new());
    let res = answer(authed(
        request(
            Method::POST,
            &url,
            Some("text/plain"),
            br#"{"model":"up.allowed"}"#,
        ),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.json()["model"], "allowed");
}

#[tokio::test]
async fn multipart_model_routes_read_and_check_the_model_field() {
    let mock = mock().await;
    let gw = gateway(&mock, &[]).await;
    let url = format!("{}/audio/transcriptions", gw.url());
    // Forbidden, and unknown, alike.
    for model in ["up.secret", "up.nope"] {
        let (ct, body) = multipart(&[("file", "RIFF...."), ("model", model)]);
        let res = answer(authed(
            request(Method::POST, &url, Some(&ct), &body),
            "sk-alice",
        ))
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{model}");
        assert_eq!(error_code(&res), "model_not_found");
    }
    let (ct, body) = multipart(&[
        ("file", "RIFF...."),
        ("model", "up.allowed"),
        ("language", "en"),
    ]);
    let res = answer(authed(
        request(Method::POST, &url, Some(&ct), &body),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.path, "/v1/audio/transcriptions");
    assert_eq!(seen.header("content-type"), Some(ct.as_str()));
    // The form byte for byte, but for the model's prefix.
    let (_, expected) = multipart(&[
        ("file", "RIFF...."),
        ("model", "allowed"),
        ("language", "en"),
    ]);
    assert_eq!(&seen.body[..], &expected[..]);

    for (parts, status, code) in [
        (
            vec![("file", "x")],
            StatusCode::BAD_REQUEST,
            "missing_model",
        ),
        (
            vec![("model", "up.allowed"), ("model", "up.secret")],
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            vec![("Model", "up.secret"), ("model", "up.allowed")],
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
    ] {
        let (ct, body) = multipart(&parts);
        let res = answer(authed(
            request(Method::POST, &url, Some(&ct), &body),
            "sk-alice",
        ))
        .await;
        assert_eq!(res.status, status, "{parts:?}");
        assert_eq!(error_code(&res), code, "{parts:?}");
    }
    // Two content types, each with its own boundary: the upstream might read the other.
    let (ct, body) = multipart(&[("model", "up.allowed")]);
    let mut twice = authed(request(Method::POST, &url, Some(&ct), &body), "sk-alice");
    twice.headers_mut().append(
        "content-type",
        "multipart/form-data; boundary=other".parse().unwrap(),
    );
    let res = answer(twice).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&res), "invalid_body");
    // Not a form at all.
    let res = answer(authed(
        request(
            Method::POST,
            &url,
            Some("application/json"),
            br#"{"model":"up.allowed"}"#,
        ),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(mock.count("/v1/audio/transcriptions"), 1);
}

#[tokio::test]
async fn unknown_and_forbidden_models_get_one_answer_and_admins_a_404() {
    let mock = mock().await;
    let gw = gateway(&mock, &[]).await;
    let url = format!("{}/chat/completions", gw.url());
    let mut answers = Vec::new();
    for model in ["up.secret", "up.misspelt"] {
        let res = answer(authed(
            post_json(&url, &json!({"model": model}).to_string()),
            "sk-alice",
        ))
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        let v = res.json();
        assert_eq!(
            v["error"]["message"],
            format!("The model `{model}` does not exist or you do not have access to it.")
        );
        answers.push((v["error"]["type"].clone(), v["error"]["code"].clone()));
        let res = answer(authed(
            get(&format!("{}/models/{model}", gw.url())),
            "sk-alice",
        ))
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        assert_eq!(
            (
                res.json()["error"]["type"].clone(),
                res.json()["error"]["code"].clone()
            ),
            answers[0]
        );
    }
    assert_eq!(answers[0], answers[1]);
    let res = answer(authed(
        post_json(&url, r#"{"model":"up.misspelt"}"#),
        "sk-root",
    ))
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&res), "model_not_found");
}

#[tokio::test]
async fn caller_headers_pass_an_allowlist_and_cannot_steer_the_key() {
    let mock = mock().await;
    let gw = gateway(&mock, &[]).await;
    let mut req = authed(
        post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"up.allowed"}"#,
        ),
        "sk-alice",
    );
    for (name, value) in [
        ("openai-organization", "org-attacker"),
        ("openai-project", "proj-attacker"),
        ("x-openwebui-user-role", "admin"),
        ("x-openwebui-user-id", "root"),
        ("cookie", "session=1"),
        ("x-forwarded-for", "1.2.3.4"),
        ("openai-beta", "assistants=v2"),
        ("x-stainless-lang", "python"),
        ("idempotency-key", "idem-1"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("x-request-id", "caller-req-1"),
    ] {
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    let res = answer(req).await;
    assert_eq!(res.status, StatusCode::OK);
    let seen = mock.last_request().unwrap();
    for gone in [
        "openai-organization",
        "openai-project",
        "x-openwebui-user-role",
        "x-openwebui-user-id",
        "cookie",
        "x-forwarded-for",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} reached the upstream");
    }
    for kept in [
        "openai-beta",
        "x-stainless-lang",
        "idempotency-key",
        "traceparent",
    ] {
        assert!(seen.header(kept).is_some(), "{kept} was dropped");
    }
    // The caller's request id goes upstream and comes back.
    assert_eq!(seen.header("x-request-id"), Some("caller-req-1"));
    assert_eq!(res.headers["x-request-id"], "caller-req-1");
    // Upstream → caller: the allowlist; the upstream's own id renamed.
    assert!(!res.headers.contains_key("x-litellm-key-spend"));
    assert_eq!(res.headers["x-upstream-request-id"], "upstream-req-1");
    assert_eq!(res.headers["x-ratelimit-remaining-requests"], "99");
}

#[tokio::test]
async fn forwarded_user_info_is_the_gateways_never_the_callers() {
    let mock = mock().await;
    let gw = gateway(&mock, &[("ENABLE_FORWARD_USER_INFO_HEADERS", "true")]).await;
    let mut req = authed(
        post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"up.allowed"}"#,
        ),
        "sk-alice",
    );
    req.headers_mut()
        .insert("x-openwebui-user-role", "admin".parse().unwrap());
    req.headers_mut()
        .insert("x-openwebui-user-id", "root".parse().unwrap());
    assert_eq!(answer(req).await.status, StatusCode::OK);
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.header("x-openwebui-user-id"), Some("alice"));
    assert_eq!(seen.header("x-openwebui-user-role"), Some("user"));
}

#[tokio::test]
async fn every_answer_has_a_request_id_and_unusable_ones_are_replaced() {
    let mock = mock().await;
    let gw = gateway(&mock, &[]).await;
    // The gateway's own errors too.
    let res = answer(get(&format!("{}/models", gw.url()))).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let made = res.headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(!made.is_empty());
    let again = answer(get(&format!("{}/models", gw.url()))).await;
    assert_ne!(again.headers["x-request-id"], made.as_str());
    for bad in ["x".repeat(129), "has space".to_owned(), "é".to_owned()] {
        let mut req = authed(
            post_json(
                &format!("{}/chat/completions", gw.url()),
                r#"{"model":"up.allowed"}"#,
            ),
            "sk-alice",
        );
        req.headers_mut().insert(
            "x-request-id",
            http::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
        );
        let res = answer(req).await;
        let id = res.headers["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id.as_bytes(), bad.as_bytes());
        assert_eq!(
            mock.last_request().unwrap().header("x-request-id"),
            Some(id.as_str())
        );
    }
    let ok = "y".repeat(128);
    let mut req = authed(get(&format!("{}/models", gw.url())), "sk-alice");
    req.headers_mut()
        .insert("x-request-id", ok.parse().unwrap());
    assert_eq!(answer(req).await.headers["x-request-id"], ok.as_str());
}

#[tokio::test]
async fn azure_deployments_come_from_the_checked_model_only() {
    let mock = MockUpstream::builder()
        .any(
            "/openai/deployments/*/chat/completions",
            Reply::json(json!({"object": "chat.completion"})),
        )
        .start()
        .await;
    let text = format!(
        "[openai]\nbase_urls = [\"{}\"]\n[openai.configs.\"0\"]\nazure = true\nmodel_ids = [\"allowed\", \"secret\"]\nprefix_id = \"up\"\n{USERS}",
        mock.root_url()
    );
    let gw = start_toml(&text, &[("ENABLE_OPENAI_API_PASSTHROUGH", "true")]).await;
    // A caller's own deployment path, with an allowed model in the body, in any spelling.
    for path in [
        "/openai/deployments/secret/chat/completions",
        "/OpenAI/Deployments/secret/chat/completions",
        "/deployments/secret/chat/completions",
    ] {
        for ct in [Some("application/json"), Some("text/plain"), None] {
            let res = answer(authed(
                request(
                    Method::POST,
                    &format!("{}{path}", gw.url()),
                    ct,
                    br#"{"model":"up.allowed"}"#,
                ),
                "sk-alice",
            ))
            .await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{path} {ct:?}");
        }
    }
    assert!(mock.requests().is_empty());
    // The model route: the deployment is the checked model.
    let res = answer(authed(
        post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"up.allowed"}"#,
        ),
        "sk-alice",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(
        mock.last_request().unwrap().path,
        "/openai/deployments/allowed/chat/completions"
    );
}

/// A single-user gateway (no `[[users]]`) with these variables and flags.
async fn single_user(
    mock: &MockUpstream,
    extra: &[(&str, &str)],
    anonymous: bool,
) -> RunningGateway {
    let mut pairs = vec![("OPENAI_API_BASE_URLS", mock.url())];
    pairs.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start_with(
        Args {
            allow_anonymous: anonymous,
            ..Args::default()
        },
        &pairs,
    )
    .await
}

fn with_header(
    mut req: Request<Full<Bytes>>,
    name: &'static str,
    value: &str,
) -> Request<Full<Bytes>> {
    req.headers_mut().insert(name, value.parse().unwrap());
    req
}

#[tokio::test]
async fn single_user_mode_answers_only_loopback_hosts_and_no_foreign_origin() {
    let mock = mock().await;
    let gw = single_user(
        &mock,
        &[("GATEWAY_ALLOWED_HOSTS", "gateway.internal")],
        false,
    )
    .await;
    let config = format!("http://{}/openai/config", gw.addr());
    // DNS rebinding: the page's own name in Host.
    for host in [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "0.0.0.0",
    ] {
        let res = answer(with_header(get(&config), "host", host)).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{host}");
        assert_eq!(error_code(&res), "host_not_allowed");
        assert!(!res.text().contains("OPENAI_API_KEYS"));
    }
    for host in [
        "localhost:9",
        "LOCALHOST",
        "127.0.0.1",
        "127.1.2.3:80",
        "[::1]:8080",
        "gateway.internal:443",
    ] {
        let res = answer(with_header(get(&config), "host", host)).await;
        assert_eq!(res.status, StatusCode::OK, "{host}");
    }
    // A page on another origin.
    let res = answer(with_header(get(&config), "origin", "https://evil.example")).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&res), "origin_not_allowed");
    let chat = with_header(
        post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"allowed"}"#,
        ),
        "origin",
        "https://evil.example",
    );
    assert_eq!(answer(chat).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn admin_posts_must_be_json_and_from_no_foreign_origin() {
    let mock = mock().await;
    let gw = gateway(&mock, &[("GATEWAY_CORS_ORIGINS", "https://app.example")]).await;
    let verify = format!("http://{}/openai/verify", gw.addr());
    let body = json!({"url": mock.url(), "key": "k"}).to_string();
    // A "simple" cross-site request: text/plain needs no preflight.
    let res = answer(authed(
        request(Method::POST, &verify, Some("text/plain"), body.as_bytes()),
        "sk-root",
    ))
    .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let res = answer(with_header(
        authed(post_json(&verify, &body), "sk-root"),
        "origin",
        "https://evil.example",
    ))
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&res), "origin_not_allowed");
    let res = answer(with_header(
        authed(post_json(&verify, &body), "sk-root"),
        "origin",
        "https://app.example",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    // The member limit holds for admin bodies too.
    let mut many = String::from("{");
    for i in 0..5000 {
        many.push_str(&format!("\"k{i}\":0,"));
    }
    many.push_str("\"url\":\"x\"}");
    let res = answer(authed(post_json(&verify, &many), "sk-root")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&res), "invalid_body");
    // The same in single-user mode.
    let single = single_user(&mock, &[], false).await;
    let res = answer(request(
        Method::POST,
        &format!("http://{}/openai/config/update", single.addr()),
        Some("text/plain"),
        b"{}",
    ))
    .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn verify_mints_tokens_only_for_configured_urls_and_reads_at_most_a_mebibyte() {
    let mock = MockUpstream::builder()
        .any(
            "/v1/models",
            Reply::json(json!({"data": [], "pad": "x".repeat(2 << 20)})),
        )
        .start()
        .await;
    let gw = gateway(&mock, &[]).await;
    let verify = format!("http://{}/openai/verify", gw.addr());
    for auth_type in ["microsoft_entra_id", "azure_ad", "system_oauth"] {
        let body = json!({
            "url": "http://127.0.0.1:9/attacker/v1",
            "key": "",
            "config": {"auth_type": auth_type}
        });
        let res = answer(authed(post_json(&verify, &body.to_string()), "sk-root")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{auth_type}");
    }
    let body = json!({"url": mock.url(), "key": "k"});
    let res = answer(authed(post_json(&verify, &body.to_string()), "sk-root")).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(&res), "upstream_error");
    assert!(res.text().contains("1 MiB"), "{}", res.text());
}

#[tokio::test]
async fn an_anonymous_caller_is_a_user_not_an_admin() {
    let mock = mock().await;
    let gw = single_user(&mock, &[], true).await;
    let res = answer(get(&format!("http://{}/openai/config", gw.addr()))).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&res), "admin_only");
    // No records: no model is the anonymous caller's.
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"allowed"}"#,
    ))
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(forwarded(&mock), Vec::<String>::new());
}

#[tokio::test]
async fn cors_preflights_are_answered_without_a_key_for_allowed_origins_only() {
    let mock = mock().await;
    let gw = gateway(&mock, &[("GATEWAY_CORS_ORIGINS", "https://app.example")]).await;
    let url = format!("{}/chat/completions", gw.url());
    let preflight = |origin: &str| {
        Request::options(&url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .body(Full::default())
            .unwrap()
    };
    let res = answer(preflight("https://app.example")).await;
    assert!(res.status.is_success(), "{}", res.status);
    assert_eq!(
        res.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(res.headers.contains_key("x-request-id"));
    let allowed_headers = res.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    let res = answer(preflight("https://evil.example")).await;
    assert!(!res.headers.contains_key("access-control-allow-origin"));
    // The actual request carries the header too.
    let res = answer(with_header(
        authed(post_json(&url, r#"{"model":"up.allowed"}"#), "sk-alice"),
        "origin",
        "https://app.example",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.headers["access-control-allow-origin"],
        "https://app.example"
    );
    // Without GATEWAY_CORS_ORIGINS: no CORS headers at all.
    let plain = gateway(&mock, &[]).await;
    let res = answer(
        Request::options(format!("{}/chat/completions", plain.url()))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert!(!res.headers.contains_key("access-control-allow-origin"));
}

/// Every model route JSON body is forwarded as the caller sent it when nothing changes.
#[tokio::test]
async fn what_the_gateway_read_is_what_the_upstream_gets() {
    let mock = mock().await;
    let gw = gateway(&mock, &[]).await;
    for route in ["images/generations", "moderations"] {
        let body = r#"{ "model" : "up.allowed", "input": "x" }"#;
        let res = answer(authed(
            post_json(&format!("{}/{route}", gw.url()), body),
            "sk-alice",
        ))
        .await;
        assert_eq!(res.status, StatusCode::OK, "{route}");
        let seen: Value = mock.last_request().unwrap().json();
        assert_eq!(seen["model"], "allowed", "{route}");
        assert_eq!(seen["input"], "x");
    }
}

/// A gateway with alice (a user), carol (pending) and root in front of `mock`.
async fn gateway_with_pending(mock: &MockUpstream, extra: &[(&str, &str)]) -> RunningGateway {
    let carol = "[[users]]\nid = \"carol\"\nrole = \"pending\"\napi_key = \"sk-carol\"\n";
    gateway_with_users(mock, carol, extra).await
}

/// GATEWAY "Callers": a key in `x-api-key` identifies the caller when there is no
/// `Authorization` (Anthropic clients send one or the other); both headers with different
/// keys are 401; the caller's key header never reaches the upstream; a pending user is 403
/// `pending_user` on every route.
#[tokio::test]
async fn callers_send_their_key_in_x_api_key_and_pending_users_are_refused() {
    let mock = mock().await;
    let gw = gateway_with_pending(&mock, &[]).await;
    let chat = || {
        request(
            Method::POST,
            &format!("{}/chat/completions", gw.url()),
            Some("application/json"),
            br#"{"model":"up.allowed","messages":[]}"#,
        )
    };
    let with = |mut req: Request<Full<Bytes>>, pairs: &[(&str, &str)]| {
        for (k, v) in pairs {
            req.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        req
    };
    let ok = answer(with(chat(), &[("x-api-key", "sk-alice")])).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    let sent = mock
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/v1/chat/completions")
        .unwrap();
    assert!(sent.headers.get("x-api-key").is_none());
    assert!(sent.headers.get("authorization").is_none());
    // The same key in both headers is that key; two different keys are refused.
    let same = with(chat(), &[("x-api-key", "sk-alice")]);
    assert_eq!(
        answer(authed(same, "sk-alice")).await.status,
        StatusCode::OK
    );
    let two = answer(authed(
        with(chat(), &[("x-api-key", "sk-root")]),
        "sk-alice",
    ))
    .await;
    assert_eq!(
        (two.status, error_code(&two)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key".to_owned())
    );
    let wrong = answer(with(chat(), &[("x-api-key", "sk-nobody")])).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // A pending user: identified, refused everywhere, admin routes included.
    let before = forwarded(&mock).len();
    for req in [
        chat(),
        get(&format!("{}/models", gw.url())),
        get(&format!(
            "{}/openai/config",
            gw.url().trim_end_matches("/v1")
        )),
    ] {
        let refused = answer(authed(req, "sk-carol")).await;
        assert_eq!(
            (refused.status, error_code(&refused)),
            (StatusCode::FORBIDDEN, "pending_user".to_owned())
        );
    }
    assert_eq!(
        forwarded(&mock).len(),
        before,
        "nothing forwarded for a pending user"
    );
}

/// `CUSTOM_API_KEY_HEADER` names the key header instead of `x-api-key` (marked sensitive,
/// never forwarded); a name that already means something else, or listed in
/// `GATEWAY_FORWARD_HEADERS`, stops start-up naming the variable.
#[tokio::test]
async fn custom_api_key_header_names_the_key_header() {
    let mock = mock().await;
    let gw = gateway_with_pending(&mock, &[("CUSTOM_API_KEY_HEADER", "X-Gateway-Key")]).await;
    let chat = |header: &str| {
        let mut req = request(
            Method::POST,
            &format!("{}/chat/completions", gw.url()),
            Some("application/json"),
            br#"{"model":"up.allowed","messages":[]}"#,
        );
        req.headers_mut().insert(
            http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
            "sk-alice".parse().unwrap(),
        );
        req
    };
    assert_eq!(answer(chat("x-gateway-key")).await.status, StatusCode::OK);
    assert_eq!(
        answer(chat("x-api-key")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        mock.requests()
            .iter()
            .all(|r| r.headers.get("x-gateway-key").is_none())
    );
    for (pairs, variable) in [
        (
            &[("CUSTOM_API_KEY_HEADER", "authorization")][..],
            "CUSTOM_API_KEY_HEADER",
        ),
        (
            &[("CUSTOM_API_KEY_HEADER", "bad header")][..],
            "CUSTOM_API_KEY_HEADER",
        ),
        (
            &[
                ("CUSTOM_API_KEY_HEADER", "x-gateway-key"),
                ("GATEWAY_FORWARD_HEADERS", "x-gateway-key"),
            ][..],
            "GATEWAY_FORWARD_HEADERS",
        ),
    ] {
        let err = openai_gateway::GatewayConfig::load(&Args::default(), &env(pairs)).unwrap_err();
        assert!(err.to_string().contains(variable), "{pairs:?}: {err}");
    }
}

/// Redirects from an upstream are not followed unless `AIOHTTP_CLIENT_ALLOW_REDIRECTS=true`:
/// the connection's key never reaches the place a redirect points to.
#[tokio::test]
async fn an_upstream_redirect_is_not_followed_and_the_key_stays_home() {
    let elsewhere = MockUpstream::builder().models(["m"]).start().await;
    let location = format!("{}/chat/completions", elsewhere.url());
    let redirecting = MockUpstream::builder()
        .models(["m"])
        .route(
            http::Method::POST,
            "/v1/chat/completions",
            tower_openai_test_util::Reply::status(StatusCode::FOUND, json!({}))
                .with_header("location", &location),
        )
        .start()
        .await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &redirecting.url()),
            ("OPENAI_API_KEYS", "sk-upstream-secret"),
        ],
    )
    .await;
    let res = answer(post_json(
        &format!("{}/chat/completions", gw.url()),
        r#"{"model":"m","messages":[]}"#,
    ))
    .await;
    assert_ne!(res.status, StatusCode::OK);
    assert_eq!(redirecting.count("/v1/chat/completions"), 1);
    assert!(
        elsewhere
            .requests()
            .iter()
            .all(|r| r.path != "/v1/chat/completions"),
        "the redirect was followed"
    );
    assert!(
        elsewhere
            .requests()
            .iter()
            .all(|r| r.header("authorization") != Some("Bearer sk-upstream-secret")),
        "the key reached the redirect's target"
    );
}

/// `AIOHTTP_CLIENT_ALLOW_REDIRECTS=true`: a redirect is followed with the same request (307),
/// the key kept on the same origin and dropped on a hop to another; a loop stops after 5.
#[tokio::test]
async fn allowed_redirects_are_followed_without_the_key_across_origins() {
    use tower_openai_test_util::Reply;
    let elsewhere = MockUpstream::builder()
        .models(["m"])
        .json("/v1/landed", json!({"answered_by": "elsewhere"}))
        .start()
        .await;
    let to_elsewhere = format!("{}/landed", elsewhere.url());
    let redirecting = MockUpstream::builder()
        .models(["m", "same", "loop"])
        .route(
            http::Method::POST,
            "/v1/chat/completions",
            Reply::status(StatusCode::TEMPORARY_REDIRECT, json!({}))
                .with_header("location", &to_elsewhere),
        )
        .route(
            http::Method::POST,
            "/v1/embeddings",
            Reply::status(StatusCode::TEMPORARY_REDIRECT, json!({}))
                .with_header("location", "/v1/moved"),
        )
        .json("/v1/moved", json!({"answered_by": "same origin"}))
        .route(
            http::Method::POST,
            "/v1/moderations",
            Reply::status(StatusCode::PERMANENT_REDIRECT, json!({}))
                .with_header("location", "/v1/moderations"),
        )
        .start()
        .await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &redirecting.url()),
            ("OPENAI_API_KEYS", "sk-upstream-secret"),
            (
                "OPENAI_API_CONFIGS",
                r#"{"0": {"headers": {"X-Team-Token": "team-secret"}}}"#,
            ),
            ("AIOHTTP_CLIENT_ALLOW_REDIRECTS", "true"),
        ],
    )
    .await;
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let res = answer(post_json(&format!("{}/chat/completions", gw.url()), body)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["answered_by"], "elsewhere");
    let landed = elsewhere.requests_to("/v1/landed").pop().expect("followed");
    assert_eq!(landed.method, http::Method::POST);
    assert_eq!(landed.json()["messages"][0]["content"], "hi");
    assert_eq!(
        landed.header("authorization"),
        None,
        "the key crossed origins"
    );
    assert_eq!(
        landed.header("x-team-token"),
        None,
        "a custom header crossed origins"
    );
    assert_eq!(
        landed.header("host"),
        Some(elsewhere.addr().to_string().as_str())
    );

    // The same origin keeps the credentials.
    let res = answer(post_json(
        &format!("{}/embeddings", gw.url()),
        r#"{"model":"m","input":"x"}"#,
    ))
    .await;
    assert_eq!(res.json()["answered_by"], "same origin", "{}", res.text());
    let moved = redirecting.requests_to("/v1/moved").pop().unwrap();
    assert_eq!(
        moved.header("authorization"),
        Some("Bearer sk-upstream-secret")
    );

    // A loop: 1 request and 5 hops, then the redirect is the answer.
    let res = answer(post_json(
        &format!("{}/moderations", gw.url()),
        r#"{"model":"m","input":"x"}"#,
    ))
    .await;
    assert_eq!(res.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirecting.count("/v1/moderations"), 6);
}

/// The requests of one keep-alive connection share an extension map (reused, emptied):
/// nothing one request's layers learned (the caller, the model, the connection) reaches the
/// next. Alternating callers on one connection each get their own identity, and a request
/// without a key is refused although the one before it was let in.
#[tokio::test]
async fn requests_on_one_connection_share_nothing_but_the_connection() {
    let mock = mock().await;
    let gw = gateway(&mock, &[("ENABLE_FORWARD_USER_INFO_HEADERS", "true")]).await;
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let chat = |key: Option<&str>| {
        let req = Request::post("/v1/chat/completions")
            .header("host", "gateway")
            .header("content-type", "application/json");
        let req = match key {
            Some(key) => req.header("authorization", format!("Bearer {key}")),
            None => req,
        };
        req.body(Full::from(r#"{"model":"up.allowed"}"#)).unwrap()
    };
    let mut forwarded_before = 0;
    for (key, status, user) in [
        (Some("sk-alice"), StatusCode::OK, Some("alice")),
        (None, StatusCode::UNAUTHORIZED, None),
        (Some("sk-root"), StatusCode::OK, Some("root")),
        (Some("sk-wrong"), StatusCode::UNAUTHORIZED, None),
        (Some("sk-alice"), StatusCode::OK, Some("alice")),
        (None, StatusCode::UNAUTHORIZED, None),
    ] {
        sender.ready().await.unwrap();
        let res = sender.send_request(chat(key)).await.unwrap();
        assert_eq!(res.status(), status, "{key:?}");
        http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap();
        let now = forwarded(&mock);
        match user {
            Some(user) => {
                assert_eq!(now.len(), forwarded_before + 1, "{key:?}");
                let seen = mock.last_request().unwrap();
                assert_eq!(seen.header("x-openwebui-user-id"), Some(user));
            }
            None => assert_eq!(now.len(), forwarded_before, "{key:?} reached the upstream"),
        }
        forwarded_before = now.len();
    }
}
