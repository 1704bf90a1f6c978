//! Time for the tower-openai layers: timers reused between requests, deadlines on a request
//! body, and the server's shutdown as the layers that hold long responses see it.
//!
//! - [`SleepSlot`] keeps one tokio `Sleep` between requests (the upstream's idle timeout and
//!   the body read deadlines borrow it).
//! - [`TimeoutBody`] puts an idle and a total deadline on a body ([`BodyTimeouts`]); a
//!   missed one is a [`BodyTimedOut`] error, answered as a 408.
//! - [`ShutdownSignal`] ends open streams at the end of a server's grace period.
//!
//! [`SleepSlot`]: timers reused from one request to the next on the same connection.
//!
//! A proxy arms timers on every request (a read timeout for the request head, an idle
//! timeout for the upstream's answer), and almost none of them fire. Creating a tokio `Sleep`
//! per request is not cheap: it clones the runtime's handle (a reference count every worker
//! thread shares), and it is inserted into the timer wheel when first polled and removed when
//! dropped, each under the wheel's lock. Moving a kept `Sleep` with `Sleep::reset` skips the
//! wheel, but still clones and drops the runtime's handle each time, and on a busy
//! multi-core machine that shared count is a cache line bouncing between cores.
//!
//! [`SleepSlot`] keeps one `Sleep` between uses, and touches it only when it must:
//! [`SleepSlot::sleep_until`] lends the kept one (or makes one), and the [`SlotSleep`] it
//! returns goes back to the slot when dropped. A lent sleep remembers its own deadline; the
//! kept `Sleep` is moved only when it would fire too late (the new deadline is sooner), or
//! when it fires before that deadline, and then once. Timeouts that move later on every
//! request, as these do, cost a store per request and at most one early wake-up per timeout
//! period.
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use tower_openai_time::SleepSlot;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let slot = SleepSlot::new();
//! let first = slot.sleep_until(Instant::now() + Duration::from_millis(10));
//! first.await; // elapsed; dropped, so it is back in the slot
//! // The next one reuses it.
//! slot.sleep_until(Instant::now() + Duration::from_millis(10)).await;
//! # }
//! ```

mod body;
mod shutdown;
mod slot;

pub use crate::body::{BodyTimedOut, BodyTimeouts, Missed, TimeoutBody};
pub use crate::shutdown::{Cut, ShutdownSignal};
pub use crate::slot::{SleepSlot, SlotSleep, deadline};
