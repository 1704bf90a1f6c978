//! A fast mock upstream: fixed answers, SSE events stamped with their send time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openai_gateway::serving::RepollSelfWakes;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The answer to every non-streamed chat completion.
pub(crate) const CHAT: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the benchmark upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}"#;

/// How the upstream streams.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stream {
    pub(crate) chunks: usize,
    pub(crate) gap: Duration,
}

/// Every `every`-th chat request is answered 503 (`every` 0: never); how many were.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    pub(crate) every: usize,
    seen: AtomicUsize,
    pub(crate) failed: AtomicUsize,
}

impl Failures {
    pub(crate) fn every(every: usize) -> Arc<Self> {
        Arc::new(Self {
            every,
            ..Self::default()
        })
    }

    fn fail_now(&self) -> bool {
        let fail = self.every > 0
            && self.seen.fetch_add(1, Ordering::Relaxed) % self.every == self.every - 1;
        if fail {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }
}

pub(crate) async fn start(epoch: Instant, stream: Stream, slow: Stream) -> SocketAddr {
    start_failing(epoch, stream, slow, Failures::every(0)).await
}

/// [`start`], answering some chat requests with 503 as `failures` says.
pub(crate) async fn start_failing(
    epoch: Instant,
    stream: Stream,
    slow: Stream,
    failures: Arc<Failures>,
) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let failures = failures.clone();
            // It reads each request body in the connection's task, as the gateway does, so
            // it is served the same way: without a trip through the scheduler per body.
            tokio::spawn(RepollSelfWakes::new(async move {
                let svc = hyper::service::service_fn(move |req| {
                    handle(req, epoch, stream, slow, failures.clone())
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            }));
        }
    });
    addr
}

fn full(body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()).boxed_unsync());
    res.headers_mut()
        .insert(header::CONTENT_TYPE, content_type.parse().expect("static"));
    res
}

async fn handle(
    req: Request<Incoming>,
    epoch: Instant,
    stream: Stream,
    slow: Stream,
    failures: Arc<Failures>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if path.ends_with("/models") {
        let models: Vec<String> = (0..20)
            .map(|i| format!(r#"{{"id":"model-{i}","object":"model","owned_by":"bench"}}"#))
            .collect();
        return Ok(full(
            format!(
                r#"{{"object":"list","data":[{{"id":"bench-model","object":"model","owned_by":"bench"}},{}]}}"#,
                models.join(",")
            ),
            "application/json",
        ));
    }
    if path.ends_with("/audio/speech") {
        return Ok(full(vec![0u8; 16 * 1024], "audio/mpeg"));
    }
    if path.ends_with("/chat/completions") {
        if failures.fail_now() {
            let mut res = full(
                r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
                "application/json",
            );
            *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            return Ok(res);
        }
        let text = std::str::from_utf8(&body).unwrap_or("");
        if text.contains("\"stream\":true") {
            let shape = if text.contains("\"slow\":true") {
                slow
            } else {
                stream
            };
            return Ok(sse(epoch, shape));
        }
        return Ok(full(CHAT, "application/json"));
    }
    Ok(full(
        r#"{"error":{"message":"no such route"}}"#,
        "application/json",
    ))
}

struct Channel(mpsc::Receiver<Bytes>);

impl http_body::Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Each event carries `"t"`: nanoseconds since `epoch` when it was sent.
fn sse(epoch: Instant, shape: Stream) -> Response<Body> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        for i in 0..shape.chunks {
            if i > 0 {
                tokio::time::sleep(shape.gap).await;
            }
            let t = epoch.elapsed().as_nanos();
            let event = format!(
                "data: {{\"i\":{i},\"t\":{t},\"choices\":[{{\"delta\":{{\"content\":\"x\"}}}}]}}\n\n"
            );
            if tx.send(Bytes::from(event)).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    let mut res = Response::new(Channel(rx).boxed_unsync());
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/event-stream".parse().expect("static"),
    );
    res
}
