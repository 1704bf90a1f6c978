use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use pin_project::pin_project;
use tokio::time::{Instant, Sleep};
use tower_openai_core::error::UpstreamError;
use tower_openai_core::{BoxError, Ending, EndingReport, ErrorResponse};
use tower_openai_time as timer;
use tower_openai_time::Cut;
use tower_openai_time::ShutdownSignal;

/// The upstream's response body, relayed frame by frame.
///
/// - Each frame is passed on as it arrives; nothing is buffered or coalesced.
/// - If nothing arrives for the idle-read timeout, the body fails with a timeout.
/// - On a server-sent-events stream, a failure (a reset, a timeout), or the end of the
///   server's shutdown grace period ([`UpstreamBuilder::shutdown`](crate::UpstreamBuilder::shutdown)),
///   does not end the stream
///   as if it had finished: one last event `data: {"error": {…}}` is sent, which the OpenAI
///   SDKs raise as an error, and then the stream ends. Other bodies fail, so the caller's
///   connection is closed without a clean end.
#[pin_project]
#[derive(Debug)]
pub struct ResponseBody {
    #[pin]
    inner: Incoming,
    /// Armed only once the body has to wait, and re-armed only when it fires: a frame just
    /// marks the body active, so a flowing stream costs no timer work per frame.
    idle: Option<Pin<Box<Sleep>>>,
    /// When the body last had to wait after being active (the start of the idle time that
    /// counts); `None` before it first waits.
    last_activity: Option<Instant>,
    /// Whether frames came since `last_activity` was taken. The clock is read when the body
    /// next has to wait, not for every frame: a body that never waits never reads it.
    active: bool,
    timeout: Option<Duration>,
    connection: usize,
    /// Boxed, as the two below: only event streams and error answers use them, and every
    /// answer's body is moved by each layer above.
    sse: Option<Box<SseState>>,
    /// On an event stream: the server's shutdown, and the wait for it (made when the stream
    /// first has to wait).
    shutdown: Option<Box<(ShutdownSignal, Option<Cut>)>>,
    /// Told when an event stream ends on an error event of ours (the stream broke, or the
    /// shutdown cut it), which the caller sees as a clean end.
    ending: Option<EndingReport>,
    /// An error status sent as an event stream: its body, read whole (at most
    /// [`MAX_ERROR_BODY`]) and answered as JSON (Open WebUI 0.7+).
    error_json: Option<Box<(Vec<u8>, u16)>>,
    done: bool,
    /// The request's place among its host's requests in flight, held until the body drops.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The most of an error answer's event stream read to make its JSON error.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// The JSON error for an error status's event-stream `body`: the body itself when it is a
/// JSON object (also as one `data:` event), else `{"error": {"message": <body>, "code":
/// <status>}}`.
fn error_json(body: &[u8], status: u16) -> Bytes {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    let candidate = trimmed
        .strip_prefix("data:")
        .map_or(trimmed, |rest| rest.trim());
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_str(candidate) {
        return Bytes::from(serde_json::Value::Object(object).to_string());
    }
    Bytes::from(serde_json::json!({"error": {"message": trimmed, "code": status}}).to_string())
}

/// What has been sent of an event stream, to end it on an event boundary.
#[derive(Debug, Default)]
struct SseState {
    /// The last bytes sent (up to 4), to know whether an event is open.
    tail: Vec<u8>,
    /// The final error event, once a failure happened.
    pending: Option<Bytes>,
    /// The stream is Anthropic's: the error event is `event: error` in its shape.
    anthropic: bool,
}

impl SseState {
    fn record(&mut self, data: &Bytes) {
        if data.len() >= 4 {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - 4..]);
        } else {
            self.tail.extend_from_slice(data);
            let excess = self.tail.len().saturating_sub(4);
            self.tail.drain(..excess);
        }
    }

    /// Whether the bytes sent so far end between events (a blank line, or nothing sent).
    fn at_event_boundary(&self) -> bool {
        let t = self.tail.as_slice();
        t.is_empty() || t.ends_with(b"\n\n") || t.ends_with(b"\r\r") || t.ends_with(b"\r\n\r\n")
    }

    fn fail(&mut self, error: &ErrorResponse) {
        let mut event = Vec::new();
        if !self.at_event_boundary() {
            // Close the event the upstream left open, so the error is an event of its own.
            event.extend_from_slice(b"\n\n");
        }
        if self.anthropic {
            let kind = if error.status() == http::StatusCode::GATEWAY_TIMEOUT {
                "timeout_error"
            } else {
                "api_error"
            };
            let data = serde_json::json!({"type": "error", "error": {"type": kind, "message": error.message()}});
            event.extend_from_slice(format!("event: error\ndata: {data}").as_bytes());
        } else {
            event.extend_from_slice(b"data: ");
            event.extend_from_slice(&error.to_bytes());
        }
        event.extend_from_slice(b"\n\n");
        self.pending = Some(Bytes::from(event));
    }
}

