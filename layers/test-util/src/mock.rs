use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

type MockBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A request the mock received, exactly as it arrived.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// The path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// Every header as received.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// The body parsed as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A scripted server-sent-events answer.
#[derive(Clone, Debug)]
pub struct Sse {
    events: Vec<String>,
    gap: Duration,
    done: bool,
    reset_after: Option<usize>,
    hang_after: Option<usize>,
    status: StatusCode,
    content_type: &'static str,
}

impl Sse {
    /// Chat-completion chunks for `model`, one per content piece, then a `finish_reason`
    /// chunk; `usage` adds the final usage chunk OpenAI sends for `include_usage`.
    pub fn chat(model: &str, pieces: &[&str], usage: bool) -> Self {
        let chunk = |delta: Value, finish: Value| {
            json!({
                "id": "chatcmpl-mock",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
            .to_string()
        };
        let mut events: Vec<String> = pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let delta = if i == 0 {
                    json!({"role": "assistant", "content": piece})
                } else {
                    json!({"content": piece})
                };
                chunk(delta, Value::Null)
            })
            .collect();
        events.push(chunk(json!({}), json!("stop")));
        if usage {
            events.push(
                json!({
                    "id": "chatcmpl-mock",
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [],
                    "usage": {"prompt_tokens": 5, "completion_tokens": pieces.len(), "total_tokens": 5 + pieces.len()},
                })
                .to_string(),
            );
        }
        Self::events(events)
    }

    /// `n` chat chunks with contents `tok0`, `tok1`, … for `model`.
    pub fn chunks(model: &str, n: usize) -> Self {
        let pieces: Vec<String> = (0..n).map(|i| format!("tok{i}")).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        Self::chat(model, &refs, false)
    }

    /// Raw `data:` payloads, each sent as one `data: …\n\n` event, then `data: [DONE]`.
    pub fn events<I, S>(events: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            events: events.into_iter().map(Into::into).collect(),
            gap: Duration::ZERO,
            done: true,
            reset_after: None,
            hang_after: None,
            status: StatusCode::OK,
            content_type: "text/event-stream",
        }
    }

    /// Wait this long before each event after the first.
    pub fn gap(mut self, gap: Duration) -> Self {
        self.gap = gap;
        self
    }

    /// Whether to end with `data: [DONE]` (default true).
    pub fn done(mut self, done: bool) -> Self {
        self.done = done;
        self
    }

    /// Break the connection (no clean end of body) after `n` events.
    pub fn reset_after(mut self, n: usize) -> Self {
        self.reset_after = Some(n);
        self
    }

    /// Stop sending, but keep the connection open, after `n` events.
    pub fn hang_after(mut self, n: usize) -> Self {
        self.hang_after = Some(n);
        self
    }

    /// Send the same chunks under another content type (e.g. `application/json`, to test
    /// how a broken non-SSE body is handled).
    pub fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = content_type;
        self
    }

    /// Answer with this status (streams can carry errors too).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

/// What the mock answers on a route.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Reply {
    /// JSON with a status and extra headers.
    Json {
        /// Status.
        status: StatusCode,
        /// Body.
        body: Value,
        /// Extra response headers.
        headers: Vec<(String, String)>,
    },
    /// Raw bytes with a content type.
    Bytes {
        /// Status.
        status: StatusCode,
        /// `Content-Type`.
        content_type: String,
        /// Body.
        body: Bytes,
    },
    /// A server-sent-events stream.
    Sse(Sse),
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
    /// Accept the request and never answer.
    Never,
    /// The mock's built-in OpenAI behaviour for the path.
    Default,
}

impl Reply {
    /// 200 with this JSON.
    pub fn json(body: Value) -> Self {
        Self::status(StatusCode::OK, body)
    }

