//! The OpenAI-shaped error response every layer answers with, and the transport error types
//! that travel as `Err` until the rescue step (`tower-openai-rescue`, or [`ErrorResponse::from_error`]) turns them into responses.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// The error type transport failures travel as (`tower::BoxError`).
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// An error a layer answers with instead of calling the service below it.
///
/// It renders as OpenAI's error shape, `{"error": {"message", "type", "code"}}`, with a
/// matching HTTP status. Every rejection in tower-openai is built here, so clients (the
/// official SDKs included) see one shape whatever layer refused them.
///
/// ```
/// use http::StatusCode;
/// use tower_openai_core::ErrorResponse;
///
/// let err = ErrorResponse::not_found("The model `gpt-9` does not exist")
///     .with_code("model_not_found");
/// assert_eq!(err.status(), StatusCode::NOT_FOUND);
/// assert_eq!(
///     err.to_json(),
///     r#"{"error":{"message":"The model `gpt-9` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorResponse {
    status: StatusCode,
    message: Cow<'static, str>,
    kind: Cow<'static, str>,
    code: Option<Cow<'static, str>>,
    /// `Retry-After`, in seconds.
    retry_after: Option<u64>,
}

/// A request body that missed a deadline: the caller's fault, 408 `request_timeout`.
impl From<&tower_openai_time::BodyTimedOut> for ErrorResponse {
    fn from(timed_out: &tower_openai_time::BodyTimedOut) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, timed_out.to_string()).with_code("request_timeout")
    }
}

impl ErrorResponse {
    /// The response an error should become: a [`BodyTimedOut`](tower_openai_time::BodyTimedOut)
    /// or an [`UpstreamError`] anywhere in its source chain is answered as such (and logged);
    /// anything else is a 500 that says nothing of its cause (which is logged).
    pub fn from_error(err: &(dyn std::error::Error + 'static)) -> Self {
        // A streamed request body that missed its deadline failed the upstream call: the
        // caller's fault, told as such.
        if let Some(timed_out) = find_cause::<tower_openai_time::BodyTimedOut>(err) {
            return Self::from(timed_out);
        }
        match find_cause::<UpstreamError>(err) {
            Some(upstream) => {
                tracing::warn!(error = %upstream, cause = ?std::error::Error::source(upstream).map(ToString::to_string), "upstream failure");
                upstream.to_response()
            }
            None => {
                tracing::error!(error = %err, "request failed");
                ErrorResponse::internal("The gateway could not complete the request")
            }
        }
    }

    /// An error with this status and message; the `type` is chosen from the status the way
    /// OpenAI's API does (`invalid_request_error` for 4xx, `server_error` for 5xx, …).
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        let kind = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            502..=504 => "upstream_error",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        };
        Self {
            status,
            message: message.into(),
            kind: Cow::Borrowed(kind),
            code: None,
            retry_after: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 413 Payload Too Large, with code `request_too_large`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than the limit of {limit} bytes"),
        )
        .with_code("request_too_large")
    }

    /// 500 Internal Server Error.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 502 Bad Gateway: the upstream could not be reached or broke the exchange.
    pub fn bad_gateway(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, message)
    }

    /// 504 Gateway Timeout: the upstream did not answer in time.
    pub fn gateway_timeout(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, message)
    }

    /// Replace the `type` member.
    pub fn with_type(mut self, kind: impl Into<Cow<'static, str>>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Set the `code` member (`null` when unset).
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Answer with `Retry-After: seconds`.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The `Retry-After` seconds, if set.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `code` member, if any.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The JSON body as a string.
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Outer<'a> {
            error: Inner<'a>,
        }
        #[derive(serde::Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            code: Option<&'a str>,
        }
        let body = Outer {
            error: Inner {
                message: &self.message,
                kind: &self.kind,
                code: self.code.as_deref(),
            },
        };
        // Serializing plain strings cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }

    /// The JSON body as bytes, e.g. for an SSE `data:` line.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.to_json())
    }

    /// A complete response with the JSON body.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut res = Response::new(Full::new(self.to_bytes()));
        *res.status_mut() = self.status;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        res
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl StdError for ErrorResponse {}

/// What went wrong talking to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamErrorKind {
    /// No TCP/TLS connection could be made (refused, DNS, handshake): 502.
    Connect,
    /// The upstream sent nothing for longer than the idle-read timeout: 504.
    Timeout,
    /// The connection broke after it was made, or the upstream spoke bad HTTP: 502.
    Protocol,
}

impl UpstreamErrorKind {
    /// `"connect"`, `"timeout"` or `"protocol"` (a metrics label).
    pub fn as_str(&self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Protocol => "protocol",
        }
    }
}

