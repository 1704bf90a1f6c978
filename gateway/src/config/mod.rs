//! The gateway's configuration: command line, environment, TOML file, defaults — in that
//! order of precedence, field by field. The TOML file's schema is in [`file`].

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tower_openai_collect::DEFAULT_LIMIT;
use tower_openai_settings::ConfigError;
use tower_openai_settings::SettingsSource;

use super::cli::Args;

pub(crate) mod file;
pub(crate) mod openwebui;

use self::file::{FileConfig, models_from, prices_from, users_from};

/// Where the gateway listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Where persisted state goes by default.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// Why the gateway could not start. The message names the flag, variable, key or file at
/// fault; it never contains a key.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting did not validate.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The TOML file could not be read or parsed.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Something else stopped start-up (binding the address, the demo upstream).
    #[error("{0}")]
    Other(String),
}

/// How a caller's API key is stored.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyDigest {
    /// SHA-256 of the key (computed at load when the file gives the key in plain text).
    Sha256([u8; 32]),
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest(<redacted>)")
    }
}

/// A `[[users]]` entry.
#[derive(Clone, Debug)]
pub struct UserRecord {
    /// The user as layers see them.
    pub user: tower_openai_core::User,
    /// Their API key's digest.
    pub key: KeyDigest,
    /// Their requests and tokens per minute (`rate_limit = { rpm, tpm }`); `None`: the
    /// `[rate_limit]` default.
    pub rate_limit: Option<tower_openai_ratelimit::Limits>,
    /// Their spend budget (`budget = { usd, period }`).
    pub budget: Option<tower_openai_store::Budget>,
}

/// A `[[models]]` access record (rule AC-1 … AC-3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRecord {
    /// The model id (as listed, with any prefix).
    pub id: String,
    /// The owning user's id.
    pub owner: String,
    /// Who may read it.
    pub access: ModelAccess,
}

/// A model record's `access` (AC-1): the acl layer's [`AccessControl`](tower_openai_acl::AccessControl).
pub use tower_openai_acl::AccessControl as ModelAccess;

