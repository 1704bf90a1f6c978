//! Spend: each answer's usage and cost summed in memory per UTC day, user, key and model,
//! written to the identity store in batches (every 5 s, and at shutdown); and the budgets'
//! counters kept in step with what the store has recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tower_openai_observe::{Ledger, LedgerEntry};
use tower_openai_ratelimit::{Budget, Clock, LimitStore, Period, SystemClock, usd_nanos};
use tower_openai_store::{LiveDirectory, SpendRow, SpendTotals, SqlStore, StoreError};

/// How often the sums are written (the contract: at most every 5 s).
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// How often the budgets' counters are raised to the recorded spend (and whenever a budget
/// changes).
pub(crate) const SEED_EVERY: Duration = Duration::from_secs(30);

/// The most (day, user, key, model) sums held between writes; reaching it writes at once.
/// (Bounded anyway: models are the catalog's, users and keys the store's.)
pub(crate) const MAX_PENDING: usize = 10_000;

/// Day (since the Unix epoch), user, key, model.
type SumKey = (u64, Arc<str>, Option<Arc<str>>, Arc<str>);

/// The sums held (hashed with foldhash: one look-up per request, of keys the gateway chose).
type Sums = HashMap<SumKey, SpendTotals, foldhash::fast::RandomState>;

/// The spend recorded in this process and not written yet. Clones share it.
#[derive(Clone)]
pub(crate) struct SpendLedger {
    inner: Arc<Inner>,
}

struct Inner {
    store: SqlStore,
    pending: Mutex<Sums>,
    /// Wakes the writer early (too many sums held).
    full: Notify,
    /// One write at a time (the periodic one, a report's, the last one).
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SpendLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendLedger").finish_non_exhaustive()
    }
}

impl SpendLedger {
    pub(crate) fn new(store: SqlStore) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                pending: Mutex::default(),
                full: Notify::new(),
                writing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Sums> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Write what is held to the store. A failed write keeps every sum for the next one:
    /// nothing recorded is dropped.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let _one = self.inner.writing.lock().await;
        let taken = std::mem::take(&mut *self.pending());
        if taken.is_empty() {
            return Ok(());
        }
        let rows: Vec<SpendRow> = taken
            .iter()
            .map(|((day, user, key, model), totals)| SpendRow {
                day: Period::Day.id(Duration::from_secs(day * 86_400)),
                user: user.to_string(),
                key: key.as_deref().unwrap_or("").to_owned(),
                model: model.to_string(),
                totals: *totals,
            })
            .collect();
        let written = self.inner.store.add_spend(&rows).await;
        if written.is_err() {
            let mut pending = self.pending();
            for (key, totals) in taken {
                pending.entry(key).or_default().add(&totals);
            }
        }
        written
    }

    /// Write every [`FLUSH_EVERY`] (sooner when [`MAX_PENDING`] sums are held); at start,
    /// whenever the budgets change, and every [`SEED_EVERY`], raise each budget's counter to
    /// what the store has recorded for its period (a process that starts, or a Redis that
    /// lost its counts, is told what was spent before; other processes' spend reaches a
    /// process without Redis this way too). The sums are read at most that often: a `total`
    /// budget's read covers the whole table.
    pub(crate) async fn run(self, directory: LiveDirectory, limits: Arc<dyn LimitStore>) {
        let mut seeded: Option<(tokio::time::Instant, Vec<Budget>)> = None;
        loop {
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "could not write the spend records; kept for the next try");
            }
            let budgets = all_budgets(&directory);
            let due = seeded
                .as_ref()
                .is_none_or(|(at, before)| at.elapsed() >= SEED_EVERY || *before != budgets);
            if due && !budgets.is_empty() {
                match seed_budgets(&self.inner.store, &budgets, &*limits).await {
                    Ok(()) => seeded = Some((tokio::time::Instant::now(), budgets)),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the recorded spend for budgets");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(FLUSH_EVERY) => {}
                () = self.inner.full.notified() => {}
            }
        }
    }
}

impl SpendLedger {
    /// Raise the budgets' counters to the recorded spend now (at start, before serving).
    pub(crate) async fn seed(&self, directory: &LiveDirectory, limits: &dyn LimitStore) {
        let budgets = all_budgets(directory);
        if budgets.is_empty() {
            return;
        }
        if let Err(e) = seed_budgets(&self.inner.store, &budgets, limits).await {
            tracing::warn!(error = %e, "could not read the recorded spend for budgets");
        }
    }
}

impl Ledger for SpendLedger {
    fn record(&self, entry: &LedgerEntry<'_>) {
        let day = SystemClock.now().as_secs() / 86_400;
        let usage = entry.usage;
        let totals = SpendTotals {
            requests: 1,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_tokens: usage.cached_tokens.min(usage.input_tokens),
            estimated_requests: u64::from(entry.estimated),
            cost_usd: entry.cost_usd,
        };
        let key = (
            day,
            entry.user.clone(),
            entry.key.cloned(),
            entry.model.clone(),
        );
        let mut pending = self.pending();
        pending.entry(key).or_default().add(&totals);
        if pending.len() >= MAX_PENDING {
            self.inner.full.notify_one();
        }
    }
}

/// The budgets `user` (and the key they came with) are held to, as the rate-limit layer
/// counts them: accounts `user:{id}` and `key:{id}`.
pub(crate) fn budgets_of(directory: &LiveDirectory, user: &str, key: Option<&str>) -> Vec<Budget> {
    let (of_user, of_key) = directory.budgets(user, key);
    let mut out = Vec::new();
    if let Some(b) = of_user {
        out.push(budget(format!("user:{user}"), b));
    }
    if let (Some(b), Some(key)) = (of_key, key) {
        out.push(budget(format!("key:{key}"), b));
    }
    out
}

fn budget(account: String, b: tower_openai_store::Budget) -> Budget {
    Budget {
        account: account.into(),
        usd: b.usd,
        period: match b.period {
            tower_openai_store::Period::Day => Period::Day,
            tower_openai_store::Period::Month => Period::Month,
            tower_openai_store::Period::Total => Period::Total,
        },
    }
}

/// The first day of `period`'s current period (`""` for all time).
fn period_start(period: Period) -> String {
    let now = SystemClock.now();
    match period {
        Period::Day => Period::Day.id(now),
        Period::Month => format!("{}-01", Period::Month.id(now)),
        Period::Total => String::new(),
    }
}

/// Every budget of the directory, as the rate-limit layer counts them.
fn all_budgets(directory: &LiveDirectory) -> Vec<Budget> {
    let mut all: Vec<Budget> = directory
        .budgeted()
        .into_iter()
        .map(|((kind, id), b)| match kind {
            tower_openai_store::Account::User => budget(format!("user:{id}"), b),
            tower_openai_store::Account::Key => budget(format!("key:{id}"), b),
        })
        .collect();
    all.sort_by(|a, b| a.account.cmp(&b.account));
    all
}

/// Raise every budget's counter to the spend the store recorded in its current period.
async fn seed_budgets(
    store: &SqlStore,
    budgets: &[Budget],
    limits: &dyn LimitStore,
) -> Result<(), StoreError> {
    let mut sums = HashMap::new();
    for b in budgets {
        let (users, keys) = match sums.entry(b.period) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(store.spent_since(&period_start(b.period)).await?)
            }
        };
        let spent = match b.account.split_once(':') {
            Some(("user", id)) => users.get(id),
            Some(("key", id)) => keys.get(id),
            _ => None,
        };
        if let Some(usd) = spent {
            limits.seed_spend(b, usd_nanos(*usd));
        }
    }
    Ok(())
}
