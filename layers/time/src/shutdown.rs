//! The server's shutdown, as the layers that hold long responses see it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

/// Tells long-lived responses (event streams) that the server's grace period is over, so
/// they end with a terminal error event instead of being cut mid-stream.
///
/// A server makes one, hands clones to the layers that stream (the upstream service), and
/// calls [`cut`](Self::cut) when its shutdown grace period ends. Cheap to clone.
///
/// ```
/// use tower_openai_time::ShutdownSignal;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let signal = ShutdownSignal::new();
/// let mut wait = signal.wait();
/// assert!(!signal.is_cut());
/// signal.cut();
/// (&mut wait).await;
/// assert!(signal.is_cut());
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ShutdownSignal(Arc<State>);

#[derive(Debug, Default)]
struct State {
    cut: AtomicBool,
    notify: Arc<Notify>,
}

impl ShutdownSignal {
    /// A signal not cut yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// End every stream that waits on this signal.
    pub fn cut(&self) {
        self.0.cut.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether [`cut`](Self::cut) was called.
    pub fn is_cut(&self) -> bool {
        self.0.cut.load(Ordering::SeqCst)
    }

    /// A future that resolves once the signal is cut (at once if it was already).
    pub fn wait(&self) -> Cut {
        let mut notified = Box::pin(self.0.notify.clone().notified_owned());
        // Registered before the flag is read: a cut in between is not missed.
        notified.as_mut().enable();
        Cut {
            notified,
            signal: self.clone(),
        }
    }
}

/// Resolves when its [`ShutdownSignal`] is cut.
#[derive(Debug)]
pub struct Cut {
    notified: Pin<Box<OwnedNotified>>,
    signal: ShutdownSignal,
}

impl Future for Cut {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_cut() {
            return Poll::Ready(());
        }
        self.notified.as_mut().poll(cx)
    }
}
