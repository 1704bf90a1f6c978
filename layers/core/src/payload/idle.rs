use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tokio::time::Instant;

use crate::timer::{SleepSlot, SlotSleep, deadline};

use crate::BoxError;

/// The caller sent nothing of the request body for the read timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the request body sent nothing for {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// A request body that fails with [`BodyTimedOut`] when it sends nothing for `timeout`.
///
/// The clock is armed only when the body has to wait (a body that arrived with its head
/// costs no timer), with a sleep borrowed from the connection's [`SleepSlot`] (no timer
/// registered per request), and moved only when a frame arrives after a wait.
#[pin_project]
#[derive(Debug)]
pub(super) struct IdleTimeout<B> {
    #[pin]
    inner: B,
    timeout: Option<Duration>,
    slot: Option<SleepSlot>,
    sleep: Option<SlotSleep>,
}

impl<B> IdleTimeout<B> {
    pub(super) fn new(inner: B, timeout: Option<Duration>, slot: &SleepSlot) -> Self {
        Self {
            inner,
            timeout,
            slot: timeout.map(|_| slot.clone()),
            sleep: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let (Some(timeout), Some(sleep)) = (this.timeout, this.sleep.as_mut()) {
                    sleep.reset(deadline(Instant::now(), *timeout));
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let (Some(timeout), Some(slot)) = (*this.timeout, this.slot.as_ref()) else {
                    return Poll::Pending;
                };
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| slot.sleep_until(deadline(Instant::now(), timeout)));
                if Pin::new(sleep).poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(BodyTimedOut(timeout).into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_after_the_timeout_and_a_trickle_does_not() {
        // Silence after the first frame.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        tx.send(Ok(Frame::data(Bytes::from_static(b"{"))))
            .await
            .unwrap();
        let body = IdleTimeout::new(
            StreamBody::new(tokio_stream_of(rx)),
            Some(Duration::from_secs(30)),
            &SleepSlot::new(),
        );
        let start = Instant::now();
        let err = body.collect().await.unwrap_err();
        assert!(crate::error::is_caused_by::<BodyTimedOut>(&*err), "{err}");
        assert!(start.elapsed() >= Duration::from_secs(30));
        drop(tx);

        // A frame every 20 s never waits 30 s.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b" ")))).await;
            }
        });
        let body = IdleTimeout::new(
            StreamBody::new(tokio_stream_of(rx)),
            Some(Duration::from_secs(30)),
            &SleepSlot::new(),
        );
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 4);
    }

    fn tokio_stream_of<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
