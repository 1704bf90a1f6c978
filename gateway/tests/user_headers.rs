//! Open WebUI 0.7–0.11's user headers through the real gateway, over sockets: the signed
//! user token (verified with its secret) in place of the four user headers, the chat id
//! beside it, every custom-header placeholder filled from the chat's metadata, the caller
//! and the request, values that cannot be header values percent-encoded, and the
//! placeholders on model-list requests too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{answer, post_json, start_with, temp_dir};
use http::StatusCode;
use openai_gateway::Args;
use serde_json::{Value, json};
use tower_openai_test_util::MockUpstream;

#[tokio::test]
async fn the_user_token_and_every_placeholder_reach_the_upstream() {
    let mock = MockUpstream::builder().models(["m"]).start().await;
    let path = temp_dir().join("gateway.toml");
    std::fs::write(
        &path,
        "[[users]]\nid = \"u1\"\nname = \" Zoë Ünal \"\nemail = \"zoe@example.com\"\n\
         groups = [\"g1\", \"g2\"]\napi_key = \"sk-u1\"\n\n\
         [[models]]\nid = \"m\"\nowner = \"admin\"\naccess = \"public\"\n",
    )
    .unwrap();
    let headers = json!({"0": {"headers": {
        "X-Ids": "{{CHAT_ID}}|{{MESSAGE_ID}}|{{USER_MESSAGE_ID}}|{{USER_MESSAGE_PARENT_ID}}|{{FILE_ID}}|{{FILE_NAME}}|{{FILE_CONTENT_TYPE}}|{{TASK}}",
        "X-User": "{{USER_ID}}|{{USER_NAME}}|{{USER_EMAIL}}|{{USER_ROLE}}|{{USER_GROUP_IDS}}",
        "X-Agent": "{{USER_AGENT}}",
        "X-Model": "{{MODEL_ID}}"
    }}});
    let gw = start_with(
        Args {
            config: Some(path),
            ..Args::default()
        },
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("OPENAI_API_CONFIGS", &headers.to_string()),
            ("ENABLE_FORWARD_USER_INFO_HEADERS", "true"),
            ("FORWARD_USER_INFO_HEADER_JWT_SECRET", "s3cret"),
        ],
    )
    .await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "metadata": {
        "chat_id": "c1", "message_id": "m1", "user_message": {"id": "um1", "parentId": "p1"},
        "file_id": "f1", "file_name": "résumé\r\n.pdf", "file_content_type": "application/pdf",
        "task": "title_generation"
    }});
    let mut req = post_json(&format!("{}/chat/completions", gw.url()), &chat.to_string());
    req.headers_mut()
        .insert("authorization", "Bearer sk-u1".parse().unwrap());
    req.headers_mut()
        .insert("user-agent", "my-client/1.0".parse().unwrap());
    let res = answer(req).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let sent = mock.last_request().unwrap();
    assert_eq!(
        sent.header("x-ids"),
        Some("c1|m1|um1|p1|f1|r%C3%A9sum%C3%A9%0D%0A.pdf|application/pdf|title_generation")
    );
    assert_eq!(
        sent.header("x-user"),
        Some("u1|Zo%C3%AB %C3%9Cnal|zoe@example.com|user|g1,g2")
    );
    assert_eq!(sent.header("x-agent"), Some("my-client/1.0"));
    assert_eq!(sent.header("x-model"), Some("m"));
    // The catalog's model-list fetch (made to route the chat): the placeholders apply, with
    // no caller and no chat.
    let listed = mock.requests_to("/v1/models");
    let fetch = listed.first().expect("the catalog fetched the models");
    assert_eq!(fetch.header("x-user"), Some("||||"));
    assert_eq!(fetch.header("x-ids"), Some("|||||||"));
    // The metadata does not reach the upstream's body.
    assert!(sent.json().get("metadata").is_none());

    // The signed token instead of the four user headers; the chat id beside it.
    for plain in [
        "x-openwebui-user-name",
        "x-openwebui-user-id",
        "x-openwebui-user-email",
        "x-openwebui-user-role",
    ] {
        assert!(sent.header(plain).is_none(), "{plain}");
    }
    assert_eq!(sent.header("x-openwebui-chat-id"), Some("c1"));
    let token = sent.header("x-openwebui-user-jwt").unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&["open-webui"]);
    let key = jsonwebtoken::DecodingKey::from_secret(b"s3cret").unwrap();
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "u1");
    assert_eq!(claims["name"], " Zoë Ünal ");
    assert_eq!(claims["email"], "zoe@example.com");
    assert_eq!(claims["role"], "user");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 300);
    let wrong = jsonwebtoken::DecodingKey::from_secret(b"not-it").unwrap();
    assert!(jsonwebtoken::decode::<Value>(token, &wrong, &validation).is_err());
}

/// `{{USER_GROUPS}}` is the group names, as an admin named them in the database; a group
/// from the file is named by its id.
#[tokio::test]
async fn user_groups_are_the_group_names() {
    let mock = MockUpstream::builder().models(["m"]).start().await;
    let path = temp_dir().join("gateway.toml");
    std::fs::write(
        &path,
        "[[users]]\nid = \"root\"\nrole = \"admin\"\napi_key = \"sk-root\"\ngroups = [\"ops\"]\n",
    )
    .unwrap();
    let headers = json!({"0": {"headers": {"X-Groups": "{{USER_GROUPS}}|{{USER_GROUP_IDS}}"}}});
    let gw = start_with(
        Args {
            config: Some(path),
            ..Args::default()
        },
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("OPENAI_API_CONFIGS", &headers.to_string()),
            ("BYPASS_MODEL_ACCESS_CONTROL", "true"),
        ],
    )
    .await;
    let root = format!("http://{}", gw.addr());
    let admin = |method: &str, path: &str, body: Value| {
        let mut req = post_json(&format!("{root}{path}"), &body.to_string());
        *req.method_mut() = method.parse().unwrap();
        req.headers_mut()
            .insert("authorization", "Bearer sk-root".parse().unwrap());
        req
    };
    for (id, name) in [("lab", " Lab One "), ("qa", "Quality, Assurance")] {
        let res = answer(admin(
            "POST",
            "/admin/groups",
            json!({"id": id, "name": name}),
        ))
        .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    }
    let res = answer(admin(
        "POST",
        "/admin/users",
        json!({"id": "ann", "role": "user", "groups": ["lab", "qa"], "create_key": true}),
    ))
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let key = res.json()["key"]["key"].as_str().unwrap().to_owned();
    for (key, expected) in [
        (key.as_str(), "Lab One,Quality, Assurance|lab,qa"),
        ("sk-root", "ops|ops"),
    ] {
        let mut req = post_json(
            &format!("{}/chat/completions", gw.url()),
            &json!({"model": "m", "messages": []}).to_string(),
        );
        req.headers_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        let res = answer(req).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert_eq!(
            mock.last_request().unwrap().header("x-groups"),
            Some(expected)
        );
    }
}
