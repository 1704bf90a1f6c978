//! Serving with hyper: re-poll a connection that wakes itself, instead of a trip through
//! the scheduler.
//!
//! hyper's HTTP/1 request body is a channel between the connection's dispatcher and the
//! service, and both run in the connection's task. When the service takes the body's data
//! (as `tower_openai_collect::CollectPayload` does for every JSON request), the
//! channel wakes its sender: the task wakes itself while it is being polled. Tokio's
//! multi-threaded scheduler treats that like a yield: the task goes to the back of the run
//! queue and an idle worker is woken (a futex call) to come and share the work. In the
//! benchmark at concurrency 1, that was one extra futex wake, one extra context switch and
//! a hop to another thread for every request with a body, which a pass-through proxy
//! (whose body is read by another task) never pays.
//!
//! [`RepollSelfWakes`] polls a future with a waker of its own. A wake that arrives while
//! the future is being polled only sets a flag, and the future is polled again at once, up
//! to [`MAX_REPOLLS`] times per poll from the runtime; after that the wake is passed on, so
//! a future that keeps waking itself (hyper's own fairness yield, an exhausted co-operative
//! budget) still yields to the other tasks. A wake from anywhere else reaches the task's
//! waker as it is.
//!
//! Wrap each connection future you spawn:
//!
//! ```
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto;
//! use openai_gateway::serving::RepollSelfWakes;
//!
//! # async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     let service = hyper::service::service_fn(|_req| async {
//!         Ok::<_, std::convert::Infallible>(hyper::Response::new(String::from("hello")))
//!     });
//!     let conn = auto::Builder::new(TokioExecutor::new())
//!         .serve_connection(TokioIo::new(tcp), service)
//!         .into_owned();
//!     tokio::spawn(RepollSelfWakes::new(conn));
//! }
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;
use pin_project::pin_project;

/// How many times one poll from the runtime re-polls a future that woke itself.
pub(crate) const MAX_REPOLLS: usize = 2;

/// A future polled again in place when it wakes itself during its own poll.
#[derive(Debug)]
#[pin_project]
pub struct RepollSelfWakes<F> {
    #[pin]
    inner: F,
    signal: Arc<Signal>,
    waker: Waker,
}

#[derive(Debug, Default)]
struct Signal {
    /// The inner future is being polled.
    polling: AtomicBool,
    /// A wake arrived since the last poll began.
    woken: AtomicBool,
    /// The waker of the task that polls us.
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Flag first, then look: either the poller sees the flag after its poll, or this
        // sees that no poll is running and wakes the task (or both: one spurious poll).
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            self.task.wake();
        }
    }
}

impl<F: Future> RepollSelfWakes<F> {
    /// Poll `inner`, re-polling it in place when it wakes itself.
    pub fn new(inner: F) -> Self {
        let signal = Arc::new(Signal::default());
        Self {
            inner,
            waker: Waker::from(signal.clone()),
            signal,
        }
    }
}

impl<F: Future> Future for RepollSelfWakes<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        this.signal.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(this.waker);
        for _ in 0..=MAX_REPOLLS {
            this.signal.polling.store(true, Ordering::SeqCst);
            this.signal.woken.store(false, Ordering::SeqCst);
            let poll = this.inner.as_mut().poll(&mut inner_cx);
            this.signal.polling.store(false, Ordering::SeqCst);
            if poll.is_ready() {
                return poll;
            }
            if !this.signal.woken.swap(false, Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        // Still waking itself: yield to the other tasks like any self-waking future.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Wakes itself `self_wakes` times, then finishes; counts its polls.
    struct SelfWaking {
        self_wakes: usize,
        polls: Arc<AtomicUsize>,
    }

    impl Future for SelfWaking {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.self_wakes == 0 {
                return Poll::Ready(());
            }
            self.self_wakes -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Counts the wakes it receives.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll_once<F: Future>(fut: Pin<&mut F>, counter: &Arc<Counter>) -> Poll<F::Output> {
        let waker = Waker::from(counter.clone());
        fut.poll(&mut Context::from_waker(&waker))
    }

    /// One poll from the runtime of a future that wakes itself `self_wakes` times: the
    /// outcome, how often the inner future was polled, how often the task was woken.
    fn poll_self_waking(self_wakes: usize) -> (Poll<()>, usize, usize) {
        let polls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::new(Counter::default());
        let mut fut = std::pin::pin!(RepollSelfWakes::new(SelfWaking {
            self_wakes,
            polls: polls.clone(),
        }));
        let outcome = poll_once(fut.as_mut(), &counter);
        (
            outcome,
            polls.load(Ordering::SeqCst),
            counter.0.load(Ordering::SeqCst),
        )
    }

    #[test]
    fn a_self_wake_is_answered_by_polling_again_in_place() {
        let (outcome, polls, task_wakes) = poll_self_waking(MAX_REPOLLS);
        assert!(outcome.is_ready());
        assert_eq!(polls, MAX_REPOLLS + 1);
        assert_eq!(task_wakes, 0, "no trip through the scheduler");
    }

    #[test]
    fn a_future_that_keeps_waking_itself_still_yields() {
        let (outcome, polls, task_wakes) = poll_self_waking(100);
        assert!(outcome.is_pending());
        assert_eq!(polls, MAX_REPOLLS + 1);
        assert_eq!(task_wakes, 1, "the task was woken to yield");
    }

    #[test]
    fn a_wake_from_elsewhere_reaches_the_task() {
        let counter = Arc::new(Counter::default());
        let (tx, rx) = std::sync::mpsc::channel::<Waker>();
        // Pending until woken from outside; hands its waker out on the first poll.
        let mut handed = false;
        let inner = std::future::poll_fn(move |cx| {
            if handed {
                return Poll::Ready(());
            }
            handed = true;
            tx.send(cx.waker().clone()).unwrap();
            Poll::Pending
        });
        let mut fut = std::pin::pin!(RepollSelfWakes::new(inner));
        assert!(poll_once(fut.as_mut(), &counter).is_pending());
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        let waker = rx.recv().unwrap();
        std::thread::spawn(move || waker.wake()).join().unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(poll_once(fut.as_mut(), &counter).is_ready());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_racing_with_polls_are_never_lost() {
        // A channel fed from another thread: every message must arrive, whether its wake
        // lands during a poll or between polls.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<usize>(1);
        let sender = std::thread::spawn(move || {
            for i in 0..10_000 {
                tx.blocking_send(i).unwrap();
            }
        });
        let received = tokio::time::timeout(
            Duration::from_secs(30),
            RepollSelfWakes::new(async move {
                let mut n = 0;
                while rx.recv().await.is_some() {
                    n += 1;
                }
                n
            }),
        )
        .await
        .expect("no lost wake-up");
        sender.join().unwrap();
        assert_eq!(received, 10_000);
    }
}
