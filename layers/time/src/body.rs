//! [`TimeoutBody`]: a request body with an idle and a total deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tokio::time::Instant;

use crate::slot::{SleepSlot, SlotSleep, deadline};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which deadline a body missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    /// It sent nothing for the idle timeout.
    Idle,
    /// It was not complete within the total timeout, however it trickled.
    Total,
}

/// A request body missed a deadline of its [`TimeoutBody`]: the caller is answered 408.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .missed {
    Missed::Idle => format!("the request body sent nothing for {} s", .after.as_secs_f64()),
    Missed::Total => format!("the request body was not complete within {} s", .after.as_secs_f64()),
})]
pub struct BodyTimedOut {
    /// Which deadline.
    pub missed: Missed,
    /// The timeout that passed.
    pub after: Duration,
}

/// The deadlines of a [`TimeoutBody`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyTimeouts {
    /// The longest the body may send nothing (`None`: no limit).
    pub idle: Option<Duration>,
    /// The longest the body may take, from the first time it is waited for (`None`: no
    /// limit). Counted from the first wait, not the request's start: a body that arrived
    /// with its head never waits and costs no clock read.
    pub total: Option<Duration>,
}

impl BodyTimeouts {
    /// Whether no deadline is set.
    pub fn is_none(&self) -> bool {
        self.idle.is_none() && self.total.is_none()
    }
}

/// A body that fails with [`BodyTimedOut`] when it sends nothing for the idle timeout, or
/// is not complete within the total timeout (a trickle of a byte every few seconds keeps an
/// idle timeout happy forever; the total deadline does not move).
///
/// The clock is armed only when the body has to wait (a body that arrived with its head
/// costs no timer), with a sleep borrowed from a [`SleepSlot`] (no timer registered per
/// request), moved only when a frame arrives after a wait.
#[pin_project]
#[derive(Debug)]
pub struct TimeoutBody<B> {
    #[pin]
    inner: B,
    timeouts: BodyTimeouts,
    slot: Option<SleepSlot>,
    /// Armed at the first wait.
    armed: Option<Armed>,
}

#[derive(Debug)]
struct Armed {
    sleep: SlotSleep,
    /// The total deadline, if any.
    total: Option<Instant>,
}

impl<B> TimeoutBody<B> {
    /// `inner` with these deadlines, timed with a sleep from `slot`.
    pub fn new(inner: B, timeouts: BodyTimeouts, slot: &SleepSlot) -> Self {
        Self {
            inner,
            timeouts,
            slot: (!timeouts.is_none()).then(|| slot.clone()),
            armed: None,
        }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl BodyTimeouts {
    /// The next deadline from `now`, given the total one.
    fn next(&self, now: Instant, total: Option<Instant>) -> Instant {
        let idle = self.idle.map(|d| deadline(now, d));
        match (idle, total) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => deadline(now, Duration::MAX),
        }
    }
}

impl<B> Body for TimeoutBody<B>
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
                if let Some(armed) = this.armed.as_mut()
                    && this.timeouts.idle.is_some()
                {
                    // A frame: the idle deadline moves; the total one stays.
                    armed
                        .sleep
                        .reset(this.timeouts.next(Instant::now(), armed.total));
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let Some(slot) = this.slot.as_ref() else {
                    return Poll::Pending;
                };
                let timeouts = *this.timeouts;
                let armed = this.armed.get_or_insert_with(|| {
                    let now = Instant::now();
                    let total = timeouts.total.map(|d| deadline(now, d));
                    Armed {
                        sleep: slot.sleep_until(timeouts.next(now, total)),
                        total,
                    }
                });
                if Pin::new(&mut armed.sleep).poll(cx).is_ready() {
                    let missed = match (armed.total, timeouts.total) {
                        (Some(total), Some(after)) if Instant::now() >= total => BodyTimedOut {
                            missed: Missed::Total,
                            after,
                        },
                        _ => BodyTimedOut {
                            missed: Missed::Idle,
                            after: timeouts.idle.unwrap_or_default(),
                        },
                    };
                    return Poll::Ready(Some(Err(missed.into())));
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

    type Sender = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

    fn channel_body(
        timeouts: BodyTimeouts,
    ) -> (
        Sender,
        TimeoutBody<impl Body<Data = Bytes, Error = std::io::Error>>,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        (
            tx,
            TimeoutBody::new(StreamBody::new(stream), timeouts, &SleepSlot::new()),
        )
    }

    fn missed(err: &BoxError) -> Option<BodyTimedOut> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&**err);
        while let Some(e) = cause {
            if let Some(t) = e.downcast_ref::<BodyTimedOut>() {
                return Some(*t);
            }
            cause = e.source();
        }
        None
    }

    const IDLE: BodyTimeouts = BodyTimeouts {
        idle: Some(Duration::from_secs(30)),
        total: Some(Duration::from_secs(300)),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_after_the_idle_timeout() {
        let (tx, body) = channel_body(IDLE);
        tx.send(Ok(Frame::data(Bytes::from_static(b"{"))))
            .await
            .unwrap();
        let start = Instant::now();
        let err = body.collect().await.unwrap_err();
        assert_eq!(missed(&err).map(|m| m.missed), Some(Missed::Idle));
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_passes_the_idle_timeout_and_fails_the_total_one() {
        let (tx, body) = channel_body(IDLE);
        // A byte every 20 s, for ever.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b" "))))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let start = Instant::now();
        let err = body.collect().await.unwrap_err();
        assert_eq!(
            missed(&err),
            Some(BodyTimedOut {
                missed: Missed::Total,
                after: Duration::from_secs(300)
            })
        );
        assert_eq!(start.elapsed(), Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_ends_in_time_is_whole() {
        let (tx, body) = channel_body(IDLE);
        tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b" ")))).await;
            }
        });
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn without_deadlines_it_waits_for_ever() {
        let (tx, body) = channel_body(BodyTimeouts::default());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(86_400)).await;
            let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await;
        });
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 1);
    }
}
