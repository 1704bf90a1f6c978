//! The `openai-gateway` application, built from the layers.
//!
//! [`Gateway::new`] validates a [`GatewayConfig`] (nothing starts half-configured), and
//! [`Gateway::app`] assembles the one stack that `main`, the tests and the examples all
//! serve. [`run`] is `main`'s whole body.

/// The operator's guides: configuration, identity and keys, the security model, limits, observability, model
/// groups, replicas, and how the gateway differs from Open WebUI.
pub mod guide {
    #[doc = include_str!("../../docs/configuration.md")]
    pub mod configuration {}
    #[doc = include_str!("../../docs/identity.md")]
    pub mod identity {}
    #[doc = include_str!("../../docs/security.md")]
    pub mod security {}
    #[doc = include_str!("../../docs/limits.md")]
    pub mod limits {}
    #[doc = include_str!("../../docs/spend.md")]
    pub mod spend {}
    #[doc = include_str!("../../docs/observability.md")]
    pub mod observability {}
    #[doc = include_str!("../../docs/groups.md")]
    pub mod groups {}
    #[doc = include_str!("../../docs/replicas.md")]
    pub mod replicas {}
    #[doc = include_str!("../../docs/open-webui.md")]
    pub mod open_webui {}
}

mod admin;
mod admission;
mod cli;
mod config;
mod demo;
mod directory;
mod drain;
mod identity;
mod metrics;
mod persist;
mod router;
mod security;
mod server;
pub mod serving;
mod shared;
mod spend;
mod stack;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_openai_auth::{AuthLayer, EntraTokens};
use tower_openai_group::Groups;
use tower_openai_models::Catalog;
use tower_openai_settings::SettingsHandle;
use tower_openai_speech_cache::SpeechStore;
use tower_openai_test_util::MockUpstream;
use tower_openai_upstream::Upstream;

pub use self::cli::{Args, healthcheck};
pub use self::config::{
    DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_SPEECH_CACHE_MAX_BYTES, GatewayConfig, GroupsConfig, KeyDigest, Limits, ModelAccess,
    ModelRecord, Observability, RedisConfig, StartError, UserRecord,
};
pub use self::identity::Callers;
pub use self::persist::Persisted;
pub use self::security::{CorsOrigins, SecurityConfig};
pub use self::server::shutdown_signal;
pub use self::stack::App;

/// A configured gateway, ready to serve.
#[derive(Debug)]
pub struct Gateway {
    config: GatewayConfig,
    settings: SettingsHandle,
    callers: Callers,
    lower: stack::Lower,
    catalog: Catalog,
    /// Model groups' shared state (each connection's load, failures, cooldown).
    groups: Groups,
    /// Each user's rate limits and where they are counted.
    limits: UserLimits,
    /// The request bodies being buffered, in all and per user.
    buffers: tower_openai_collect::BufferBudget,
    /// The identity store's poll, stopped with the gateway.
    _watch: AbortOnDrop,
    /// Spend recorded and not written yet (written every 5 s and when serving ends).
    spend: spend::SpendLedger,
    /// Its writer, stopped with the gateway.
    _spend_writer: AbortOnDrop,
    admin: admin::Admin,
    speech: SpeechStore,
    serve_options: server::ServeOptions,
    demo: Option<MockUpstream>,
    /// `--metrics-listen`, bound at start so a busy port stops start-up.
    metrics_listener: Option<TcpListener>,
    /// `REDIS_URL`: the link to the other processes.
    shared: Option<shared::SharedRedis>,
}

