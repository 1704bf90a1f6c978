use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use pin_project::pin_project;
use tokio::sync::mpsc::Sender;

/// What the tee hands the writer.
#[derive(Debug)]
pub(crate) enum Chunk {
    Data(Bytes),
    /// The upstream body ended cleanly.
    End,
}

/// A response body: the inner one, the inner one being written to the cache as it streams,
/// or a cached file.
#[pin_project(project = ResponseBodyProj)]
#[derive(Debug)]
pub enum ResponseBody<B> {
    /// Passed through untouched.
    Inner(#[pin] B),
    /// Streamed to the caller and, frame by frame, to the cache writer.
    Tee(#[pin] Tee<B>),
    /// Served from the cache (or a response the layer made).
    Local(#[pin] Full<Bytes>),
}

/// Copies each data frame to the cache writer. The writer commits only after `End`: a body
/// that fails, or is dropped before its end, is never cached.
#[pin_project]
#[derive(Debug)]
pub struct Tee<B> {
    #[pin]
    inner: B,
    tx: Option<Sender<Chunk>>,
}

impl<B> Tee<B> {
    pub(crate) fn new(inner: B, tx: Sender<Chunk>) -> Self {
        Self {
            inner,
            tx: Some(tx),
        }
    }
}

impl<B> http_body::Body for ResponseBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project() {
            ResponseBodyProj::Inner(b) => b.poll_frame(cx),
            ResponseBodyProj::Local(b) => b
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never| match never {}))),
            ResponseBodyProj::Tee(tee) => {
                let tee = tee.project();
                let mut inner = tee.inner;
                match inner.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let (Some(tx), Some(data)) = (tee.tx.as_ref(), frame.data_ref()) {
                            // A writer that lags (or is gone) drops the entry: the
                            // caller's stream never waits for the disk.
                            if tx.try_send(Chunk::Data(data.clone())).is_err() {
                                *tee.tx = None;
                            }
                        }
                        // A length-delimited body may not be polled again once its last
                        // bytes are out (hyper stops at `Content-Length`): end it here.
                        if inner.is_end_stream()
                            && let Some(tx) = tee.tx.take()
                        {
                            let _ = tx.try_send(Chunk::End);
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(None) => {
                        if let Some(tx) = tee.tx.take() {
                            let _ = tx.try_send(Chunk::End);
                        }
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(e))) => {
                        // Dropping the sender without `End` tells the writer to discard.
                        *tee.tx = None;
                        Poll::Ready(Some(Err(e)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Inner(b) => b.is_end_stream(),
            ResponseBody::Tee(t) => t.inner.is_end_stream(),
            ResponseBody::Local(b) => http_body::Body::is_end_stream(b),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Inner(b) => b.size_hint(),
            ResponseBody::Tee(t) => t.inner.size_hint(),
            ResponseBody::Local(b) => http_body::Body::size_hint(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn a_writer_that_lags_loses_the_entry_but_never_holds_the_caller_back() {
        let chunks =
            (0..5).map(|i| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![i; 4]))));
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        // Room for one chunk, and a writer that reads nothing.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let tee = ResponseBody::Tee(Tee::new(body, tx));
        let got = tee.collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), 20, "the caller got every byte");
        // The writer sees one chunk, then the end of the channel without `End`: discard.
        assert!(matches!(rx.recv().await, Some(Chunk::Data(_))));
        assert!(rx.recv().await.is_none());
    }
}
