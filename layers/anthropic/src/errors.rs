//! Errors in Anthropic's shape: [`AnthropicErrorsLayer`].

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use serde_json::{Value, json};
use tower_layer::Layer;
use tower_openai_core::ApiRoute;
use tower_openai_util::body::{ConvertWhole, ReframedBody, Whole};
use tower_service::Service;

/// The largest error body read to be reshaped; a larger one is replaced by a message naming
/// its status.
pub const MAX_ERROR_BYTES: usize = 64 << 10;

/// Anthropic's error type for an HTTP status: 400 `invalid_request_error`, 401
/// `authentication_error`, 403 `permission_error`, 404 `not_found_error`, 413
/// `request_too_large`, 429 `rate_limit_error`, 503 and 529 `overloaded_error`, 504
/// `timeout_error`; any other 4xx `invalid_request_error`, any other status `api_error`.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The Anthropic error body `{"type":"error","error":{"type","message"}}` for an error
/// answer's `status` and `body`: an Anthropic error is kept as it is; an OpenAI error (or
/// `{"message"}`, `{"detail"}`, plain text) gives its message, the type coming from the
/// status.
pub fn anthropic_error(status: StatusCode, body: &[u8]) -> Bytes {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    if let Some(v) = &parsed
        && v.get("type").and_then(Value::as_str) == Some("error")
        && v.get("error").is_some_and(Value::is_object)
    {
        return Bytes::copy_from_slice(body);
    }
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error").filter(|e| e.is_string()))
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .or_else(|| {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            (!text.is_empty() && parsed.is_none()).then(|| text.chars().take(1_000).collect())
        })
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("The request failed")
                .to_owned()
        });
    Bytes::from(
        json!({"type": "error", "error": {"type": error_type(status), "message": message}})
            .to_string(),
    )
}

/// Which requests are Anthropic's: the ones whose [`ApiRoute`] is `Messages` or
/// `MessagesCountTokens`, or whose path is `messages` or `messages/count_tokens` below one
/// of the prefixes (the empty prefix and `/v1` by default).
#[derive(Clone, Debug)]
pub struct AnthropicErrorsLayer {
    prefixes: std::sync::Arc<[String]>,
}

impl Default for AnthropicErrorsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl AnthropicErrorsLayer {
    /// Anthropic requests under `` and `/v1`.
    pub fn new() -> Self {
        Self {
            prefixes: ["".to_owned(), "/v1".to_owned()].into(),
        }
    }

    /// Also under `prefix` (`/openai`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let mut all = self.prefixes.to_vec();
        all.push(prefix.into().trim_end_matches('/').to_owned());
        self.prefixes = all.into();
        self
    }
}

impl<S> Layer<S> for AnthropicErrorsLayer {
    type Service = AnthropicErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AnthropicErrors {
            inner,
            prefixes: self.prefixes.clone(),
        }
    }
}

/// Turns the error answers (status ≥ 400) of Anthropic requests into Anthropic's error
/// shape, whoever made them (the gateway's refusals, OpenAI-compatible upstreams), keeping
/// the status and the `Retry-After`. Answers of other requests pass untouched.
#[derive(Clone, Debug)]
pub struct AnthropicErrors<S> {
    inner: S,
    prefixes: std::sync::Arc<[String]>,
}

impl<S> AnthropicErrors<S> {
    tower_openai_util::define_inner_service_accessors!();

    fn is_anthropic<B>(&self, req: &Request<B>) -> bool {
        if let Some(route) = req.extensions().get::<ApiRoute>() {
            return matches!(route, ApiRoute::Messages | ApiRoute::MessagesCountTokens);
        }
        let path = req.uri().path();
        self.prefixes.iter().any(|prefix| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest == "/messages" || rest == "/messages/count_tokens")
        })
    }
}

impl<S, B, ResBody> Service<Request<B>> for AnthropicErrors<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ErrorsBody<ResBody>>;
    type Error = S::Error;
    type Future = ErrorsFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let anthropic = self.is_anthropic(&req);
        ErrorsFuture {
            inner: self.inner.call(req),
            anthropic,
        }
    }
}

/// Response future of [`AnthropicErrors`].
#[pin_project]
#[derive(Debug)]
pub struct ErrorsFuture<F> {
    #[pin]
    inner: F,
    anthropic: bool,
}

impl<F, B, E> std::future::Future for ErrorsFuture<F>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ErrorsBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        let status = res.status();
        if !*this.anthropic || !(status.is_client_error() || status.is_server_error()) {
            return Poll::Ready(Ok(res.map(|inner| ErrorsBody {
                kind: Kind::Passed { inner },
            })));
        }
        res.headers_mut().remove(header::CONTENT_LENGTH);
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Poll::Ready(Ok(res.map(|inner| ErrorsBody {
            kind: Kind::Reshaped {
                inner: ReframedBody::new(
                    inner,
                    // A broken error body: what was read stands for it.
                    Whole::new(MAX_ERROR_BYTES, Reshape { status }).ending_on_error(),
                ),
            },
        })))
    }
}