    /// This status with this JSON.
    pub fn status(status: StatusCode, body: Value) -> Self {
        Reply::Json {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// Add a response header (JSON replies only).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Reply::Json { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }
}

#[derive(Clone, Debug)]
struct Route {
    method: Option<Method>,
    path: String,
    reply: Reply,
}

/// Builds a [`MockUpstream`].
#[derive(Clone, Debug)]
pub struct MockBuilder {
    routes: Vec<Route>,
    models: Vec<String>,
    default_gap: Duration,
    required_key: Option<String>,
}

impl Default for MockBuilder {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            models: vec![
                "gpt-4o-mini".to_owned(),
                "o3-mini".to_owned(),
                "text-embedding-3-small".to_owned(),
                "tts-1".to_owned(),
            ],
            default_gap: Duration::ZERO,
            required_key: None,
        }
    }
}

impl MockBuilder {
    /// Answer every request without `Authorization: Bearer {key}` with OpenAI's 401, as
    /// a real upstream does (the request is still recorded).
    pub fn require_key(mut self, key: impl Into<String>) -> Self {
        self.required_key = Some(key.into());
        self
    }

    /// The model ids `GET …/models` lists.
    pub fn models<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Answer `method path` with `reply`. A path may use `*` for one segment
    /// (`/openai/deployments/*/chat/completions`). Later routes win over earlier ones.
    pub fn route(mut self, method: Method, path: &str, reply: Reply) -> Self {
        self.routes.push(Route {
            method: Some(method),
            path: path.to_owned(),
            reply,
        });
        self
    }

    /// Answer any method on `path` with `reply`.
    pub fn any(mut self, path: &str, reply: Reply) -> Self {
        self.routes.push(Route {
            method: None,
            path: path.to_owned(),
            reply,
        });
        self
    }

    /// Answer `path` with 200 and this JSON.
    pub fn json(self, path: &str, body: Value) -> Self {
        self.any(path, Reply::json(body))
    }

    /// Answer `path` with an SSE stream.
    pub fn sse(self, path: &str, sse: Sse) -> Self {
        self.any(path, Reply::Sse(sse))
    }

