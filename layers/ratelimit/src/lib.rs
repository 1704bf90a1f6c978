//! Per-caller rate limits (requests and tokens per minute) and spend budgets.
//!
//! [`RateLimitLayer`] asks a [`LimitStore`] to admit each request of a caller. Who the caller
//! is and their limits come from a [`LimitKey`] of the request's extensions: [`PerUser`]
//! (every [`User`](tower_openai_core::User) the same limits), or a closure (the gateway's
//! per-user limits, your own "who"). The window is one minute, fixed (it starts at each
//! minute of the Unix clock, so every process and a shared store agree on it); a store reads
//! the time from a [`Clock`] ([`TokioClock`] for tests on paused time).
//!
//! - A request is refused once the window's count is at the limit (`rpm`), or its tokens are
//!   over it (`tpm`). Tokens are known only when an answer ends: they are taken from the
//!   usage the answer reported (the [`UsageReport`](tower_openai_core::UsageReport) a usage
//!   layer below puts in the response and fills in; streams at their end, callers who left
//!   included) and added then. So with `tpm = 30` and 20 tokens a chat, the second chat
//!   passes and the third is refused. A caller with a `tpm` limit is marked
//!   [`MeterUsage`](tower_openai_core::MeterUsage) for the usage layer: streams are asked for
//!   usage, and an answer that ends without it is charged an estimate.
//! - Budgets ([`Limits::budgets`]: at most so many USD of an account's spend per UTC day,
//!   month or in total) share the same accounting: the same key, the same store (one call
//!   checks the window and every budget; [`Admission::OverBudget`] is a `429` with code
//!   `budget_exceeded`, type `insufficient_quota`), and the same tally when the body ends,
//!   which adds the answer's cost ([`UsageReport::cost`](tower_openai_core::UsageReport::cost),
//!   priced by the usage layer) to each budget's period. Stores count spend in whole
//!   nano-dollars ([`usd_nanos`]); [`LimitStore::seed_spend`] tells a store what a database
//!   recorded.
//! - Model routes and the passthrough are limited; the model list is not (nor, without an
//!   [`ApiRoute`](tower_openai_core::ApiRoute), is anything let through unlimited).
//! - Refused: `429` with code `rate_limit_exceeded`, `Retry-After` (seconds to the next
//!   window) and the `x-ratelimit-*` headers; admitted answers carry the headers too.
//! - The layer is generic over its store (any [`LimitStore`] + `Clone`: an
//!   `Arc<MemoryStore>`, or an `Arc<dyn LimitStore>` chosen at run time). A limited request
//!   takes the service `poll_ready` readied into its future and leaves a clone; an unlimited
//!   one costs no clone and no store.
//! - [`MemoryStore`] keeps the counts in the process. A store shared by several processes
//!   (Redis) implements the same trait. A store that fails lets the request through (limits
//!   fail open) and logs it.
//!
//! # Extensions
//! - reads [`User`](tower_openai_core::User) (through [`PerUser`], or your key) and
//!   [`ApiRoute`](tower_openai_core::ApiRoute) from the request, and the
//!   [`UsageReport`](tower_openai_core::UsageReport) from the response;
//! - writes [`MeterUsage`](tower_openai_core::MeterUsage) in the request of a caller with a
//!   token limit or a budget.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::User;
//! use tower_openai_ratelimit::{Limits, MemoryStore, RateLimitLayer};
//!
//! let upstream = service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("{}"))))
//! });
//! // Every user may make two requests a minute.
//! let layer = RateLimitLayer::new(Arc::new(MemoryStore::new()), |ext: &http::Extensions| {
//!     let user = ext.get::<User>()?;
//!     Some((user.id.to_string(), Limits { rpm: Some(2), ..Limits::default() }))
//! });
//! let svc = ServiceBuilder::new().layer(layer).service(upstream);
//! let request = || {
//!     let mut req = Request::post("/chat/completions").body(Full::new(Bytes::new())).unwrap();
//!     req.extensions_mut().insert(User { id: "alice".into(), ..User::default() });
//!     req
//! };
//! assert_eq!(svc.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(svc.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! let third = svc.clone().oneshot(request()).await.unwrap();
//! assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(third.headers().contains_key("retry-after"));
//! # }
//! ```

mod key;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod service;

