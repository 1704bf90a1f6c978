//! `--soak N`: N streamed requests through the real `openai-gateway` process, with random
//! caller hang-ups and random upstream faults (reset mid-stream, stall, error status, a
//! refused connection). Afterwards: the gateway's RSS against its RSS after warm-up, the
//! upstream streams still open at the mock (none may be), and every caller that stayed got
//! either a complete stream or an error (an error event, or an error status).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// What the faulty upstream counts.
#[derive(Default)]
struct Counts {
    /// Connections accepted and not yet closed.
    open_connections: AtomicUsize,
    /// Response bodies handed to hyper and not yet dropped (streams the gateway still holds).
    open_streams: AtomicUsize,
    requests: AtomicU64,
}

/// A small xorshift generator: reproducible faults without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn percent(&mut self) -> u64 {
        self.next() % 100
    }
}

/// The fault of one upstream answer.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// Three events, then the connection is reset.
    Reset,
    /// Two events, then nothing, ever.
    Stall,
    /// A 500 with an error body.
    Status,
}

/// An event stream whose fault happens after `events` events.
struct Stream {
    events: usize,
    sent: usize,
    fault: Fault,
    counts: Arc<Counts>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.counts.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

impl http_body::Body for Stream {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        match this.fault {
            Fault::Reset if this.sent == 3 => {
                return Poll::Ready(Some(Err(std::io::Error::other("reset"))));
            }
            Fault::Stall if this.sent == 2 => return Poll::Pending,
            _ => {}
        }
        if this.sent == this.events {
            this.sent += 1;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b"data: [DONE]\n\n",
            )))));
        }
        if this.sent > this.events {
            return Poll::Ready(None);
        }
        this.sent += 1;
        let event = format!(
            "data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{}\"}}}}]}}\n\n",
            this.sent
        );
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
    }
}

type MockBody = UnsyncBoxBody<Bytes, std::io::Error>;

fn json_response(status: StatusCode, body: &'static [u8]) -> Response<MockBody> {
    let mut res = Response::new(
        Full::new(Bytes::from_static(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    counts: Arc<Counts>,
) -> Result<Response<MockBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let _ = req.into_body().collect().await;
    if path.ends_with("/models") {
        return Ok(json_response(
            StatusCode::OK,
            br#"{"object":"list","data":[{"id":"soak","object":"model"}]}"#,
        ));
    }
    let n = counts.requests.fetch_add(1, Ordering::SeqCst);
    let mut rng = Rng::new(n + 7);
    let fault = match rng.percent() {
        0..=9 => Fault::Reset,
        10..=12 => Fault::Stall,
        13..=17 => Fault::Status,
        _ => Fault::None,
    };
    if let Fault::Status = fault {
        return Ok(json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":{"message":"the model is overloaded","type":"server_error","code":null}}"#,
        ));
    }
    counts.open_streams.fetch_add(1, Ordering::SeqCst);
    let body = Stream {
        events: 8,
        sent: 0,
        fault,
        counts,
    }
    .boxed_unsync();
    let mut res = Response::new(body);
    res.headers_mut().insert(
        "content-type",
        "text/event-stream"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
    );
    Ok(res)
}

async fn faulty_upstream(counts: Arc<Counts>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counts = counts.clone();
            counts.open_connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc_counts = counts.clone();
                let svc = hyper::service::service_fn(move |req| answer(req, svc_counts.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                counts.open_connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    addr
}

/// What one caller saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Complete,
    ErrorEvent,
    ErrorStatus,
    HungUp,
    /// Neither a complete stream nor an error: a failure of the gateway.
    Broken,
}

async fn one(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    base: &str,
    rng: &mut Rng,
) -> Outcome {
    let model = if rng.percent() < 5 { "dead" } else { "soak" };
    let hang_up = rng.percent() < 10;
    let body = format!(r#"{{"model":"{model}","stream":true,"messages":[]}}"#);
    let Ok(req) = Request::post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::from(body))
    else {
        return Outcome::Broken;
    };
    let Ok(res) = client.request(req).await else {
        return Outcome::Broken;
    };
    if !res.status().is_success() {
        let status = res.status();
        let text = res
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        return if status.as_u16() >= 400 && json["error"].is_object() {
            Outcome::ErrorStatus
        } else {
            Outcome::Broken
        };
    }
    let mut body = res.into_body();
    let mut seen = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Outcome::Broken;
        };
        if let Some(data) = frame.data_ref() {
            seen.extend_from_slice(data);
        }
        if hang_up && !seen.is_empty() {
            return Outcome::HungUp;
        }
    }
    let text = String::from_utf8_lossy(&seen);
    if text.contains("data: [DONE]") {
        Outcome::Complete
    } else if text.contains("data: {\"error\"") {
        Outcome::ErrorEvent
    } else {
        Outcome::Broken
    }
}

