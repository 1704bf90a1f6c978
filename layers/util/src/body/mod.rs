//! Response bodies that layers wrap around the inner service's body.
//!
//! - [`WatchedBody`]: the one end-of-body hook (each chunk, then the end: completed, failed or
//!   dropped early), through a [`BodyWatch`]. The usage, observe and rate-limit layers learn
//!   how an answer ended through it.
//! - [`ReframedBody`]: a body turned into other bytes as it passes, through a [`Reframe`] (an
//!   event stream converted event by event, or a JSON answer read [`Whole`] and converted at
//!   its end): what the conversion layers (Responses, Anthropic) send back.
//! - [`SseEvents`], [`sse_data`] and [`sse_event_end`]: an event stream cut into whole events,
//!   and an event's data.
//! - [`ConvertError`]: why a request cannot be converted for another API.
//! - [`media_type`]: what a `Content-Type` header says a body is; [`read_capped`]: a whole
//!   body read under a cap.

mod reframe;
mod sse;
mod watch;

pub use self::reframe::{ConvertWhole, Converted, Reframe, ReframedBody, Whole};
pub use self::sse::{ConvertEvents, SseEvents, sse_data};
pub use self::watch::{BodyEnd, BodyWatch, WatchedBody};

use std::pin::Pin;

use bytes::Bytes;
use http_body_util::BodyExt;
use tower_openai_core::BoxError;

/// The end (exclusive) of the first complete server-sent event in `buf` (after its blank
/// line: `\n\n` or `\n\r\n`), if one is complete: how the layers that re-frame an event
/// stream cut it.
pub fn sse_event_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = buf[from..].iter().position(|b| *b == b'\n') {
        let nl = from + at;
        let rest = &buf[nl + 1..];
        if rest.first() == Some(&b'\n') {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        from = nl + 1;
    }
    None
}

/// Why a request cannot be converted for another API (the Responses and Anthropic
/// conversions): the member at fault and what is wrong with it; a 400 for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvertError {
    /// The member at fault (`messages[2].content[0]`).
    pub member: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConvertError {
    /// `member` and what is wrong with it.
    pub fn new(member: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            member: member.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.member, self.message)
    }
}

impl std::error::Error for ConvertError {}

/// The media type a message's `Content-Type` names, without its parameters and trimmed
/// (`text/event-stream` for `text/event-stream; charset=utf-8`); `None` without a header or
/// when it is not visible ASCII. Media types are case-insensitive: compare with
/// `eq_ignore_ascii_case`.
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
/// use tower_openai_util::body::media_type;
///
/// let mut headers = HeaderMap::new();
/// assert_eq!(media_type(&headers), None);
/// headers.insert(CONTENT_TYPE, HeaderValue::from_static(" Text/Event-Stream ; charset=utf-8"));
/// assert!(media_type(&headers).is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream")));
/// ```
pub fn media_type(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or_default().trim())
}

/// Why [`read_capped`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body is larger than the cap.
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// The body failed.
    #[error("reading the body failed: {0}")]
    Body(BoxError),
}

/// Read a whole body of at most `max` bytes ([`http_body_util::Limited`]).
///
/// A boxed `Send` future, generic over the body: an `async` block that collects a boxed
/// body inside another `Send` future trips rustc's higher-ranked `Send` inference.
pub fn read_capped<B>(
    body: B,
    max: usize,
) -> Pin<Box<dyn std::future::Future<Output = Result<Bytes, ReadError>> + Send>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Box::pin(async move {
        match http_body_util::Limited::new(body, max).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ReadError::TooLarge(max)),
            Err(e) => Err(ReadError::Body(e)),
        }
    })
}
