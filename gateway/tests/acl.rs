//! Per-user model access (rule AC-1 … AC-6): a property test over the real layer stack, and
//! the gateway's callers and records end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use openai_gateway::Args;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_openai::acl::{AccessControl, AclLayer, ModelAccess, StaticRecords};
use tower_openai::collect::CollectPayloadLayer;
use tower_openai::core::{Body, Role, SelectedConnection, User};
use tower_openai::models::{Catalog, ModelsLayer};
use tower_openai::select::SelectLayer;
use tower_openai::settings::{LoadSettingsLayer, SettingsHandle, SettingsSource};
use tower_openai_test_util::MockUpstream;

use common::*;

const MODELS: [&str; 6] = ["m0", "m1", "m2", "m3", "m4", "m5"];
const GROUPS: [&str; 3] = ["g0", "g1", "g2"];
const USERS: [&str; 3] = ["u0", "u1", "u2"];

fn access() -> impl Strategy<Value = AccessControl> {
    prop_oneof![
        Just(AccessControl::Public),
        Just(AccessControl::Private),
        (
            proptest::sample::subsequence(GROUPS.to_vec(), 0..=3),
            proptest::sample::subsequence(USERS.to_vec(), 0..=3)
        )
            .prop_map(|(g, u)| AccessControl::Read {
                groups: g.into_iter().map(str::to_owned).collect(),
                users: u.into_iter().map(str::to_owned).collect(),
            }),
    ]
}

fn records() -> impl Strategy<Value = HashMap<String, ModelAccess>> {
    proptest::collection::hash_map(
        proptest::sample::select(MODELS.to_vec()).prop_map(str::to_owned),
        (proptest::sample::select(USERS.to_vec()), access()).prop_map(|(owner, access)| {
            ModelAccess {
                owner: owner.to_owned(),
                access,
            }
        }),
        0..=6,
    )
}

fn user() -> impl Strategy<Value = User> {
    (
        proptest::sample::select(USERS.to_vec()),
        proptest::sample::subsequence(GROUPS.to_vec(), 0..=3),
        any::<bool>(),
    )
        .prop_map(|(id, groups, admin)| User {
            id: id.into(),
            groups: groups.into_iter().map(str::to_owned).collect(),
            role: if admin { Role::Admin } else { Role::User },
            ..User::default()
        })
}

/// Lists `served` models; a chat that reaches it is admitted.
async fn upstream(
    req: Request<Body>,
    served: Vec<String>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/models" {
        let data: Vec<Value> = served.iter().map(|id| json!({"id": id})).collect();
        return Ok(Response::builder()
            .header("content-type", "application/json")
            .body(Full::from(json!({"data": data}).to_string()))
            .unwrap());
    }
    assert!(req.extensions().get::<SelectedConnection>().is_some());
    Ok(Response::new(Full::from("admitted")))
}