/// Set by `Rescue` (`tower-openai-rescue`) in the extensions of the response it made from an
/// [`UpstreamError`], so a layer above (metrics) can count upstream failures by kind and
/// connection without parsing the error body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamFailure {
    /// What went wrong.
    pub kind: UpstreamErrorKind,
    /// The index of the connection it happened on.
    pub connection: usize,
}

/// A transport failure on the way to or from an upstream connection.
///
/// The upstream service returns it as `Err`; `Rescue` (`tower-openai-rescue`) turns it into a
/// 502 or 504 response. Its message names the connection by index, never by URL or key.
#[derive(Debug)]
pub struct UpstreamError {
    kind: UpstreamErrorKind,
    connection: usize,
    timeout: Option<Duration>,
    source: Option<BoxError>,
}

impl UpstreamError {
    /// A new error of this kind for connection `connection`.
    pub fn new(kind: UpstreamErrorKind, connection: usize) -> Self {
        Self {
            kind,
            connection,
            timeout: None,
            source: None,
        }
    }

    /// The connection could not be made.
    pub fn connect(connection: usize, source: impl Into<BoxError>) -> Self {
        Self::new(UpstreamErrorKind::Connect, connection).with_source(source)
    }

    /// Nothing arrived within `after`.
    pub fn timeout(connection: usize, after: Duration) -> Self {
        let mut err = Self::new(UpstreamErrorKind::Timeout, connection);
        err.timeout = Some(after);
        err
    }

    /// The exchange broke after the connection was made.
    pub fn protocol(connection: usize, source: impl Into<BoxError>) -> Self {
        Self::new(UpstreamErrorKind::Protocol, connection).with_source(source)
    }

    /// Attach the underlying cause.
    fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> UpstreamErrorKind {
        self.kind
    }

    /// The index of the connection it happened on.
    pub fn connection(&self) -> usize {
        self.connection
    }

    /// The response a caller should see: 502 or 504, OpenAI-shaped.
    pub fn to_response(&self) -> ErrorResponse {
        match self.kind {
            UpstreamErrorKind::Connect => ErrorResponse::bad_gateway(format!(
                "Could not connect to upstream connection {}",
                self.connection
            ))
            .with_code("upstream_unavailable"),
            UpstreamErrorKind::Timeout => ErrorResponse::gateway_timeout(format!(
                "Upstream connection {} did not answer within {} s",
                self.connection,
                self.timeout.map(|d| d.as_secs_f64()).unwrap_or_default()
            ))
            .with_code("upstream_timeout"),
            UpstreamErrorKind::Protocol => ErrorResponse::bad_gateway(format!(
                "Upstream connection {} failed during the exchange",
                self.connection
            ))
            .with_code("upstream_error"),
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            UpstreamErrorKind::Connect => {
                write!(
                    f,
                    "could not connect to upstream connection {}",
                    self.connection
                )
            }
            UpstreamErrorKind::Timeout => write!(
                f,
                "upstream connection {} sent nothing for {:?}",
                self.connection,
                self.timeout.unwrap_or_default()
            ),
            UpstreamErrorKind::Protocol => {
                write!(f, "upstream connection {} failed", self.connection)
            }
        }
    }
}

impl StdError for UpstreamError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Walk `err`'s source chain and return the first error of type `E`.
///
/// ```
/// use tower_openai_core::error::{find_cause, UpstreamError};
///
/// let err: tower_openai_core::BoxError = Box::new(UpstreamError::connect(0, "refused"));
/// assert_eq!(find_cause::<UpstreamError>(&*err).unwrap().connection(), 0);
/// ```
pub fn find_cause<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_openai_shaped() {
        let err = ErrorResponse::bad_request("bad").with_code("x");
        let v: serde_json::Value = serde_json::from_str(&err.to_json()).unwrap();
        assert_eq!(v["error"]["message"], "bad");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "x");
        let v: serde_json::Value =
            serde_json::from_str(&ErrorResponse::internal("x").to_json()).unwrap();
        assert!(v["error"]["code"].is_null());
    }

    #[test]
    fn response_has_status_and_json_content_type() {
        let res = ErrorResponse::payload_too_large(10).into_response();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn upstream_errors_map_to_502_and_504() {
        assert_eq!(
            UpstreamError::connect(1, "refused").to_response().status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            UpstreamError::timeout(1, Duration::from_secs(3))
                .to_response()
                .status(),
            StatusCode::GATEWAY_TIMEOUT
        );
    }

    #[test]
    fn cause_is_found_through_wrappers() {
        #[derive(Debug)]
        struct Wrap(UpstreamError);
        impl fmt::Display for Wrap {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrap")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let err = Wrap(UpstreamError::timeout(2, Duration::from_secs(1)));
        assert!(find_cause::<UpstreamError>(&err).is_some());
        assert!(find_cause::<std::io::Error>(&err).is_none());
    }
}
