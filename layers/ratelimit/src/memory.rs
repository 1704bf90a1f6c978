//! [`MemoryStore`]: the counts of one process.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{
    Admission, Budget, Charge, Clock, LimitStore, Limits, StoreFuture, SystemClock, Window,
    window_at,
};

/// The most callers counted at once; past it, windows of earlier minutes are dropped first,
/// then the store starts over (a caller's count restarting early is the cost of the bound).
pub const MAX_KEYS: usize = 100_000;

/// Counts kept in this process: each process enforces its limits alone. (`governor`'s GCRA
/// needs a request's cost when it arrives, and a request's tokens are known only when its
/// answer ends: hence a window of counts.)
#[derive(Debug, Default)]
pub struct MemoryStore<C = SystemClock> {
    windows: Mutex<HashMap<Box<str>, Counts>>,
    /// Spend in nano-dollars by budget account and period id (at most [`MAX_KEYS`]; past it,
    /// ended periods are dropped first).
    spend: Mutex<HashMap<(Box<str>, String), u64>>,
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
            spend: Mutex::default(),
            clock,
        }
    }

    /// `budget`'s spend counter in its current period, changed by `f`.
    fn with_spend<T>(&self, budget: &Budget, f: impl FnOnce(&mut u64) -> T) -> T {
        let now = self.clock.now();
        let period = budget.period.id(now);
        let mut spend = self
            .spend
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (Box::<str>::from(&*budget.account), period);
        if spend.len() >= MAX_KEYS && !spend.contains_key(&key) {
            let current = [
                crate::Period::Day.id(now),
                crate::Period::Month.id(now),
                crate::Period::Total.id(now),
            ];
            spend.retain(|(_, p), _| current.contains(p));
            if spend.len() >= MAX_KEYS {
                spend.clear();
            }
        }
        f(spend.entry(key).or_default())
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
    fn admit(&self, key: &str, limits: &Limits) -> StoreFuture<Admission> {
        let reached = limits
            .budgets
            .iter()
            .find(|b| self.with_spend(b, |spent| *spent >= b.nanos()));
        if let Some(budget) = reached {
            return Box::pin(std::future::ready(Ok(Admission::OverBudget(
                budget.clone(),
            ))));
        }
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

    fn add(&self, key: &str, charge: Charge<'_>) {
        self.with_window(key, |c, _| {
            c.tokens = c.tokens.saturating_add(charge.tokens)
        });
        if charge.nanos > 0 {
            for budget in charge.budgets {
                self.with_spend(budget, |spent| *spent = spent.saturating_add(charge.nanos));
            }
        }
    }

    fn seed_spend(&self, budget: &Budget, nanos: u64) {
        self.with_spend(budget, |spent| *spent = (*spent).max(nanos));
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;
    use crate::{Admission, Budget, Charge, LimitStore, Limits, Period};

    fn tokens(n: u64) -> Charge<'static> {
        Charge {
            tokens: n,
            nanos: 0,
            budgets: &[],
        }
    }

    #[tokio::test]
    async fn a_budget_refuses_once_its_period_spend_reaches_it() {
        let store = MemoryStore::new();
        let budget = Budget {
            account: "key:k1".into(),
            usd: 0.01,
            period: Period::Month,
        };
        let limits = Limits {
            budgets: vec![budget.clone()],
            ..Limits::default()
        };
        let spend = |nanos| Charge {
            tokens: 0,
            nanos,
            budgets: std::slice::from_ref(&budget),
        };
        assert!(matches!(
            store.admit("u", &limits).await.unwrap(),
            Admission::Allowed(_)
        ));
        store.add("u", spend(6_000_000));
        assert!(matches!(
            store.admit("u", &limits).await.unwrap(),
            Admission::Allowed(_)
        ));
        store.add("u", spend(4_000_000));
        assert_eq!(
            store.admit("u", &limits).await.unwrap(),
            Admission::OverBudget(budget.clone())
        );
        // Another account's budget is its own; seeding raises, never lowers.
        let other = Budget {
            account: "user:u".into(),
            ..budget.clone()
        };
        let limits = Limits {
            budgets: vec![other.clone()],
            ..Limits::default()
        };
        assert!(matches!(
            store.admit("u", &limits).await.unwrap(),
            Admission::Allowed(_)
        ));
        store.seed_spend(&other, 10_000_000);
        store.seed_spend(&other, 1);
        assert_eq!(
            store.admit("u", &limits).await.unwrap(),
            Admission::OverBudget(other)
        );
    }

    #[tokio::test]
    async fn requests_then_tokens_are_counted_per_key() {
        let store = MemoryStore::new();
        let limits = &Limits {
            rpm: Some(2),
            tpm: Some(30),
            budgets: Vec::new(),
        };
        assert!(
            matches!(store.admit("a", limits).await.unwrap(), Admission::Allowed(w) if w.requests == 1)
        );
        store.add("a", tokens(20));
        assert!(
            matches!(store.admit("a", limits).await.unwrap(), Admission::Allowed(w) if w.tokens == 20)
        );
        store.add("a", tokens(20));
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
        let limits = &Limits {
            rpm: Some(1),
            ..Limits::default()
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
        let limits = &Limits {
            tpm: Some(30),
            ..Limits::default()
        };
        for _ in 0..2 {
            assert!(matches!(
                store.admit("a", limits).await.unwrap(),
                Admission::Allowed(_)
            ));
            store.add("a", tokens(20));
        }
        assert!(matches!(
            store.admit("a", limits).await.unwrap(),
            Admission::Refused(_)
        ));
    }
}
