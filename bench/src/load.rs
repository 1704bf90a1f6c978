//! The load generator of the throughput runs: keep-alive HTTP/1.1 connections that send one
//! request bytes as they are and read each response to its end, and nothing else.
//!
//! A general HTTP client costs several microseconds of CPU per request (request building,
//! pooling, its own connection tasks). On a 2-core machine that cost is taken from the
//! systems measured, and it caps what they can show: with hyper-util's client, the
//! load-generating process was the one at 100 % of a core when it loaded the gateway's cached
//! model list. This one writes pre-encoded bytes and parses only the status line, the framing
//! headers and the body's length or chunks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::Request;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request, encoded once, and where to send it.
#[derive(Clone, Debug)]
pub(crate) struct Encoded {
    addr: SocketAddr,
    bytes: Bytes,
}

impl Encoded {
    /// Encode `req` (an absolute `http://IP:PORT/…` URI) as HTTP/1.1.
    pub(crate) async fn new(req: Request<Full<Bytes>>) -> Self {
        let (parts, body) = req.into_parts();
        let authority = parts.uri.authority().expect("an absolute URI").as_str();
        let addr: SocketAddr = authority.parse().expect("an IP:PORT authority");
        let body = body.collect().await.expect("a full body").to_bytes();
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut out = format!("{} {path} HTTP/1.1\r\nhost: {authority}\r\n", parts.method);
        for (name, value) in &parts.headers {
            let value = value.to_str().expect("a visible-ASCII header value");
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            out.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = BytesMut::from(out.as_bytes());
        bytes.extend_from_slice(&body);
        Self {
            addr,
            bytes: bytes.freeze(),
        }
    }
}

/// Counters shared by the workers of one run.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// `200` responses read to their end.
    pub(crate) ok: AtomicU64,
    /// Other statuses, broken responses, failed connections.
    pub(crate) failed: AtomicU64,
}

/// Send `req` over one connection after another until `stop`, counting into `tally`.
pub(crate) async fn worker(req: Encoded, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(req.addr).await else {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        buf.clear();
        while !stop.load(Ordering::Relaxed) {
            if stream.write_all(&req.bytes).await.is_err() {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            match read_response(&mut stream, &mut buf).await {
                Ok(200) => tally.ok.fetch_add(1, Ordering::Relaxed),
                Ok(_) => tally.failed.fetch_add(1, Ordering::Relaxed),
                Err(_) => {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
        }
    }
}

fn broken(why: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

/// Read more of the connection into `buf`; an error at its end.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<()> {
    buf.reserve(8 * 1024);
    if stream.read_buf(buf).await? == 0 {
        return Err(broken("the connection closed mid-response"));
    }
    Ok(())
}

/// Read one response to its end (`buf` keeps what was read past it); its status.
async fn read_response(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<u16> {
    let (status, head, framing) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(buf) {
            Ok(httparse::Status::Complete(head)) => {
                let status = res.code.unwrap_or(0);
                let mut framing = None;
                for h in res.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let len = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .ok_or_else(|| broken("a bad content-length"))?;
                        framing = Some(Some(len));
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                        && h.value.eq_ignore_ascii_case(b"chunked")
                    {
                        framing = Some(None);
                    }
                }
                break (
                    status,
                    head,
                    framing.ok_or_else(|| broken("no body framing"))?,
                );
            }
            Ok(httparse::Status::Partial) => fill(stream, buf).await?,
            Err(_) => return Err(broken("not an HTTP/1.1 response")),
        }
    };
    buf.advance(head);
    match framing {
        Some(len) => {
            while buf.len() < len {
                fill(stream, buf).await?;
            }
            buf.advance(len);
        }
        None => loop {
            // A chunk: its size line, its data, CRLF; the last one is empty.
            let (line, size) = loop {
                match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((line, size))) => break (line, size as usize),
                    Ok(httparse::Status::Partial) => fill(stream, buf).await?,
                    Err(_) => return Err(broken("a bad chunk size")),
                }
            };
            while buf.len() < line + size + 2 {
                fill(stream, buf).await?;
            }
            buf.advance(line + size + 2);
            if size == 0 {
                break;
            }
        },
    }
    Ok(status)
}