fn rss_mib(pid: u32) -> f64 {
    super::rss_kib(pid, "VmRSS:") as f64 / 1024.0
}

/// Run the soak; whether every check passed.
pub(crate) async fn run(total: usize) -> bool {
    let counts = Arc::new(Counts::default());
    let up = faulty_upstream(counts.clone()).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let Some(exe) = super::gateway_exe() else {
        return false;
    };
    let port = super::free_port();
    let dir = std::env::temp_dir().join(format!("tower-openai-soak-{port}"));
    let _ = std::fs::create_dir_all(&dir);
    let mut gateway = match tokio::process::Command::new(&exe)
        .arg("--data-dir")
        .arg(&dir)
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "OPENAI_API_BASE_URLS",
            format!("http://{up}/v1;http://{dead}/v1"),
        )
        .env("OPENAI_API_CONFIGS", r#"{"1": {"model_ids": ["dead"]}}"#)
        .env("AIOHTTP_CLIENT_TIMEOUT", "1")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("could not start {}: {e}", exe.display());
            return false;
        }
    };
    let pid = gateway.id().unwrap_or(0);
    let base = format!("http://127.0.0.1:{port}/v1");
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(128)
        .build_http::<Full<Bytes>>();
    for _ in 0..200 {
        let ready = client
            .get(
                format!("{base}/models")
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
            )
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let concurrency = 64;
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(std::sync::Mutex::new([0usize; 5]));
    let warm_up = total / 10;
    let warm_rss = Arc::new(std::sync::Mutex::new(None::<f64>));
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (client, base, next, tally, warm_rss) = (
            client.clone(),
            base.clone(),
            next.clone(),
            tally.clone(),
            warm_rss.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = Rng::new(1000 + w as u64);
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= total {
                    break;
                }
                if i == warm_up {
                    *warm_rss.lock().unwrap_or_else(|e| e.into_inner()) = Some(rss_mib(pid));
                }
                let outcome = one(&client, &base, &mut rng).await;
                let slot = match outcome {
                    Outcome::Complete => 0,
                    Outcome::ErrorEvent => 1,
                    Outcome::ErrorStatus => 2,
                    Outcome::HungUp => 3,
                    Outcome::Broken => 4,
                };
                tally.lock().unwrap_or_else(|e| e.into_inner())[slot] += 1;
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = start.elapsed();
    // Let cancelled upstream requests and stalled streams end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let end_rss = rss_mib(pid);
    let warm = warm_rss
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or(end_rss);
    let t = *tally.lock().unwrap_or_else(|e| e.into_inner());
    let open_streams = counts.open_streams.load(Ordering::SeqCst);
    let open_connections = counts.open_connections.load(Ordering::SeqCst);
    let growth = (end_rss - warm) / warm * 100.0;
    println!(
        "soak: {total} streamed requests in {:.1} s ({} concurrent) through the openai-gateway process",
        elapsed.as_secs_f64(),
        concurrency
    );
    println!(
        "  callers: {} complete, {} error event, {} error status, {} hung up on purpose, {} broken",
        t[0], t[1], t[2], t[3], t[4]
    );
    println!(
        "  upstream answers: {} (faults: ~10 % reset, ~3 % stall, ~5 % status 500; ~5 % of requests to a refused connection)",
        counts.requests.load(Ordering::SeqCst)
    );
    println!(
        "  gateway RSS: {warm:.1} MiB after warm-up, {end_rss:.1} MiB at the end ({growth:+.1} %)"
    );
    println!(
        "  at the mock afterwards: {open_streams} streams open, {open_connections} connections open (the gateway's idle pool)"
    );
    let ok =
        t[4] == 0 && open_streams == 0 && growth <= 10.0 && open_connections <= concurrency * 2;
    println!(
        "  {}",
        if ok {
            "[ok] every check passed"
        } else {
            "[FAIL]"
        }
    );
    let _ = gateway.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    ok
}
