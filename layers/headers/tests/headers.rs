//! rule H-2 … H-5, CC-1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_openai_core::extensions::HeaderStep;
use tower_openai_core::{Payload, RequestedModel, Role, SelectedConnection, UpstreamHeaders, User};
use tower_openai_headers::{HeadersConfig, HeadersLayer};
use tower_openai_settings::ApiKey;
use tower_openai_settings::{Settings, SettingsSnapshot, SettingsSource};

fn settings(url: &str, forward: bool, config: Value) -> Arc<Settings> {
    Arc::new(
        SettingsSource {
            base_urls: Some(vec![url.to_owned()]),
            keys: Some(vec![ApiKey::new("sk-key")]),
            forward_user_info_headers: Some(forward),
            configs: json!({"0": config}).as_object().cloned(),
            ..Default::default()
        }
        .build()
        .unwrap(),
    )
}

fn jose() -> User {
    User {
        id: "u-1".into(),
        name: "José Müller".into(),
        email: "jose@example.com".into(),
        role: Role::Admin,
        groups: Default::default(),
        group_names: Default::default(),
        key: None,
    }
}

/// What the upstream would get: the merged headers and the body.
async fn report(req: Request<()>) -> Result<Response<Value>, Infallible> {
    let headers: serde_json::Map<String, Value> = req
        .extensions()
        .get::<UpstreamHeaders>()
        .map(UpstreamHeaders::merged)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap())))
        .collect();
    let body = req
        .extensions()
        .get::<Payload>()
        .map(|p| String::from_utf8(p.to_bytes().to_vec()).unwrap());
    Ok(Response::new(json!({"headers": headers, "body": body})))
}

struct Call {
    settings: Arc<Settings>,
    user: Option<User>,
    path: &'static str,
    body: Option<&'static str>,
    config: HeadersConfig,
    preset: Option<UpstreamHeaders>,
}

impl Call {
    fn new(settings: Arc<Settings>) -> Self {
        Self {
            settings,
            user: Some(jose()),
            path: "/chat/completions",
            body: None,
            config: HeadersConfig::default(),
            preset: None,
        }
    }

    async fn run(self) -> Value {
        let mut req = Request::post(self.path).body(()).unwrap();
        let ext = req.extensions_mut();
        ext.insert(SettingsSnapshot(self.settings.clone()));
        ext.insert(SelectedConnection(
            self.settings.connection(0).unwrap().clone(),
        ));
        ext.insert(RequestedModel {
            requested: "p.gpt-4o".into(),
            upstream: "gpt-4o".into(),
        });
        if let Some(u) = self.user {
            ext.insert(u);
        }
        if let Some(b) = self.body {
            ext.insert(Payload::new(Bytes::from_static(b.as_bytes())));
        }
        if let Some(h) = self.preset {
            ext.insert(h);
        }
        let svc = ServiceBuilder::new()
            .layer(HeadersLayer::new(self.config))
            .service_fn(report);
        svc.oneshot(req).await.unwrap().into_body()
    }
}

#[tokio::test]
async fn h2_openrouter_attribution_only_for_openrouter_urls() {
    let v = Call::new(settings("https://openrouter.ai/api/v1", false, json!({})))
        .run()
        .await;
    assert_eq!(
        v["headers"],
        json!({"http-referer": "https://github.com/tower-openai/tower-openai", "x-title": "tower-openai"})
    );
    let mut call = Call::new(settings("https://openrouter.ai/api/v1", false, json!({})));
    call.config = HeadersConfig::open_webui();
    assert_eq!(call.run().await["headers"]["x-title"], "Open WebUI");
    let v = Call::new(settings("https://api.openai.com/v1", false, json!({})))
        .run()
        .await;
    assert_eq!(v["headers"], json!({}));
}

