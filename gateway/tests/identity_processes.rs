//! Two `openai-gateway` processes (the binary, two OS processes) on one real Postgres
//! (`DATABASE_URL`): a user and key created through one are served by the other within 2 s,
//! a revocation on one is refused by the other within 2 s, and a model record granted on one
//! is in force on the other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;
use support::{Gateway, mock_upstream, status_and_body};
use tower_openai_test_util::postgres::postgres_or_skip;

fn gateway(upstream: &str, database: &str) -> Gateway {
    Gateway::start("identity-processes", |cmd| {
        cmd.env("OPENAI_API_BASE_URLS", upstream)
            .env("OPENAI_API_CONFIGS", r#"{"0": {"model_ids": ["m"]}}"#)
            .env("DATABASE_URL", database)
            .env_remove("REDIS_URL");
    })
}

/// `METHOD path` with `key` and a JSON `body`; status and body.
fn call(g: &Gateway, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let mut conn = g.connect();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    status_and_body(&answer)
}

/// Wait until `check` holds, at most 2 s of sleeps (each look takes some time too: the bound
/// is on the sleeps, the looks come on top).
fn within_2s(mut check: impl FnMut() -> bool) -> bool {
    let step = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    while waited < Duration::from_secs(2) {
        if check() {
            return true;
        }
        std::thread::sleep(step);
        waited += step;
    }
    check()
}

fn models(g: &Gateway, key: &str) -> (u16, Vec<String>) {
    let (status, body) = g.get("/v1/models", &format!("authorization: Bearer {key}\r\n"));
    let ids = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    (status, ids)
}

#[test]
fn changes_on_one_process_are_in_force_on_the_other_within_2_s() {
    let Some(pg) = postgres_or_skip() else { return };
    let (_rt, mock) = mock_upstream();
    let a = gateway(&mock.url(), &pg.url());
    let b = gateway(&mock.url(), &pg.url());
    // The first admin, from single-user mode on A.
    let answer = a.post("/admin/users", "", r#"{"id": "root", "role": "admin"}"#);
    let (status, body) = status_and_body(&answer);
    assert_eq!(status, 201, "{body}");
    let admin: Value = serde_json::from_str(&body).unwrap();
    let admin = admin["key"]["key"].as_str().unwrap().to_owned();
    assert!(
        within_2s(|| models(&b, &admin).0 == 200),
        "B does not know the admin"
    );

    // A user with a key, made on A, used on B: no model yet (no record).
    let (status, body) = call(
        &a,
        "POST",
        "/admin/users",
        &admin,
        r#"{"id": "ann", "role": "user", "create_key": true}"#,
    );
    assert_eq!(status, 201, "{body}");
    let ann: Value = serde_json::from_str(&body).unwrap();
    let (key, key_id) = (
        ann["key"]["key"].as_str().unwrap(),
        ann["key"]["id"].as_str().unwrap(),
    );
    assert!(
        within_2s(|| models(&b, key) == (200, vec![])),
        "B does not know Ann's key"
    );

    // Access granted on A: B lists the model for Ann.
    let (status, body) = call(
        &a,
        "PUT",
        "/admin/models/m",
        &admin,
        r#"{"access": "public"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        within_2s(|| models(&b, key) == (200, vec!["m".to_owned()])),
        "B does not apply the record"
    );

    // Revoked on A: refused on B.
    let (status, body) = call(&a, "DELETE", &format!("/admin/keys/{key_id}"), &admin, "");
    assert_eq!(status, 204, "{body}");
    assert!(
        within_2s(|| models(&b, key).0 == 401),
        "B still accepts the revoked key"
    );
}
