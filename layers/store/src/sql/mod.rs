//! The store in SQLite or Postgres (sqlx), and the loop that keeps a [`LiveDirectory`] in
//! step with it.

mod admin;
mod prices;
mod rows;
mod spend;
mod users;
mod write;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row};

use crate::StoreError;
use crate::directory::{Directory, LiveDirectory, now};

/// The database kinds the store speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (`sqlite://path`), the embedded default.
    Sqlite,
    /// Postgres (`postgres://…` or `postgresql://…`), for several machines.
    Postgres,
}

/// A URL the store cannot use. Its message never repeats the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

/// Users, groups, keys, model access records and the audit log in a database. Cheap to clone
/// (a pool).
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

/// The migrations, in SQLite's dialect.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "identity",
        include_str!("../../migrations/0001_identity.sql"),
    ),
    (
        2,
        "prices",
        include_str!("../../migrations/0002_prices.sql"),
    ),
    (3, "spend", include_str!("../../migrations/0003_spend.sql")),
];

/// A migration in `backend`'s dialect: the one difference is an auto-incrementing id.
fn dialect(backend: Backend, sql: &'static str) -> Cow<'static, str> {
    match backend {
        Backend::Sqlite => Cow::Borrowed(sql),
        Backend::Postgres => {
            Cow::Owned(sql.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"))
        }
    }
}

impl SqlStore {
    /// The backend a URL names, if it names one this build has.
    pub fn backend(url: &str) -> Result<Backend, UrlError> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        match scheme {
            #[cfg(feature = "sqlite")]
            "sqlite" => Ok(Backend::Sqlite),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            // Reached when a backend's feature is off.
            #[allow(unreachable_patterns)]
            "sqlite" | "postgres" | "postgresql" => Err(UrlError(format!(
                "this build has no {scheme} support (its Cargo feature is off)"
            ))),
            _ => Err(UrlError(
                "not a database URL: expected sqlite://PATH or postgres://…".to_owned(),
            )),
        }
    }

    /// Open the database at `url` (a SQLite file is created when missing) and bring its
    /// schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let backend = Self::backend(url).map_err(|e| StoreError::Invalid(e.0))?;
        sqlx::any::install_default_drivers();
        let url = match backend {
            // Create the file on first start.
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                Cow::Owned(format!("{url}{sep}mode=rwc"))
            }
            _ => Cow::Borrowed(url),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|_| {
            StoreError::Invalid("not a database URL: expected sqlite://PATH or postgres://…".into())
        })?;
        let pool = AnyPoolOptions::new()
            // SQLite's one connection is kept (an in-memory database lives in it).
            .min_connections(u32::from(backend == Backend::Sqlite))
            .idle_timeout(None)
            .max_lifetime(None)
            .max_connections(match backend {
                Backend::Sqlite => 1,
                Backend::Postgres => 4,
            })
            // A database that does not answer fails a write quickly; serving goes on.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;
        let store = Self { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    dialect(self.backend, sql),
                    false,
                )
            })
            .collect::<Vec<_>>();
        let mut migrator = Migrator::DEFAULT;
        migrator.migrations = Cow::Owned(migrations);
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))
    }

    /// Which database this is.
    pub fn kind(&self) -> Backend {
        self.backend
    }

    /// The number every write moves.
    pub async fn version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM meta WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// A consistent snapshot of the store, and the version it is of.
    pub async fn load(&self) -> Result<(i64, Directory), StoreError> {
        // Read again if a write landed in between (no snapshot isolation is assumed).
        for _ in 0..5 {
            let before = self.version().await?;
            let directory = rows::directory(&self.pool).await?;
            if self.version().await? == before {
                return Ok((before, directory));
            }
        }
        Err(StoreError::Unavailable(
            "the store kept changing while it was read".into(),
        ))
    }

    /// Load the store into `live` now.
    pub async fn reload(&self, live: &LiveDirectory) -> Result<i64, StoreError> {
        let (version, directory) = self.load().await?;
        live.replace(directory);
        Ok(version)
    }

    /// Keep `live` in step with the store, polling its version every `poll` (changes made
    /// by any process sharing the database are served within that), and write the
    /// `last_used_at` of the keys looked up, batched, every `last_used` (rounded down to it).
    /// Runs until dropped.
    pub async fn watch(
        self,
        live: LiveDirectory,
        mut version: i64,
        poll: Duration,
        last_used: Duration,
    ) {
        let last_used = i64::try_from(last_used.as_secs().max(1)).unwrap_or(i64::MAX);
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_touch = now();
        let mut failing = false;
        loop {
            tick.tick().await;
            let at = now();
            live.tick(at);
            match self.version().await {
                Ok(v) if v != version => match self.reload(&live).await {
                    Ok(v) => {
                        tracing::debug!(version = v, "identity store reloaded");
                        version = v;
                        failing = false;
                    }
                    Err(e) => failing = warn_once(failing, &e),
                },
                Ok(_) => failing = false,
                Err(e) => failing = warn_once(failing, &e),
            }
            if at - last_touch >= last_used {
                last_touch = at;
                let used = live.take_used();
                if !used.is_empty()
                    && let Err(e) = self.touch_keys(&used, at - at % last_used).await
                {
                    failing = warn_once(failing, &e);
                }
            }
        }
    }
}

fn warn_once(failing: bool, e: &StoreError) -> bool {
    if !failing {
        tracing::warn!(error = %e, source = ?std::error::Error::source(e).map(ToString::to_string), "identity store unreachable; serving what is loaded");
    }
    true
}