/// Everything the gateway needs to start.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Where to serve.
    pub listen: SocketAddr,
    /// Persisted admin changes and the speech cache.
    pub data_dir: PathBuf,
    /// JSON bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Start the in-process mock upstream as connection 0.
    pub demo: bool,
    /// Permit single-user mode on a non-loopback address.
    pub allow_anonymous: bool,
    /// `ENABLE_PERSISTENT_CONFIG` (default true).
    pub persistent_config: bool,
    /// The connection settings, environment over file (validated by `build`).
    pub settings: SettingsSource,
    /// Callers; empty means single-user mode.
    pub users: Vec<UserRecord>,
    /// Model access records.
    pub models: Vec<ModelRecord>,
    /// Model prices (`[[prices]]`), seeding the identity store.
    pub prices: Vec<tower_openai_store::Price>,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// `AIOHTTP_CLIENT_STREAM_IDLE_TIMEOUT` (Open WebUI 0.7+): for a request with
    /// `"stream": true`, the longest wait for the response head and between body reads
    /// (instead of the connection's idle-read timeout); `None`: as any request.
    pub stream_idle_timeout: Option<Duration>,
    /// `AIOHTTP_POOL_CONNECTIONS_PER_HOST`: the most requests in flight to one upstream host
    /// (`None`, the default: no limit).
    pub max_per_host: Option<usize>,
    /// `AIOHTTP_POOL_DNS_TTL`: how long a host's DNS answer is reused (default 300 s; zero:
    /// resolved for every new connection).
    pub dns_ttl: Duration,
    /// `AIOHTTP_CLIENT_ALLOW_REDIRECTS=true`: upstream redirects are followed (at most
    /// 5, credentials never carried to another origin); otherwise a redirect
    /// is the answer.
    pub allow_redirects: bool,
    /// PEM CA bundles trusted for upstream certificates besides the web roots
    /// (`AIOHTTP_CLIENT_SSL_CERT_FILE`, a path in `AIOHTTP_CLIENT_SESSION_SSL`), with the
    /// variable that named each.
    pub ca_bundles: Vec<(&'static str, PathBuf)>,
    /// The connection limits (`GATEWAY_MAX_CONNECTIONS`, the read timeouts, …).
    pub limits: Limits,
    /// Hosts resolved to fixed addresses instead of through DNS (like curl's `--resolve`).
    /// Set in code only (tests, embedding); there is no flag for it.
    pub resolve: Vec<(String, std::net::IpAddr)>,
    /// Header names and OpenRouter attribution (`FORWARD_USER_INFO_HEADER_*`, …).
    pub headers: tower_openai_headers::HeadersConfig,
    /// The Microsoft Entra ID credential variables (`AZURE_*`, `IDENTITY_*`), read at start.
    pub azure_env: CapturedEnv,
    /// The outbound proxy variables (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`,
    /// upper or lower case), read at start.
    pub proxy_env: CapturedEnv,
    /// The speech cache's budget in bytes (`SPEECH_CACHE_MAX_BYTES`); 0 turns it off.
    pub speech_cache_max_bytes: u64,
    /// The passthrough switch, header allowlists, CORS and allowed hosts (docs/security.md).
    pub security: super::security::SecurityConfig,
    /// Metrics and usage (docs/observability.md).
    pub observability: Observability,
    /// Model groups (docs/groups.md).
    pub groups: GroupsConfig,
    /// Every user's requests and tokens per minute unless their entry sets its own
    /// (`[rate_limit]`; unlimited by default).
    pub rate_limit: tower_openai_ratelimit::Limits,
    /// `REDIS_URL` and `REDIS_KEY_PREFIX`: settings and rate-limit counts shared by every
    /// process on this Redis (docs/replicas.md).
    pub redis: Option<RedisConfig>,
    /// `DATABASE_URL`: the identity store (`sqlite://PATH` or `postgres://…`); `None`: a
    /// SQLite file `gateway.db` in the data dir. May hold a password: never logged.
    pub database_url: Option<String>,
}

/// Where several processes share their settings and counts.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `REDIS_URL`, e.g. `redis://127.0.0.1:6379/0` (may hold a password: never logged).
    pub url: String,
    /// `REDIS_KEY_PREFIX` (default `openai-gateway`).
    pub prefix: String,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Model groups (docs/groups.md): off by default, Open WebUI's first-connection-wins.
#[derive(Clone, Debug, Default)]
pub struct GroupsConfig {
    /// `GATEWAY_MODEL_GROUPS`: a model id several enabled connections list is one model
    /// served by all of them.
    pub enabled: bool,
    /// `GATEWAY_MAX_ATTEMPTS` (default 3), `GATEWAY_COOLDOWN_FAILURES` (default 3),
    /// `GATEWAY_COOLDOWN_SECONDS` (default 30).
    pub policy: tower_openai_group::GroupPolicy,
}

/// Metrics and usage (docs/observability.md).
#[derive(Clone, Debug, Default)]
pub struct Observability {
    /// `--metrics-listen`, `GATEWAY_METRICS_LISTEN`: a second listener that serves only
    /// `GET /metrics`, without a key.
    pub metrics_listen: Option<SocketAddr>,
    /// `GATEWAY_STREAM_USAGE`: ask streamed chats for usage and remove the extra chunk for a
    /// caller that did not ask.
    pub stream_usage: bool,
    /// OpenTelemetry export is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): request spans continue the caller's
    /// `traceparent`, and the gateway's replaces it upstream (off, the caller's passes
    /// through unchanged).
    pub otel: bool,
}

/// The speech cache's default budget, 1 GiB.
pub const DEFAULT_SPEECH_CACHE_MAX_BYTES: u64 = 1 << 30;

