//! What the mock answers: scripted replies and event streams, and the record of a request.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

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
    pub(super) events: Vec<String>,
    pub(super) gap: Duration,
    pub(super) done: bool,
    pub(super) reset_after: Option<usize>,
    pub(super) hang_after: Option<usize>,
    pub(super) status: StatusCode,
    pub(super) content_type: &'static str,
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
