//! The shared model catalog: how the merged list is cached, refreshed and fetched. The list
//! itself, and its rendering, is [`Snapshot`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::time::Instant;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_openai_core::endpoint::ConnectionEndpoint;
use tower_openai_core::routing::{ModelRoutes, Route};
use tower_openai_core::{Body, BoxBody, BoxError};
use tower_openai_settings::{Connection, Settings};

use crate::snapshot::{Snapshot, SnapshotBuilder};

mod anthropic;
mod builder;
mod fetch;
mod health;
mod lookup;
pub use self::builder::CatalogBuilder;
pub(crate) use self::fetch::read_body;
pub use self::health::ConnectionHealth;
use self::health::Health;
pub use self::lookup::Lookup;
use crate::transform::{enrich, static_models};

/// The service the catalog sends `GET /models` through: the lower part of a stack (azure,
/// auth, headers, upstream), so discovery uses each connection's own auth and headers.
pub type Fetch = BoxCloneSyncService<Request<Body>, Response<BoxBody>, BoxError>;

/// How long a failing connection keeps contributing its last good models, by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(300);

/// The largest `/models` body read from an upstream, by default (16 MiB).
pub const DEFAULT_MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// The merged model list of every connection, cached and shared.
///
/// One `Catalog` is shared (cloning is cheap) by the models layer, which renders it, and the
/// select layer, which routes with it through [`ModelRoutes`].
///
/// - **Building** (rule M-2 … M-9): each enabled connection contributes its `model_ids`
///   (no network call) or the models of its `GET /models`, sent through the [`Fetch`]
///   service with the connection selected and its model-list timeout. All connections are
///   fetched concurrently; each has its own timeout, so a dead connection costs its own
///   models and at most its own timeout.
/// - **Caching**: a list is fresh for `MODELS_CACHE_TTL` (forever when unset). After the
///   first build no request waits: a stale list is served while one background refresh
///   runs (stale-while-revalidate). Concurrent cold requests share one build
///   (single-flight). A new settings snapshot (an admin update) starts a new list.
/// - **Failures**: a connection whose fetch fails keeps contributing its last good models
///   for a grace period (5 minutes by default). A failure is logged when it starts or
///   changes, not on every refresh.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    fetch: Fetch,
    grace: Duration,
    max_list_bytes: usize,
    groups: bool,
    current: ArcSwapOption<Snapshot>,
    building: Mutex<Option<Build>>,
    health: Mutex<HashMap<(usize, String), Health>>,
}

struct Build {
    settings: Arc<Settings>,
    future: Shared<BoxFuture<'static, Arc<Snapshot>>>,
}

