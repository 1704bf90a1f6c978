//! The reusable sleep slot.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

type Kept = Arc<Mutex<Option<Pin<Box<Sleep>>>>>;

/// `from + duration`, or a deadline no timer reaches (about 30 years on) when the sum does
/// not fit the clock: a configured timeout too large to add means "no timeout", never a
/// panic.
pub fn deadline(from: Instant, duration: std::time::Duration) -> Instant {
    from.checked_add(duration)
        .or_else(|| from.checked_add(std::time::Duration::from_secs(86_400 * 365 * 30)))
        .unwrap_or(from)
}

/// Keeps one tokio `Sleep` for reuse. See the [crate docs](crate).
///
/// Clones share the slot; make one per connection (or per service instance that serves one
/// connection), so that the sleeps of unrelated requests are not passed around between
/// threads.
#[derive(Clone, Default)]
pub struct SleepSlot(Kept);

impl SleepSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// A sleep until `deadline`: the kept one (moved only if it would fire after
    /// `deadline`), or a new one. It returns to this slot when dropped.
    pub fn sleep_until(&self, deadline: Instant) -> SlotSleep {
        let kept = self.0.lock().ok().and_then(|mut kept| kept.take());
        let sleep = match kept {
            Some(mut sleep) => {
                if sleep.deadline() > deadline {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        SlotSleep {
            sleep: Some(sleep),
            deadline,
            slot: self.0.clone(),
        }
    }
}

impl fmt::Debug for SleepSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SleepSlot").finish_non_exhaustive()
    }
}

/// A sleep lent by a [`SleepSlot`]; it goes back to the slot when dropped.
pub struct SlotSleep {
    /// `Some` until dropped. Due at `deadline` or sooner, never later.
    sleep: Option<Pin<Box<Sleep>>>,
    /// When this sleep completes.
    deadline: Instant,
    slot: Kept,
}

impl SlotSleep {
    fn sleep(&mut self) -> Pin<&mut Sleep> {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut(),
            None => unreachable!("a SlotSleep holds its sleep until it is dropped"),
        }
    }

    /// When the kept tokio sleep is due (at or before [`deadline`](Self::deadline)).
    fn due(&self) -> Instant {
        match &self.sleep {
            Some(sleep) => sleep.deadline(),
            None => unreachable!("a SlotSleep holds its sleep until it is dropped"),
        }
    }

    /// Move the deadline.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if self.due() > deadline {
            self.sleep().reset(deadline);
        }
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for SlotSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            std::task::ready!(self.sleep().poll(cx));
            if self.due() >= self.deadline {
                return Poll::Ready(());
            }
            // The kept sleep was due sooner (it was lent with a later deadline and not
            // moved): move it now, and wait again.
            let deadline = self.deadline;
            self.sleep().reset(deadline);
        }
    }
}

impl Drop for SlotSleep {
    fn drop(&mut self) {
        let (Some(sleep), Ok(mut kept)) = (self.sleep.take(), self.slot.lock()) else {
            return;
        };
        if kept.is_none() {
            *kept = Some(sleep);
        }
    }
}

impl fmt::Debug for SlotSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotSleep")
            .field("deadline", &self.deadline())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_dropped_sleep_is_kept_and_reset_for_the_next() {
        let slot = SleepSlot::new();
        let start = Instant::now();
        let first = slot.sleep_until(start + Duration::from_secs(30));
        let kept_at = first.sleep.as_ref().map(|s| &**s as *const Sleep);
        drop(first);
        let second = slot.sleep_until(start + Duration::from_secs(60));
        // The same sleep, moved to the new deadline.
        assert_eq!(second.sleep.as_ref().map(|s| &**s as *const Sleep), kept_at);
        assert_eq!(second.deadline(), start + Duration::from_secs(60));
        // While it is lent, the slot is empty: a second sleep is a new one.
        let third = slot.sleep_until(start + Duration::from_secs(1));
        assert_ne!(third.sleep.as_ref().map(|s| &**s as *const Sleep), kept_at);
        third.await;
        assert_eq!(Instant::now(), start + Duration::from_secs(1));
        second.await;
        assert_eq!(Instant::now(), start + Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_leaves_the_kept_sleep_alone_and_a_sooner_one_moves_it() {
        let slot = SleepSlot::new();
        let start = Instant::now();
        drop(slot.sleep_until(start + Duration::from_secs(30)));
        // Later: the kept tokio sleep is not touched (no reset, no runtime handle clone).
        let later = slot.sleep_until(start + Duration::from_secs(60));
        assert_eq!(later.due(), start + Duration::from_secs(30));
        assert_eq!(later.deadline(), start + Duration::from_secs(60));
        drop(later);
        // Sooner: it must be moved, or it would fire late.
        let sooner = slot.sleep_until(start + Duration::from_secs(5));
        assert_eq!(sooner.due(), start + Duration::from_secs(5));
        sooner.await;
        assert_eq!(Instant::now(), start + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_reset_to_a_sooner_deadline_fires_then() {
        let slot = SleepSlot::new();
        let start = Instant::now();
        let mut sleep = slot.sleep_until(start + Duration::from_secs(30));
        assert!(futures_util::FutureExt::now_or_never(&mut sleep).is_none());
        sleep.reset(start + Duration::from_secs(3));
        sleep.await;
        assert_eq!(Instant::now(), start + Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_sleep_fires_at_its_new_deadline_not_its_old_one() {
        let slot = SleepSlot::new();
        let start = Instant::now();
        // Armed (polled) for 10 s, then dropped and reused for 100 s.
        let mut first = slot.sleep_until(start + Duration::from_secs(10));
        assert!(futures_util::FutureExt::now_or_never(&mut first).is_none());
        drop(first);
        let mut second = slot.sleep_until(start + Duration::from_secs(100));
        tokio::time::sleep(Duration::from_secs(50)).await;
        assert!(
            futures_util::FutureExt::now_or_never(&mut second).is_none(),
            "fired early"
        );
        second.await;
        assert_eq!(Instant::now(), start + Duration::from_secs(100));
    }
}