impl Gateway {
    /// Validate `config` and prepare the gateway (starting the demo upstream if asked).
    pub async fn new(mut config: GatewayConfig) -> Result<Self, StartError> {
        config.check_limits()?;
        // As many connections as the open-files limit (raised to its hard limit) can hold.
        config.limits.max_connections = admission::fit_to_open_files(config.limits.max_connections);
        let store = persist::ConfigStore::new(&config.data_dir);
        if config.persistent_config
            && let Some(persisted) = store.load()?
        {
            tracing::info!(path = %store.path().display(), "using the persisted settings (ENABLE_PERSISTENT_CONFIG)");
            config.settings = persisted.apply(std::mem::take(&mut config.settings));
        }
        // Several processes: the shared settings override env, file and the local file (as
        // the persisted file does); Redis unreachable, start on those and catch up later.
        let shared = match &config.redis {
            Some(r) => {
                let shared = shared::SharedRedis::new(&r.url, &r.prefix)
                    .map_err(|_| StartError::Other("REDIS_URL is not a Redis URL".to_owned()))?;
                if shared.connect().await {
                    match shared.fetch().await {
                        Ok(Some((version, persisted))) => {
                            tracing::info!(%version, "using the shared settings (REDIS_URL)");
                            config.settings = persisted.apply(std::mem::take(&mut config.settings));
                            shared.set_applied(version);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "could not read the shared settings"),
                    }
                }
                Some(shared)
            }
            None => None,
        };
        let demo = if config.demo {
            let mock = demo::start().await;
            config.settings = demo::with_mock(std::mem::take(&mut config.settings), &mock.url());
            Some(mock)
        } else {
            None
        };
        let settings = SettingsHandle::new(stack::settings(config.settings.clone())?);
        let serve_options = server::ServeOptions::new(config.limits.clone(), config.shutdown_grace);
        let mut upstream = Upstream::builder()
            .shutdown(serve_options.cut.clone())
            .dns_ttl(config.dns_ttl)
            .extra_roots(read_ca_bundles(&config.ca_bundles)?);
        for (host, ip) in &config.resolve {
            upstream = upstream.resolve(host.clone(), *ip);
        }
        if let Some(max) = config.max_per_host {
            upstream = upstream.max_in_flight_per_host(max);
        }
        if config.allow_redirects {
            upstream = upstream.follow_redirects(config::MAX_REDIRECTS);
        }
        let proxy_env = &config.proxy_env;
        let upstream = upstream
            .proxies_from(|k| proxy_env.get(k))
            .forward_headers(config.security.forward_headers.iter().cloned())
            .map_err(|e| StartError::Other(format!("GATEWAY_FORWARD_HEADERS: {e}")))?
            .expose_headers(config.security.expose_headers.iter().cloned())
            .map_err(|e| StartError::Other(format!("GATEWAY_EXPOSE_HEADERS: {e}")))?
            .build();
        let azure_env = config.azure_env.clone();
        let entra = EntraTokens::from_env(move |k| azure_env.get(k), upstream.http_client());
        let lower = stack::lower(
            upstream,
            AuthLayer::new().entra(entra),
            config.headers.clone(),
        );
        let catalog = Catalog::builder(lower.clone())
            .groups(config.groups.enabled)
            .build();
        let groups = Groups::new(config.groups.policy.clone());
        let (callers, identity, watch) = open_identity(&config).await?;
        config.check_exposure(callers.single_user())?;
        let admin = admin::Admin::new(
            settings.clone(),
            catalog.clone(),
            groups.clone(),
            shared.clone(),
            stack::boxed_lower(lower.clone()),
            store,
            config.max_body_bytes,
            Some(identity),
        );
        let speech = if config.speech_cache_max_bytes > 0 {
            let dir = config.data_dir.join("cache/audio/speech");
            SpeechStore::open(&dir, config.speech_cache_max_bytes).map_err(|e| {
                StartError::Other(format!(
                    "cannot open the speech cache in {}: {e}",
                    dir.display()
                ))
            })?
        } else {
            SpeechStore::disabled()
        };
        // The recorder is installed before the first request, so nothing is lost before the
        // first scrape.
        let _ = metrics::prometheus();
        let metrics_listener = match config.observability.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                StartError::Other(format!("cannot listen on {addr} (--metrics-listen): {e}"))
            })?),
            None => None,
        };
        let limits = UserLimits::new(&config, shared.as_ref(), callers.directory().clone());
        let spend = admin.identity().map(|i| i.spend.clone()).ok_or_else(|| {
            StartError::Other("DATABASE_URL: the identity store is not open".to_owned())
        })?;
        // Held to what was spent before this process started, from its first request.
        spend.seed(callers.directory(), &*limits.store).await;
        let spend_writer = AbortOnDrop(tokio::spawn(
            spend
                .clone()
                .run(callers.directory().clone(), limits.store.clone()),
        ));
        let buffers = tower_openai_collect::BufferBudget::new(
            config.limits.max_buffered_bytes,
            config.limits.max_buffered_bytes_per_user,
        );
        Ok(Self {
            buffers,
            shared,
            metrics_listener,
            groups,
            limits,
            callers,
            _watch: watch,
            spend,
            _spend_writer: spend_writer,
            speech,
            serve_options,
            lower,
            catalog,
            admin,
            settings,
            config,
            demo,
        })
    }

    /// The gateway's service: what hyper serves. Cheap to clone.
    pub fn app(&self) -> App {
        stack::app(self)
    }

    /// The live settings.
    pub fn settings(&self) -> &SettingsHandle {
        &self.settings
    }

    /// The shared model catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The demo upstream's URL, in `--demo` mode.
    pub fn demo_url(&self) -> Option<String> {
        self.demo.as_ref().map(MockUpstream::url)
    }

    /// Bind the configured address.
    pub async fn bind(&self) -> Result<TcpListener, StartError> {
        TcpListener::bind(self.config.listen)
            .await
            .map_err(|e| StartError::Other(format!("cannot listen on {}: {e}", self.config.listen)))
    }

    /// The address `--metrics-listen` bound, if set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serve on `listener` until `shutdown` resolves, then drain (see [`GatewayConfig::shutdown_grace`]).
    pub async fn serve(mut self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let app = stack::service(&self);
        let metrics = self.metrics_listener.take().map(|l| {
            tracing::info!(addr = ?l.local_addr().ok(), "serving /metrics");
            AbortOnDrop(tokio::spawn(metrics::serve(l, self.admin.clone())))
        });
        // Follow the shared settings for as long as the server runs.
        let follower = self.shared.clone().map(|shared| {
            let admin = self.admin.clone();
            AbortOnDrop(tokio::spawn(shared.follow(move |version, persisted| {
                let admin = admin.clone();
                async move { admin.apply_shared(version, persisted).await }
            })))
        });
        server::serve(listener, app, shutdown, self.serve_options.clone()).await;
        drop(metrics);
        drop(follower);
        // Every answer has ended: what they spent is written before the process exits.
        match tokio::time::timeout(self.serve_options.grace, self.spend.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not write the last spend records"),
            Err(_) => tracing::error!("the last spend records were not written in time"),
        }
        // Speech the callers received is in the cache after a restart: wait for its writes.
        let grace = self.serve_options.grace;
        if tokio::time::timeout(grace, self.speech.flush())
            .await
            .is_err()
        {
            tracing::warn!("speech-cache writes still running at exit were abandoned");
        }
        drop(self);
    }

    /// Bind and serve in the background (tests and examples): returns the bound address and
    /// a handle that shuts the server down.
    pub async fn spawn(self) -> Result<RunningGateway, StartError> {
        let listener = self.bind().await?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Other(format!("no local address: {e}")))?;
        let metrics_addr = self.metrics_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(listener, async {
            let _ = rx.await;
        }));
        Ok(RunningGateway {
            addr,
            metrics_addr,
            shutdown: Some(tx),
            task,
        })
    }
}

