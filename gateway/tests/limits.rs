//! Bounded resources and clean shutdown (docs/limits.md), through the real gateway over raw
//! sockets: the connection limit, the header-read and idle timeouts for HTTP/1 and HTTP/2,
//! head limits, the body read timeout, and the terminal event at the end of the grace
//! period.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use openai_gateway::Args;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_openai_test_util::{MockUpstream, Sse};

use common::*;

/// Everything the server sends until it closes the connection (at most `limit` to wait).
async fn until_closed(conn: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    match tokio::time::timeout(limit, conn.read_to_end(&mut got)).await {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const HTTP2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

#[tokio::test]
async fn silent_half_sent_and_preface_only_connections_are_closed_after_the_header_timeout() {
    let mock = MockUpstream::start().await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("GATEWAY_HEADER_READ_TIMEOUT", "1"),
        ],
    )
    .await;
    let sends: [&[u8]; 5] = [
        // Nothing at all: the protocol is never detected.
        b"",
        // One byte: still detecting.
        b"G",
        // Half a head.
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n",
        // The HTTP/2 preface, and nothing more.
        HTTP2_PREFACE,
        // The preface and settings, but no request.
        &[HTTP2_PREFACE, HTTP2_SETTINGS].concat(),
    ];
    for send in sends {
        let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
        conn.write_all(send).await.unwrap();
        let closed = until_closed(&mut conn, Duration::from_secs(15)).await;
        assert!(
            closed.is_some(),
            "a connection that sent {:?} was kept open",
            String::from_utf8_lossy(send)
        );
        assert!(!closed.unwrap().contains("200 OK"));
    }
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_and_a_busy_one_is_not() {
    let mock = MockUpstream::builder()
        .sse(
            "/v1/chat/completions",
            Sse::chunks("gpt-4o-mini", 4).gap(Duration::from_millis(800)),
        )
        .start()
        .await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("GATEWAY_HEADER_READ_TIMEOUT", "1"),
        ],
    )
    .await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    // A stream longer than the timeout, on one HTTP/2 connection, is not cut.
    let res = client
        .request(post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"gpt-4o-mini","stream":true}"#,
        ))
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("[DONE]"), "{text}");
    // A raw HTTP/2 connection that makes one request, then sits idle: closed.
    let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
    conn.write_all(&[HTTP2_PREFACE, HTTP2_SETTINGS, &healthz_headers_frame()].concat())
        .await
        .unwrap();
    let closed = until_closed(&mut conn, Duration::from_secs(15))
        .await
        .expect("the idle HTTP/2 connection was closed");
    // It was answered first: a HEADERS frame (type 1) on stream 1 came back.
    assert!(closed.len() > 9, "no answer before the close");
}

/// A HEADERS frame for `GET /healthz` on stream 1 (HPACK: static-table indices and
/// literals without Huffman coding), ending the stream.
fn healthz_headers_frame() -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    block.push(0x44); // :path, literal with indexing
    block.push(8);
    block.extend_from_slice(b"/healthz");
    block.push(0x41); // :authority, literal with indexing
    block.push(1);
    block.push(b'x');
    let len = block.len();
    let mut frame = vec![0, 0, len as u8, 0x1, 0x5, 0, 0, 0, 1];
    frame.extend_from_slice(&block);
    frame
}

#[tokio::test]
async fn heads_too_large_or_with_too_many_fields_are_431() {
    let gw = start(&dead_url()).await;
    let big = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let mut fields = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\n");
    for i in 0..128 {
        fields.push_str(&format!("x-f{i}: 1\r\n"));
    }
    fields.push_str("\r\n");
    for head in [big, fields] {
        let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
        let _ = conn.write_all(head.as_bytes()).await;
        let answer = until_closed(&mut conn, Duration::from_secs(10))
            .await
            .unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    }
    // 127 fields and `Host` is fine.
    let mut ok = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for i in 0..126 {
        ok.push_str(&format!("x-f{i}: 1\r\n"));
    }
    ok.push_str("\r\n");
    let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
    conn.write_all(ok.as_bytes()).await.unwrap();
    let answer = until_closed(&mut conn, Duration::from_secs(10))
        .await
        .unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.80}");
}

/// A connection from `ip` (any 127.0.0.0/8 address is this machine).
async fn connect_from(ip: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

const CHAT: &str = r#"{"model":"m","messages":[]}"#;

fn chat_request(close: bool) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{CHAT}",
        CHAT.len(),
        if close { "connection: close\r\n" } else { "" }
    )
}

