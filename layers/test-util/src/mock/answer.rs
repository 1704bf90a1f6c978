//! How the mock answers a request: the scripted route, or its built-in OpenAI behaviour.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::script::{RecordedRequest, Reply, Sse};
use super::{AbandonGuard, MockBody, State};

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

pub(super) async fn handle(
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
    if let Some(i) = segments.iter().position(|s| *s == "deployments")
        && let Some(d) = segments.get(i + 1)
    {
        return (*d).to_owned();
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