impl Catalog {
    /// A catalog fetching each connection's model list through `fetch`, with default options.
    ///
    /// `fetch` must apply the connection's credentials and headers
    /// ([`ConnectionEndpoint`]): the facade's `Endpoint`, or your own stack wrapped in
    /// [`AppliesCredentials`](crate::AppliesCredentials). A bare
    /// upstream service does not compile here.
    pub fn new<S, B>(fetch: S) -> Self
    where
        S: ConnectionEndpoint
            + tower_service::Service<Request<Body>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self::builder(fetch).build()
    }

    /// Configure a catalog fetching through `fetch` (see [`Catalog::new`]).
    pub fn builder<S, B>(fetch: S) -> CatalogBuilder
    where
        S: ConnectionEndpoint
            + tower_service::Service<Request<Body>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let fetch = BoxCloneSyncService::new(
            fetch
                .map_response(|res: Response<B>| res.map(|b| b.map_err(Into::into).boxed_unsync()))
                .map_err(Into::into),
        );
        CatalogBuilder {
            fetch,
            grace: DEFAULT_GRACE,
            max_list_bytes: DEFAULT_MAX_LIST_BYTES,
            groups: false,
        }
    }

    /// Each connection's health: whether its last model-list fetch worked, how many models
    /// it contributes, and the upstream's own reason when it failed. Builds the list first
    /// when there is none for `settings`.
    pub async fn health(&self, settings: &Arc<Settings>) -> Vec<ConnectionHealth> {
        let snapshot = self.snapshot(settings).await;
        let health = self.inner.health.lock().unwrap_or_else(|e| e.into_inner());
        settings
            .connections()
            .iter()
            .map(|c| {
                let entry = health.get(&(c.index(), c.url().to_owned()));
                let last_fetch = entry.and_then(|e| e.last_fetch.clone()).map(|(at, r)| {
                    let secs = at
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    (secs, r)
                });
                let fetched = !c.config().azure && c.config().model_ids.is_empty();
                ConnectionHealth {
                    index: c.index(),
                    url: c.url().to_owned(),
                    enabled: c.config().enable,
                    up: c.config().enable
                        && (!fetched || last_fetch.as_ref().is_some_and(|(_, r)| r.is_ok())),
                    models: snapshot.count_of(c.index()),
                    last_fetch,
                }
            })
            .collect()
    }

    /// The list for `settings`: the cached one (refreshing it in the background when stale),
    /// or a build every concurrent caller shares.
    pub fn lookup(&self, settings: &Arc<Settings>) -> Lookup {
        if !settings.enable() {
            // M-1: no models; and no routing (the select layer answers 503).
            return Lookup::Ready(Arc::new(Snapshot::empty(settings.clone())));
        }
        if let Some(current) = self.with_current(settings, Arc::clone) {
            return Lookup::Ready(current);
        }
        Lookup::Pending(self.build(settings).boxed())
    }

    /// `f` applied to the current list if it was built for `settings` (starting a rebuild in
    /// the background when it is stale), without taking a reference to it: the hot path of
    /// routing touches no reference count shared with other requests.
    fn with_current<R>(
        &self,
        settings: &Arc<Settings>,
        f: impl FnOnce(&Arc<Snapshot>) -> R,
    ) -> Option<R> {
        let guard = self.inner.current.load();
        let current = guard
            .as_ref()
            .filter(|c| Arc::ptr_eq(&c.settings, settings))?;
        let fresh = settings
            .models_cache_ttl()
            .is_none_or(|ttl| current.built_at.elapsed() < ttl);
        if !fresh {
            drop(self.build(settings));
        }
        Some(f(current))
    }

    /// [`lookup`](Self::lookup), waiting for a build if there is no list yet.
    pub async fn snapshot(&self, settings: &Arc<Settings>) -> Arc<Snapshot> {
        match self.lookup(settings) {
            Lookup::Ready(s) => s,
            Lookup::Pending(f) => f.await,
        }
    }

    /// Forget the current list: the next request builds a new one.
    pub fn invalidate(&self) {
        self.inner.current.store(None);
    }

    /// The build for `settings` in flight, or a new one. The build runs on its own task, so
    /// a caller that goes away does not cancel it.
    fn build(&self, settings: &Arc<Settings>) -> Shared<BoxFuture<'static, Arc<Snapshot>>> {
        let mut building = self
            .inner
            .building
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(b) = building.as_ref()
            && Arc::ptr_eq(&b.settings, settings)
        {
            return b.future.clone();
        }
        let inner = self.inner.clone();
        let task_settings = settings.clone();
        let task = tokio::spawn(async move {
            let snapshot = Arc::new(inner.build(&task_settings).await);
            inner.publish(&snapshot);
            let mut building = inner.building.lock().unwrap_or_else(|e| e.into_inner());
            if building
                .as_ref()
                .is_some_and(|b| Arc::ptr_eq(&b.settings, &task_settings))
            {
                *building = None;
            }
            snapshot
        });
        let empty_settings = settings.clone();
        let future = async move {
            match task.await {
                Ok(snapshot) => snapshot,
                Err(e) => {
                    tracing::error!(error = %e, "model list build failed");
                    Arc::new(Snapshot::empty(empty_settings))
                }
            }
        }
        .boxed()
        .shared();
        *building = Some(Build {
            settings: settings.clone(),
            future: future.clone(),
        });
        future
    }

    /// Send `GET /models` to one connection through the fetch service, with its model-list
    /// timeout as the idle timeout. The whole exchange is not capped here.
    pub(crate) async fn fetch_models(
        &self,
        settings: &Arc<Settings>,
        connection: &Arc<Connection>,
    ) -> Result<Response<BoxBody>, BoxError> {
        self.inner.fetch_models(settings, connection).await
    }

    pub(crate) fn max_list_bytes(&self) -> usize {
        self.inner.max_list_bytes
    }
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field(
                "current",
                &self.inner.current.load().as_ref().map(|s| s.len()),
            )
            .field("grace", &self.inner.grace)
            .finish_non_exhaustive()
    }
}

