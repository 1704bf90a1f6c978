//! The identity store over sockets (GATEWAY.md "Users, groups, keys and model access in a
//! database"): the admin API, the seeding rule, and changes reaching every process that
//! shares the database (a SQLite file, and a real Postgres cluster).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use openai_gateway::Args;
use serde_json::{Value, json};
use tower_openai_test_util::MockUpstream;
use tower_openai_test_util::postgres::postgres_or_skip;

use common::{Answer, answer, error_code, start_with, temp_dir};

fn call(method: Method, url: &str, key: Option<&str>, body: Option<Value>) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    match body {
        Some(body) => req
            .header("content-type", "application/json")
            .body(Full::from(body.to_string()))
            .unwrap(),
        None => req.body(Full::default()).unwrap(),
    }
}

/// The gateway's root URL (`http://ADDR`), from its API URL.
fn root(gw: &openai_gateway::RunningGateway) -> String {
    gw.url().trim_end_matches("/v1").to_owned()
}

async fn mock() -> MockUpstream {
    MockUpstream::builder().models(["m"]).start().await
}

async fn start(
    mock: &MockUpstream,
    extra: &[(&str, &str)],
    data_dir: Option<std::path::PathBuf>,
    config: Option<&str>,
) -> openai_gateway::RunningGateway {
    let mut pairs = vec![("OPENAI_API_BASE_URLS", mock.url())];
    pairs.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = config.map(|text| {
        let path = temp_dir().join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        path
    });
    start_with(
        Args {
            data_dir,
            config,
            ..Args::default()
        },
        &pairs,
    )
    .await
}

async fn models_status(gw: &openai_gateway::RunningGateway, key: Option<&str>) -> StatusCode {
    answer(call(
        Method::GET,
        &format!("{}/models", gw.url()),
        key,
        None,
    ))
    .await
    .status
}