impl ResponseBody {
    pub(crate) fn new(
        inner: Incoming,
        timeout: Option<Duration>,
        connection: usize,
        sse: bool,
        shutdown: Option<&ShutdownSignal>,
    ) -> Self {
        Self {
            inner,
            idle: None,
            last_activity: None,
            active: true,
            timeout,
            connection,
            sse: sse.then(Box::default),
            shutdown: shutdown
                .filter(|_| sse)
                .map(|s| Box::new((s.clone(), None))),
            ending: None,
            error_json: None,
            done: false,
            _permit: None,
        }
    }

    /// Hold `permit` (a place among the host's requests in flight) until the body drops.
    pub(crate) fn holding(mut self, permit: Option<tokio::sync::OwnedSemaphorePermit>) -> Self {
        self._permit = permit;
        self
    }

    /// End a broken event stream with Anthropic's `event: error` instead of OpenAI's
    /// `data: {"error": …}`.
    pub(crate) fn anthropic_events(mut self, on: bool) -> Self {
        if let Some(sse) = &mut self.sse {
            sse.anthropic = on;
        }
        self
    }

    /// Read the body whole and answer it as a JSON error of `status` (an error status sent as
    /// an event stream).
    pub(crate) fn answered_as_json(mut self, status: u16) -> Self {
        self.sse = None;
        self.shutdown = None;
        self.error_json = Some(Box::new((Vec::new(), status)));
        self
    }

    pub(crate) fn reporting_to(mut self, ending: Option<EndingReport>) -> Self {
        if self.sse.is_some() {
            self.ending = ending;
        }
        self
    }