#[tokio::test]
async fn h3_user_info_only_when_enabled_and_known() {
    let v = Call::new(settings("http://x/v1", true, json!({})))
        .run()
        .await;
    assert_eq!(
        v["headers"],
        json!({
            "x-openwebui-user-name": "Jos%C3%A9 M%C3%BCller",
            "x-openwebui-user-id": "u-1",
            "x-openwebui-user-email": "jose@example.com",
            "x-openwebui-user-role": "admin",
        })
    );
    assert_eq!(
        Call::new(settings("http://x/v1", false, json!({})))
            .run()
            .await["headers"],
        json!({})
    );
    let mut anonymous = Call::new(settings("http://x/v1", true, json!({})));
    anonymous.user = None;
    assert_eq!(anonymous.run().await["headers"], json!({}));
}

#[tokio::test]
async fn h3_header_names_come_from_the_environment() {
    let env = |k: &str| match k {
        "FORWARD_USER_INFO_HEADER_USER_ID" => Some("X-User".to_owned()),
        "FORWARD_SESSION_INFO_HEADER_CHAT_ID" => Some("X-Conversation".to_owned()),
        _ => None,
    };
    let mut call = Call::new(settings("http://x/v1", true, json!({})));
    call.config = HeadersConfig::from_env(env).unwrap();
    call.body = Some(r#"{"metadata":{"chat_id":"c-9"}}"#);
    let v = call.run().await;
    assert_eq!(v["headers"]["x-user"], "u-1");
    assert_eq!(v["headers"]["x-conversation"], "c-9");
    assert!(v["headers"].get("x-openwebui-user-id").is_none());
    let err = HeadersConfig::from_env(|k| {
        (k == "FORWARD_USER_INFO_HEADER_USER_ROLE").then(|| "bad name".to_owned())
    })
    .unwrap_err();
    assert_eq!(err.field(), "FORWARD_USER_INFO_HEADER_USER_ROLE");
}

#[tokio::test]
async fn h4_chat_id_and_cc1_metadata_removed_from_chat_bodies() {
    let mut call = Call::new(settings("http://x/v1", true, json!({})));
    call.body = Some(r#"{"model":"gpt-4o","metadata":{"chat_id":"chat-1","x":1},"stream":true}"#);
    let v = call.run().await;
    assert_eq!(v["headers"]["x-openwebui-chat-id"], "chat-1");
    assert_eq!(v["body"], r#"{"model":"gpt-4o","stream":true}"#);

    // No chat id header when forwarding is off, but metadata still never goes upstream.
    let mut call = Call::new(settings("http://x/v1", false, json!({})));
    call.body = Some(r#"{"metadata":{"chat_id":"chat-1"}}"#);
    let v = call.run().await;
    assert!(v["headers"].get("x-openwebui-chat-id").is_none());
    assert_eq!(v["body"], "{}");

    // Falsy chat ids send nothing; other endpoints keep their `metadata`.
    let mut call = Call::new(settings("http://x/v1", true, json!({})));
    call.body = Some(r#"{"metadata":{"chat_id":""}}"#);
    assert!(
        call.run().await["headers"]
            .get("x-openwebui-chat-id")
            .is_none()
    );
    let mut call = Call::new(settings("http://x/v1", true, json!({})));
    call.path = "/responses";
    call.body = Some(r#"{"metadata":{"chat_id":"c","k":"v"}}"#);
    let v = call.run().await;
    assert_eq!(v["body"], r#"{"metadata":{"chat_id":"c","k":"v"}}"#);

    // A body without metadata is forwarded untouched.
    let mut call = Call::new(settings("http://x/v1", true, json!({})));
    call.body = Some(r#"{ "model" : "m" }"#);
    assert_eq!(call.run().await["body"], r#"{ "model" : "m" }"#);
}

#[tokio::test]
async fn h5_custom_headers_override_earlier_steps_and_azure_overrides_custom() {
    let config = json!({"headers": {
        "Authorization": "Bearer custom",
        "X-Title": "custom title",
        "X-OpenWebUI-User-Role": "overridden",
        "api-key": "custom-api-key",
        "X-Team": "ml",
    }});
    let mut preset = UpstreamHeaders::default();
    preset.insert(
        HeaderStep::Auth,
        "authorization",
        "Bearer sk-key".parse().unwrap(),
    );
    preset.insert(HeaderStep::Azure, "api-key", "azure-key".parse().unwrap());
    let mut call = Call::new(settings("https://openrouter.ai/api/v1", true, config));
    call.preset = Some(preset);
    let v = call.run().await;
    assert_eq!(v["headers"]["authorization"], "Bearer custom");
    assert_eq!(v["headers"]["x-title"], "custom title");
    assert_eq!(v["headers"]["x-openwebui-user-role"], "overridden");
    assert_eq!(v["headers"]["x-team"], "ml");
    assert_eq!(v["headers"]["api-key"], "azure-key");
}

#[tokio::test]
async fn custom_header_placeholders_are_filled_per_request() {
    let config = json!({"headers": {
        "X-Who": "{{USER_ID}}/{{USER_ROLE}}/{{USER_EMAIL}}",
        "X-Name": "{{USER_NAME}}",
        "X-Context": "chat={{CHAT_ID}} model={{MODEL_ID}}",
    }});
    let mut call = Call::new(settings("http://x/v1", false, config.clone()));
    call.body = Some(r#"{"metadata":{"chat_id":"c-7"}}"#);
    let v = call.run().await;
    assert_eq!(v["headers"]["x-who"], "u-1/admin/jose@example.com");
    assert_eq!(v["headers"]["x-name"], "Jos%C3%A9 M%C3%BCller");
    assert_eq!(v["headers"]["x-context"], "chat=c-7 model=p.gpt-4o");
    let mut anonymous = Call::new(settings("http://x/v1", false, config));
    anonymous.user = None;
    assert_eq!(anonymous.run().await["headers"]["x-who"], "//");
}

#[tokio::test]
async fn a_user_field_that_cannot_be_a_header_is_left_out() {
    let mut user = jose();
    user.email = "bad\nemail".into();
    let mut call = Call::new(settings("http://x/v1", true, json!({})));
    call.user = Some(user);
    let v = call.run().await;
    assert!(v["headers"].get("x-openwebui-user-email").is_none());
    assert_eq!(v["headers"]["x-openwebui-user-id"], "u-1");
}

#[tokio::test]
async fn without_a_selected_connection_nothing_is_added() {
    let req = Request::post("/chat/completions").body(()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(HeadersLayer::default())
        .service_fn(report);
    assert_eq!(
        svc.oneshot(req).await.unwrap().into_body()["headers"],
        json!({})
    );
}

#[tokio::test]
async fn one_instance_serving_several_users_sends_each_their_own_user_info() {
    let settings = settings("http://u/v1", true, json!({}));
    let mut svc = ServiceBuilder::new()
        .layer(HeadersLayer::new(HeadersConfig::default()))
        .service_fn(report);
    let ann = User {
        id: "u-2".into(),
        name: "Ann".into(),
        email: "ann@example.com".into(),
        ..User::default()
    };
    // Jose twice (the second from the instance's remembered values), then Ann, then an
    // equal-looking but different Jose (new text: made afresh).
    for (user, id) in [
        (jose(), "u-1"),
        (jose(), "u-1"),
        (ann.clone(), "u-2"),
        (jose(), "u-1"),
    ] {
        let mut req = Request::post("/chat/completions").body(()).unwrap();
        req.extensions_mut()
            .insert(SelectedConnection(settings.connections()[0].clone()));
        req.extensions_mut()
            .insert(SettingsSnapshot(settings.clone()));
        req.extensions_mut().insert(user);
        let res = tower::ServiceExt::ready(&mut svc)
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap();
        let headers = &res.body()["headers"];
        assert_eq!(headers["x-openwebui-user-id"], id, "{headers}");
    }
}