/// The default `GATEWAY_MAX_CONNECTIONS`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The default `GATEWAY_MAX_CONNECTIONS_PER_IP`.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;

/// What one caller, or all of them together, can make the server hold (docs/limits.md).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections at once (`--max-connections`, `GATEWAY_MAX_CONNECTIONS`); at the
    /// limit no new connection is accepted until one closes.
    pub max_connections: usize,
    /// A connection that sends no complete request head (HTTP/1), or no HTTP/2 preface and
    /// first request, for this long, or that sits idle between requests this long, is
    /// closed (`GATEWAY_HEADER_READ_TIMEOUT`).
    pub header_read_timeout: Duration,
    /// A request body that sends nothing for this long is refused with 408
    /// (`GATEWAY_BODY_READ_TIMEOUT`).
    pub body_read_timeout: Duration,
    /// A request body not complete this long after the gateway first waited for it is
    /// refused with 408, however it trickles (`GATEWAY_BODY_TOTAL_TIMEOUT`).
    pub body_total_timeout: Duration,
    /// Bytes of request bodies being buffered at once, in all
    /// (`GATEWAY_MAX_BUFFERED_BYTES`); past it, 503 `gateway_overloaded`.
    pub max_buffered_bytes: usize,
    /// The same for one user's bodies (`GATEWAY_MAX_BUFFERED_BYTES_PER_USER`).
    pub max_buffered_bytes_per_user: usize,
    /// Connections from one client address at once (`GATEWAY_MAX_CONNECTIONS_PER_IP`); past
    /// it a new connection is closed at once.
    pub max_connections_per_ip: usize,
    /// The largest request head, in bytes (431 past it).
    pub max_head_bytes: usize,
    /// The most header fields in a request head (431 past it).
    pub max_headers: usize,
    /// The most concurrent streams on one HTTP/2 connection.
    pub max_http2_streams: u32,
    /// How often an idle HTTP/2 connection is pinged, and how long a ping may go unanswered
    /// before the connection is closed.
    pub http2_keep_alive: (Duration, Duration),
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            body_total_timeout: Duration::from_secs(300),
            max_buffered_bytes: tower_openai_collect::DEFAULT_MAX_BUFFERED,
            max_buffered_bytes_per_user: tower_openai_collect::DEFAULT_MAX_BUFFERED_PER_USER,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_head_bytes: 64 * 1024,
            max_headers: 128,
            max_http2_streams: 128,
            http2_keep_alive: (Duration::from_secs(30), Duration::from_secs(20)),
        }
    }
}

/// Seconds from `name` (a positive number, fractions allowed, at most a day), or `default`.
/// The most upstream redirects followed with `AIOHTTP_CLIENT_ALLOW_REDIRECTS=true`.
pub(crate) const MAX_REDIRECTS: usize = 5;

/// `AIOHTTP_POOL_DNS_TTL`'s default (Open WebUI's).
pub(crate) const DEFAULT_DNS_TTL: Duration = Duration::from_secs(300);

fn seconds_var(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = env(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            ConfigError::new(
                name,
                format!("{v:?} is not a number of seconds between 0 and 86400"),
            )
        })
}

/// A whole number of at least 1 from `name`, or `default`.
fn at_least_one(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: usize,
) -> Result<usize, ConfigError> {
    let n = whole_var(env, name, default)?;
    if n == 0 {
        return Err(ConfigError::new(name, "must be at least 1"));
    }
    Ok(n)
}

/// `true` or `false` (any case) from `name`, or `default` when unset or empty.
fn bool_var(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: bool,
) -> Result<bool, ConfigError> {
    match env(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ConfigError::new(
            name,
            format!("{other:?} is not true or false"),
        )),
    }
}

/// A whole number from `name`, or `default`.
fn whole_var(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: usize,
) -> Result<usize, ConfigError> {
    match env(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(name, format!("{v:?} is not a whole number"))),
    }
}