/// The response body of [`AnthropicErrors`]: the answer untouched, or an error answer read
/// whole (up to [`MAX_ERROR_BYTES`]) and sent in Anthropic's shape.
#[pin_project]
#[derive(Debug)]
pub struct ErrorsBody<B> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<B> {
    Passed {
        #[pin]
        inner: B,
    },
    Reshaped {
        #[pin]
        inner: ReframedBody<B, Whole<Reshape>>,
    },
}

/// An error answer's body as Anthropic's error ([`anthropic_error`]); one past the bound as
/// the status's own message.
#[derive(Debug)]
struct Reshape {
    status: StatusCode,
}

impl ConvertWhole for Reshape {
    fn convert(&mut self, body: Option<&[u8]>) -> Bytes {
        anthropic_error(self.status, body.unwrap_or_default())
    }
}

impl<B: Default> Default for ErrorsBody<B> {
    fn default() -> Self {
        Self {
            kind: Kind::Passed {
                inner: B::default(),
            },
        }
    }
}

impl<B> Body for ErrorsBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Passed { inner } => inner.poll_frame(cx),
            KindProj::Reshaped { inner } => inner.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passed { inner } => inner.is_end_stream(),
            Kind::Reshaped { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passed { inner } => inner.size_hint(),
            Kind::Reshaped { inner } => inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reshaped(status: u16, body: &str) -> Value {
        serde_json::from_slice(&anthropic_error(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        ))
        .unwrap()
    }

    #[test]
    fn errors_take_anthropics_shape_and_its_type_by_status() {
        assert_eq!(
            reshaped(
                403,
                r#"{"error":{"message":"no","type":"invalid_request_error","code":"model_not_found"}}"#
            ),
            json!({"type": "error", "error": {"type": "permission_error", "message": "no"}})
        );
        assert_eq!(
            reshaped(429, r#"{"detail":"slow down"}"#)["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(
            reshaped(500, "")["error"],
            json!({"type": "api_error", "message": "Internal Server Error"})
        );
        assert_eq!(
            reshaped(502, "bad gateway text")["error"]["message"],
            "bad gateway text"
        );
        assert_eq!(reshaped(503, "{}")["error"]["type"], "overloaded_error");
        assert_eq!(
            reshaped(408, "{}")["error"]["type"],
            "invalid_request_error"
        );
        // Already Anthropic's: byte for byte.
        let native =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            anthropic_error(StatusCode::from_u16(529).unwrap(), native.as_bytes()),
            native
        );
    }

    /// The body of `status` with `frames` (an `Err` frame breaks it) through the layer, for a
    /// Messages request.
    async fn through(status: u16, frames: Vec<Result<Bytes, &'static str>>) -> (u16, Bytes) {
        use http_body_util::{BodyExt, StreamBody};
        use tower::ServiceExt;
        let inner = tower::service_fn(move |_req: Request<()>| {
            let frames = frames.clone();
            async move {
                let stream = futures_util::stream::iter(frames.into_iter().map(|f| {
                    f.map(Frame::data)
                        .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
                }));
                let mut res = Response::new(StreamBody::new(stream));
                *res.status_mut() = StatusCode::from_u16(status).unwrap();
                Ok::<_, std::convert::Infallible>(res)
            }
        });
        let res = AnthropicErrorsLayer::new()
            .layer(inner)
            .oneshot(Request::post("/v1/messages").body(()).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = match res.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => Bytes::from(format!("error: {e}")),
        };
        (status, body)
    }

    #[tokio::test]
    async fn an_error_body_is_read_whole_bounded_and_a_broken_one_stands_as_read() {
        // Read whole across frames, then reshaped.
        let (status, body) = through(
            429,
            vec![
                Ok(Bytes::from_static(b"{\"error\":{\"mess")),
                Ok(Bytes::from_static(b"age\":\"later\"}}")),
            ],
        )
        .await;
        assert_eq!(status, 429);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["error"],
            json!({"type": "rate_limit_error", "message": "later"})
        );
        // Past the bound: the status's own message, not the body.
        let big = Bytes::from(vec![b'x'; MAX_ERROR_BYTES + 1]);
        let (_, body) = through(500, vec![Ok(big)]).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["error"],
            json!({"type": "api_error", "message": "Internal Server Error"})
        );
        // Broken after some text: what was read stands for it, and the body ends cleanly.
        let (_, body) = through(
            502,
            vec![Ok(Bytes::from_static(b"upstream fell over")), Err("reset")],
        )
        .await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["error"],
            json!({"type": "api_error", "message": "upstream fell over"})
        );
        // A success passes untouched, byte for byte.
        let (status, body) = through(200, vec![Ok(Bytes::from_static(b"{\"id\":1}"))]).await;
        assert_eq!((status, &body[..]), (200, &b"{\"id\":1}"[..]));
    }
}
