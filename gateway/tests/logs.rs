//! The binary's logs: stderr, one line per event, no colour codes unless stderr is a
//! terminal, one JSON object per line with `LOG_FORMAT=json`, and one line (not a WARN and
//! an ERROR) for an upstream failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use support::{Gateway, mock_upstream};

/// Run the gateway in front of a dead upstream, send it one chat, stop it; its stderr.
fn logs_of_a_failed_chat(log_format: Option<&str>) -> String {
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    logs_of_a_chat(&format!("http://{dead}/v1"), log_format, "502")
}

/// Run the gateway in front of `upstream` (model `m`), send it one chat (answered with
/// `status`), stop it; its stderr.
fn logs_of_a_chat(upstream: &str, log_format: Option<&str>, status: &str) -> String {
    let gateway = Gateway::start("logs", |cmd| {
        cmd.env("OPENAI_API_BASE_URLS", upstream)
            .env("OPENAI_API_CONFIGS", r#"{"0": {"model_ids": ["m"]}}"#)
            .env("RUST_LOG", "info")
            .env_remove("LOG_FORMAT")
            .stderr(Stdio::piped());
        if let Some(format) = log_format {
            cmd.env("LOG_FORMAT", format);
        }
    });
    let answer = gateway.post(
        "/v1/chat/completions?secret=query-value",
        "",
        r#"{"model":"m"}"#,
    );
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{answer}"
    );
    std::thread::sleep(Duration::from_millis(200));
    gateway.stop()
}

#[test]
fn plain_logs_have_no_colour_codes_and_one_line_per_failure() {
    let logs = logs_of_a_failed_chat(None);
    assert!(!logs.contains('\u{1b}'), "{logs}");
    assert!(logs.contains("openai-gateway listening"), "{logs}");
    let failures: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert_eq!(failures.len(), 1, "{logs}");
    assert!(!logs.contains("query-value"), "{logs}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let logs = logs_of_a_failed_chat(Some("json"));
    let mut levels = Vec::new();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        levels.push(event["level"].as_str().unwrap_or_default().to_owned());
    }
    assert!(levels.iter().any(|l| l == "INFO"), "{logs}");
    assert_eq!(
        levels
            .iter()
            .filter(|l| *l == "WARN" || *l == "ERROR")
            .count(),
        1,
        "{logs}"
    );
}

#[test]
fn one_access_line_per_request_written_when_the_body_ends() {
    let (_rt, mock) = mock_upstream();
    let logs = logs_of_a_chat(&mock.url(), None, "200");
    let access: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("tower_openai::access"))
        .collect();
    assert_eq!(access.len(), 1, "{logs}");
    let line = access[0];
    for field in [
        "request_id=\"",
        r#"method="POST""#,
        r#"path="/v1/chat/completions""#,
        r#"model="m""#,
        "connection=0",
        "status=200",
        "ttfb_ms=",
        "duration_ms=",
        "input_tokens=5",
        "output_tokens=6",
        r#"outcome="completed""#,
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert!(!logs.contains("query-value"), "{logs}");
}

#[test]
fn the_access_line_is_one_json_object_with_the_same_fields() {
    let (_rt, mock) = mock_upstream();
    let logs = logs_of_a_chat(&mock.url(), Some("json"), "200");
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "tower_openai::access")
        .collect();
    assert_eq!(access.len(), 1, "{logs}");
    let fields = &access[0]["fields"];
    assert_eq!(fields["model"], "m", "{fields}");
    assert_eq!(fields["status"], 200, "{fields}");
    assert_eq!(fields["input_tokens"], "5", "{fields}");
    assert_eq!(fields["outcome"], "completed", "{fields}");
    assert!(fields["duration_ms"].is_number(), "{fields}");
}

/// The `key=value` pairs of a logfmt record (values bare or quoted with `\` escapes), after
/// the `target:` that ends the line's prefix.
fn logfmt(line: &str) -> Vec<(String, String)> {
    let record = line
        .split_once("tower_openai::access: ")
        .expect("an access line")
        .1;
    let mut pairs = Vec::new();
    let mut chars = record.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return pairs;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ' ') {
                value.push(c);
            }
        }
        pairs.push((key, value));
    }
}

