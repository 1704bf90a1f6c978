//! hyper's timer for one connection, over a [`SleepSlot`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_openai_time::{SleepSlot, SlotSleep, deadline};

/// hyper's [`Timer`](hyper::rt::Timer) for one connection, reusing one sleep for the timeout
/// hyper arms for every request head. Give each connection its own:
///
/// ```
/// use std::time::Duration;
/// use hyper_util::rt::TokioExecutor;
/// use hyper_util::server::conn::auto;
/// use openai_gateway::serving::ConnectionTimer;
///
/// let mut per_connection = auto::Builder::new(TokioExecutor::new());
/// per_connection
///     .http1()
///     .timer(ConnectionTimer::new())
///     .header_read_timeout(Duration::from_secs(30));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ConnectionTimer(SleepSlot);

impl ConnectionTimer {
    /// A timer with an empty slot.
    pub fn new() -> Self {
        Self::default()
    }
}

// hyper's trait speaks `std::time::Instant`; the sleeps are tokio's, on tokio's clock.
#[allow(clippy::disallowed_types)]
impl hyper::rt::Timer for ConnectionTimer {
    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }

    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(
            self.0.sleep_until(deadline(Instant::now(), duration)),
        ))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(self.0.sleep_until(deadline.into())))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(mut ours) => ours.0.reset(new_deadline.into()),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A [`SlotSleep`] as hyper's `Sleep`.
struct HyperSleep(SlotSleep);

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn hyper_resets_its_sleep_in_place() {
        use hyper::rt::Timer;
        let timer = ConnectionTimer::new();
        let start = timer.now();
        let mut sleep = timer.sleep_until(start + Duration::from_secs(5));
        timer.reset(&mut sleep, start + Duration::from_secs(7));
        let ours = sleep.as_mut().downcast_mut_pin::<HyperSleep>().unwrap();
        assert_eq!(
            ours.0.deadline(),
            Instant::from_std(start + Duration::from_secs(7))
        );
        let before = Instant::now();
        sleep.await;
        assert!(Instant::now() >= before + Duration::from_secs(6));
    }
}
