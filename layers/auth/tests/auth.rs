//! Every auth type (rule A-1 … A-7), and the token protocols against mock authorities on
//! 127.0.0.1 that count the tokens they issue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_openai_auth::entra::ClientSecret;
use tower_openai_auth::{AuthLayer, AuthOptions, EntraTokens, InMemorySessions, OAuthSession};
use tower_openai_core::client::HttpClient;
use tower_openai_core::{SelectedConnection, UpstreamHeaders};
use tower_openai_settings::ApiKey;
use tower_openai_settings::{Settings, SettingsSource};
use tower_openai_test_util::{MockUpstream, Reply};
use tower_openai_upstream::Upstream;

/// The stack's own client: the upstream service in direct mode.
fn client() -> HttpClient {
    BoxCloneSyncService::new(
        ServiceExt::<Request<tower_openai_core::Body>>::map_response(
            Upstream::new(),
            |res: Response<tower_openai_upstream::ResponseBody>| res.map(|b| b.boxed_unsync()),
        ),
    )
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    move |k| map.get(k).cloned()
}

fn connection(key: &str, config: Value) -> Settings {
    SettingsSource {
        base_urls: Some(vec!["https://res.example/v1".into()]),
        keys: Some(vec![ApiKey::new(key)]),
        configs: json!({"0": config}).as_object().cloned(),
        ..Default::default()
    }
    .build()
    .unwrap()
}

/// Reports the headers the upstream would be sent.
async fn report(req: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let merged = req
        .extensions()
        .get::<UpstreamHeaders>()
        .map(UpstreamHeaders::merged)
        .unwrap_or_default();
    let map: serde_json::Map<String, Value> = merged
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap())))
        .collect();
    Ok(Response::new(Full::from(Value::Object(map).to_string())))
}

