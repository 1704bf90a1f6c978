//! What slow and many callers can make the real binary hold: buffered request bodies stay
//! under the buffer budget (RSS measured), a trickled body meets its total deadline, and the
//! connection limit fits the open-files limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Gateway, status_and_body};

/// The resident set of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    kib * 1024
}

const MIB: usize = 1 << 20;

/// Declares a 60 MiB chat body and sends `sent` bytes of it, then stalls.
fn start_body(gw: &Gateway, sent: usize) -> TcpStream {
    let mut conn = gw.connect();
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        60 * MIB
    )
    .unwrap();
    let chunk = vec![b' '; MIB];
    for _ in 0..sent / MIB {
        if conn.write_all(&chunk).is_err() {
            break;
        }
    }
    conn
}

/// The answer on `conn`, if one comes within `wait`.
fn answer_within(conn: &mut TcpStream, wait: Duration) -> Option<String> {
    conn.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 4096];
    match conn.read(&mut buf) {
        Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

#[test]
fn bodies_trickled_by_many_callers_stay_under_the_buffer_budget() {
    let gw = Gateway::start("exhaustion", |cmd| {
        cmd.arg("--demo")
            .env("GATEWAY_MAX_BUFFERED_BYTES", (48 * MIB).to_string())
            .env(
                "GATEWAY_MAX_BUFFERED_BYTES_PER_USER",
                (32 * MIB).to_string(),
            );
    });
    let pid = gw.pid();
    let _ = gw.connect();
    std::thread::sleep(Duration::from_millis(300));
    let before = rss(pid);
    // 40 bodies of 60 MiB, 4 MiB of each sent, then nothing: 160 MiB without a budget.
    let mut conns: Vec<TcpStream> = (0..40).map(|_| start_body(&gw, 4 * MIB)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let during = rss(pid);
    let refused = conns
        .iter_mut()
        .filter_map(|c| answer_within(c, Duration::from_millis(200)))
        .filter(|a| {
            let (status, body) = status_and_body(a);
            status == 503 && body.contains("gateway_overloaded") && a.contains("retry-after: 1")
        })
        .count();
    // The single user's 32 MiB hold 8 bodies' 4 MiB; the rest are refused.
    assert!(refused >= 30, "only {refused} of 40 bodies refused");
    let grew = during.saturating_sub(before);
    eprintln!(
        "RSS {} MiB before, {} MiB holding the bodies",
        before >> 20,
        during >> 20
    );
    assert!(
        grew < (32 + 40) as u64 * MIB as u64,
        "RSS grew by {} MiB holding bodies under a 32 MiB budget",
        grew / MIB as u64
    );
    // The budget is free again once they are gone: a new body is read.
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));
    let answer = gw.post(
        "/v1/chat/completions",
        "",
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(status_and_body(&answer).0, 200, "{answer}");
}

#[test]
fn a_body_trickled_past_its_total_deadline_is_408() {
    let gw = Gateway::start("trickle", |cmd| {
        cmd.arg("--demo")
            .env("GATEWAY_BODY_READ_TIMEOUT", "1")
            .env("GATEWAY_BODY_TOTAL_TIMEOUT", "2");
    });
    let mut conn = gw.connect();
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
    )
    .unwrap();
    // A byte every 0.4 s keeps the 1 s idle timeout happy; the 2 s total one is not.
    let mut answer = None;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(400));
        if let Some(a) = answer_within(&mut conn, Duration::from_millis(1)) {
            answer = Some(a);
            break;
        }
        let _ = conn.write_all(b" ");
    }
    let answer = answer.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("not complete within 2 s"), "{answer}");
}

#[test]
fn the_connection_limit_fits_the_open_files_limit() {
    // Under a hard limit of 300 open files, 10,000 connections cannot be held: the gateway
    // says so and serves at most (300 - 64) / 2.
    let gw = Gateway::start("nofile", |cmd| {
        let bin = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
        *cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("ulimit -Sn 100 && ulimit -Hn 300 && exec \"$0\" \"$@\"")
            .arg(bin)
            .args(args)
            .arg("--demo")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
    });
    let _ = gw.connect();
    let log = gw.stop();
    assert!(log.contains("max_connections=118"), "{log}");
    assert!(log.contains("open_files=300"), "{log}");
}
