use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

/// One step of a [`ScriptedBody`].
#[derive(Debug, Clone)]
pub enum Step {
    /// Yield a data frame.
    Data(Bytes),
    /// Wait this long (on tokio's clock, so paused-time tests stay instant).
    Delay(Duration),
    /// Fail with an I/O error carrying this message.
    Error(String),
    /// Never yield again.
    Hang,
}

/// A body that plays a script: data frames, delays, an error, or hanging forever.
///
/// ```
/// use std::time::Duration;
/// use tower_openai_test_util::{ScriptedBody, Step};
///
/// let body = ScriptedBody::new([
///     Step::Data("data: 1\n\n".into()),
///     Step::Delay(Duration::from_millis(5)),
///     Step::Error("connection reset".into()),
/// ]);
/// # let _ = body;
/// ```
#[derive(Debug)]
pub struct ScriptedBody {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ScriptedBody {
    /// A body playing `steps` in order, then ending.
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: steps.into_iter().collect(),
            sleep: None,
        }
    }

    /// SSE events (`data: {chunk}\n\n`) with no delays.
    pub fn sse<I, S>(chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::new(
            chunks
                .into_iter()
                .map(|c| Step::Data(Bytes::from(format!("data: {}\n\n", c.as_ref())))),
        )
    }
}

impl http_body::Body for ScriptedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            match self.steps.front().cloned() {
                None => return Poll::Ready(None),
                Some(Step::Hang) => return Poll::Pending,
                Some(step) => {
                    self.steps.pop_front();
                    match step {
                        Step::Data(b) => return Poll::Ready(Some(Ok(Frame::data(b)))),
                        Step::Error(msg) => {
                            self.steps.clear();
                            return Poll::Ready(Some(Err(std::io::Error::other(msg))));
                        }
                        Step::Delay(d) => self.sleep = Some(Box::pin(tokio::time::sleep(d))),
                        Step::Hang => unreachable!("handled above"),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.steps.is_empty() && self.sleep.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

use std::future::Future as _;
