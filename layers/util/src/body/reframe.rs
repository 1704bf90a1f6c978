//! A response body whose bytes are turned into other bytes as they pass: how the conversion
//! layers (Responses, Anthropic) hand a converted answer on, a stream event by event or a
//! JSON answer read whole.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// Turns a body's bytes into other bytes.
pub trait Reframe {
    /// Bytes of the inner body; what to send for them (empty: nothing yet).
    fn push(&mut self, data: &[u8]) -> Bytes;
    /// The inner body ended: what is still owed.
    fn finish(&mut self) -> Bytes;
    /// Whether the output is complete (the inner body is not read further).
    fn is_finished(&self) -> bool;

    /// The inner body failed: `Some` ends the body with these bytes in place of the error;
    /// `None` (the default) passes the error on.
    fn on_error(&mut self) -> Option<Bytes> {
        None
    }
}

/// `inner`'s bytes through a [`Reframe`]. An error of `inner` is passed on as it is, unless
/// the reframe answers it ([`Reframe::on_error`]).
///
/// The reframe's state is boxed: a converting body is one variant of a layer's response body,
/// and every answer through that layer, converted or not, would otherwise carry (and move, at
/// each layer above) room for a stream converter's state.
#[pin_project]
#[derive(Debug)]
pub struct ReframedBody<B, R> {
    #[pin]
    inner: B,
    reframe: Box<R>,
    ended: bool,
}

impl<B, R> ReframedBody<B, R> {
    /// `inner` through `reframe`.
    pub fn new(inner: B, reframe: R) -> Self {
        Self {
            inner,
            reframe: Box::new(reframe),
            ended: false,
        }
    }
}

impl<B, R> Body for ReframedBody<B, R>
where
    B: Body<Data = Bytes>,
    R: Reframe,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            if *this.ended || this.reframe.is_finished() {
                return Poll::Ready(None);
            }
            let out = match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.reframe.push(&data),
                    // Trailers: not part of what is converted.
                    Err(_) => continue,
                },
                Some(Err(e)) => match this.reframe.on_error() {
                    Some(out) => {
                        *this.ended = true;
                        out
                    }
                    None => return Poll::Ready(Some(Err(e))),
                },
                None => {
                    *this.ended = true;
                    this.reframe.finish()
                }
            };
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.reframe.is_finished()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// What a whole answer becomes.
pub trait ConvertWhole {
    /// The answer for the whole body `body`, or for one past the bound (`None`).
    fn convert(&mut self, body: Option<&[u8]>) -> Bytes;
}

/// A [`Reframe`] that reads the whole body (at most `max` bytes) and sends what `C` makes
/// of it at its end; a longer body ends at once with what `C` makes of `None`.
#[derive(Debug)]
pub struct Whole<C> {
    held: BytesMut,
    max: usize,
    convert: C,
    done: bool,
    ending_on_error: bool,
}

impl<C> Whole<C> {
    /// Read at most `max` bytes, then `convert`.
    pub fn new(max: usize, convert: C) -> Self {
        Self {
            held: BytesMut::new(),
            max,
            convert,
            done: false,
            ending_on_error: false,
        }
    }

    /// When the inner body fails, convert what was read as if it had ended there (instead
    /// of passing the error on).
    pub fn ending_on_error(mut self) -> Self {
        self.ending_on_error = true;
        self
    }
}

impl<C: ConvertWhole> Reframe for Whole<C> {
    fn push(&mut self, data: &[u8]) -> Bytes {
        if self.done {
            return Bytes::new();
        }
        if self.held.len() + data.len() > self.max {
            self.done = true;
            self.held = BytesMut::new();
            return self.convert.convert(None);
        }
        self.held.extend_from_slice(data);
        Bytes::new()
    }

    fn finish(&mut self) -> Bytes {
        if self.done {
            return Bytes::new();
        }
        self.done = true;
        let held = std::mem::take(&mut self.held);
        self.convert.convert(Some(&held))
    }

    fn is_finished(&self) -> bool {
        self.done
    }

    fn on_error(&mut self) -> Option<Bytes> {
        self.ending_on_error.then(|| self.finish())
    }
}

/// A converted answer: a JSON answer read whole, or an event stream converted as it passes.
#[derive(Debug)]
pub enum Converted<J, S> {
    /// A JSON answer, read whole and converted at its end.
    Json(Whole<J>),
    /// An event stream, converted event by event.
    Events(S),
}

impl<J: ConvertWhole, S: Reframe> Reframe for Converted<J, S> {
    fn push(&mut self, data: &[u8]) -> Bytes {
        match self {
            Self::Json(json) => json.push(data),
            Self::Events(stream) => stream.push(data),
        }
    }

    fn finish(&mut self) -> Bytes {
        match self {
            Self::Json(json) => json.finish(),
            Self::Events(stream) => stream.finish(),
        }
    }

    fn is_finished(&self) -> bool {
        match self {
            Self::Json(json) => json.is_finished(),
            Self::Events(stream) => stream.is_finished(),
        }
    }

    fn on_error(&mut self) -> Option<Bytes> {
        match self {
            Self::Json(json) => json.on_error(),
            Self::Events(stream) => stream.on_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    struct Upper;

    impl ConvertWhole for Upper {
        fn convert(&mut self, body: Option<&[u8]>) -> Bytes {
            match body {
                Some(b) => Bytes::from(b.to_ascii_uppercase()),
                None => Bytes::from_static(b"TOO LARGE"),
            }
        }
    }

    fn body(parts: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_whole_body_is_converted_at_its_end_and_an_overlong_one_at_once() {
        let out = ReframedBody::new(body(&[b"ab", b"cd"]), Whole::new(4, Upper))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(out, "ABCD");
        let out = ReframedBody::new(body(&[b"ab", b"cde", b"f"]), Whole::new(4, Upper))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(out, "TOO LARGE");
    }

    #[tokio::test]
    async fn an_inner_error_is_passed_on_unless_the_reframe_ends_on_it() {
        fn broken() -> impl Body<Data = Bytes, Error = &'static str> {
            let frames: Vec<Result<Frame<Bytes>, &'static str>> =
                vec![Ok(Frame::data(Bytes::from_static(b"ab"))), Err("reset")];
            StreamBody::new(futures_util::stream::iter(frames))
        }
        let err = ReframedBody::new(broken(), Whole::new(8, Upper))
            .collect()
            .await
            .unwrap_err();
        assert_eq!(err, "reset");
        let out = ReframedBody::new(broken(), Whole::new(8, Upper).ending_on_error())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(out, "AB");
    }
}