async fn run(
    layer: AuthLayer,
    settings: &Settings,
    caller: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = Request::new(());
    for (k, v) in caller {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    req.extensions_mut()
        .insert(SelectedConnection(settings.connection(0).unwrap().clone()));
    let res = ServiceBuilder::new()
        .layer(layer)
        .service_fn(report)
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn a1_bearer_sends_the_key_and_nothing_for_an_empty_key() {
    let (_, h) = run(
        AuthLayer::new(),
        &connection("sk-1", json!({})),
        &[("authorization", "Bearer caller")],
    )
    .await;
    assert_eq!(h, json!({"authorization": "Bearer sk-1"}));
    let (_, h) = run(
        AuthLayer::new(),
        &connection("", json!({"auth_type": "bearer"})),
        &[],
    )
    .await;
    assert_eq!(h, json!({}));
}

#[tokio::test]
async fn an_anthropic_connection_gets_its_key_as_x_api_key_and_a_version() {
    // By provider: the key as `x-api-key`, never a bearer token; the default version.
    let (_, h) = run(
        AuthLayer::new(),
        &connection("sk-ant", json!({"provider": "Anthropic"})),
        &[("authorization", "Bearer caller")],
    )
    .await;
    assert_eq!(
        h,
        json!({"x-api-key": "sk-ant", "anthropic-version": "2023-06-01"})
    );
    // By host: the caller's version and beta are kept; a repeated header is not forwarded.
    let s = SettingsSource {
        base_urls: Some(vec!["https://api.anthropic.com/v1".into()]),
        keys: Some(vec![ApiKey::new("sk-ant")]),
        ..Default::default()
    }
    .build()
    .unwrap();
    let (_, h) = run(
        AuthLayer::new(),
        &s,
        &[
            ("anthropic-version", "2024-01-01"),
            ("anthropic-beta", "a"),
            ("anthropic-beta", "b"),
        ],
    )
    .await;
    assert_eq!(
        h,
        json!({"x-api-key": "sk-ant", "anthropic-version": "2024-01-01"})
    );
    // Another auth type keeps its own credential, and still gets the version.
    let (_, h) = run(
        AuthLayer::new(),
        &connection(
            "sk-ant",
            json!({"provider": "anthropic", "auth_type": "none"}),
        ),
        &[("anthropic-beta", "tools-2024")],
    )
    .await;
    assert_eq!(
        h,
        json!({"anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024"})
    );
}

#[tokio::test]
async fn a2_none_sends_nothing() {
    let (_, h) = run(
        AuthLayer::new(),
        &connection("sk-1", json!({"auth_type": "none"})),
        &[("cookie", "a=b")],
    )
    .await;
    assert_eq!(h, json!({}));
}

#[tokio::test]
async fn a3_session_forwards_the_callers_bearer_and_cookies() {
    let s = connection("sk-1", json!({"auth_type": "session"}));
    let (status, h) = run(
        AuthLayer::new(),
        &s,
        &[
            ("authorization", "Bearer user-token"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        h,
        json!({"authorization": "Bearer user-token", "cookie": "a=1; b=2"})
    );
    for caller in [
        &[][..],
        &[("authorization", "Basic dTpw")][..],
        &[("cookie", "only=cookie")][..],
    ] {
        let (status, body) = run(AuthLayer::new(), &s, caller).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{caller:?}");
        assert_eq!(body["error"]["code"], "missing_credential");
    }
}

/// A6: an unknown `auth_type` is refused where the settings are checked (naming the member),
/// and a connection that was never checked is answered 500 without calling the service: no
/// request leaves without the credentials its config asks for.
#[tokio::test]
async fn a6_unknown_auth_types_never_load() {
    let settings = connection("k", json!({"auth_type": "kerberos"}));
    let err = settings.check::<AuthOptions>().unwrap_err();
    assert!(
        err.field()
            .starts_with("OPENAI_API_CONFIGS[\"0\"].auth_type "),
        "{err}"
    );
    let (status, body) = run(AuthLayer::new(), &settings, &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("auth_type must be one of"),
        "{body}"
    );
    assert!(body.get("authorization").is_none());
}

#[tokio::test]
async fn a7_azure_adds_api_key_unless_entra() {
    let (_, h) = run(
        AuthLayer::new(),
        &connection("az-key", json!({"azure": true})),
        &[],
    )
    .await;
    assert_eq!(
        h,
        json!({"authorization": "Bearer az-key", "api-key": "az-key"})
    );
    let (_, h) = run(
        AuthLayer::new(),
        &connection("az-key", json!({"azure": true, "auth_type": "none"})),
        &[],
    )
    .await;
    assert_eq!(h, json!({"api-key": "az-key"}));
    let tokens = EntraTokens::new(FixedToken("entra"));
    let s = connection(
        "az-key",
        json!({"azure": true, "auth_type": "microsoft_entra_id"}),
    );
    let (_, h) = run(AuthLayer::new().entra(tokens), &s, &[]).await;
    assert_eq!(h, json!({"authorization": "Bearer entra"}));
}

/// A token source that needs no network.
struct FixedToken(&'static str);

impl tower_openai_auth::entra::TokenSource for FixedToken {
    fn fetch(&self, _scope: &str) -> tower_openai_auth::TokenFuture {
        let t = self.0;
        Box::pin(async move {
            Ok(tower_openai_auth::AccessToken::new(
                t,
                Duration::from_secs(3600),
            ))
        })
    }
    fn name(&self) -> &str {
        "fixed"
    }
}

/// Entra ID tokens from a client secret, for tenant-1 / client-1 at `authority`.
fn client_secret_tokens(authority: &MockUpstream, secret: &str) -> EntraTokens {
    EntraTokens::from_env(
        env(&[
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_CLIENT_SECRET", secret),
            ("AZURE_AUTHORITY_HOST", &authority.root_url()),
        ]),
        client(),
    )
}

fn token_reply(token: &str, expires_in: u64) -> Reply {
    Reply::json(json!({"token_type": "Bearer", "expires_in": expires_in, "access_token": token}))
}

fn form_of(body: &Bytes) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

#[tokio::test]
async fn a5_client_secret_tokens_one_fetch_for_many_requests() {
    let authority = MockUpstream::builder()
        .route(
            Method::POST,
            "/tenant-1/oauth2/v2.0/token",
            Reply::Delay(
                Duration::from_millis(200),
                Box::new(token_reply("entra-token", 3600)),
            ),
        )
        .start()
        .await;
    let tokens = client_secret_tokens(&authority, "very-secret");
    let s = connection("", json!({"auth_type": "azure_ad"}));
    let layer = AuthLayer::new().entra(tokens);
    let runs = (0..50).map(|_| run(layer.clone(), &s, &[]));
    for (status, h) in futures_util::future::join_all(runs).await {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h["authorization"], "Bearer entra-token");
    }
    assert_eq!(
        authority.count("/tenant-1/oauth2/v2.0/token"),
        1,
        "one token for 50 concurrent requests"
    );
    let form = form_of(&authority.last_request().unwrap().body);
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "client-1");
    assert_eq!(form["client_secret"], "very-secret");
    assert_eq!(
        form["scope"],
        "https://cognitiveservices.azure.com/.default"
    );
    // Cached afterwards.
    run(layer, &s, &[]).await;
    assert_eq!(authority.count("/tenant-1/oauth2/v2.0/token"), 1);
}

#[tokio::test]
async fn a5_absurd_token_lifetimes_are_clamped_not_a_panic() {
    for answer in [
        json!({"access_token": "t", "expires_in": u64::MAX}),
        json!({"access_token": "t", "expires_in": "18446744073709551615"}),
        json!({"access_token": "t", "expires_on": u64::MAX}),
    ] {
        let authority = MockUpstream::builder()
            .route(
                Method::POST,
                "/tenant-1/oauth2/v2.0/token",
                Reply::json(answer.clone()),
            )
            .start()
            .await;
        let tokens = client_secret_tokens(&authority, "s");
        let s = connection("", json!({"auth_type": "azure_ad"}));
        let layer = AuthLayer::new().entra(tokens);
        for _ in 0..2 {
            let (status, h) = run(layer.clone(), &s, &[]).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_eq!(h["authorization"], "Bearer t");
        }
        assert_eq!(
            authority.count("/tenant-1/oauth2/v2.0/token"),
            1,
            "{answer}"
        );
    }
    let token = tower_openai_auth::AccessToken::new("t", Duration::MAX);
    assert!(
        token.expires_at() <= tokio::time::Instant::now() + tower_openai_auth::MAX_TOKEN_LIFETIME
    );
}

#[tokio::test]
async fn a5_the_scope_is_configurable_per_connection() {
    let authority = MockUpstream::builder()
        .json(
            "/t/oauth2/v2.0/token",
            json!({"access_token": "x", "expires_in": 3600}),
        )
        .start()
        .await;
    let tokens = EntraTokens::new(ClientSecret::new(
        client(),
        &authority.root_url(),
        "t",
        "c",
        "s",
    ));
    let s = connection(
        "",
        json!({"auth_type": "microsoft_entra_id", "entra_scope": "api://custom/.default"}),
    );
    run(AuthLayer::new().entra(tokens), &s, &[]).await;
    assert_eq!(
        form_of(&authority.last_request().unwrap().body)["scope"],
        "api://custom/.default"
    );
}

#[tokio::test]
async fn a5_an_expiring_token_is_refreshed_once() {
    let authority = MockUpstream::builder()
        .any("/t/oauth2/v2.0/token", token_reply("short-lived", 2))
        .start()
        .await;
    // Refresh when less than 1 s is left: the first token is due after ~1 s.
    let tokens = EntraTokens::with_margin(
        ClientSecret::new(client(), &authority.root_url(), "t", "c", "s"),
        Duration::from_secs(1),
    );
    let s = connection("", json!({"auth_type": "azure_ad"}));
    let layer = AuthLayer::new().entra(tokens);
    run(layer.clone(), &s, &[]).await;
    assert_eq!(authority.count("/t/oauth2/v2.0/token"), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await; // expired now
    let runs = (0..20).map(|_| run(layer.clone(), &s, &[]));
    for (status, _) in futures_util::future::join_all(runs).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        authority.count("/t/oauth2/v2.0/token"),
        2,
        "one refresh for 20 requests after expiry"
    );
}

#[tokio::test]
async fn a5_workload_identity_asserts_the_federated_token() {
    let authority = MockUpstream::builder()
        .any("/t/oauth2/v2.0/token", token_reply("wi-token", 3600))
        .start()
        .await;
    let file = std::env::temp_dir().join(format!("tower-openai-federated-{}", std::process::id()));
    std::fs::write(&file, "federated-jwt\n").unwrap();
    let tokens = EntraTokens::from_env(
        env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "wi-client"),
            ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap()),
            ("AZURE_AUTHORITY_HOST", &authority.root_url()),
            // Never the real metadata address, even if the chain got that far.
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9"),
        ]),
        client(),
    );
    let (_, h) = run(
        AuthLayer::new().entra(tokens),
        &connection("", json!({"auth_type": "azure_ad"})),
        &[],
    )
    .await;
    assert_eq!(h["authorization"], "Bearer wi-token");
    let form = form_of(&authority.last_request().unwrap().body);
    assert_eq!(form["client_assertion"], "federated-jwt");
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(form["client_id"], "wi-client");
    assert!(!form.contains_key("client_secret"));
}

