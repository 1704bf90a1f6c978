//! Cutting an event stream into events, for the layers that re-frame one (the Responses and
//! Anthropic conversions).

use bytes::{Bytes, BytesMut};

use super::sse_event_end;

/// Holds what an event stream sent until each event is complete; past `max` bytes of an
/// incomplete one it says so ([`is_over`](Self::is_over)).
#[derive(Debug)]
pub struct SseEvents {
    held: BytesMut,
    max: usize,
}

impl SseEvents {
    /// A splitter holding at most `max` bytes of an incomplete event.
    pub fn new(max: usize) -> Self {
        Self {
            held: BytesMut::new(),
            max,
        }
    }

    /// Add bytes of the stream.
    pub fn extend(&mut self, data: &[u8]) {
        self.held.extend_from_slice(data);
    }

    /// The next complete event (with its blank line), if one is held.
    pub fn next_event(&mut self) -> Option<BytesMut> {
        sse_event_end(&self.held).map(|end| self.held.split_to(end))
    }

    /// Whether what is held of an incomplete event is past the bound (the stream should be
    /// ended: the event is not read further).
    pub fn is_over(&self) -> bool {
        self.held.len() > self.max
    }

    /// What is held (of an event the stream never finished), leaving nothing.
    pub fn take_rest(&mut self) -> BytesMut {
        std::mem::take(&mut self.held)
    }
}

/// A converter of an event stream, event by event: it says what each whole event becomes,
/// and [`feed`](Self::feed) and [`feed_rest`](Self::feed_rest) drive it (the loop the
/// Responses and Anthropic streams share). Its [`Reframe`](super::Reframe) calls them.
pub trait ConvertEvents {
    /// The splitter holding what came of an unfinished event.
    fn events(&mut self) -> &mut SseEvents;
    /// Whether the output is complete: nothing more is read.
    fn is_done(&self) -> bool;
    /// Write what one whole event becomes.
    fn on_event(&mut self, event: &[u8], out: &mut String);
    /// An event grew past the splitter's bound: write the error that ends the output.
    fn too_large(&mut self, out: &mut String);

    /// Bytes of the stream; what the events they complete become.
    fn feed(&mut self, data: &[u8]) -> Bytes {
        let mut out = String::new();
        if self.is_done() {
            return Bytes::new();
        }
        self.events().extend(data);
        while let Some(event) = self.events().next_event() {
            self.on_event(&event, &mut out);
            if self.is_done() {
                self.events().take_rest();
                break;
            }
        }
        if !self.is_done() && self.events().is_over() {
            self.too_large(&mut out);
        }
        Bytes::from(out)
    }

    /// The stream ended: what an unfinished last event (one without its blank line) becomes.
    fn feed_rest(&mut self, out: &mut String) {
        if self.is_done() {
            return;
        }
        let rest = self.events().take_rest();
        if !rest.is_empty() {
            self.on_event(&rest, out);
        }
    }
}

/// The data of one event: its `data:` lines' values (one leading space removed), joined by
/// `\n`; other fields and comments left out.
pub fn sse_data(event: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut first = true;
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !first {
                data.push(b'\n');
            }
            first = false;
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_whole_and_an_overlong_one_is_over() {
        let mut events = SseEvents::new(16);
        let mut got = Vec::new();
        for part in [&b"event: a\ndata: 1\n\ndata: 2"[..], b"\r\ndata: 3\r\n\r\n"] {
            events.extend(part);
            while let Some(event) = events.next_event() {
                got.push(sse_data(&event));
            }
        }
        assert_eq!(got, [b"1".to_vec(), b"2\n3".to_vec()]);
        assert!(!events.is_over());
        events.extend(&[b'x'; 17]);
        assert!(events.next_event().is_none() && events.is_over());
        assert_eq!(events.take_rest().len(), 17);
        assert!(!events.is_over());
    }
}