/// Each user's requests and tokens per minute, counted in this process.
#[derive(Clone)]
struct UserLimits {
    store: std::sync::Arc<dyn tower_openai_ratelimit::LimitStore>,
    /// Each user's own limits, from the identity store.
    by_user: tower_openai_store::LiveDirectory,
    default: tower_openai_ratelimit::Limits,
}

/// Open the identity store (`DATABASE_URL`, or `gateway.db` in the data dir), seed it with
/// the file's `[[users]]` and `[[models]]`, load it, and keep this process in step with it.
async fn open_identity(
    config: &GatewayConfig,
) -> Result<(Callers, directory::Identity, AbortOnDrop), StartError> {
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                StartError::Other(format!(
                    "DATABASE_URL: cannot create the data dir {} for gateway.db: {e}",
                    config.data_dir.display()
                ))
            })?;
            format!("sqlite://{}", config.data_dir.join("gateway.db").display())
        }
    };
    let failed = |e: tower_openai_store::StoreError| {
        // The database's own message, never the URL (it may hold a password).
        let cause =
            std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
        StartError::Other(format!(
            "DATABASE_URL: cannot open the identity store: {cause}"
        ))
    };
    let store = tower_openai_store::SqlStore::open(&url)
        .await
        .map_err(failed)?;
    let kept = store
        .seed(
            &identity::seed_users(&config.users),
            &identity::seed_models(&config.models),
        )
        .await
        .map_err(failed)?;
    let kept_prices = store.seed_prices(&config.prices).await.map_err(failed)?;
    if !kept.is_empty() || !kept_prices.is_empty() {
        tracing::info!(ids = ?kept, prices = ?kept_prices, "the config file's users, models and prices already in the identity store were left as the store has them");
    }
    let (version, directory) = store.load().await.map_err(failed)?;
    let callers = Callers::new(directory, config.allow_anonymous);
    let live = callers.directory().clone();
    let watch = tokio::spawn(store.clone().watch(
        live.clone(),
        version,
        std::time::Duration::from_secs(1),
        // `last_used_at`: at most once a minute per key, batched.
        std::time::Duration::from_secs(60),
    ));
    Ok((
        callers,
        directory::Identity {
            spend: spend::SpendLedger::new(store.clone()),
            store,
            live,
        },
        AbortOnDrop(watch),
    ))
}

