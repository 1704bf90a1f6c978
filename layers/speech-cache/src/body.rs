use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use pin_project::pin_project;
use tokio::sync::mpsc::UnboundedSender;

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
    tx: Option<UnboundedSender<Chunk>>,
}

impl<B> Tee<B> {
    pub(crate) fn new(inner: B, tx: UnboundedSender<Chunk>) -> Self {
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
                            if tx.send(Chunk::Data(data.clone())).is_err() {
                                *tee.tx = None;
                            }
                        }
                        // A length-delimited body may not be polled again once its last
                        // bytes are out (hyper stops at `Content-Length`): end it here.
                        if inner.is_end_stream() {
                            if let Some(tx) = tee.tx.take() {
                                let _ = tx.send(Chunk::End);
                            }
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(None) => {
                        if let Some(tx) = tee.tx.take() {
                            let _ = tx.send(Chunk::End);
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
