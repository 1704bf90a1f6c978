//! [`MemoryStore`]: the counts of one process.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{Admission, Clock, LimitStore, Limits, StoreFuture, SystemClock, Window, window_at};

/// The most callers counted at once; past it, windows of earlier minutes are dropped first,
/// then the store starts over (a caller's count restarting early is the cost of the bound).
pub const MAX_KEYS: usize = 100_000;

/// Counts kept in this process: each process enforces its limits alone. (`governor`'s GCRA
/// needs a request's cost when it arrives, and a request's tokens are known only when its
/// answer ends: hence a window of counts.)
#[derive(Debug, Default)]
pub struct MemoryStore<C = SystemClock> {
    windows: Mutex<HashMap<Box<str>, Counts>>,
    clock: C,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    minute: u64,
    requests: u64,
    tokens: u64,
}

impl MemoryStore {
    /// An empty store on the system's clock.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<C: Clock> MemoryStore<C> {
    /// An empty store on `clock` (tests: [`TokioClock`](crate::TokioClock), on paused time).
    pub fn with_clock(clock: C) -> Self {
        Self {
            windows: Mutex::default(),
            clock,
        }
    }

    fn with_window<T>(
        &self,
        key: &str,
        f: impl FnOnce(&mut Counts, std::time::Duration) -> T,
    ) -> T {
        let (minute, resets_in) = window_at(self.clock.now());
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() >= MAX_KEYS && !windows.contains_key(key) {
            windows.retain(|_, c| c.minute == minute);
            if windows.len() >= MAX_KEYS {
                windows.clear();
            }
        }
        let counts = windows.entry(key.into()).or_default();
        if counts.minute != minute {
            *counts = Counts {
                minute,
                ..Counts::default()
            };
        }
        f(counts, resets_in)
    }
}

impl<C: Clock> LimitStore for MemoryStore<C> {
    fn admit(&self, key: &str, limits: Limits) -> StoreFuture<Admission> {
        let admission = self.with_window(key, |c, resets_in| {
            let over = limits.rpm.is_some_and(|rpm| c.requests >= rpm)
                || limits.tpm.is_some_and(|tpm| c.tokens > tpm);
            if !over {
                c.requests += 1;
            }
            let window = Window {
                requests: c.requests,
                tokens: c.tokens,
                resets_in,
            };
            if over {
                Admission::Refused(window)
            } else {
                Admission::Allowed(window)
            }
        });
        Box::pin(std::future::ready(Ok(admission)))
    }

    fn add_tokens(&self, key: &str, tokens: u64) {
        self.with_window(key, |c, _| c.tokens = c.tokens.saturating_add(tokens));
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;
    use crate::{Admission, LimitStore, Limits};

    #[tokio::test]
    async fn requests_then_tokens_are_counted_per_key() {
        let store = MemoryStore::new();
        let limits = Limits {
            rpm: Some(2),
            tpm: Some(30),
        };
        assert!(
            matches!(store.admit("a", limits).await.unwrap(), Admission::Allowed(w) if w.requests == 1)
        );
        store.add_tokens("a", 20);
        assert!(
            matches!(store.admit("a", limits).await.unwrap(), Admission::Allowed(w) if w.tokens == 20)
        );
        store.add_tokens("a", 20);
        // At the request limit, and over the token limit.
        assert!(
            matches!(store.admit("a", limits).await.unwrap(), Admission::Refused(w) if w.requests == 2 && w.tokens == 40)
        );
        // Another key has its own window.
        assert!(matches!(
            store.admit("b", limits).await.unwrap(),
            Admission::Allowed(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_minute_starts_a_new_window() {
        use std::time::Duration;

        use crate::TokioClock;
        // Ten seconds into a minute.
        let store =
            MemoryStore::with_clock(TokioClock::at_unix(Duration::from_secs(60 * 1000 + 10)));
        let limits = Limits {
            rpm: Some(1),
            tpm: None,
        };
        assert!(matches!(
            store.admit("a", limits).await.unwrap(),
            Admission::Allowed(_)
        ));
        match store.admit("a", limits).await.unwrap() {
            Admission::Refused(w) => assert_eq!(w.resets_in, Duration::from_secs(50)),
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_secs(49)).await;
        assert!(matches!(
            store.admit("a", limits).await.unwrap(),
            Admission::Refused(_)
        ));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            matches!(store.admit("a", limits).await.unwrap(), Admission::Allowed(w) if w.requests == 1)
        );
    }

    #[tokio::test]
    async fn tokens_over_the_limit_refuse_the_next_request() {
        let store = MemoryStore::new();
        let limits = Limits {
            rpm: None,
            tpm: Some(30),
        };
        for _ in 0..2 {
            assert!(matches!(
                store.admit("a", limits).await.unwrap(),
                Admission::Allowed(_)
            ));
            store.add_tokens("a", 20);
        }
        assert!(matches!(
            store.admit("a", limits).await.unwrap(),
            Admission::Refused(_)
        ));
    }
}