/// The variables of Azure's credential chain.
/// Environment variables captured at start. They may hold secrets (a client secret, a
/// proxy password), so `Debug` shows their names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CapturedEnv(pub std::collections::BTreeMap<String, String>);

impl CapturedEnv {
    fn capture(names: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Self {
        Self(
            names
                .iter()
                .filter_map(|k| env(k).map(|v| ((*k).to_owned(), v)))
                .collect(),
        )
    }

    /// The value of `name`, if it was set.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl std::fmt::Debug for CapturedEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

const AZURE_VARS: [&str; 9] = [
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
];

impl GatewayConfig {
    /// A configuration for tests and embedding: listen on `127.0.0.1:0`, the given settings,
    /// no users (single-user mode), defaults for the rest. Persisted settings are not read
    /// (`persistent_config` is off; admin updates are still saved in `data_dir`).
    pub fn for_settings(settings: SettingsSource) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            max_body_bytes: DEFAULT_LIMIT,
            demo: false,
            allow_anonymous: false,
            persistent_config: false,
            settings,
            users: Vec::new(),
            models: Vec::new(),
            prices: Vec::new(),
            // Built in code: an identity store in memory, nothing written to disk.
            database_url: Some("sqlite::memory:".to_owned()),
            shutdown_grace: Duration::from_secs(30),
            stream_idle_timeout: None,
            max_per_host: None,
            dns_ttl: DEFAULT_DNS_TTL,
            allow_redirects: false,
            ca_bundles: Vec::new(),
            limits: Limits::default(),
            resolve: Vec::new(),
            headers: tower_openai_headers::HeadersConfig::default(),
            azure_env: Default::default(),
            proxy_env: Default::default(),
            speech_cache_max_bytes: DEFAULT_SPEECH_CACHE_MAX_BYTES,
            security: Default::default(),
            observability: Observability::default(),
            groups: GroupsConfig::default(),
            rate_limit: tower_openai_ratelimit::Limits::default(),
            redis: None,
        }
    }