#[test]
fn a_path_is_logged_once_escaped_and_cut_and_cannot_plant_fields() {
    let (_rt, mock) = mock_upstream();
    let gateway = Gateway::start("logs-path", |cmd| {
        cmd.env("OPENAI_API_BASE_URLS", mock.url())
            .env("RUST_LOG", "info")
            .env_remove("LOG_FORMAT")
            .stderr(Stdio::piped());
    });
    let planted = r#"/v1/x"}:%20user="admin"%20status=200"#;
    let long = format!("/v1/{}", "a".repeat(60 * 1024));
    for path in [planted, long.as_str()] {
        let (status, _) = gateway.get(path, "");
        assert_eq!(status, 403, "{path:.80}");
    }
    std::thread::sleep(Duration::from_millis(200));
    let logs = gateway.stop();
    let access: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("tower_openai::access"))
        .collect();
    assert_eq!(access.len(), 2, "{logs}");
    for line in &access {
        // No span prefix repeating the request's fields before the record.
        assert!(
            line.contains(" INFO tower_openai::access: request_id="),
            "{line}"
        );
        let pairs = logfmt(line);
        let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "a field twice in {line}");
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("user"), Some("admin"), "{line}");
        assert_eq!(get("status"), Some("403"), "{line}");
        assert_eq!(get("route"), None, "{line}");
    }
    assert_eq!(
        logfmt(access[0])
            .iter()
            .find(|(k, _)| k == "path")
            .unwrap()
            .1,
        planted
    );
    // The 60 KiB path: 256 bytes of it, once, in a short log.
    let cut = logfmt(access[1]);
    let path = &cut.iter().find(|(k, _)| k == "path").unwrap().1;
    assert_eq!(path.len(), 256);
    assert!(logs.len() < 8 * 1024, "{} bytes of log", logs.len());
}

/// A key the admin API creates is in no log line, at the most verbose level, through its
/// creation, its use and its revocation (GATEWAY.md: the key appears in the creating answer
/// only).
#[test]
fn a_created_key_is_in_no_log() {
    let (_rt, mock) = mock_upstream();
    let gateway = Gateway::start("identity-logs", |cmd| {
        cmd.env("OPENAI_API_BASE_URLS", mock.url())
            .env("RUST_LOG", "trace")
            .env_remove("LOG_FORMAT")
            .stderr(Stdio::piped());
    });
    let answer = gateway.post("/admin/users", "", r#"{"id": "root", "role": "admin"}"#);
    let (status, body) = support::status_and_body(&answer);
    assert_eq!(status, 201, "{answer}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let key = created["key"]["key"].as_str().unwrap().to_owned();
    let id = created["key"]["id"].as_str().unwrap().to_owned();
    let auth = format!("authorization: Bearer {key}\r\n");
    assert_eq!(gateway.get("/v1/models", &auth).0, 200);
    let answer = gateway.post(
        "/admin/keys",
        &auth,
        r#"{"user": "root", "name": "second"}"#,
    );
    let (status, body) = support::status_and_body(&answer);
    assert_eq!(status, 201, "{answer}");
    let second: serde_json::Value = serde_json::from_str(&body).unwrap();
    let second = second["key"].as_str().unwrap().to_owned();
    let mut conn = gateway.connect();
    write!(
        conn,
        "DELETE /admin/keys/{id} HTTP/1.1\r\nhost: localhost\r\n{auth}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    assert_eq!(gateway.get("/v1/models", &auth).0, 401);
    std::thread::sleep(Duration::from_millis(200));
    let logs = gateway.stop();
    assert!(
        logs.contains("admin/users"),
        "the logs were captured: {logs}"
    );
    // Neither key, nor the random part of either.
    for key in [&key, &second] {
        assert!(!logs.contains(&key[6..]), "a key is in the logs");
    }
}