pub use crate::key::{LimitKey, PerUser};
pub use crate::memory::{MAX_KEYS, MemoryStore};
#[cfg(feature = "redis")]
pub use crate::redis::{ADMIT_TIMEOUT, RedisStore};
pub use crate::service::{RateLimit, RateLimitLayer, ResponseBody, ResponseFuture, Tally};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tower_openai_core::BoxError;

/// A caller's limits: per minute (`None` is no limit), and the budgets they are held to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    /// Spend budgets (a user's, a key's): a request is refused once any is reached.
    pub budgets: Vec<Budget>,
}

impl Limits {
    /// Whether no limit is set and no budget.
    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.budgets.is_empty()
    }

    /// Whether the caller's tokens are counted (a token limit, or a budget).
    pub fn counts_tokens(&self) -> bool {
        self.tpm.is_some() || !self.budgets.is_empty()
    }
}

/// A spend budget: at most `usd` of `account`'s spend in each `period` (UTC).
///
/// The account names whose spend it is (the gateway uses `user:{id}` and `key:{id}`); several
/// callers' requests may count against one account.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    /// Whose spend is counted.
    pub account: std::sync::Arc<str>,
    /// USD per period.
    pub usd: f64,
    /// The period spend is counted in.
    pub period: Period,
}

impl Budget {
    /// The budget in nano-dollars (what stores count in).
    pub fn nanos(&self) -> u64 {
        usd_nanos(self.usd)
    }
}

/// USD as whole nano-dollars (rounded; negative and NaN are 0): how stores count spend, so a
/// shared store adds integers atomically.
pub fn usd_nanos(usd: f64) -> u64 {
    if usd.is_nan() || usd <= 0.0 {
        0
    } else {
        // `as` saturates at u64::MAX.
        (usd * 1e9).round() as u64
    }
}

/// A budget's period, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    /// From midnight UTC.
    Day,
    /// From the first of the month, UTC.
    Month,
    /// Since ever.
    Total,
}

impl Period {
    /// The period that holds `now` (since the Unix epoch), named: `2026-12-06`, `2026-12`, or
    /// `total`.
    pub fn id(self, now: Duration) -> String {
        let (y, m, d) = civil_date(now.as_secs() / 86_400);
        match self {
            Self::Day => format!("{y:04}-{m:02}-{d:02}"),
            Self::Month => format!("{y:04}-{m:02}"),
            Self::Total => "total".to_owned(),
        }
    }

    /// Time from `now` to the end of the period holding it (`None` for `Total`).
    pub fn resets_in(self, now: Duration) -> Option<Duration> {
        let day = now.as_secs() / 86_400;
        let next_day = match self {
            Self::Day => day + 1,
            Self::Month => {
                let (y, m, _) = civil_date(day);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1)
            }
            Self::Total => return None,
        };
        Some(Duration::from_secs(next_day * 86_400).saturating_sub(now))
    }
}

/// The UTC date of day `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_date(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a UTC date (the inverse of [`civil_date`]).
fn days_from_civil(y: u64, m: u32, d: u32) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let m = u64::from(m);
    let doy = (153 * if m > 2 { m - 3 } else { m + 9 } + 2) / 5 + u64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A caller's counts in the current window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Requests admitted in the window (this one included, when admitted).
    pub requests: u64,
    /// Tokens the window's answers reported so far.
    pub tokens: u64,
    /// Until the next window.
    pub resets_in: Duration,
}

/// A store's answer to "may this request go?".
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// Counted; the window's counts with it.
    Allowed(Window),
    /// Over a limit; the window's counts (not counting it).
    Refused(Window),
    /// A budget is reached (the first of the caller's that is); nothing counted.
    OverBudget(Budget),
}

/// What an answer that ended adds to its caller's counts.
#[derive(Clone, Copy, Debug)]
pub struct Charge<'a> {
    /// Its tokens (input + output), for the minute's window.
    pub tokens: u64,
    /// Its cost in nano-dollars ([`usd_nanos`]), for each budget's period.
    pub nanos: u64,
    /// The caller's budgets.
    pub budgets: &'a [Budget],
}

/// A boxed future of a store.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'static>>;