impl ModelRoutes for Catalog {
    fn route(&self, settings: &Arc<Settings>, model: &str) -> Route {
        if settings.enable()
            && let Some(route) = self.with_current(settings, |s| s.route_of(model))
        {
            return route;
        }
        match self.lookup(settings) {
            Lookup::Ready(s) => s.route_of(model),
            Lookup::Pending(f) => {
                let model = model.to_owned();
                Route::Pending(Box::pin(async move { f.await.route_of(&model) }))
            }
        }
    }
}

impl Inner {
    fn publish(&self, snapshot: &Arc<Snapshot>) {
        // A build for older settings that finishes late must not replace a newer list.
        self.current.rcu(|current| match current {
            Some(c)
                if !Arc::ptr_eq(&c.settings, &snapshot.settings)
                    && c.settings.generation() > snapshot.settings.generation() =>
            {
                Some(c.clone())
            }
            _ => Some(snapshot.clone()),
        });
    }

    async fn build(&self, settings: &Arc<Settings>) -> Snapshot {
        if !settings.enable() {
            return Snapshot::empty(settings.clone());
        }
        let lists = futures_util::future::join_all(
            settings
                .connections()
                .iter()
                .filter(|c| c.config().enable)
                .map(|c| async move { (c.clone(), self.models_of(settings, c).await) }),
        )
        .await;
        let mut builder = SnapshotBuilder::with_groups(self.groups);
        for (connection, list) in lists {
            for raw in list.iter() {
                if let Some(e) = enrich(raw.clone(), &connection) {
                    builder.push(e.key, connection.index(), &e.model);
                }
            }
        }
        builder.finish(settings.clone())
    }

    /// What one connection contributes (M-2).
    async fn models_of(
        &self,
        settings: &Arc<Settings>,
        connection: &Arc<Connection>,
    ) -> Arc<Vec<Value>> {
        if !connection.config().model_ids.is_empty() {
            return Arc::new(static_models(connection));
        }
        let result = match connection.timeout_model_list() {
            Some(limit) => {
                match tokio::time::timeout(limit, self.fetch_list(settings, connection)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {} s", limit.as_secs_f64())),
                }
            }
            None => self.fetch_list(settings, connection).await,
        };
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let entry = health
            .entry((connection.index(), connection.url().to_owned()))
            .or_default();
        match result {
            Ok(list) => {
                entry.last_fetch = Some((std::time::SystemTime::now(), Ok(list.len())));
                if entry.failing.take().is_some() {
                    tracing::info!(
                        connection = connection.index(),
                        "model list fetch works again"
                    );
                }
                let list = Arc::new(list);
                entry.last_good = Some((Instant::now(), list.clone()));
                list
            }
            Err(message) => {
                entry.last_fetch = Some((std::time::SystemTime::now(), Err(message.clone())));
                if entry.failing.as_deref() != Some(message.as_str()) {
                    tracing::warn!(
                        connection = connection.index(),
                        error = %message,
                        "model list fetch failed; the connection contributes its last good models for the grace period, then none"
                    );
                    entry.failing = Some(message);
                }
                match &entry.last_good {
                    Some((at, list)) if at.elapsed() <= self.grace => list.clone(),
                    _ => Arc::new(Vec::new()),
                }
            }
        }
    }
}