#[tokio::test]
async fn a5_managed_identity_app_service_and_imds() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let msi = MockUpstream::builder()
        .any("/msi/token", Reply::json(json!({"access_token": "mi-app", "expires_on": (now + 3600).to_string(), "token_type": "Bearer"})))
        .any("/metadata/identity/oauth2/token", Reply::json(json!({"access_token": "mi-imds", "expires_in": "3600"})))
        .start()
        .await;
    let s = connection("", json!({"auth_type": "azure_ad"}));

    let app = EntraTokens::from_env(
        env(&[
            (
                "IDENTITY_ENDPOINT",
                &format!("{}/msi/token", msi.root_url()),
            ),
            ("IDENTITY_HEADER", "id-header-secret"),
        ]),
        client(),
    );
    let (_, h) = run(AuthLayer::new().entra(app), &s, &[]).await;
    assert_eq!(h["authorization"], "Bearer mi-app");
    let seen = msi.last_request().unwrap();
    assert_eq!(seen.header("x-identity-header"), Some("id-header-secret"));
    let query: HashMap<String, String> = form_urlencoded::parse(seen.query.unwrap().as_bytes())
        .into_owned()
        .collect();
    assert_eq!(query["resource"], "https://cognitiveservices.azure.com");
    assert_eq!(query["api-version"], "2019-08-01");

    let imds = EntraTokens::from_env(
        env(&[
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", &msi.root_url()),
            ("AZURE_CLIENT_ID", "user-assigned"),
        ]),
        client(),
    );
    let (_, h) = run(AuthLayer::new().entra(imds), &s, &[]).await;
    assert_eq!(h["authorization"], "Bearer mi-imds");
    let seen = msi.last_request().unwrap();
    assert_eq!(seen.header("metadata"), Some("true"));
    assert!(seen.query.unwrap().contains("client_id=user-assigned"));
}