    /// Whether the body is a server-sent-events stream.
    pub fn is_event_stream(&self) -> bool {
        self.sse.is_some()
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if let Some(event) = this.sse.as_mut().and_then(|s| s.pending.take()) {
            *this.done = true;
            return Poll::Ready(Some(Ok(Frame::data(event))));
        }
        let failure: UpstreamError = match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.active = true;
                if let Some((held, _)) = this.error_json.as_deref_mut() {
                    if let Some(data) = frame.data_ref() {
                        let room = MAX_ERROR_BODY.saturating_sub(held.len());
                        held.extend_from_slice(&data[..data.len().min(room)]);
                    }
                    // Read on (the next poll comes at once).
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if let (Some(sse), Some(data)) = (this.sse.as_mut(), frame.data_ref()) {
                    sse.record(data);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(None) => {
                *this.done = true;
                if let Some(held) = this.error_json.take() {
                    let (held, status) = *held;
                    return Poll::Ready(Some(Ok(Frame::data(error_json(&held, status)))));
                }
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => UpstreamError::protocol(*this.connection, e),
            Poll::Pending => {
                if let (Some((signal, wait)), Some(sse)) =
                    (this.shutdown.as_deref_mut(), this.sse.as_mut())
                {
                    let wait = wait.get_or_insert_with(|| signal.wait());
                    if Pin::new(wait).poll(cx).is_ready() {
                        // The server's grace period is over: end on an event of our own.
                        let error = ErrorResponse::new(
                            http::StatusCode::SERVICE_UNAVAILABLE,
                            "The gateway is shutting down; the stream was ended before the upstream finished",
                        )
                        .with_code("gateway_shutting_down");
                        if let Some(ending) = this.ending.as_ref() {
                            ending.set(Ending::Shutdown);
                        }
                        sse.fail(&error);
                        *this.done = true;
                        let event = sse.pending.take().unwrap_or_default();
                        return Poll::Ready(Some(Ok(Frame::data(event))));
                    }
                }
                let Some(timeout) = *this.timeout else {
                    return Poll::Pending;
                };
                if *this.active || this.last_activity.is_none() {
                    *this.last_activity = Some(Instant::now());
                    *this.active = false;
                }
                let last_activity = this.last_activity.unwrap_or_else(Instant::now);
                let deadline = timer::deadline(last_activity, timeout);
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                loop {
                    ready!(idle.as_mut().poll(cx));
                    // Fired: if frames came meanwhile (the poll that saw them pending took the
                    // time), wait out the rest from then.
                    let deadline = timer::deadline(last_activity, timeout);
                    if deadline <= Instant::now() {
                        break;
                    }
                    idle.as_mut().reset(deadline);
                }
                UpstreamError::timeout(*this.connection, timeout)
            }
        };
        tracing::warn!(error = %failure, "upstream response body failed");
        match this.sse.as_mut() {
            Some(sse) => {
                let message = match failure.kind() {
                    tower_openai_core::error::UpstreamErrorKind::Timeout => format!(
                        "The upstream stream stalled: upstream connection {} sent nothing for {} s",
                        failure.connection(),
                        this.timeout.unwrap_or_default().as_secs_f64()
                    ),
                    _ => format!(
                        "The upstream stream broke off: upstream connection {} failed mid-stream",
                        failure.connection()
                    ),
                };
                let error = ErrorResponse::bad_gateway(message).with_code("upstream_stream_error");
                if let Some(ending) = this.ending.as_ref() {
                    ending.set(Ending::UpstreamBroke);
                }
                sse.fail(&error);
                *this.done = true;
                let event = sse.pending.take().unwrap_or_default();
                Poll::Ready(Some(Ok(Frame::data(event))))
            }
            None => {
                *this.done = true;
                Poll::Ready(Some(Err(failure.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
            || (self.inner.is_end_stream()
                && self.error_json.is_none()
                && self.sse.as_ref().is_none_or(|s| s.pending.is_none()))
    }

    fn size_hint(&self) -> SizeHint {
        if self.sse.is_some() {
            // An error event may be appended: never claim an exact length.
            let mut hint = SizeHint::new();
            hint.set_lower(self.inner.size_hint().lower());
            hint
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_boundaries_are_tracked_across_frames() {
        let mut s = SseState::default();
        assert!(s.at_event_boundary());
        s.record(&Bytes::from_static(b"data: {\"a\":1}\n"));
        assert!(!s.at_event_boundary());
        s.record(&Bytes::from_static(b"\n"));
        assert!(s.at_event_boundary());
        s.record(&Bytes::from_static(b"data: {\"a\""));
        assert!(!s.at_event_boundary());
        s.fail(&ErrorResponse::bad_gateway("x"));
        let event = s.pending.clone().unwrap();
        assert!(event.starts_with(b"\n\ndata: {\"error\""), "{event:?}");
        assert!(event.ends_with(b"\n\n"));

        let mut crlf = SseState::default();
        crlf.record(&Bytes::from_static(b"data: 1\r\n\r\n"));
        assert!(crlf.at_event_boundary());
        crlf.fail(&ErrorResponse::bad_gateway("x"));
        assert!(crlf.pending.unwrap().starts_with(b"data: {\"error\""));
    }
}