/// Create the first admin from single-user mode; its key.
async fn first_admin(gw: &openai_gateway::RunningGateway) -> String {
    let a = answer(call(
        Method::POST,
        &format!("{}/admin/users", root(gw)),
        None,
        Some(json!({"id": "root", "role": "admin"})),
    ))
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    a.json()["key"]["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn single_user_mode_ends_with_the_first_admin_and_their_key() {
    let mock = mock().await;
    let gw = start(&mock, &[], None, None).await;
    assert_eq!(models_status(&gw, None).await, StatusCode::OK);
    let a = answer(call(
        Method::POST,
        &format!("{}/admin/users", root(&gw)),
        None,
        Some(json!({"id": "bob", "role": "user"})),
    ))
    .await;
    assert_eq!(
        (a.status, error_code(&a).as_str()),
        (StatusCode::BAD_REQUEST, "admin_required")
    );
    let key = first_admin(&gw).await;
    assert!(key.starts_with("sk-gw-"));
    // No caller without a key from now on; the key works.
    assert_eq!(models_status(&gw, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(models_status(&gw, Some(&key)).await, StatusCode::OK);
}

#[tokio::test]
async fn the_admin_api_rows() {
    let mock = mock().await;
    let gw = start(&mock, &[], None, None).await;
    let admin = first_admin(&gw).await;
    let base = root(&gw);
    let go = |m: Method, path: &str, body: Option<Value>| {
        call(m, &format!("{base}{path}"), Some(&admin), body)
    };

    // Groups.
    let a = answer(go(
        Method::POST,
        "/admin/groups",
        Some(json!({"id": "research", "name": "Research"})),
    ))
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let a = answer(go(
        Method::POST,
        "/admin/groups",
        Some(json!({"id": "research"})),
    ))
    .await;
    assert_eq!(
        (a.status, error_code(&a).as_str()),
        (StatusCode::CONFLICT, "conflict")
    );
    let a = answer(go(Method::GET, "/admin/groups", None)).await;
    assert_eq!(
        a.json()["data"],
        json!([{"id": "research", "name": "Research"}])
    );

    // Users: create with a key, bad input, get, patch, the list.
    let a = answer(go(Method::POST, "/admin/users", Some(json!({"id": "ann", "role": "user", "groups": ["research"], "rate_limit": {"rpm": 100}, "create_key": true})))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let ann = a.json();
    assert_eq!(ann["groups"], json!(["research"]));
    assert_eq!(ann["rate_limit"], json!({"rpm": 100}));
    assert_eq!(ann["budget"], Value::Null);
    let ann_key = ann["key"]["key"].as_str().unwrap().to_owned();
    for (body, status, code) in [
        (
            json!({"id": "x", "role": "user", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"id": "x", "role": "owner"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"id": "x", "role": "user", "groups": ["nope"]}),
            StatusCode::BAD_REQUEST,
            "unknown_group",
        ),
        (
            json!({"id": "ann", "role": "user"}),
            StatusCode::CONFLICT,
            "conflict",
        ),
    ] {
        let a = answer(go(Method::POST, "/admin/users", Some(body.clone()))).await;
        assert_eq!(
            (a.status, error_code(&a).as_str()),
            (status, code),
            "{body}"
        );
    }
    let a = answer(go(Method::GET, "/admin/users/ann", None)).await;
    assert_eq!(a.json()["id"], "ann");
    let a = answer(go(Method::GET, "/admin/users/ghost", None)).await;
    assert_eq!(
        (a.status, error_code(&a).as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let a = answer(go(
        Method::PATCH,
        "/admin/users/ann",
        Some(json!({"name": "Ann", "rate_limit": null})),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(
        (a.json()["name"].as_str(), &a.json()["rate_limit"]),
        (Some("Ann"), &Value::Null)
    );
    let a = answer(go(
        Method::PATCH,
        "/admin/users/root",
        Some(json!({"role": "user"})),
    ))
    .await;
    assert_eq!(
        (a.status, error_code(&a).as_str()),
        (StatusCode::CONFLICT, "last_admin")
    );
    let a = answer(go(Method::GET, "/admin/users", None)).await;
    assert_eq!(a.json()["data"].as_array().unwrap().len(), 2);

    // A non-admin, a wrong method, a body that is not JSON.
    let a = answer(call(
        Method::GET,
        &format!("{base}/admin/users"),
        Some(&ann_key),
        None,
    ))
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = answer(go(Method::PUT, "/admin/users", Some(json!({})))).await;
    assert_eq!(
        (a.status, error_code(&a).as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let a = answer(call(
        Method::GET,
        &format!("{base}/admin/nothing"),
        Some(&admin),
        None,
    ))
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let mut req = go(Method::POST, "/admin/groups", Some(json!({"id": "g2"})));
    req.headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    assert_eq!(answer(req).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Model records: ann reads `m` once her group may.
    assert_eq!(
        answer(call(
            Method::GET,
            &format!("{}/models", gw.url()),
            Some(&ann_key),
            None
        ))
        .await
        .json()["data"],
        json!([])
    );
    let a = answer(go(
        Method::PUT,
        "/admin/models/m",
        Some(json!({"access": {"read_groups": ["research"]}})),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(
        a.json(),
        json!({"id": "m", "owner": "root", "access": {"read_groups": ["research"], "read_users": []}})
    );
    let listed = answer(call(
        Method::GET,
        &format!("{}/models", gw.url()),
        Some(&ann_key),
        None,
    ))
    .await
    .json();
    assert_eq!(listed["data"][0]["id"], "m", "{listed}");
    let a = answer(go(
        Method::PUT,
        "/admin/models/org/model",
        Some(json!({"access": "public"})),
    ))
    .await;
    assert_eq!(a.json()["id"], "org/model");
    let a = answer(go(
        Method::PUT,
        "/admin/models/m",
        Some(json!({"access": "everyone"})),
    ))
    .await;
    assert_eq!(
        (a.status, error_code(&a).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_body")
    );
    let a = answer(go(Method::GET, "/admin/models", None)).await;
    assert_eq!(a.json()["data"].as_array().unwrap().len(), 2);
    let a = answer(go(Method::DELETE, "/admin/models/m", None)).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(
        answer(call(
            Method::GET,
            &format!("{}/models", gw.url()),
            Some(&ann_key),
            None
        ))
        .await
        .json()["data"],
        json!([])
    );

    // Keys: a second key, listed without the key, revoked: refused at once.
    let a = answer(go(
        Method::POST,
        "/admin/keys",
        Some(json!({"user": "ann", "name": "ci"})),
    ))
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let second = a.json();
    let a = answer(go(Method::GET, "/admin/keys?user=ann", None)).await;
    let text = a.text();
    assert!(!text.contains(second["key"].as_str().unwrap()), "{text}");
    assert_eq!(a.json()["data"].as_array().unwrap().len(), 2);
    let a = answer(go(Method::GET, "/admin/keys?colour=red", None)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(models_status(&gw, Some(&ann_key)).await, StatusCode::OK);
    let ann_key_id = ann["key"]["id"].as_str().unwrap();
    let a = answer(go(
        Method::DELETE,
        &format!("/admin/keys/{ann_key_id}"),
        None,
    ))
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(
        models_status(&gw, Some(&ann_key)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        models_status(&gw, Some(second["key"].as_str().unwrap())).await,
        StatusCode::OK
    );

    // Deleting the group; deleting the user revokes her keys.
    assert_eq!(
        answer(go(Method::DELETE, "/admin/groups/research", None))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        answer(go(Method::GET, "/admin/users/ann", None))
            .await
            .json()["groups"],
        json!([])
    );
    assert_eq!(
        answer(go(Method::DELETE, "/admin/users/ann", None))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        models_status(&gw, Some(second["key"].as_str().unwrap())).await,
        StatusCode::UNAUTHORIZED
    );

    // The audit: one entry per write, newest first, never a key.
    let a = answer(go(Method::GET, "/admin/audit?limit=3", None)).await;
    let audit = a.json();
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["user.delete", "group.delete", "key.revoke"]);
    // A settings update is an admin write too.
    let update = json!({
        "OPENAI_API_BASE_URLS": [mock.url()],
        "OPENAI_API_KEYS": [""],
        "OPENAI_API_CONFIGS": {},
    });
    let a = answer(go(Method::POST, "/openai/config/update", Some(update))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let newest = answer(go(Method::GET, "/admin/audit?limit=1", None))
        .await
        .json();
    assert_eq!(newest["data"][0]["action"], "config.update");
    assert_eq!(newest["data"][0]["actor"], "root");
    let all = answer(go(Method::GET, "/admin/audit?limit=1000", None))
        .await
        .text();
    assert!(!all.contains(&admin) && !all.contains(&ann_key), "{all}");
}

#[tokio::test]
async fn the_file_seeds_the_store_and_the_store_wins() {
    let mock = mock().await;
    let data = temp_dir();
    let file = |name: &str| {
        format!(
            "[[users]]\nid = \"alice\"\nname = \"{name}\"\nrole = \"admin\"\napi_key = \"sk-alice\"\n"
        )
    };
    let gw = start(&mock, &[], Some(data.clone()), Some(&file("From the file"))).await;
    let go = |gw: &openai_gateway::RunningGateway, m: Method, path: &str, body: Option<Value>| {
        call(m, &format!("{}{path}", root(gw)), Some("sk-alice"), body)
    };
    assert_eq!(
        answer(go(&gw, Method::GET, "/admin/users/alice", None))
            .await
            .json()["name"],
        "From the file"
    );
    let a = answer(go(
        &gw,
        Method::PATCH,
        "/admin/users/alice",
        Some(json!({"name": "Changed"})),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK);
    drop(gw);
    // Restarted on the same data dir with the file saying otherwise: the database wins.
    let gw = start(&mock, &[], Some(data), Some(&file("The file again"))).await;
    assert_eq!(
        answer(go(&gw, Method::GET, "/admin/users/alice", None))
            .await
            .json()["name"],
        "Changed"
    );
    let keys = answer(go(&gw, Method::GET, "/admin/keys?user=alice", None))
        .await
        .json();
    assert_eq!(keys["data"][0]["name"], "config");
}

/// Wait up to `within` for `models_status(key)` to become `want`.
async fn becomes(
    gw: &openai_gateway::RunningGateway,
    key: &str,
    want: StatusCode,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if models_status(gw, Some(key)).await == want {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn two_processes_share(url: &str) {
    let mock = mock().await;
    let a = start(&mock, &[("DATABASE_URL", url)], None, None).await;
    let b = start(&mock, &[("DATABASE_URL", url)], None, None).await;
    let admin = first_admin(&a).await;
    // Made on one, in force on the other within 2 s.
    assert!(
        becomes(&b, &admin, StatusCode::OK, Duration::from_secs(2)).await,
        "the new key did not reach the other process"
    );
    let created: Answer = answer(call(
        Method::POST,
        &format!("{}/admin/keys", root(&a)),
        Some(&admin),
        Some(json!({"user": "root"})),
    ))
    .await;
    let key = created.json();
    assert!(
        becomes(
            &b,
            key["key"].as_str().unwrap(),
            StatusCode::OK,
            Duration::from_secs(2)
        )
        .await
    );
    let id = key["id"].as_str().unwrap();
    let a_revoked = answer(call(
        Method::DELETE,
        &format!("{}/admin/keys/{id}", root(&a)),
        Some(&admin),
        None,
    ))
    .await;
    assert_eq!(a_revoked.status, StatusCode::NO_CONTENT);
    assert!(
        becomes(
            &b,
            key["key"].as_str().unwrap(),
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(2)
        )
        .await,
        "the revocation did not reach the other process"
    );
}

#[tokio::test]
async fn a_key_made_on_one_process_works_on_another_and_its_revocation_too_sqlite() {
    let url = format!("sqlite://{}", temp_dir().join("shared.db").display());
    two_processes_share(&url).await;
}

#[tokio::test]
async fn a_key_made_on_one_process_works_on_another_and_its_revocation_too_postgres() {
    let Some(pg) = postgres_or_skip() else { return };
    two_processes_share(&pg.url()).await;
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_stops_start_up_naming_the_variable() {
    let args = Args {
        listen: Some("127.0.0.1:0".to_owned()),
        data_dir: Some(temp_dir()),
        ..Args::default()
    };
    let pg = format!(
        "postgres://user:secret-pw@{}/db",
        common::dead_url()
            .trim_start_matches("http://")
            .trim_end_matches("/v1")
    );
    for url in ["sqlite:///nonexistent-dir/x/gateway.db", pg.as_str()] {
        let config =
            openai_gateway::GatewayConfig::load(&args, &common::env(&[("DATABASE_URL", url)]))
                .unwrap();
        let err = openai_gateway::Gateway::new(config)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
        assert!(!err.contains("secret-pw"), "{err}");
    }
    let err =
        openai_gateway::GatewayConfig::load(&args, &common::env(&[("DATABASE_URL", "mysql://x")]))
            .unwrap_err()
            .to_string();
    assert!(err.contains("DATABASE_URL"), "{err}");
}

#[tokio::test]
async fn a_database_that_went_away_refuses_admin_writes_and_serving_goes_on() {
    let Some(mut pg) = postgres_or_skip() else {
        return;
    };
    let mock = mock().await;
    let gw = start(&mock, &[("DATABASE_URL", &pg.url())], None, None).await;
    let admin = first_admin(&gw).await;
    pg.stop();
    let a = answer(call(
        Method::POST,
        &format!("{}/admin/groups", root(&gw)),
        Some(&admin),
        Some(json!({"id": "g"})),
    ))
    .await;
    assert_eq!(
        (a.status, error_code(&a).as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "identity_store_unavailable"
        )
    );
    // Nothing of the database's own message or address reaches the caller.
    assert!(!a.text().contains("127.0.0.1"), "{}", a.text());
    assert_eq!(models_status(&gw, Some(&admin)).await, StatusCode::OK);
    assert_eq!(
        models_status(&gw, Some("sk-nobody")).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_expired_key_is_refused_on_a_kept_alive_connection_too() {
    let mock = mock().await;
    let gw = start(&mock, &[], None, None).await;
    let admin = first_admin(&gw).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let a = answer(call(
        Method::POST,
        &format!("{}/admin/keys", root(&gw)),
        Some(&admin),
        Some(json!({"user": "root", "expires_at": now + 2})),
    ))
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let key = a.json()["key"].as_str().unwrap().to_owned();
    // One client, so one kept-alive connection: the gateway remembers the key on it.
    let client = common::client();
    let status = |client: &hyper_util::client::legacy::Client<_, Full<Bytes>>| {
        let req = call(
            Method::GET,
            &format!("{}/models", gw.url()),
            Some(&key),
            None,
        );
        let sent = client.request(req);
        async move { sent.await.unwrap().status() }
    };
    assert_eq!(status(&client).await, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while status(&client).await == StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired key was still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&client).await, StatusCode::UNAUTHORIZED);
    let a = answer(call(
        Method::POST,
        &format!("{}/admin/keys", root(&gw)),
        Some(&admin),
        Some(json!({"user": "root", "expires_at": now - 1})),
    ))
    .await;
    assert_eq!(
        (a.status, error_code(&a).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_body")
    );
}

#[tokio::test]
async fn prices_come_from_the_file_and_the_admin_api() {
    let mock = mock().await;
    let file = "[[users]]\nid = \"root\"\nrole = \"admin\"\napi_key = \"sk-root\"\n\n\
                [[prices]]\nmodel = \"gpt-4o*\"\ninput = 2.5\noutput = 10.0\ncached_input = 1.25\n";
    let gw = start(&mock, &[], None, Some(file)).await;
    let go = |m: Method, path: &str, body: Option<Value>| {
        call(m, &format!("{}{path}", root(&gw)), Some("sk-root"), body)
    };
    let a = answer(go(Method::GET, "/admin/prices", None)).await;
    assert_eq!(
        a.json()["data"],
        json!([{"model": "gpt-4o*", "input": 2.5, "output": 10.0, "cached_input": 1.25}])
    );
    let a = answer(go(
        Method::PUT,
        "/admin/prices/openai/gpt-oss-120b",
        Some(json!({"input": 0.1, "output": 0.5})),
    ))
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["model"], "openai/gpt-oss-120b");
    for body in [
        json!({"input": -1, "output": 1}),
        json!({"input": 1}),
        json!({"input": 1, "output": 1, "currency": "EUR"}),
    ] {
        let a = answer(go(Method::PUT, "/admin/prices/m", Some(body.clone()))).await;
        assert_eq!(
            (a.status, error_code(&a).as_str()),
            (StatusCode::BAD_REQUEST, "invalid_body"),
            "{body}"
        );
    }
    let a = answer(go(
        Method::PUT,
        "/admin/prices/gpt*4o",
        Some(json!({"input": 1, "output": 1})),
    ))
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = answer(go(
        Method::DELETE,
        "/admin/prices/openai/gpt-oss-120b",
        None,
    ))
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = answer(go(
        Method::DELETE,
        "/admin/prices/openai/gpt-oss-120b",
        None,
    ))
    .await;
    assert_eq!(
        (a.status, error_code(&a).as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let actions = answer(go(Method::GET, "/admin/audit?limit=2", None))
        .await
        .json();
    assert_eq!(actions["data"][0]["action"], "price.delete");
    assert_eq!(actions["data"][1]["action"], "price.put");
}

#[test]
fn a_bad_price_in_the_file_stops_start_up_naming_it() {
    for (text, field) in [
        (
            "[[prices]]\nmodel = \"a*b\"\ninput = 1\noutput = 1\n",
            "prices[0].model",
        ),
        (
            "[[prices]]\nmodel = \"m\"\ninput = -1\noutput = 1\n",
            "prices[0].input",
        ),
        (
            "[[prices]]\nmodel = \"m\"\ninput = 1\noutput = 1\n[[prices]]\nmodel = \"m\"\ninput = 1\noutput = 1\n",
            "prices[1].model",
        ),
        ("[[prices]]\nmodel = \"m\"\ninput = 1\n", "output"),
    ] {
        let path = temp_dir().join("prices.toml");
        std::fs::write(&path, text).unwrap();
        let args = Args {
            config: Some(path),
            ..Args::default()
        };
        let err = openai_gateway::GatewayConfig::load(&args, &common::env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}