#[tokio::test]
async fn a5_the_chain_falls_through_and_a_total_failure_is_a_502_without_secrets() {
    let authority = MockUpstream::builder()
        .status("/t/oauth2/v2.0/token", 401, json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}))
        .any("/metadata/identity/oauth2/token", token_reply("from-mi", 3600))
        .start()
        .await;
    let root = authority.root_url();
    let pairs = [
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_CLIENT_SECRET", "wrong-secret-value"),
        ("AZURE_AUTHORITY_HOST", root.as_str()),
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", root.as_str()),
    ];
    let s = connection("", json!({"auth_type": "azure_ad"}));
    let (_, h) = run(
        AuthLayer::new().entra(EntraTokens::from_env(env(&pairs), client())),
        &s,
        &[],
    )
    .await;
    assert_eq!(h["authorization"], "Bearer from-mi");

    // Nothing works: 502 naming why, never the secret.
    let dead_mi = [
        &pairs[..4],
        &[("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")][..],
    ]
    .concat();
    let (status, body) = run(
        AuthLayer::new().entra(EntraTokens::from_env(env(&dead_mi), client())),
        &s,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["code"], "upstream_auth_failed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("invalid_client"), "{message}");
    assert!(!message.contains("wrong-secret-value"), "{message}");

    // Not configured at all: 502 too.
    let (status, _) = run(AuthLayer::new(), &s, &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a4_system_oauth_uses_the_sessions_token_and_forwards_cookies() {
    let provider = MockUpstream::builder().start().await;
    let sessions =
        InMemorySessions::new(client(), format!("{}/token", provider.root_url()), "webui");
    sessions.insert(
        "sess-1",
        OAuthSession {
            access_token: "user-at".into(),
            refresh_token: Some("rt-1".into()),
            expires_in: Duration::from_secs(3600),
        },
    );
    let s = connection("sk-ignored", json!({"auth_type": "system_oauth"}));
    let layer = AuthLayer::new().sessions(sessions);
    let (_, h) = run(
        layer.clone(),
        &s,
        &[("cookie", "oauth_session_id=sess-1; theme=dark")],
    )
    .await;
    assert_eq!(
        h,
        json!({"authorization": "Bearer user-at", "cookie": "oauth_session_id=sess-1; theme=dark"})
    );
    // Unknown session, or no cookie: cookies only, no Authorization.
    let (_, h) = run(layer.clone(), &s, &[("cookie", "oauth_session_id=nope")]).await;
    assert_eq!(h, json!({"cookie": "oauth_session_id=nope"}));
    let (_, h) = run(layer, &s, &[]).await;
    assert_eq!(h, json!({}));
    assert!(provider.requests().is_empty());
}

#[tokio::test]
async fn a4_a_token_near_expiry_is_refreshed_once_and_a_failed_refresh_deletes_the_session() {
    let provider = MockUpstream::builder()
        .route(
            Method::POST,
            "/token",
            Reply::Delay(Duration::from_millis(200), Box::new(Reply::json(json!({"access_token": "refreshed-at", "expires_in": 3600, "refresh_token": "rt-2"})))),
        )
        .start()
        .await;
    let sessions = InMemorySessions::with_secret(
        client(),
        format!("{}/token", provider.root_url()),
        "webui",
        "client-secret",
    );
    // Within 5 minutes of expiry: refreshed before use.
    sessions.insert(
        "s",
        OAuthSession {
            access_token: "old-at".into(),
            refresh_token: Some("rt-1".into()),
            expires_in: Duration::from_secs(60),
        },
    );
    let s = connection("", json!({"auth_type": "system_oauth"}));
    let layer = AuthLayer::new().sessions(sessions.clone());
    // The old token is still valid, so the first requests use it while one refresh runs.
    let runs = (0..20).map(|_| run(layer.clone(), &s, &[("cookie", "oauth_session_id=s")]));
    futures_util::future::join_all(runs).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, h) = run(layer.clone(), &s, &[("cookie", "oauth_session_id=s")]).await;
    assert_eq!(h["authorization"], "Bearer refreshed-at");
    assert_eq!(provider.count("/token"), 1, "one refresh for 20 requests");
    let form = form_of(&provider.last_request().unwrap().body);
    assert_eq!(
        (form["grant_type"].as_str(), form["refresh_token"].as_str()),
        ("refresh_token", "rt-1")
    );
    assert_eq!(form["client_secret"], "client-secret");

    // A refresh the provider refuses deletes the session.
    let failing = MockUpstream::builder()
        .status("/token", 400, json!({"error": "invalid_grant"}))
        .start()
        .await;
    let sessions =
        InMemorySessions::new(client(), format!("{}/token", failing.root_url()), "webui");
    sessions.insert(
        "s",
        OAuthSession {
            access_token: "expired".into(),
            refresh_token: Some("rt".into()),
            expires_in: Duration::ZERO,
        },
    );
    let layer = AuthLayer::new().sessions(sessions.clone());
    let (status, h) = run(layer, &s, &[("cookie", "oauth_session_id=s")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.get("authorization").is_none());
    assert!(!sessions.contains("s"));
    let _ = Arc::new(());
}

/// A credential fetched after `call` (here the caller's OAuth session token) must be sent
/// through the instance `poll_ready` readied: the mock panics on a call to one it did not.
#[tokio::test]
async fn a_pending_credential_calls_the_service_poll_ready_readied() {
    use tokio_test::{assert_pending, assert_ready_ok};
    let provider = MockUpstream::builder().start().await;
    let sessions =
        InMemorySessions::new(client(), format!("{}/token", provider.root_url()), "webui");
    sessions.insert(
        "sess-1",
        OAuthSession {
            access_token: "user-at".into(),
            refresh_token: None,
            expires_in: Duration::from_secs(3600),
        },
    );
    let s = connection("", json!({"auth_type": "system_oauth"}));
    let (mut svc, mut handle) = tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(
        AuthLayer::new().sessions(sessions),
    );
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut req = Request::new(());
    req.headers_mut()
        .insert("cookie", "oauth_session_id=sess-1".parse().unwrap());
    req.extensions_mut()
        .insert(SelectedConnection(s.connection(0).unwrap().clone()));
    let mut call = tokio::spawn(svc.call(req));
    // A call on an instance that was not readied panics in the spawned task: fail on that
    // rather than wait for a request that never comes.
    let (seen, respond) = tokio::select! {
        next = handle.next_request() => next.unwrap(),
        ended = &mut call => panic!("the call ended before reaching the service: {ended:?}"),
    };
    let sent = seen.extensions().get::<UpstreamHeaders>().unwrap().merged();
    assert_eq!(sent.get("authorization").unwrap(), "Bearer user-at");
    respond.send_response(Response::new(()));
    assert!(call.await.unwrap().is_ok());
    assert_pending!(svc.poll_ready());
}
