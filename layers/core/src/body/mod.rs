//! Body types shared by the layers.
//!
//! - [`Body`]: the request body every layer below the payload step sees. It is either empty
//!   (the request's JSON lives in the [`Payload`](crate::Payload) extension), a buffer, or
//!   the caller's stream (hyper's `Incoming` as it is, any other body boxed once; a multipart
//!   upload is never collected).
//! - [`ResponseBody`]: a response body that is either the inner service's or one a layer
//!   made itself (a rejection, the model list), in the manner of tower-http's `limit` body.
//! - [`BoxBody`]: the type-erased response body used at the gateway boundary.

use std::any::Any;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use pin_project::pin_project;

use crate::error::{BoxError, ErrorResponse};
use tower_openai_time::{BodyTimeouts, SleepSlot, TimeoutBody};

/// A type-erased body, as used at the gateway boundary (linkerd's `BoxBody`).
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// The request body type of a tower-openai stack below the payload step.
///
/// See the [module docs](self).
#[derive(Debug, Default)]
pub struct Body {
    kind: Kind,
}

#[derive(Default)]
enum Kind {
    #[default]
    Empty,
    Full(Option<Bytes>),
    /// A request body as hyper serves it: kept as it is, not boxed.
    Incoming(hyper::body::Incoming),
    /// The same, with deadlines.
    TimedIncoming(TimeoutBody<hyper::body::Incoming>),
    Boxed(BoxBody),
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Empty => f.write_str("Empty"),
            Kind::Full(b) => f
                .debug_tuple("Full")
                .field(&b.as_ref().map(Bytes::len))
                .finish(),
            Kind::Incoming(_) => f.write_str("Incoming"),
            Kind::TimedIncoming(_) => f.write_str("TimedIncoming"),
            Kind::Boxed(_) => f.write_str("Boxed"),
        }
    }
}

impl Body {
    /// Wrap any body. A [`Body`] passed in is returned as it is, not boxed again.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let body = match try_downcast::<Body, B>(body) {
            Ok(body) => return body,
            Err(body) => body,
        };
        match try_downcast::<hyper::body::Incoming, B>(body) {
            Ok(incoming) => Self {
                kind: Kind::Incoming(incoming),
            },
            Err(body) => Self {
                kind: Kind::Boxed(body.map_err(Into::into).boxed_unsync()),
            },
        }
    }

    /// A request body as hyper serves it, failing with
    /// [`BodyTimedOut`](tower_openai_time::BodyTimedOut) when it misses one of `timeouts` (timed
    /// with a sleep from `slot`: make one per connection). A body with nothing to send gets
    /// no timer.
    pub fn incoming(
        incoming: hyper::body::Incoming,
        timeouts: BodyTimeouts,
        slot: &SleepSlot,
    ) -> Self {
        use http_body::Body as _;
        let kind = if timeouts.is_none() || incoming.is_end_stream() {
            Kind::Incoming(incoming)
        } else {
            Kind::TimedIncoming(TimeoutBody::new(incoming, timeouts, slot))
        };
        Self { kind }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Whether this body is known to carry nothing.
    pub fn is_empty(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            Kind::Incoming(_) | Kind::TimedIncoming(_) | Kind::Boxed(_) => false,
        }
    }
}

fn try_downcast<T: 'static, K: 'static>(k: K) -> Result<T, K> {
    let mut slot = Some(k);
    if let Some(t) = (&mut slot as &mut dyn Any).downcast_mut::<Option<T>>() {
        match t.take() {
            Some(t) => return Ok(t),
            None => unreachable!("slot was filled just above"),
        }
    }
    match slot {
        Some(k) => Err(k),
        None => unreachable!("slot is only emptied on a successful downcast"),
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes)),
        }
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Kind::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Kind::TimedIncoming(b) => Pin::new(b).poll_frame(cx),
            Kind::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            Kind::Incoming(b) => b.is_end_stream(),
            Kind::TimedIncoming(b) => b.is_end_stream(),
            Kind::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Incoming(b) => b.size_hint(),
            Kind::TimedIncoming(b) => b.size_hint(),
            Kind::Boxed(b) => b.size_hint(),
        }
    }
}

/// A response body that is either the inner service's body or a rejection made by a layer.
///
/// See the [module docs](self).
#[pin_project(project = ResponseBodyProj)]
#[derive(Debug)]
pub enum ResponseBody<B> {
    /// The inner service's body, untouched.
    Inner(#[pin] B),
    /// A response the layer made itself: a rejection, or an answer such as the model list.
    Local(#[pin] Full<Bytes>),
}

impl<B> ResponseBody<B> {
    /// Wrap the inner service's response.
    pub fn inner(res: Response<B>) -> Response<Self> {
        res.map(ResponseBody::Inner)
    }

    /// A response made from a rejection.
    pub fn rejected(err: ErrorResponse) -> Response<Self> {
        err.into_response().map(ResponseBody::Local)
    }

    /// A response the layer made itself.
    pub fn local(res: Response<Full<Bytes>>) -> Response<Self> {
        res.map(ResponseBody::Local)
    }
}

impl<B> http_body::Body for ResponseBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project() {
            ResponseBodyProj::Inner(b) => b.poll_frame(cx),
            ResponseBodyProj::Local(b) => match b.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Inner(b) => b.is_end_stream(),
            ResponseBody::Local(b) => b.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Inner(b) => b.size_hint(),
            ResponseBody::Local(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_is_not_boxed_twice_and_yields_its_bytes() {
        let body = Body::new(Body::from("abc"));
        assert!(matches!(body.kind, Kind::Full(_)));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abc");
    }

    #[tokio::test]
    async fn foreign_bodies_are_boxed() {
        let body = Body::new(Full::new(Bytes::from_static(b"xyz")));
        assert!(matches!(body.kind, Kind::Boxed(_)));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"xyz");
        assert!(http_body::Body::is_end_stream(&Body::empty()));
    }

    #[tokio::test]
    async fn a_hyper_request_body_is_kept_unboxed_and_read_through() {
        use hyper_util::rt::TokioIo;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async {
            let body = Body::new(req.into_body());
            let unboxed = matches!(body.kind, Kind::Incoming(_));
            let hint = http_body::Body::size_hint(&body).exact();
            let bytes = body.collect().await.unwrap().to_bytes();
            let answer = format!("{unboxed} {hint:?} {}", String::from_utf8_lossy(&bytes));
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(answer))))
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc),
        );
        client
            .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.ends_with("true Some(5) hello"), "{answer}");
    }

    #[tokio::test]
    async fn rejected_body_renders_the_error() {
        let res = ResponseBody::<Full<Bytes>>::rejected(ErrorResponse::not_found("nope"));
        assert_eq!(res.status(), http::StatusCode::NOT_FOUND);
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert!(std::str::from_utf8(&bytes).unwrap().contains("nope"));
    }
}
