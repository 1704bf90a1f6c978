//! The binary's logs: stderr, one line per event, no colour codes unless stderr is a
//! terminal, one JSON object per line with `LOG_FORMAT=json`, and one line (not a WARN and
//! an ERROR) for an upstream failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

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
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("tower-openai-logs-{port}"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openai-gateway"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&dir)
        .env("OPENAI_API_BASE_URLS", upstream)
        .env("OPENAI_API_CONFIGS", r#"{"0": {"model_ids": ["m"]}}"#)
        .env("RUST_LOG", "info")
        .env_remove("LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(format) = log_format {
        cmd.env("LOG_FORMAT", format);
    }
    let mut child = cmd.spawn().unwrap();
    let mut conn = None;
    for _ in 0..100 {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            conn = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut conn = conn.expect("the gateway listens");
    let body = r#"{"model":"m"}"#;
    write!(
        conn,
        "POST /v1/chat/completions?secret=query-value HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{answer}"
    );
    std::thread::sleep(Duration::from_millis(200));
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    String::from_utf8(output.stderr).unwrap()
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

/// A mock upstream on its own runtime, for the binary to call.
fn mock_upstream() -> (
    tokio::runtime::Runtime,
    tower_openai_test_util::MockUpstream,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock = rt.block_on(
        tower_openai_test_util::MockUpstream::builder()
            .models(["m"])
            .start(),
    );
    (rt, mock)
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
        "method=POST",
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