    /// Answer `path` with this status and JSON body.
    pub fn status(self, path: &str, status: u16, body: Value) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.any(path, Reply::status(status, body))
    }

    /// Answer `path` as usual, but only after `delay`.
    pub fn delay(self, path: &str, delay: Duration) -> Self {
        self.any(path, Reply::Delay(delay, Box::new(Reply::Default)))
    }

    /// Accept requests to `path` and never answer them.
    pub fn never_answer(self, path: &str) -> Self {
        self.any(path, Reply::Never)
    }

    /// The gap between the built-in chat stream's chunks (default none).
    pub fn stream_gap(mut self, gap: Duration) -> Self {
        self.default_gap = gap;
        self
    }

    /// Bind `127.0.0.1:0` and serve.
    pub async fn start(self) -> MockUpstream {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("mock upstream could not bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("mock upstream has no local address: {e}"));
        let state = Arc::new(State {
            config: self,
            requests: Mutex::new(Vec::new()),
            disconnects: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            changed: Notify::new(),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                accept_state.connections.fetch_add(1, Ordering::SeqCst);
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        MockUpstream { addr, state, task }
    }
}

struct State {
    config: MockBuilder,
    requests: Mutex<Vec<RecordedRequest>>,
    disconnects: AtomicUsize,
    connections: AtomicUsize,
    changed: Notify,
}

impl State {
    fn disconnected(&self) {
        self.disconnects.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// A mock OpenAI-compatible upstream on `127.0.0.1:0`.
///
/// Built-in behaviour (overridable per route): `GET …/models`; `POST …/chat/completions`
/// (JSON, or SSE when the body says `"stream": true`, with a usage chunk when
/// `stream_options.include_usage` is set); `…/completions`; `…/embeddings`;
/// `…/audio/speech` (binary `audio/mpeg`); `…/responses`; and the same under Azure's
/// `/openai/deployments/{deployment}/…`, where the deployment is the model. Anything else is
/// a 404. Every request is recorded.
///
/// ```no_run
/// # async fn demo() {
/// use tower_openai_test_util::{MockUpstream, Sse};
///
/// let mock = MockUpstream::builder()
///     .models(["llama3"])
///     .sse("/v1/chat/completions", Sse::chunks("llama3", 3))
///     .start()
///     .await;
/// let base_url = mock.url(); // "http://127.0.0.1:PORT/v1"
/// # let _ = base_url;
/// assert!(mock.requests().is_empty());
/// # }
/// ```
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl MockUpstream {
    /// A builder with the default models.
    pub fn builder() -> MockBuilder {
        MockBuilder::default()
    }

    /// Serve the built-in behaviour.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its OpenAI base URL, `http://127.0.0.1:PORT/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Its root URL, `http://127.0.0.1:PORT` (for Azure-style connections).
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The requests received on `path`.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.requests().pop()
    }

    /// How many requests `path` received.
    pub fn count(&self, path: &str) -> usize {
        self.requests_to(path).len()
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// How many answers were abandoned by the client before they were complete (a stream
    /// whose reader went away, a delayed or never-sent answer whose request was dropped).
    pub fn disconnects(&self) -> usize {
        self.state.disconnects.load(Ordering::SeqCst)
    }

    /// Wait until [`disconnects`](Self::disconnects) reaches `n`.
    pub async fn wait_for_disconnects(&self, n: usize) {
        loop {
            let notified = self.state.changed.notified();
            if self.disconnects() >= n {
                return;
            }
            notified.await;
        }
    }

    /// Wait until `path` has received `n` requests.
    pub async fn wait_for_requests(&self, path: &str, n: usize) {
        loop {
            let notified = self.state.changed.notified();
            if self.count(path) >= n {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for MockUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockUpstream")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Counts a disconnect if dropped before `done`.
struct AbandonGuard {
    state: Arc<State>,
    done: bool,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if !self.done {
            self.state.disconnected();
        }
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let recorded = RecordedRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body,
    };
    if let Ok(mut requests) = state.requests.lock() {
        requests.push(recorded.clone());
    }
    state.changed.notify_waiters();

    if let Some(key) = &state.config.required_key {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if presented != Some(format!("Bearer {key}").as_str()) {
            let body = json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"}});
            let mut res = Response::new(
                Full::new(Bytes::from(body.to_string()))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(res);
        }
    }

    let reply = state
        .config
        .routes
        .iter()
        .rev()
        .find(|r| {
            r.method.as_ref().is_none_or(|m| *m == recorded.method)
                && path_matches(&r.path, &recorded.path)
        })
        .map(|r| r.reply.clone())
        .unwrap_or(Reply::Default);

    let mut guard = AbandonGuard {
        state: state.clone(),
        done: false,
    };
    let res = respond(&state, &recorded, reply).await;
    guard.done = true;
    Ok(res)
}

fn respond<'a>(
    state: &'a Arc<State>,
    req: &'a RecordedRequest,
    reply: Reply,
) -> Pin<Box<dyn std::future::Future<Output = Response<MockBody>> + Send + 'a>> {
    Box::pin(async move {
        match reply {
            Reply::Json {
                status,
                body,
                headers,
            } => {
                let mut res = json_response(status, &body);
                for (k, v) in headers {
                    if let (Ok(k), Ok(v)) = (
                        header::HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(&v),
                    ) {
                        res.headers_mut().append(k, v);
                    }
                }
                res
            }
            Reply::Bytes {
                status,
                content_type,
                body,
            } => {
                let mut res = Response::new(full(body));
                *res.status_mut() = status;
                if let Ok(ct) = HeaderValue::from_str(&content_type) {
                    res.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                res
            }
            Reply::Sse(sse) => sse_response(state.clone(), sse),
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                respond(state, req, *inner).await
            }
            Reply::Never => std::future::pending().await,
            Reply::Default => builtin(state, req),
        }
    })
}

fn full(bytes: impl Into<Bytes>) -> MockBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_response(status: StatusCode, body: &Value) -> Response<MockBody> {
    let mut res = Response::new(full(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The model a request is for: Azure's deployment segment, else the body's `model`.
fn model_of(req: &RecordedRequest) -> String {
    let segments: Vec<&str> = req.path.split('/').collect();
    if let Some(i) = segments.iter().position(|s| *s == "deployments") {
        if let Some(d) = segments.get(i + 1) {
            return (*d).to_owned();
        }
    }
    req.json()
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned()
}

fn builtin(state: &Arc<State>, req: &RecordedRequest) -> Response<MockBody> {
    let path = req.path.as_str();
    let model = model_of(req);
    let post = req.method == Method::POST;
    if req.method == Method::GET && path.ends_with("/models") {
        let data: Vec<Value> = state
            .config
            .models
            .iter()
            .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock"}))
            .collect();
        return json_response(StatusCode::OK, &json!({"object": "list", "data": data}));
    }
    if post && path.ends_with("/chat/completions") {
        let body = req.json();
        if body.get("stream").and_then(Value::as_bool) == Some(true) {
            let usage = body
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true);
            let sse = Sse::chat(
                &model,
                &["Hello", " from", " the", " mock", " upstream."],
                usage,
            )
            .gap(state.config.default_gap);
            return sse_response(state.clone(), sse);
        }
        return json_response(
            StatusCode::OK,
            &json!({
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the mock upstream."},
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
            }),
        );
    }
    if post && path.ends_with("/completions") {
        return json_response(
            StatusCode::OK,
            &json!({
                "id": "cmpl-mock",
                "object": "text_completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "text": "Hello from the mock upstream.", "finish_reason": "stop"}],
            }),
        );
    }
    if post && path.ends_with("/embeddings") {
        return json_response(
            StatusCode::OK,
            &json!({
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                "model": model,
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }),
        );
    }
    if post && path.ends_with("/audio/speech") {
        // Deterministic "audio": a fake MP3 header plus the request size.
        let mut res = Response::new(full(format!("ID3mock-audio:{}:{}", model, req.body.len())));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/mpeg"));
        return res;
    }
    if post && path.ends_with("/responses") {
        return json_response(
            StatusCode::OK,
            &json!({
                "id": "resp-mock",
                "object": "response",
                "created_at": 1_700_000_000,
                "model": model,
                "status": "completed",
                "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello from the mock upstream."}]}],
            }),
        );
    }
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": {"message": format!("mock: no route for {} {}", req.method, path), "type": "invalid_request_error", "code": "not_found"}}),
    )
}

/// A body fed by a channel; the producer notices when the client goes away.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

fn sse_response(state: Arc<State>, sse: Sse) -> Response<MockBody> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let (status, content_type) = (sse.status, sse.content_type);
    tokio::spawn(async move {
        let closed = |state: &State| state.disconnected();
        for (i, event) in sse.events.iter().enumerate() {
            if sse.reset_after == Some(i) {
                let _ = tx
                    .send(Err(std::io::Error::other("mock: reset mid-stream")))
                    .await;
                return;
            }
            if sse.hang_after == Some(i) {
                tx.closed().await;
                closed(&state);
                return;
            }
            if i > 0 && !sse.gap.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(sse.gap) => {}
                    _ = tx.closed() => { closed(&state); return; }
                }
            }
            if tx
                .send(Ok(Bytes::from(format!("data: {event}\n\n"))))
                .await
                .is_err()
            {
                closed(&state);
                return;
            }
        }
        if sse.reset_after == Some(sse.events.len()) {
            let _ = tx
                .send(Err(std::io::Error::other("mock: reset mid-stream")))
                .await;
            return;
        }
        if sse.done
            && tx
                .send(Ok(Bytes::from_static(b"data: [DONE]\n\n")))
                .await
                .is_err()
        {
            closed(&state);
        }
    });
    let mut res = Response::new(ChannelBody { rx }.boxed_unsync());
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_one_segment_per_star() {
        assert!(path_matches(
            "/openai/deployments/*/chat/completions",
            "/openai/deployments/d1/chat/completions"
        ));
        assert!(!path_matches(
            "/openai/deployments/*/chat/completions",
            "/openai/deployments/chat/completions"
        ));
        assert!(path_matches("/v1/models", "/v1/models"));
        assert!(!path_matches("/v1/models", "/v1/models/x"));
    }
}