/// Where the counts live: in the process ([`MemoryStore`]), or shared by several processes.
pub trait LimitStore: Send + Sync + 'static {
    /// Count one request for `key` in the current window, unless one of `limits.budgets`
    /// has been reached in its current period, or the window is already at `limits.rpm`
    /// requests or over `limits.tpm` tokens. Atomic: two processes asking at once cannot
    /// both take the last request.
    fn admit(&self, key: &str, limits: &Limits) -> StoreFuture<Admission>;

    /// Add what an answer that ended used: its tokens to `key`'s current window, its cost to
    /// each budget's current period. Called when a body ends (or is dropped), so it must not
    /// block; a store that talks to a server sends it in the background.
    fn add(&self, key: &str, charge: Charge<'_>);

    /// Raise the spend counted for `budget`'s current period to at least `nanos` (what a
    /// database recorded: a process that starts, or a store that lost its counts, is told
    /// what was spent before). Nothing by default.
    fn seed_spend(&self, budget: &Budget, nanos: u64) {
        let _ = (budget, nanos);
    }
}

/// A store shared behind an `Arc` (`Arc<MemoryStore>`, or `Arc<dyn LimitStore>` when the
/// store is chosen at run time) is a store.
impl<T: LimitStore + ?Sized> LimitStore for std::sync::Arc<T> {
    fn admit(&self, key: &str, limits: &Limits) -> StoreFuture<Admission> {
        (**self).admit(key, limits)
    }

    fn add(&self, key: &str, charge: Charge<'_>) {
        (**self).add(key, charge);
    }

    fn seed_spend(&self, budget: &Budget, nanos: u64) {
        (**self).seed_spend(budget, nanos);
    }
}

/// Where a store reads the time: the windows are the minutes of the Unix clock.
///
/// [`SystemClock`] (the default) reads the system's; [`TokioClock`] follows tokio's clock, so
/// a test on paused time moves to the next window with `tokio::time::advance` instead of
/// sleeping; a closure `Fn() -> Duration` (the time since the Unix epoch) is a clock too.
pub trait Clock: Send + Sync + 'static {
    /// The time since the Unix epoch.
    fn now(&self) -> Duration;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// The Unix time when it was made, moved on by tokio's clock since: on paused time (tests),
/// it moves only when the test advances it.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    unix: Duration,
    at: tokio::time::Instant,
}

impl TokioClock {
    /// The system's time now, followed by tokio's clock from here on.
    pub fn new() -> Self {
        Self::at_unix(SystemClock.now())
    }

    /// A clock that reads `unix` now (since the Unix epoch), followed by tokio's clock.
    pub fn at_unix(unix: Duration) -> Self {
        Self {
            unix,
            at: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.unix + self.at.elapsed()
    }
}

impl<F: Fn() -> Duration + Send + Sync + 'static> Clock for F {
    fn now(&self) -> Duration {
        self()
    }
}

/// The window at `now` (since the Unix epoch): its minute, and the time left in it.
pub(crate) fn window_at(now: Duration) -> (u64, Duration) {
    let minute = now.as_secs() / 60;
    let next = Duration::from_secs((minute + 1) * 60);
    (minute, next.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Period, civil_date, days_from_civil, usd_nanos};

    #[test]
    fn periods_are_utc_days_and_months() {
        // 2026-12-06T12:00:00Z.
        let now = Duration::from_secs(1_796_558_400);
        assert_eq!(Period::Day.id(now), "2026-12-06");
        assert_eq!(Period::Month.id(now), "2026-12");
        assert_eq!(Period::Total.id(now), "total");
        assert_eq!(
            Period::Day.resets_in(now),
            Some(Duration::from_secs(12 * 3600))
        );
        // To 2027-01-01: 25 days and 12 hours.
        assert_eq!(
            Period::Month.resets_in(now),
            Some(Duration::from_secs(25 * 86_400 + 12 * 3600))
        );
        assert_eq!(Period::Total.resets_in(now), None);
        // Leap years, and every day of four centuries both ways.
        assert_eq!(civil_date(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(civil_date(0), (1970, 1, 1));
        for day in (0..146_097 * 2).step_by(7) {
            let (y, m, d) = civil_date(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn dollars_are_counted_in_whole_nanos() {
        assert_eq!(usd_nanos(0.0045), 4_500_000);
        assert_eq!(usd_nanos(10.0), 10_000_000_000);
        assert_eq!(usd_nanos(-1.0), 0);
        assert_eq!(usd_nanos(f64::NAN), 0);
        assert_eq!(usd_nanos(f64::INFINITY), u64::MAX);
    }
}