async fn listed_and_admitted(
    served: Vec<String>,
    records: HashMap<String, ModelAccess>,
    user: User,
    bypass: bool,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let settings = SettingsHandle::new(
        SettingsSource {
            base_urls: Some(vec!["http://only/v1".into()]),
            bypass_model_access_control: Some(bypass),
            ..Default::default()
        }
        .build()
        .unwrap(),
    );
    let fetch_served = served.clone();
    // A stand-in for the endpoint stack.
    let catalog = Catalog::new(tower_openai::models::AppliesCredentials(service_fn(
        move |req| upstream(req, fetch_served.clone()),
    )));
    let call_served = served.clone();
    let svc = ServiceBuilder::new()
        .layer(LoadSettingsLayer::new(settings))
        .layer(CollectPayloadLayer::default())
        .layer(AclLayer::new(StaticRecords::new(records)))
        .layer(ModelsLayer::new(catalog.clone()))
        .layer(SelectLayer::new(catalog))
        .service(service_fn(move |req| upstream(req, call_served.clone())));

    let mut list = Request::get("/models").body(Body::empty()).unwrap();
    list.extensions_mut().insert(user.clone());
    let res = svc.clone().oneshot(list).await.unwrap();
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let listed: BTreeSet<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();

    let mut admitted = BTreeSet::new();
    for model in MODELS {
        let mut chat = Request::post("/chat/completions")
            .body(Body::from(format!(r#"{{"model":"{model}"}}"#)))
            .unwrap();
        chat.extensions_mut().insert(user.clone());
        let res = svc.clone().oneshot(chat).await.unwrap();
        match res.status() {
            StatusCode::OK => {
                admitted.insert(model.to_owned());
            }
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {}
            other => panic!("unexpected {other}"),
        }
    }
    (listed, admitted)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// For any users, groups, records and served models: a model is listed for a user if and
    /// only if a chat request with it is admitted.
    #[test]
    fn listed_if_and_only_if_admitted(
        served in proptest::sample::subsequence(MODELS.to_vec(), 0..=6),
        records in records(),
        user in user(),
        bypass in proptest::bool::weighted(0.2),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let served: Vec<String> = served.into_iter().map(str::to_owned).collect();
        let (listed, admitted) = rt.block_on(listed_and_admitted(served.clone(), records.clone(), user.clone(), bypass));
        prop_assert_eq!(&listed, &admitted);
        // And both are exactly what AC-1 … AC-3 say.
        let expected: BTreeSet<String> = served
            .iter()
            .filter(|m| bypass || user.role == Role::Admin || records.get(*m).is_some_and(|r| *r.owner == *user.id || match &r.access {
                AccessControl::Public => true,
                AccessControl::Private => false,
                AccessControl::Read { groups, users } => users.iter().any(|u| **u == *user.id) || user.groups.iter().any(|g| groups.contains(g)),
            }))
            .cloned()
            .collect();
        prop_assert_eq!(listed, expected);
    }
}

/// A config file in a folder of its own: tests run in parallel.
fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = temp_dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn authed(mut req: Request<Full<Bytes>>, key: &str) -> Request<Full<Bytes>> {
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

fn ids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

const USERS_AND_MODELS: &str = r#"
[[users]]
id = "alice"
api_key = "sk-alice"
groups = ["research"]

[[users]]
id = "bob"
api_key = "sk-bob"

[[users]]
id = "root"
role = "admin"
api_key = "sk-root"

[[models]]
id = "public-model"
owner = "root"
access = "public"

[[models]]
id = "alice-private"
owner = "alice"
access = "private"

[[models]]
id = "research-model"
owner = "root"
access = { read_groups = ["research"], read_users = ["bob"] }

[[models]]
id = "root-private"
owner = "root"
access = "private"
"#;

async fn acl_gateway(bypass: bool) -> (MockUpstream, openai_gateway::RunningGateway) {
    let mock = MockUpstream::builder()
        .models([
            "public-model",
            "alice-private",
            "research-model",
            "root-private",
            "unregistered",
        ])
        .start()
        .await;
    let text = format!(
        "[openai]\nbase_urls = [\"{}\"]\nbypass_model_access_control = {bypass}\n{USERS_AND_MODELS}",
        mock.url()
    );
    let path = write_config(&format!("acl-{bypass}.toml"), &text);
    let gw = start_with(
        Args {
            config: Some(path),
            ..Args::default()
        },
        &[],
    )
    .await;
    (mock, gw)
}

#[tokio::test]
async fn each_user_sees_exactly_their_models_in_openais_shape() {
    let (_mock, gw) = acl_gateway(false).await;
    let list = |key: &'static str| {
        let url = format!("{}/models", gw.url());
        async move { answer(authed(get(&url), key)).await }
    };
    let alice = list("sk-alice").await;
    assert_eq!(alice.status, StatusCode::OK);
    let body = alice.json();
    assert_eq!(body["object"], "list");
    assert!(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["object"] == "model" || m.get("id").is_some())
    );
    assert_eq!(
        ids(&body),
        ["public-model", "alice-private", "research-model"]
    );
    assert_eq!(
        ids(&list("sk-bob").await.json()),
        ["public-model", "research-model"]
    );
    // The admin sees everything, base models without a record included.
    assert_eq!(
        ids(&list("sk-root").await.json()),
        [
            "public-model",
            "alice-private",
            "research-model",
            "root-private",
            "unregistered"
        ]
    );
    // Retrieving one model follows the same rule, with the same answer as the model routes
    // give: a forbidden model and an unknown one cannot be told apart.
    for id in ["root-private", "no-such-model"] {
        let res = answer(authed(
            get(&format!("{}/models/{id}", gw.url())),
            "sk-alice",
        ))
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{id}");
        assert_eq!(error_code(&res), "model_not_found");
        assert_eq!(
            res.json()["error"]["message"],
            format!("The model `{id}` does not exist or you do not have access to it.")
        );
    }
}

#[tokio::test]
async fn ac3_using_a_model_follows_the_same_rule() {
    let (mock, gw) = acl_gateway(false).await;
    let chat = |model: &str, key: &str| {
        authed(
            post_json(
                &format!("{}/chat/completions", gw.url()),
                &format!(r#"{{"model":"{model}"}}"#),
            ),
            key,
        )
    };
    for (model, key, expected) in [
        ("public-model", "sk-bob", StatusCode::OK),
        ("research-model", "sk-alice", StatusCode::OK),
        ("research-model", "sk-bob", StatusCode::OK),
        ("alice-private", "sk-alice", StatusCode::OK),
        ("alice-private", "sk-bob", StatusCode::FORBIDDEN),
        ("unregistered", "sk-alice", StatusCode::FORBIDDEN),
        ("does-not-exist", "sk-alice", StatusCode::FORBIDDEN),
        ("unregistered", "sk-root", StatusCode::OK),
        ("does-not-exist", "sk-root", StatusCode::NOT_FOUND),
    ] {
        let res = answer(chat(model, key)).await;
        assert_eq!(res.status, expected, "{model} as {key}");
        if expected != StatusCode::OK {
            assert_eq!(error_code(&res), "model_not_found");
        }
    }
    let before = mock.count("/v1/chat/completions");
    // No query parameter or header bypasses the check (AC-6).
    let mut sneaky = authed(
        post_json(
            &format!("{}/chat/completions?bypass_filter=true", gw.url()),
            r#"{"model":"alice-private"}"#,
        ),
        "sk-bob",
    );
    sneaky
        .headers_mut()
        .insert("x-bypass-filter", "true".parse().unwrap());
    assert_eq!(answer(sneaky).await.status, StatusCode::FORBIDDEN);
    assert_eq!(mock.count("/v1/chat/completions"), before);
}

#[tokio::test]
async fn bypass_lets_every_user_list_and_use_every_model() {
    let (_mock, gw) = acl_gateway(true).await;
    let list = answer(authed(get(&format!("{}/models", gw.url())), "sk-bob"))
        .await
        .json();
    assert_eq!(ids(&list).len(), 5);
    let res = answer(authed(
        post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"root-private"}"#,
        ),
        "sk-bob",
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn callers_without_a_valid_key_get_401() {
    let (mock, gw) = acl_gateway(false).await;
    let res = answer(get(&format!("{}/models", gw.url()))).await;
    assert_eq!(
        (res.status, error_code(&res)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key".to_owned())
    );
    let res = answer(authed(get(&format!("{}/models", gw.url())), "sk-wrong")).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(mock.requests().is_empty());
}
