//! The mock OpenAI upstream: its builder, its server, and what it recorded.

mod answer;
mod script;

pub use self::script::{RecordedRequest, Reply, Sse};

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::answer::handle;

pub(crate) type MockBody = UnsyncBoxBody<Bytes, std::io::Error>;

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
