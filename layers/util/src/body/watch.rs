//! [`WatchedBody`]: the one end-of-body hook, in tower-http's `trace` body shape (on each
//! chunk, at the end of the stream, on a failure) with its `on_early_drop` (the body
//! dropped before its end: the caller went away).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};

/// How a watched body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// It was read to its end.
    Completed,
    /// It failed (an error frame).
    Failed,
    /// It was dropped before its end (the caller went away).
    Dropped,
}

/// What watches a body: told of each data chunk, then of the end, once.
///
/// Implemented for closures `FnOnce(BodyEnd)` (the end only) and for `()` (nothing).
pub trait BodyWatch {
    /// A data chunk passed (before the caller gets it).
    fn on_data(&mut self, _data: &Bytes) {}

    /// The body ended; called once, as it ends, fails or is dropped.
    fn on_end(self, end: BodyEnd);
}

impl BodyWatch for () {
    fn on_end(self, _: BodyEnd) {}
}

impl<F: FnOnce(BodyEnd)> BodyWatch for F {
    fn on_end(self, end: BodyEnd) {
        self(end)
    }
}

/// A body told to a [`BodyWatch`]: each data chunk as it passes (frames pass unchanged, as
/// they come, nothing held), then how it ended: its last frame, an error frame, or being
/// dropped first. A body whose last data frame says it is the end
/// ([`is_end_stream`](Body::is_end_stream)) ends there: hyper polls no further.
///
/// Dropped early, the inner body is dropped *before* the watch is told: what the layers below
/// record when their own body drops (an estimate of an answer cut short) is there for it.
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub struct WatchedBody<B, W: BodyWatch> {
    /// `None` only while it is dropped.
    #[pin]
    inner: Option<B>,
    watch: Option<W>,
}

impl<B, W: BodyWatch> WatchedBody<B, W> {
    /// `inner`, watched by `watch` (`None`: not watched).
    pub fn new(inner: B, watch: Option<W>) -> Self {
        Self {
            inner: Some(inner),
            watch,
        }
    }

    /// The inner body.
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }
}

#[pinned_drop]
impl<B, W: BodyWatch> PinnedDrop for WatchedBody<B, W> {
    fn drop(self: Pin<&mut Self>) {
        let mut this = self.project();
        if let Some(watch) = this.watch.take() {
            // The inner body first (dropped in place), then the watch.
            this.inner.set(None);
            watch.on_end(BodyEnd::Dropped);
        }
    }
}

impl<B, W> Body for WatchedBody<B, W>
where
    B: Body<Data = Bytes>,
    W: BodyWatch,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(inner.poll_frame(cx));
        let Some(watch) = this.watch.as_mut() else {
            return Poll::Ready(frame);
        };
        let end = match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    watch.on_data(data);
                }
                this.inner
                    .as_ref()
                    .as_pin_ref()
                    .is_none_or(|b| b.is_end_stream())
                    .then_some(BodyEnd::Completed)
            }
            Some(Err(_)) => Some(BodyEnd::Failed),
            None => Some(BodyEnd::Completed),
        };
        if let Some(end) = end
            && let Some(watch) = this.watch.take()
        {
            watch.on_end(end);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    /// Records what it is told.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl BodyWatch for Log {
        fn on_data(&mut self, data: &Bytes) {
            self.0.lock().unwrap().push(format!("data {}", data.len()));
        }
        fn on_end(self, end: BodyEnd) {
            self.0.lock().unwrap().push(format!("{end:?}"));
        }
    }

    fn told(log: &Log) -> Vec<String> {
        log.0.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn the_end_is_told_once_however_the_body_ends() {
        // A full body: its one frame is its end.
        let log = Log::default();
        let body = WatchedBody::new(Full::new(Bytes::from_static(b"abc")), Some(log.clone()));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
        assert_eq!(told(&log), ["data 3", "Completed"]);

        // A stream that fails.
        let log = Log::default();
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err(std::io::Error::other("reset")),
        ];
        let body = WatchedBody::new(
            StreamBody::new(futures_util::stream::iter(frames)),
            Some(log.clone()),
        );
        assert!(body.collect().await.is_err());
        assert_eq!(told(&log), ["data 2", "Failed"]);

        // Dropped after one frame of two.
        let log = Log::default();
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::data(Bytes::from_static(b"b"))),
        ];
        let mut body = WatchedBody::new(
            StreamBody::new(futures_util::stream::iter(frames)),
            Some(log.clone()),
        );
        let _ = body.frame().await;
        drop(body);
        assert_eq!(told(&log), ["data 1", "Dropped"]);

        // Dropped early, the inner body is gone before the watch is told.
        struct Marks(Arc<Mutex<Vec<&'static str>>>);
        impl Drop for Marks {
            fn drop(&mut self) {
                self.0.lock().unwrap().push("inner dropped");
            }
        }
        impl http_body::Body for Marks {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                Poll::Pending
            }
        }
        let order = Arc::new(Mutex::new(Vec::new()));
        let seen = order.clone();
        drop(WatchedBody::new(
            Marks(order.clone()),
            Some(move |_| seen.lock().unwrap().push("told")),
        ));
        assert_eq!(*order.lock().unwrap(), ["inner dropped", "told"]);

        // A closure watches the end alone; no watch costs nothing.
        let ended = Arc::new(Mutex::new(None));
        let seen = ended.clone();
        let body = WatchedBody::new(
            Full::new(Bytes::new()),
            Some(move |end| *seen.lock().unwrap() = Some(end)),
        );
        drop(body);
        assert_eq!(*ended.lock().unwrap(), Some(BodyEnd::Dropped));
        let body = WatchedBody::<_, ()>::new(Full::new(Bytes::from_static(b"x")), None);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "x");
    }
}