    /// Load from the command line, the environment (read through `env`) and the TOML file
    /// the command line or `GATEWAY_CONFIG` names.
    pub fn load(args: &Args, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, StartError> {
        let config_path = args
            .config
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(|| {
                env("GATEWAY_CONFIG")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            });
        let file = match &config_path {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let in_file = |key: &str| match &config_path {
            Some(p) => format!("{key} in {}", p.display()),
            None => key.to_owned(),
        };

        let listen_raw = args
            .listen
            .clone()
            .filter(|v| !v.is_empty())
            .map(|v| ("--listen", v))
            .or_else(|| {
                env("GATEWAY_LISTEN")
                    .filter(|v| !v.is_empty())
                    .map(|v| ("GATEWAY_LISTEN", v))
            })
            .or_else(|| file.listen.clone().map(|v| ("listen", v)))
            .unwrap_or(("listen", DEFAULT_LISTEN.to_owned()));
        let listen: SocketAddr = listen_raw.1.parse().map_err(|_| {
            ConfigError::new(
                listen_raw.0,
                format!("{:?} is not an address like 127.0.0.1:8080", listen_raw.1),
            )
        })?;

        let data_dir = args
            .data_dir
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(|| env("DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from))
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

        let max_body_bytes = match (
            args.max_body_bytes,
            env("GATEWAY_MAX_BODY_BYTES").filter(|v| !v.is_empty()),
        ) {
            (Some(n), _) => n,
            (None, Some(v)) => v.trim().parse().map_err(|_| {
                ConfigError::new(
                    "GATEWAY_MAX_BODY_BYTES",
                    format!("{v:?} is not a whole number of bytes"),
                )
            })?,
            (None, None) => file.max_body_bytes.unwrap_or(DEFAULT_LIMIT),
        };
        if max_body_bytes == 0 {
            return Err(ConfigError::new("--max-body-bytes", "must be more than 0").into());
        }

        let speech_cache_max_bytes = match env("SPEECH_CACHE_MAX_BYTES").filter(|v| !v.is_empty()) {
            Some(v) => v.trim().parse().map_err(|_| {
                ConfigError::new(
                    "SPEECH_CACHE_MAX_BYTES",
                    format!("{v:?} is not a whole number of bytes"),
                )
            })?,
            None => file
                .speech_cache_max_bytes
                .unwrap_or(DEFAULT_SPEECH_CACHE_MAX_BYTES),
        };
        let persistent_config =
            env("ENABLE_PERSISTENT_CONFIG").is_none_or(|v| !v.eq_ignore_ascii_case("false"));

        let file_settings = file.openai.unwrap_or_default().into_source(&in_file)?;
        let settings = openwebui::settings_from_env(env)?.or(file_settings);
        let users = users_from(file.users, &in_file)?;
        let rate_limit = file.rate_limit.map(|l| l.limits()).unwrap_or_default();
        let models = models_from(file.models, &in_file)?;
        let prices = prices_from(file.prices, &in_file)?;

        Ok(Self {
            listen,
            data_dir,
            max_body_bytes,
            demo: args.demo,
            allow_anonymous: args.allow_anonymous,
            persistent_config,
            settings,
            users,
            models,
            prices,
            shutdown_grace: seconds_var(env, "GATEWAY_SHUTDOWN_GRACE", Duration::from_secs(30))?,
            stream_idle_timeout: openwebui::stream_idle_timeout(env)?,
            // 0 is aiohttp's "no limit".
            max_per_host: Some(whole_var(env, "AIOHTTP_POOL_CONNECTIONS_PER_HOST", 0)?)
                .filter(|n| *n > 0),
            dns_ttl: Duration::from_secs(whole_var(
                env,
                "AIOHTTP_POOL_DNS_TTL",
                DEFAULT_DNS_TTL.as_secs() as usize,
            )? as u64),
            allow_redirects: env("AIOHTTP_CLIENT_ALLOW_REDIRECTS")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            ca_bundles: openwebui::ca_bundles(env)?,
            limits: Limits {
                max_connections: match args.max_connections {
                    Some(n) => n,
                    None => whole_var(env, "GATEWAY_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)?,
                },
                header_read_timeout: seconds_var(
                    env,
                    "GATEWAY_HEADER_READ_TIMEOUT",
                    Duration::from_secs(30),
                )?,
                body_read_timeout: seconds_var(
                    env,
                    "GATEWAY_BODY_READ_TIMEOUT",
                    Duration::from_secs(30),
                )?,
                body_total_timeout: seconds_var(
                    env,
                    "GATEWAY_BODY_TOTAL_TIMEOUT",
                    Duration::from_secs(300),
                )?,
                max_buffered_bytes: whole_var(
                    env,
                    "GATEWAY_MAX_BUFFERED_BYTES",
                    tower_openai_collect::DEFAULT_MAX_BUFFERED,
                )?,
                max_buffered_bytes_per_user: whole_var(
                    env,
                    "GATEWAY_MAX_BUFFERED_BYTES_PER_USER",
                    tower_openai_collect::DEFAULT_MAX_BUFFERED_PER_USER,
                )?,
                max_connections_per_ip: whole_var(
                    env,
                    "GATEWAY_MAX_CONNECTIONS_PER_IP",
                    DEFAULT_MAX_CONNECTIONS_PER_IP,
                )?,
                ..Limits::default()
            },
            resolve: Vec::new(),
            headers: tower_openai_headers::HeadersConfig::from_env(env)?,
            azure_env: CapturedEnv::capture(&AZURE_VARS, env),
            proxy_env: CapturedEnv::capture(&PROXY_VARS, env),
            speech_cache_max_bytes,
            security: super::security::SecurityConfig::from_env(env)?,
            observability: Observability {
                metrics_listen: match args
                    .metrics_listen
                    .clone()
                    .map(|v| ("--metrics-listen", v))
                    .or_else(|| {
                        env("GATEWAY_METRICS_LISTEN").map(|v| ("GATEWAY_METRICS_LISTEN", v))
                    })
                    .filter(|(_, v)| !v.is_empty())
                {
                    None => None,
                    Some((name, v)) => Some(v.parse().map_err(|_| {
                        ConfigError::new(
                            name,
                            format!("{v:?} is not an address like 127.0.0.1:9090"),
                        )
                    })?),
                },
                stream_usage: bool_var(env, "GATEWAY_STREAM_USAGE", false)?,
                otel: crate::telemetry::otel_configured(env),
            },
            rate_limit,
            database_url: match env("DATABASE_URL").filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(url) => {
                    // Checked now (its text is not repeated: it may hold a password).
                    tower_openai_store::SqlStore::backend(url.trim())
                        .map_err(|e| ConfigError::new("DATABASE_URL", e.to_string()))?;
                    Some(url.trim().to_owned())
                }
            },
            redis: match env("REDIS_URL").filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(url) => {
                    // Checked now, so a bad URL stops start-up (its text is not repeated:
                    // it may hold a password).
                    redis::Client::open(url.trim()).map_err(|_| {
                        ConfigError::new(
                            "REDIS_URL",
                            "is not a Redis URL like redis://127.0.0.1:6379/0",
                        )
                    })?;
                    Some(RedisConfig {
                        url: url.trim().to_owned(),
                        prefix: env("REDIS_KEY_PREFIX")
                            .map(|p| p.trim().to_owned())
                            .filter(|p| !p.is_empty())
                            .unwrap_or_else(|| "openai-gateway".to_owned()),
                    })
                }
            },
            groups: GroupsConfig {
                enabled: bool_var(env, "GATEWAY_MODEL_GROUPS", false)?,
                policy: tower_openai_group::GroupPolicy {
                    max_attempts: at_least_one(env, "GATEWAY_MAX_ATTEMPTS", 3)?,
                    cooldown_failures: u32::try_from(at_least_one(
                        env,
                        "GATEWAY_COOLDOWN_FAILURES",
                        3,
                    )?)
                    .unwrap_or(u32::MAX),
                    cooldown: seconds_var(
                        env,
                        "GATEWAY_COOLDOWN_SECONDS",
                        Duration::from_secs(30),
                    )?,
                    ..tower_openai_group::GroupPolicy::default()
                },
            },
        })
    }

    /// Refuse values no deployment means: a limit of no connections.
    pub(crate) fn check_limits(&self) -> Result<(), StartError> {
        for (name, value) in [
            ("GATEWAY_MAX_CONNECTIONS", self.limits.max_connections),
            (
                "GATEWAY_MAX_CONNECTIONS_PER_IP",
                self.limits.max_connections_per_ip,
            ),
            ("GATEWAY_MAX_BUFFERED_BYTES", self.limits.max_buffered_bytes),
            (
                "GATEWAY_MAX_BUFFERED_BYTES_PER_USER",
                self.limits.max_buffered_bytes_per_user,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(name, "must be at least 1").into());
            }
        }
        Ok(())
    }

    /// Single-user mode as far as the file and environment say: no `[[users]]` (the identity
    /// store may still have users).
    pub fn single_user(&self) -> bool {
        self.users.is_empty()
    }

    /// Refuse single-user mode (no user in the identity store) on a non-loopback address
    /// unless `--allow-anonymous`.
    pub fn check_exposure(&self, single_user: bool) -> Result<(), StartError> {
        if single_user && !self.listen.ip().is_loopback() && !self.allow_anonymous {
            return Err(StartError::Other(format!(
                "refusing to serve {} without callers: with no [[users]] every caller is an admin. \
                 Add [[users]] with API keys to the config file, listen on a loopback address, \
                 or pass --allow-anonymous",
                self.listen
            )));
        }
        Ok(())
    }
}
