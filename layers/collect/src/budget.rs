//! [`BufferBudget`]: how many bytes of request bodies may be buffered at once, in all and
//! per user.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use arc_swap::ArcSwap;
use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use tower_openai_core::BoxError;
use tower_openai_core::ErrorResponse;

/// The default cap on all buffered bodies together, 512 MiB
/// (`GATEWAY_MAX_BUFFERED_BYTES`).
pub const DEFAULT_MAX_BUFFERED: usize = 512 << 20;

/// The default cap on one user's buffered bodies, 128 MiB
/// (`GATEWAY_MAX_BUFFERED_BYTES_PER_USER`).
pub const DEFAULT_MAX_BUFFERED_PER_USER: usize = 128 << 20;

/// At most this many users are counted apart; the rest share one count (a library stack
/// whose user ids are unbounded cannot grow the map without bound).
const MAX_USERS: usize = 100_000;

/// How many bytes of request bodies the collector may hold at once: in all, and per user
/// (the request's [`User`](tower_openai_core::User); requests without one count in all only).
///
/// Bytes are counted as they arrive and released when the body has been handed on (or
/// dropped). A body whose next bytes would cross a cap is refused with 503
/// `gateway_overloaded` and its bytes freed at once: the caps bound what slow callers can
/// make the process hold, whatever the number of bodies they trickle in.
///
/// Clones share the counts (one budget per process, as `GlobalConcurrencyLimitLayer`
/// shares its permits).
#[derive(Clone, Debug)]
pub struct BufferBudget(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    max_total: usize,
    max_per_user: usize,
    total: AtomicUsize,
    users: ArcSwap<HashMap<Box<str>, Arc<AtomicUsize>>>,
    /// The users past [`MAX_USERS`].
    overflow: Arc<AtomicUsize>,
}

impl Default for BufferBudget {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BUFFERED, DEFAULT_MAX_BUFFERED_PER_USER)
    }
}

/// A body could not be buffered: the budget is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the gateway is holding as many request bodies as it may; try again shortly")]
pub struct Overloaded;

impl Overloaded {
    /// The 503 `gateway_overloaded` a caller should see, with `Retry-After: 1`.
    pub fn to_response(&self) -> ErrorResponse {
        ErrorResponse::new(http::StatusCode::SERVICE_UNAVAILABLE, self.to_string())
            .with_code("gateway_overloaded")
            .with_retry_after(1)
    }
}

impl BufferBudget {
    /// At most `max_total` bytes in all, and `max_per_user` for any one user.
    pub fn new(max_total: usize, max_per_user: usize) -> Self {
        Self(Arc::new(Inner {
            max_total,
            max_per_user,
            total: AtomicUsize::new(0),
            users: ArcSwap::from_pointee(HashMap::new()),
            overflow: Arc::new(AtomicUsize::new(0)),
        }))
    }

    /// No caps.
    pub fn unlimited() -> Self {
        Self::new(usize::MAX, usize::MAX)
    }

    /// The bytes held now, in all.
    pub fn held(&self) -> usize {
        self.0.total.load(Ordering::Relaxed)
    }

    /// The bytes `user`'s bodies hold now.
    pub fn held_by(&self, user: &str) -> usize {
        self.0
            .users
            .load()
            .get(user)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// A reservation for one body of `user`, empty until it grows.
    pub(crate) fn reserve(&self, user: Option<&str>) -> Reservation {
        Reservation {
            budget: self.clone(),
            user: user.map(|u| self.counter(u)),
            held: 0,
        }
    }

    fn counter(&self, user: &str) -> Arc<AtomicUsize> {
        if let Some(n) = self.0.users.load().get(user) {
            return n.clone();
        }
        let mut found = None;
        self.0.users.rcu(|map| {
            if map.len() >= MAX_USERS {
                found = Some(self.0.overflow.clone());
                return Arc::clone(map);
            }
            let mut map = HashMap::clone(map);
            found = Some(map.entry(user.into()).or_default().clone());
            Arc::new(map)
        });
        found.unwrap_or_else(|| self.0.overflow.clone())
    }
}

/// Bytes one body holds of a [`BufferBudget`]; released when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: BufferBudget,
    user: Option<Arc<AtomicUsize>>,
    held: usize,
}

/// Add `n` to `count` unless that would pass `max`.
fn take(count: &AtomicUsize, n: usize, max: usize) -> bool {
    count
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
            now.checked_add(n).filter(|next| *next <= max)
        })
        .is_ok()
}

impl Reservation {
    /// Hold `n` more bytes, if the caps allow.
    fn grow(&mut self, n: usize) -> Result<(), Overloaded> {
        let inner = &self.budget.0;
        if !take(&inner.total, n, inner.max_total) {
            return Err(Overloaded);
        }
        if let Some(user) = &self.user
            && !take(user, n, inner.max_per_user)
        {
            inner.total.fetch_sub(n, Ordering::Relaxed);
            return Err(Overloaded);
        }
        self.held += n;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held == 0 {
            return;
        }
        self.budget.0.total.fetch_sub(self.held, Ordering::Relaxed);
        if let Some(user) = &self.user {
            user.fetch_sub(self.held, Ordering::Relaxed);
        }
    }
}

/// A body counted against a [`BufferBudget`] as its frames arrive.
#[pin_project]
#[derive(Debug)]
pub(crate) struct Budgeted<B> {
    #[pin]
    inner: B,
    /// `None`: not counted (no budget, or the body is streamed on rather than buffered).
    reservation: Option<Reservation>,
}

impl<B> Budgeted<B> {
    pub(crate) fn new(inner: B, reservation: Option<Reservation>) -> Self {
        Self { inner, reservation }
    }

    /// Stop counting (the body is streamed on, not held): what it held is released.
    pub(crate) fn release(self: Pin<&mut Self>) {
        self.project().reservation.take();
    }
}

impl<B> Body for Budgeted<B>
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
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Some(reservation) = this.reservation.as_mut()
            && let Err(e) = reservation.grow(data.remaining())
        {
            return Poll::Ready(Some(Err(e.into())));
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
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

    #[test]
    fn bytes_are_held_within_both_caps_and_released_on_drop() {
        let budget = BufferBudget::new(100, 60);
        let mut a = budget.reserve(Some("alice"));
        a.grow(50).unwrap();
        let mut b = budget.reserve(Some("alice"));
        // Alice's cap.
        assert_eq!(b.grow(20), Err(Overloaded));
        b.grow(10).unwrap();
        let mut c = budget.reserve(Some("bob"));
        // The total cap (60 held).
        assert_eq!(c.grow(41), Err(Overloaded));
        c.grow(40).unwrap();
        let mut anonymous = budget.reserve(None);
        assert_eq!(anonymous.grow(1), Err(Overloaded));
        assert_eq!((budget.held(), budget.held_by("alice")), (100, 60));
        drop(a);
        assert_eq!((budget.held(), budget.held_by("alice")), (50, 10));
        anonymous.grow(50).unwrap();
        drop((b, c, anonymous));
        assert_eq!(
            (
                budget.held(),
                budget.held_by("alice"),
                budget.held_by("bob")
            ),
            (0, 0, 0)
        );
    }
}
