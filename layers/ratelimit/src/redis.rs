//! [`RedisStore`]: counts shared by every process on one Redis, so a limit holds across all
//! of them together.

use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::{
    Admission, Budget, Charge, Clock, LimitStore, Limits, Period, StoreFuture, SystemClock, Window,
    window_at,
};

/// Checks and counts in one step, so two processes cannot both take the last request.
/// KEYS[1]: the caller's window; KEYS[2..]: the spend of each budget's period. ARGV: rpm,
/// tpm (-1: none), the window's lifetime in seconds, then each budget in nano-dollars.
/// Answers {1 admitted | 0 over a limit | 2 over a budget, requests, tokens, the budget's
/// index (from 1)}.
const ADMIT: &str = r"
for i = 2, #KEYS do
  local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
  if spent >= tonumber(ARGV[i + 2]) then
    return {2, 0, 0, i - 1}
  end
end
local requests = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
if (rpm >= 0 and requests >= rpm) or (tpm >= 0 and tokens > tpm) then
  return {0, requests, tokens, 0}
end
requests = redis.call('HINCRBY', KEYS[1], 'r', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, requests, tokens, 0}
";

/// Raises a spend counter to at least ARGV[1]; ARGV[2]: its lifetime in seconds (0: none).
const SEED: &str = r"
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if spent < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
if tonumber(ARGV[2]) > 0 then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 1
";

/// How long one admission may wait on Redis before the request is let through.
pub const ADMIT_TIMEOUT: Duration = Duration::from_millis(250);

/// Counts in Redis under `{prefix}:ratelimit:{key}:{minute}` (a hash of requests and tokens,
/// expiring two minutes after its window). Redis unreachable: requests are let through
/// (limits fail open) and the store logs it.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    script: redis::Script,
    seed: redis::Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on `connection`, its keys under `prefix`.
    pub fn new(connection: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            connection,
            prefix: prefix.into(),
            script: redis::Script::new(ADMIT),
            seed: redis::Script::new(SEED),
        }
    }

    fn key(&self, key: &str, minute: u64) -> String {
        format!("{}:ratelimit:{key}:{minute}", self.prefix)
    }

    /// `{prefix}:spend:{account}:{period id}`: nano-dollars spent, kept a while after the
    /// period ends.
    fn spend_key(&self, budget: &Budget, now: std::time::Duration) -> (String, i64) {
        let ttl = match budget.period {
            Period::Day => 3 * 86_400_i64,
            Period::Month => 40 * 86_400,
            Period::Total => 0,
        };
        let key = format!(
            "{}:spend:{}:{}",
            self.prefix,
            budget.account,
            budget.period.id(now)
        );
        (key, ttl)
    }
}

/// Run `work` on the current runtime in the background, waiting at most 2 s on Redis.
fn in_background(
    what: &'static str,
    work: impl Future<Output = redis::RedisResult<()>> + Send + 'static,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        match tokio::time::timeout(Duration::from_secs(2), work).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not {what} in Redis"),
            Err(_) => tracing::warn!("could not {what} in Redis: no answer in time"),
        }
    });
}

fn limit_arg(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

impl LimitStore for RedisStore {
    fn admit(&self, key: &str, limits: &Limits) -> StoreFuture<Admission> {
        let now = SystemClock.now();
        let (minute, resets_in) = window_at(now);
        let window_key = self.key(key, minute);
        let spend_keys: Vec<String> = limits
            .budgets
            .iter()
            .map(|b| self.spend_key(b, now).0)
            .collect();
        let (rpm, tpm) = (limit_arg(limits.rpm), limit_arg(limits.tpm));
        let budgets = limits.budgets.clone();
        let script = self.script.clone();
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let mut invocation = script.key(window_key);
            for spend in spend_keys {
                invocation.key(spend);
            }
            invocation.arg(rpm).arg(tpm).arg(120);
            for budget in &budgets {
                invocation.arg(budget.nanos());
            }
            let answer: (i64, u64, u64, usize) =
                tokio::time::timeout(ADMIT_TIMEOUT, invocation.invoke_async(&mut connection))
                    .await
                    .map_err(|_| "Redis did not answer in time")??;
            let window = Window {
                requests: answer.1,
                tokens: answer.2,
                resets_in,
            };
            Ok(match answer.0 {
                1 => Admission::Allowed(window),
                2 => match answer.3.checked_sub(1).and_then(|i| budgets.get(i)) {
                    Some(budget) => Admission::OverBudget(budget.clone()),
                    None => return Err("Redis answered an unknown budget".into()),
                },
                _ => Admission::Refused(window),
            })
        })
    }

    fn add(&self, key: &str, charge: Charge<'_>) {
        let now = SystemClock.now();
        let (minute, _) = window_at(now);
        let redis_key = self.key(key, minute);
        let mut pipe = redis::pipe();
        pipe.hincr(&redis_key, "t", charge.tokens)
            .ignore()
            .expire(&redis_key, 120)
            .ignore();
        if charge.nanos > 0 {
            for budget in charge.budgets {
                let (spend, ttl) = self.spend_key(budget, now);
                pipe.incr(&spend, charge.nanos).ignore();
                if ttl > 0 {
                    pipe.expire(&spend, ttl).ignore();
                }
            }
        }
        let mut connection = self.connection.clone();
        in_background("count usage", async move {
            pipe.query_async::<()>(&mut connection).await
        });
    }

    fn seed_spend(&self, budget: &Budget, nanos: u64) {
        let (spend, ttl) = self.spend_key(budget, SystemClock.now());
        let script = self.seed.clone();
        let mut connection = self.connection.clone();
        in_background("seed a budget's spend", async move {
            let mut invocation = script.key(spend);
            invocation.arg(nanos).arg(ttl);
            invocation
                .invoke_async::<i64>(&mut connection)
                .await
                .map(drop)
        });
    }
}
