//! Whole events of a stream, to drop the usage chunk the gateway asked for and the caller
//! did not.

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

use crate::usage::MAX_HELD_EVENT_BYTES;

/// Whole events, to drop the usage chunk the caller did not ask for.
#[derive(Debug, Default)]
pub(crate) struct Events {
    pub(crate) held: BytesMut,
}

impl Events {
    /// Add `data`; the complete events to pass on (the usage chunk left out), if any.
    pub(crate) fn push(&mut self, data: Bytes) -> Option<Bytes> {
        self.held.extend_from_slice(&data);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.held) {
            let event = self.held.split_to(end);
            if !is_usage_chunk(&event) {
                out.extend_from_slice(&event);
            }
        }
        if self.held.len() > MAX_HELD_EVENT_BYTES {
            out.extend_from_slice(&self.held.split());
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    pub(crate) fn rest(&mut self) -> Option<Bytes> {
        (!self.held.is_empty()).then(|| self.held.split().freeze())
    }
}

/// The end (exclusive) of the first complete event in `buf`: after a blank line.
pub(crate) use tower_openai_util::body::sse_event_end as event_end;

/// Whether `event` is a chat chunk with no choices and a usage object: the one that
/// `include_usage` adds.
pub(crate) fn is_usage_chunk(event: &[u8]) -> bool {
    let Some(data) = event.strip_prefix(b"data:") else {
        return false;
    };
    let Ok(chunk) = serde_json::from_slice::<Map<String, Value>>(data.trim_ascii()) else {
        return false;
    };
    matches!(chunk.get("choices"), Some(Value::Array(c)) if c.is_empty())
        && matches!(chunk.get("usage"), Some(Value::Object(_)))
}