#[tokio::test]
async fn at_the_connection_limit_busy_connections_keep_their_place_and_an_idle_one_makes_room() {
    // Chats take a second.
    let mock = MockUpstream::builder()
        .models(["m"])
        .delay("/v1/chat/completions", Duration::from_secs(1))
        .start()
        .await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("GATEWAY_MAX_CONNECTIONS", "2"),
        ],
    )
    .await;
    let mut first = TcpStream::connect(gw.addr()).await.unwrap();
    let mut second = TcpStream::connect(gw.addr()).await.unwrap();
    for conn in [&mut first, &mut second] {
        conn.write_all(chat_request(false).as_bytes())
            .await
            .unwrap();
    }
    mock.wait_for_requests("/v1/chat/completions", 2).await;
    // Both busy: the third waits in the kernel's backlog.
    let mut third = TcpStream::connect(gw.addr()).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the third connection was served while both were busy"
    );
    // The first answer comes; that connection (kept alive) is now idle and makes room.
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let answer = until_closed(&mut third, Duration::from_secs(10))
        .await
        .expect("served once a connection went idle");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The idle one was closed; the busy one was not: its answer arrives.
    assert_eq!(
        until_closed(&mut first, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("")
    );
    let n = second.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_flood_of_idle_connections_does_not_lock_a_caller_out() {
    let mock = MockUpstream::builder().models(["m"]).start().await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("GATEWAY_MAX_CONNECTIONS", "40"),
            ("GATEWAY_MAX_CONNECTIONS_PER_IP", "15"),
        ],
    )
    .await;
    // Past 15, an address's connections are closed at once.
    let mut flood = Vec::new();
    for _ in 0..15 {
        flood.push(connect_from([127, 0, 0, 2], gw.addr()).await);
    }
    let mut extra = connect_from([127, 0, 0, 2], gw.addr()).await;
    assert_eq!(
        until_closed(&mut extra, Duration::from_secs(5))
            .await
            .as_deref(),
        Some(""),
        "a 16th connection from one address was kept"
    );
    // Three more addresses open 15 idle connections each: 60 at a limit of 40.
    for host in 3..=5 {
        for _ in 0..15 {
            flood.push(connect_from([127, 0, 0, host], gw.addr()).await);
        }
    }
    // A caller still gets through, at once.
    let mut caller = connect_from([127, 0, 0, 1], gw.addr()).await;
    caller
        .write_all(chat_request(true).as_bytes())
        .await
        .unwrap();
    let answer = until_closed(&mut caller, Duration::from_secs(5))
        .await
        .expect("the caller was served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
    drop(flood);
}

#[tokio::test]
async fn a_body_that_stops_is_408_and_nothing_is_forwarded() {
    let mock = MockUpstream::builder().models(["m"]).start().await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("GATEWAY_BODY_READ_TIMEOUT", "1"),
        ],
    )
    .await;
    let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
    conn.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":\"m\",",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("answered within 10 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(mock.count("/v1/chat/completions"), 0);
}

/// Sends `head` and part of a body on a new connection; the answer within 10 s.
async fn stalled(gw: &openai_gateway::RunningGateway, head: &str, part: &str) -> String {
    let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
    conn.write_all(format!("{head}content-length: 100\r\n\r\n{part}").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("answered within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn admin_and_passthrough_bodies_that_stop_are_408_too() {
    let mock = MockUpstream::builder()
        .models(["m"])
        .any(
            "/v1/files",
            tower_openai_test_util::Reply::json(serde_json::json!({})),
        )
        .start()
        .await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("GATEWAY_BODY_READ_TIMEOUT", "1"),
            ("ENABLE_OPENAI_API_PASSTHROUGH", "true"),
        ],
    )
    .await;
    let admin = stalled(
        &gw,
        "POST /openai/config/update HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n",
        "{\"ENABLE_OPENAI_API\":",
    )
    .await;
    assert!(admin.starts_with("HTTP/1.1 408"), "{admin}");
    assert!(admin.contains("request_timeout"), "{admin}");
    // A passthrough upload streams on to the upstream as it comes: when it stops, the
    // caller gets the 408, not a 502.
    let upload = stalled(
        &gw,
        "POST /v1/files HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/octet-stream\r\n",
        "RIFF",
    )
    .await;
    assert!(upload.starts_with("HTTP/1.1 408"), "{upload}");
}

#[tokio::test]
async fn a_stream_open_at_the_end_of_the_grace_period_ends_with_a_terminal_event() {
    // The upstream sends two events, then holds the stream open.
    let mock = MockUpstream::builder()
        .sse(
            "/v1/chat/completions",
            Sse::chunks("gpt-4o-mini", 6).hang_after(2),
        )
        .start()
        .await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("GATEWAY_SHUTDOWN_GRACE", "1"),
        ],
    )
    .await;
    let mut conn = TcpStream::connect(gw.addr()).await.unwrap();
    let body = r#"{"model":"gpt-4o-mini","stream":true}"#;
    conn.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The head and the first events arrive.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("data: ") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let stopped = tokio::spawn(gw.shutdown(Duration::from_secs(20)));
    let rest = until_closed(&mut conn, Duration::from_secs(20))
        .await
        .expect("the stream ended");
    got.extend_from_slice(rest.as_bytes());
    let text = String::from_utf8_lossy(&got);
    // A chunked body that ends properly (the terminating chunk), after the terminal event.
    assert!(text.ends_with("0\r\n\r\n"), "{text}");
    let event = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let event: Value = serde_json::from_str(event).unwrap();
    assert_eq!(event["error"]["code"], "gateway_shutting_down", "{text}");
    assert!(stopped.await.unwrap(), "the server stopped");
}

#[tokio::test]
async fn a_huge_upstream_timeout_is_no_timeout_not_a_500() {
    let mock = MockUpstream::builder()
        .models(["gpt-4o-mini"])
        .start()
        .await;
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &mock.url()),
            ("AIOHTTP_CLIENT_TIMEOUT", "18446744073709551615"),
            ("AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST", "18446744073709551615"),
        ],
    )
    .await;
    for stream in [false, true] {
        let res = answer(post_json(
            &format!("{}/chat/completions", gw.url()),
            &format!(r#"{{"model":"gpt-4o-mini","stream":{stream}}}"#),
        ))
        .await;
        assert_eq!(res.status, http::StatusCode::OK, "{}", res.text());
    }
    let res = answer(get(&format!("{}/models/0", gw.url()))).await;
    assert_eq!(res.status, http::StatusCode::OK, "{}", res.text());
}
