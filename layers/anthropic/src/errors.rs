//! Errors in Anthropic's shape: [`AnthropicErrorsLayer`].

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use serde_json::{Value, json};
use tower_layer::Layer;
use tower_openai_core::ApiRoute;
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
    tower_openai_core::define_inner_service_accessors!();

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
            return Poll::Ready(Ok(res.map(|inner| ErrorsBody::Passed { inner })));
        }
        res.headers_mut().remove(header::CONTENT_LENGTH);
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Poll::Ready(Ok(res.map(|inner| ErrorsBody::Reshaped {
            inner,
            status,
            held: BytesMut::new(),
            over: false,
            done: false,
        })))
    }
}

/// The response body of [`AnthropicErrors`].
#[pin_project(project = ErrorsProj)]
#[derive(Debug)]
pub enum ErrorsBody<B> {
    /// Untouched.
    Passed {
        /// The inner body.
        #[pin]
        inner: B,
    },
    /// An error answer, read (up to [`MAX_ERROR_BYTES`]) and reshaped.
    Reshaped {
        /// The inner body.
        #[pin]
        inner: B,
        /// Its status.
        status: StatusCode,
        /// What was read.
        held: BytesMut,
        /// It was larger than [`MAX_ERROR_BYTES`].
        over: bool,
        /// The reshaped error went out.
        done: bool,
    },
}

impl<B: Default> Default for ErrorsBody<B> {
    fn default() -> Self {
        Self::Passed {
            inner: B::default(),
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
        match self.project() {
            ErrorsProj::Passed { inner } => inner.poll_frame(cx),
            ErrorsProj::Reshaped {
                mut inner,
                status,
                held,
                over,
                done,
            } => loop {
                if *done {
                    return Poll::Ready(None);
                }
                let ended = match ready!(inner.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            if held.len() + data.len() <= MAX_ERROR_BYTES {
                                held.extend_from_slice(&data);
                            } else {
                                *over = true;
                            }
                        }
                        false
                    }
                    // A broken error body: what was read stands for it.
                    Some(Err(_)) | None => true,
                };
                if ended || *over {
                    *done = true;
                    let body: &[u8] = if *over { b"" } else { held };
                    return Poll::Ready(Some(Ok(Frame::data(anthropic_error(*status, body)))));
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Passed { inner } => inner.is_end_stream(),
            Self::Reshaped { done, .. } => *done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Passed { inner } => inner.size_hint(),
            Self::Reshaped { .. } => SizeHint::default(),
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
}
