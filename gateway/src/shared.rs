//! Several gateway processes as one, through Redis (`REDIS_URL`): the admin settings and the
//! rate-limit counts are shared.
//!
//! - The settings an admin changes live under `{prefix}:settings` with a version under
//!   `{prefix}:settings:version`; an update writes both in one script and publishes the new
//!   version on `{prefix}:settings:changed`. A version is a count and a random nonce the
//!   writer chose (`7-5f0c…`): a Redis that restarted empty, or was flushed, counts from 1
//!   again, and a count alone could not tell the new first settings from the old first ones
//!   a process already runs with.
//! - Every process subscribes to the channel and also compares versions every second, so a
//!   process that missed a message (a restart, a blip) catches up.
//! - Redis unreachable: every process keeps serving on its last settings, limits fail open,
//!   and an admin update is refused with 503 (replicas never diverge). The connection is
//!   retried in the background; when Redis is back, updates flow again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tower_openai_ratelimit::{
    Admission, Budget, Charge, LimitStore, Limits, MemoryStore, RedisStore, StoreFuture,
};

use crate::persist::Persisted;

/// How long a Redis step may take before it counts as unreachable.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// How often versions are compared (the catch-up for a missed message).
const CATCH_UP_EVERY: Duration = Duration::from_secs(1);

/// Writes the settings and their new version in one step, and announces it.
/// KEYS: counter, version, settings. ARGV: the settings JSON, the channel, the nonce.
const PUBLISH: &str = r"
local version = redis.call('INCR', KEYS[1]) .. '-' .. ARGV[3]
redis.call('SET', KEYS[2], version)
redis.call('SET', KEYS[3], ARGV[1])
redis.call('PUBLISH', ARGV[2], version)
return version
";

/// A version of the shared settings: never the same for two writes.
pub(crate) type Version = String;

/// A nonce no other write will choose: 128 random bits.
fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(32);
    for i in 0..2u64 {
        // std seeds each RandomState from the OS's randomness.
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(i);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// The process's link to Redis.
#[derive(Clone)]
pub(crate) struct SharedRedis {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    prefix: String,
    connection: Mutex<Option<ConnectionManager>>,
    /// The version of the shared settings this process runs with (empty: none yet).
    applied: Mutex<Version>,
    /// Whether "unreachable" was logged since the last success (one line per outage).
    down_logged: AtomicBool,
    limits: OnceLock<RedisStore>,
}

impl std::fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRedis")
            .field("prefix", &self.inner.prefix)
            .field("applied", &self.applied())
            .finish_non_exhaustive()
    }
}