impl std::fmt::Debug for UserLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserLimits")
            .field("by_user", &self.by_user)
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl UserLimits {
    fn new(
        config: &GatewayConfig,
        shared: Option<&shared::SharedRedis>,
        by_user: tower_openai_store::LiveDirectory,
    ) -> Self {
        // With Redis the counts are shared by every process; without it, each counts alone.
        let store: std::sync::Arc<dyn tower_openai_ratelimit::LimitStore> = match shared {
            Some(shared) => std::sync::Arc::new(shared.limit_store()),
            None => std::sync::Arc::new(tower_openai_ratelimit::MemoryStore::new()),
        };
        Self {
            store,
            by_user,
            default: config.rate_limit.clone(),
        }
    }

    /// The caller and their limits.
    fn of(&self, ext: &http::Extensions) -> Option<(String, tower_openai_ratelimit::Limits)> {
        let user = ext.get::<tower_openai_core::User>()?;
        let mut limits = match self.by_user.rate_limit(&user.id) {
            Some(l) => tower_openai_ratelimit::Limits {
                rpm: l.rpm,
                tpm: l.tpm,
                budgets: Vec::new(),
            },
            None => self.default.clone(),
        };
        limits.budgets = spend::budgets_of(&self.by_user, &user.id, user.key.as_deref());
        // Unlimited callers cost no key on the request path.
        (!limits.is_unlimited()).then(|| (user.id.to_string(), limits))
    }
}

/// The certificates of each CA bundle; a bundle that cannot be read or holds none stops
/// start-up, naming its variable.
fn read_ca_bundles(
    bundles: &[(&'static str, std::path::PathBuf)],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, StartError> {
    use rustls::pki_types::pem::PemObject;
    let mut out = Vec::new();
    for (var, path) in bundles {
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                StartError::Other(format!(
                    "{var}: cannot read the CA bundle {}: {e}",
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(StartError::Other(format!(
                "{var}: {} holds no PEM certificate",
                path.display()
            )));
        }
        out.extend(certs);
    }
    Ok(out)
}

/// Aborts a background task when dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A gateway serving in the background. Dropping it shuts the server down.
#[derive(Debug)]
pub struct RunningGateway {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningGateway {
    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `--metrics-listen` serves on, if set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// `http://ADDR/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Stop accepting and wait (at most `limit`) for the requests in flight to finish.
    /// Whether the server stopped within `limit`.
    pub async fn shutdown(mut self, limit: Duration) -> bool {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(limit, &mut self.task).await.is_ok()
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// `main`'s body: load the configuration, start, serve until SIGINT/SIGTERM.
pub async fn run(args: Args, env: &dyn Fn(&str) -> Option<String>) -> Result<(), StartError> {
    let config = GatewayConfig::load(&args, env)?;
    let gateway = Gateway::new(config).await?;
    let listener = gateway.bind().await?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Other(format!("no local address: {e}")))?;
    if let Some(mock) = gateway.demo_url() {
        println!("{}", demo::banner(addr, &mock));
    }
    let settings = gateway.settings().load();
    tracing::info!(
        %addr,
        connections = settings.connections().len(),
        users = gateway.config().users.len(),
        "openai-gateway listening"
    );
    gateway.serve(listener, shutdown_signal()).await;
    Ok(())
}
