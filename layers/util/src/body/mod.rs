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

mod reframe;
mod sse;
mod watch;

pub use self::reframe::{ConvertWhole, Converted, Reframe, ReframedBody, Whole};
pub use self::sse::{ConvertEvents, SseEvents, sse_data};
pub use self::watch::{BodyEnd, BodyWatch, WatchedBody};

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