/// A shared-settings operation that could not be done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedError {
    #[error("Redis is not reachable")]
    Unreachable,
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the shared settings are not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl SharedRedis {
    /// A link to `url` (connected in the background; see [`connect`](Self::connect)).
    pub(crate) fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            inner: Arc::new(Inner {
                client: redis::Client::open(url)?,
                prefix: prefix.to_owned(),
                connection: Mutex::new(None),
                applied: Mutex::new(Version::new()),
                down_logged: AtomicBool::new(false),
                limits: OnceLock::new(),
            }),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.inner.prefix)
    }

    fn connection(&self) -> Option<ConnectionManager> {
        self.inner
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Connect once (at most [`REDIS_TIMEOUT`]); whether it is connected.
    pub(crate) async fn connect(&self) -> bool {
        if self.connection().is_some() {
            return true;
        }
        let made = tokio::time::timeout(
            REDIS_TIMEOUT,
            ConnectionManager::new(self.inner.client.clone()),
        )
        .await;
        match made {
            Ok(Ok(connection)) => {
                let _ = self.inner.limits.set(RedisStore::new(
                    connection.clone(),
                    self.inner.prefix.clone(),
                ));
                *self
                    .inner
                    .connection
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(connection);
                self.inner.down_logged.store(false, Ordering::Relaxed);
                tracing::info!("connected to Redis");
                true
            }
            Ok(Err(e)) => {
                self.down(&e.to_string());
                false
            }
            Err(_) => {
                self.down("no answer in time");
                false
            }
        }
    }

    /// Log an outage once (until the next success).
    fn down(&self, why: &str) {
        if !self.inner.down_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = why,
                "Redis is not reachable; serving on the last settings and retrying in the background"
            );
        }
    }

    /// The shared settings and their version, if any were ever written.
    pub(crate) async fn fetch(&self) -> Result<Option<(Version, Persisted)>, SharedError> {
        let mut connection = self.connection().ok_or(SharedError::Unreachable)?;
        let keys = [self.key("settings:version"), self.key("settings")];
        let (version, text): (Option<Version>, Option<String>) =
            tokio::time::timeout(REDIS_TIMEOUT, connection.mget(&keys))
                .await
                .map_err(|_| SharedError::Unreachable)??;
        match (version, text) {
            (Some(version), Some(text)) => Ok(Some((version, serde_json::from_str(&text)?))),
            _ => Ok(None),
        }
    }

    /// The current shared version (empty when none).
    async fn version(&self) -> Result<Version, SharedError> {
        let mut connection = self.connection().ok_or(SharedError::Unreachable)?;
        let version: Option<Version> =
            tokio::time::timeout(REDIS_TIMEOUT, connection.get(self.key("settings:version")))
                .await
                .map_err(|_| SharedError::Unreachable)??;
        Ok(version.unwrap_or_default())
    }

    /// Write `settings` as the new shared settings; their version.
    pub(crate) async fn publish(&self, settings: &Persisted) -> Result<Version, SharedError> {
        let mut connection = self.connection().ok_or(SharedError::Unreachable)?;
        let text = serde_json::to_string(settings)?;
        let script = redis::Script::new(PUBLISH);
        let mut invocation = script.key(self.key("settings:counter"));
        invocation
            .key(self.key("settings:version"))
            .key(self.key("settings"))
            .arg(text)
            .arg(self.key("settings:changed"))
            .arg(nonce());
        let version: Version =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| SharedError::Unreachable)??;
        Ok(version)
    }

    /// The version this process runs with.
    pub(crate) fn applied(&self) -> Version {
        self.inner
            .applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Record that this process runs with `version`.
    pub(crate) fn set_applied(&self, version: Version) {
        *self
            .inner
            .applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = version;
    }

    /// Follow the shared settings for the life of the process: connect (and reconnect),
    /// subscribe to changes, compare versions every second, and hand every newer version to
    /// `apply`.
    pub(crate) async fn follow<F, Fut>(self, apply: F)
    where
        F: Fn(Version, Persisted) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut tick = tokio::time::interval(CATCH_UP_EVERY);
        let mut messages = None;
        loop {
            if !self.connect().await {
                tick.tick().await;
                continue;
            }
            if messages.is_none() {
                messages = self.subscribe().await;
            }
            let changed = match messages.as_mut() {
                Some(stream) => tokio::select! {
                    message = stream.next() => {
                        if message.is_none() {
                            // The subscription broke: poll until it is made again.
                            messages = None;
                        }
                        true
                    }
                    _ = tick.tick() => true,
                },
                None => {
                    tick.tick().await;
                    true
                }
            };
            if changed {
                self.catch_up(&apply).await;
            }
        }
    }

    async fn subscribe(&self) -> Option<futures_util::stream::BoxStream<'static, redis::Msg>> {
        let subscribe = async {
            let mut pubsub = self.inner.client.get_async_pubsub().await?;
            pubsub.subscribe(self.key("settings:changed")).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message().boxed())
        };
        match tokio::time::timeout(REDIS_TIMEOUT, subscribe).await {
            Ok(Ok(stream)) => Some(stream),
            _ => None,
        }
    }

    async fn catch_up<F, Fut>(&self, apply: &F)
    where
        F: Fn(Version, Persisted) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        // A version other than ours is the truth: newer, or a Redis that lost its data and
        // counts again from 1 (whatever it holds now is what every process follows; the
        // nonce in each version tells a new first write from an old one).
        match self.version().await {
            Ok(version) if !version.is_empty() && version != self.applied() => {
                match self.fetch().await {
                    Ok(Some((version, settings))) if version != self.applied() => {
                        apply(version, settings).await;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not read the shared settings"),
                }
            }
            Ok(_) => {
                if self.inner.down_logged.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis is reachable again");
                }
            }
            Err(SharedError::Unreachable) => self.down("no answer in time"),
            Err(SharedError::Redis(e))
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() =>
            {
                self.down(&e.to_string());
            }
            Err(e) => tracing::warn!(error = %e, "could not read the shared settings version"),
        }
    }

    /// The rate-limit store on this Redis.
    pub(crate) fn limit_store(&self) -> SharedLimits {
        SharedLimits {
            redis: self.clone(),
            local: std::sync::Arc::new(MemoryStore::new()),
        }
    }
}

/// Rate-limit counts and budget spend in Redis once it is connected. Until then (and whenever
/// it fails) requests are let through, but for budgets: this process's own count of the
/// spend (kept alongside, seeded from the database like Redis) still refuses a caller over
/// budget, so an outage does not lift every budget.
#[derive(Clone, Debug)]
pub(crate) struct SharedLimits {
    redis: SharedRedis,
    local: std::sync::Arc<MemoryStore>,
}

impl LimitStore for SharedLimits {
    fn admit(&self, key: &str, limits: &Limits) -> StoreFuture<Admission> {
        let shared = match self.redis.inner.limits.get() {
            Some(store) => store.admit(key, limits),
            None => Box::pin(std::future::ready(Err("Redis is not connected yet".into()))),
        };
        if limits.budgets.is_empty() {
            return shared;
        }
        let (local, budgets) = (self.local.clone(), limits.budgets.clone());
        Box::pin(async move {
            match shared.await {
                Ok(admission) => Ok(admission),
                Err(e) => {
                    let only_budgets = Limits {
                        budgets,
                        ..Limits::default()
                    };
                    match local.admit("", &only_budgets).await {
                        Ok(Admission::OverBudget(budget)) => Ok(Admission::OverBudget(budget)),
                        _ => Err(e),
                    }
                }
            }
        })
    }

    fn add(&self, key: &str, charge: Charge<'_>) {
        if let Some(store) = self.redis.inner.limits.get() {
            store.add(key, charge);
        }
        if charge.nanos > 0 {
            self.local.add(
                "",
                Charge {
                    tokens: 0,
                    ..charge
                },
            );
        }
    }

    fn seed_spend(&self, budget: &Budget, nanos: u64) {
        if let Some(store) = self.redis.inner.limits.get() {
            store.seed_spend(budget, nanos);
        }
        self.local.seed_spend(budget, nanos);
    }
}
