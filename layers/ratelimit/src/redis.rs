//! [`RedisStore`]: counts shared by every process on one Redis, so a limit holds across all
//! of them together.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::{Admission, Clock, LimitStore, Limits, StoreFuture, SystemClock, Window, window_at};

/// Checks and counts in one step, so two processes cannot both take the last request.
/// KEYS[1]: the caller's window; ARGV: rpm, tpm (-1: none), the key's lifetime in seconds.
const ADMIT: &str = r"
local requests = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
if (rpm >= 0 and requests >= rpm) or (tpm >= 0 and tokens > tpm) then
  return {0, requests, tokens}
end
requests = redis.call('HINCRBY', KEYS[1], 'r', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, requests, tokens}
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
        }
    }

    fn key(&self, key: &str, minute: u64) -> String {
        format!("{}:ratelimit:{key}:{minute}", self.prefix)
    }
}

fn limit_arg(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

impl LimitStore for RedisStore {
    fn admit(&self, key: &str, limits: Limits) -> StoreFuture<Admission> {
        let (minute, resets_in) = window_at(SystemClock.now());
        let redis_key = self.key(key, minute);
        let mut connection = self.connection.clone();
        let script = self.script.clone();
        Box::pin(async move {
            let mut invocation = script.key(&redis_key);
            invocation
                .arg(limit_arg(limits.rpm))
                .arg(limit_arg(limits.tpm))
                .arg(120);
            let answer: (i64, u64, u64) =
                tokio::time::timeout(ADMIT_TIMEOUT, invocation.invoke_async(&mut connection))
                    .await
                    .map_err(|_| "Redis did not answer in time")??;
            let window = Window {
                requests: answer.1,
                tokens: answer.2,
                resets_in,
            };
            Ok(if answer.0 == 1 {
                Admission::Allowed(window)
            } else {
                Admission::Refused(window)
            })
        })
    }

    fn add_tokens(&self, key: &str, tokens: u64) {
        let (minute, _) = window_at(SystemClock.now());
        let redis_key = self.key(key, minute);
        let mut connection = self.connection.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut pipe = redis::pipe();
            pipe.hincr(&redis_key, "t", tokens)
                .ignore()
                .expire(&redis_key, 120)
                .ignore();
            let add = pipe.query_async::<()>(&mut connection);
            match tokio::time::timeout(Duration::from_secs(2), add).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not count tokens in Redis"),
                Err(_) => tracing::warn!("could not count tokens in Redis: no answer in time"),
            }
        });
    }
}
