//! Admin routes (Open WebUI rules: docs/rules.md): `GET /openai/config`, `POST /openai/config/update`,
//! `POST /openai/verify`, `GET /openai/status` and `GET /metrics`, on axum: one handler a
//! route, bodies read as typed values ([`AdminJson`]) under the cap and the body deadlines.

use std::sync::Arc;

use axum::extract::{FromRequest, State};
use axum::routing::{get, post};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;
use tower::ServiceExt;
use tower_openai_auth::AuthType;
use tower_openai_core::{Body, BoxBody, ErrorResponse, RequestTimeout, SelectedConnection};
use tower_openai_group::Groups;
use tower_openai_models::Catalog;
use tower_openai_settings::{Settings, SettingsHandle, SettingsSnapshot};
use tower_openai_time::BodyTimedOut;
use tower_openai_util::body::{ReadError, read_capped};

use super::persist::{ConfigStore, Persisted};
use super::stack::BoxedLower as Lower;

/// The longest a connection check waits for the upstream's answer.
const VERIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The most a connection check reads of the upstream's answer.
const VERIFY_MAX_BYTES: usize = 1 << 20;

/// A connection check's answer, read up to [`VERIFY_MAX_BYTES`]: past it, a 502 saying so.
async fn read_verify_answer(body: BoxBody) -> Result<Bytes, ErrorResponse> {
    read_capped(body, VERIFY_MAX_BYTES)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge(_) => ErrorResponse::bad_gateway(format!(
                "The connection's answer is larger than {} MiB",
                VERIFY_MAX_BYTES >> 20
            ))
            .with_code("upstream_error"),
            ReadError::Body(e) => ErrorResponse::from_error(&*e),
        })
}

/// A connection check that would mint a token (Entra ID, system OAuth) is allowed only for
/// a configured connection's URL: a token for any other URL would go to whoever runs it.
fn check_token_url(current: &Settings, url: &str, config: &Value) -> Result<(), ErrorResponse> {
    let mints_tokens = config
        .get("auth_type")
        .and_then(Value::as_str)
        .and_then(AuthType::parse)
        .is_some_and(|a| a.is_entra_id() || a == AuthType::SystemOauth);
    if mints_tokens && !current.base_urls().iter().any(|u| same_url(u, url)) {
        return Err(ErrorResponse::bad_request(
            "Tokens are minted only for a configured connection's URL: add the connection \
             first, or check it with a key",
        )
        .with_code("invalid_value"));
    }
    Ok(())
}

/// Whether two base URLs name the same place (a trailing `/` aside).
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdminRoute {
    Config,
    Update,
    Verify,
    Status,
    Metrics,
    /// `/admin/…`: the identity store.
    Identity,
}

impl AdminRoute {
    pub(crate) fn of(path: &str) -> Option<Self> {
        match path {
            "/openai/config" => Some(Self::Config),
            "/openai/config/update" => Some(Self::Update),
            "/openai/verify" => Some(Self::Verify),
            "/openai/status" => Some(Self::Status),
            "/metrics" => Some(Self::Metrics),
            _ if path.starts_with("/admin/") || path == "/admin" => Some(Self::Identity),
            _ => None,
        }
    }

    fn method(self) -> Method {
        match self {
            Self::Config | Self::Status | Self::Metrics | Self::Identity => Method::GET,
            Self::Update | Self::Verify => Method::POST,
        }
    }
}

/// What the admin routes act on.
#[derive(Clone, Debug)]
pub(crate) struct Admin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: SettingsHandle,
    catalog: Catalog,
    groups: Groups,
    /// With `REDIS_URL`: updates go through Redis first, to every process.
    shared: Option<crate::shared::SharedRedis>,
    lower: Lower,
    store: ConfigStore,
    max_body: usize,
    /// Updates are applied one at a time: validate, persist, swap.
    updating: Mutex<()>,
    /// Users, groups, keys and model access records (`DATABASE_URL`).
    identity: Option<crate::directory::Identity>,
}

fn boxed(res: Response<Full<Bytes>>) -> Response<BoxBody> {
    res.map(|b| b.map_err(|never| match never {}).boxed_unsync())
}

fn json_response(status: StatusCode, value: &Value) -> Response<BoxBody> {
    json_body(status, value)
}

/// `value` as a JSON answer.
pub(crate) fn json_body<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
) -> Response<BoxBody> {
    let text = serde_json::to_vec(value).unwrap_or_default();
    let mut res = Response::new(Full::new(Bytes::from(text)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    boxed(res)
}

pub(crate) fn error(e: ErrorResponse) -> Response<BoxBody> {
    boxed(e.into_response())
}

/// CFG-1: the four fields, keys in plain text (to admins only, never logged).
fn config_json(settings: &Settings) -> Value {
    json!({
        "ENABLE_OPENAI_API": settings.enable(),
        "OPENAI_API_BASE_URLS": settings.base_urls(),
        "OPENAI_API_KEYS": settings.keys().iter().map(|k| k.expose()).collect::<Vec<_>>(),
        "OPENAI_API_CONFIGS": settings.configs(),
    })
}

/// An admin body: JSON read under the cap and the body deadlines, as `T`. Malformed JSON is
/// 400 `invalid_json`; JSON that is not a `T` (a member missing or of the wrong type) is 400
/// `invalid_value`, its message naming the member.
pub(crate) async fn read_body<T, B>(body: B, max: usize) -> Result<T, ErrorResponse>
where
    T: serde::de::DeserializeOwned,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower_openai_core::BoxError>,
{
    let out = match read_capped(body, max).await {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge(_)) => return Err(ErrorResponse::payload_too_large(max)),
        Err(ReadError::Body(e)) => {
            return Err(
                match tower_openai_core::error::find_cause::<BodyTimedOut>(&*e) {
                    // The server's body deadlines hold here too: a stalled update is 408.
                    Some(timed_out) => ErrorResponse::from(timed_out),
                    None => ErrorResponse::bad_request("Could not read the request body")
                        .with_code("invalid_body"),
                },
            );
        }
    };
    // The member limit first: indexing is bounded, building a map of a million members is
    // not.
    tower_openai_core::Payload::new(out.clone())
        .check()
        .map_err(|e| e.to_response())?;
    let mut json = serde_json::Deserializer::from_slice(&out);
    serde_path_to_error::deserialize::<_, T>(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let e = e.into_inner();
        match e.classify() {
            serde_json::error::Category::Data if path != "." => {
                ErrorResponse::bad_request(format!("{path}: {e}")).with_code("invalid_value")
            }
            serde_json::error::Category::Data => {
                ErrorResponse::bad_request(format!("The request body is not accepted: {e}"))
                    .with_code("invalid_value")
            }
            _ => ErrorResponse::bad_request(format!("The request body is not valid JSON: {e}"))
                .with_code("invalid_json"),
        }
    })
}

/// An admin request's JSON body as `T`, read by [`read_body`]; a refusal is the OpenAI-shaped
/// error it names.
struct AdminJson<T>(T);

impl<T> FromRequest<Admin> for AdminJson<T>
where
    T: serde::de::DeserializeOwned,
{
    type Rejection = Response<BoxBody>;

    async fn from_request(
        req: axum::extract::Request,
        admin: &Admin,
    ) -> Result<Self, Self::Rejection> {
        read_body(req.into_body(), admin.inner.max_body)
            .await
            .map(AdminJson)
            .map_err(error)
    }
}

/// `GET /openai/config` (CFG-1).
async fn config(State(admin): State<Admin>) -> Response<BoxBody> {
    json_response(StatusCode::OK, &config_json(&admin.inner.settings.load()))
}

/// `POST /openai/config/update` (CFG-2 … CFG-5).
async fn update(
    State(admin): State<Admin>,
    axum::Extension(actor): axum::Extension<tower_openai_core::User>,
    AdminJson(form): AdminJson<ConfigUpdate>,
) -> Response<BoxBody> {
    admin.update(&actor.id, form).await
}

/// `POST /openai/verify` (VF-1 … VF-4).
async fn verify(
    State(admin): State<Admin>,
    AdminJson(form): AdminJson<VerifyForm>,
) -> Response<BoxBody> {
    admin.verify(form).await
}

/// `GET /openai/status`.
async fn status(State(admin): State<Admin>) -> Response<BoxBody> {
    admin.status().await
}

/// `GET /metrics` (on the API listener, for admins).
async fn metrics(State(admin): State<Admin>) -> Response<BoxBody> {
    admin.metrics().await
}

/// A known admin path with another method.
async fn method_not_allowed(uri: http::Uri) -> Response<BoxBody> {
    let message = match AdminRoute::of(uri.path()) {
        Some(AdminRoute::Identity) | None => "This method is not allowed here".to_owned(),
        Some(route) => format!("Use {} here", route.method()),
    };
    error(
        ErrorResponse::new(StatusCode::METHOD_NOT_ALLOWED, message).with_code("method_not_allowed"),
    )
}

/// An admin path that is not a route.
async fn unknown_route(uri: http::Uri) -> Response<BoxBody> {
    error(
        ErrorResponse::not_found(format!("Unknown admin path {:?}", uri.path()))
            .with_code("unknown_url"),
    )
}

/// `POST /openai/config/update` (CFG-2), Open WebUI's form: members it does not know are
/// ignored, as Open WebUI's form ignores them.
#[derive(Debug, serde::Deserialize)]
struct ConfigUpdate {
    /// Absent or `null`: the current value (Open WebUI would store `null`, disabling it).
    #[serde(rename = "ENABLE_OPENAI_API", default)]
    enable: Option<bool>,
    #[serde(rename = "OPENAI_API_BASE_URLS")]
    base_urls: Vec<String>,
    #[serde(rename = "OPENAI_API_KEYS")]
    keys: Vec<String>,
    #[serde(rename = "OPENAI_API_CONFIGS")]
    configs: Map<String, Value>,
}

/// `POST /openai/verify` (VF-1): a connection to check.
#[derive(Debug, serde::Deserialize)]
struct VerifyForm {
    url: String,
    key: String,
    #[serde(default)]
    config: Option<Map<String, Value>>,
}

impl Admin {
    // What the admin routes act on, each its own piece of the gateway.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        settings: SettingsHandle,
        catalog: Catalog,
        groups: Groups,
        shared: Option<crate::shared::SharedRedis>,
        lower: Lower,
        store: ConfigStore,
        max_body: usize,
        identity: Option<crate::directory::Identity>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                catalog,
                groups,
                shared,
                lower,
                store,
                max_body,
                updating: Mutex::new(()),
                identity,
            }),
        }
    }

    /// The admin routes as an axum router: one handler a route, typed bodies through
    /// [`AdminJson`], a wrong method answered 405 in the OpenAI error shape. Who may call
    /// them (admins, JSON posts from allowed origins) is the edge router's check, made before
    /// a request gets here.
    pub(crate) fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/openai/config", get(config))
            .route("/openai/config/update", post(update))
            .route("/openai/verify", post(verify))
            .route("/openai/status", get(status))
            .route("/metrics", get(metrics))
            .merge(crate::directory::routes())
            .method_not_allowed_fallback(method_not_allowed)
            .fallback(unknown_route)
            .with_state(self.clone())
    }

    /// The admin bodies' size cap.
    pub(crate) fn max_body(&self) -> usize {
        self.inner.max_body
    }

    /// The identity store, when there is one.
    pub(crate) fn identity(&self) -> Option<&crate::directory::Identity> {
        self.inner.identity.as_ref()
    }

    /// CFG-2 … CFG-5, validated before anything changes.
    async fn update(&self, actor: &str, form: ConfigUpdate) -> Response<BoxBody> {
        let _one_at_a_time = self.inner.updating.lock().await;
        let current = self.inner.settings.load();
        // CFG-4: only configs keyed "0".."n-1" survive; no re-indexing.
        let n = form.base_urls.len();
        let configs: Map<String, Value> = form
            .configs
            .into_iter()
            .filter(|(k, _)| {
                k.parse::<usize>()
                    .is_ok_and(|i| i < n && i.to_string() == *k)
            })
            .collect();
        let mut persisted = Persisted {
            enable: form.enable.unwrap_or_else(|| current.enable()),
            base_urls: form.base_urls,
            keys: form.keys,
            configs,
        };
        let settings = match crate::stack::settings(persisted.apply(current.to_source())) {
            Ok(s) => s,
            Err(e) => {
                return error(ErrorResponse::bad_request(e.to_string()).with_code("invalid_value"));
            }
        };
        // C-5: the keys as they are used (padded or truncated) are what is stored.
        persisted.keys = settings
            .keys()
            .iter()
            .map(|k| k.expose().to_owned())
            .collect();
        // Several processes: Redis first, so that replicas never diverge; unreachable,
        // nothing changes anywhere.
        if let Some(shared) = &self.inner.shared {
            match shared.publish(&persisted).await {
                Ok(version) => shared.set_applied(version),
                Err(e) => {
                    tracing::warn!(error = %e, "settings update refused: the shared store is unavailable");
                    return error(
                        ErrorResponse::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "The shared settings store (Redis) is unavailable; nothing was changed",
                        )
                        .with_code("settings_store_unavailable"),
                    );
                }
            }
        }
        if let Err(e) = self.inner.store.save_off_runtime(persisted.clone()).await {
            tracing::error!(error = %e, path = %self.inner.store.path().display(), "could not persist the settings");
            return error(ErrorResponse::internal(
                "The settings could not be saved; nothing was changed",
            ));
        }
        self.inner.settings.store(settings);
        self.inner.catalog.invalidate();
        let now = self.inner.settings.load();
        tracing::info!(
            connections = now.connections().len(),
            enable = now.enable(),
            "settings updated by an admin"
        );
        // In the audit log with the store's own writes (the settings live elsewhere, so a
        // store that is down does not undo them: the failure is logged).
        if let Some(identity) = &self.inner.identity
            && let Err(e) = identity
                .store
                .record(actor, "config.update", "openai")
                .await
        {
            tracing::warn!(error = %e, "the settings update could not be written to the audit log");
        }
        json_response(StatusCode::OK, &config_json(&now))
    }

    /// Apply shared settings another process published (version `version`): the same
    /// validation and swap as a local update, and the local file, so a restart without Redis
    /// starts from them.
    pub(crate) async fn apply_shared(&self, version: crate::shared::Version, persisted: Persisted) {
        let _one_at_a_time = self.inner.updating.lock().await;
        let Some(shared) = &self.inner.shared else {
            return;
        };
        if version == shared.applied() {
            return;
        }
        let current = self.inner.settings.load();
        let settings = match crate::stack::settings(persisted.apply(current.to_source())) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%version, error = %e, "the shared settings are not valid here; kept the current ones");
                shared.set_applied(version);
                return;
            }
        };
        if let Err(e) = self.inner.store.save_off_runtime(persisted).await {
            tracing::warn!(error = %e, "could not persist the shared settings locally");
        }
        self.inner.settings.store(settings);
        self.inner.catalog.invalidate();
        tracing::info!(%version, "settings updated from the shared store");
        shared.set_applied(version);
    }

    /// `GET /metrics`: Prometheus text, or 404 when the process's recorder is not ours.
    pub(crate) async fn metrics(&self) -> Response<BoxBody> {
        let Some(handle) = crate::metrics::prometheus() else {
            return error(
                ErrorResponse::not_found("This process exports its metrics elsewhere")
                    .with_code("unknown_url"),
            );
        };
        let settings = self.inner.settings.load();
        let text = crate::metrics::render(&handle, &self.inner.catalog, &settings).await;
        let mut res = Response::new(Full::new(Bytes::from(text)));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        boxed(res)
    }

    /// `GET /openai/status`: each connection's health, with the upstream's own reason when
    /// its model list cannot be had (a wrong key reads as a wrong key).
    async fn status(&self) -> Response<BoxBody> {
        let settings = self.inner.settings.load();
        let connections: Vec<Value> = self
            .inner
            .catalog
            .health(&settings)
            .await
            .into_iter()
            .map(|h| {
                let cooldown_until = settings
                    .connection(h.index)
                    .and_then(|c| self.inner.groups.cooldown_until(c))
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
                let last_fetch = h.last_fetch.map(|(at, result)| match result {
                    Ok(_) => json!({"at": at, "ok": true, "error": null}),
                    Err(error) => json!({"at": at, "ok": false, "error": error}),
                });
                json!({
                    "idx": h.index,
                    "url": h.url,
                    "enabled": h.enabled,
                    "up": h.up,
                    "models": h.models,
                    "last_fetch": last_fetch,
                    // Seconds since the Unix epoch; null when not cooling down.
                    "cooldown_until": cooldown_until,
                })
            })
            .collect();
        json_response(StatusCode::OK, &json!({ "connections": connections }))
    }

    /// V-1 … V-5: check a connection without saving anything.
    async fn verify(&self, form: VerifyForm) -> Response<BoxBody> {
        let VerifyForm { url, key, config } = form;
        let config = Value::Object(config.unwrap_or_default());
        if let Err(e) = check_token_url(&self.inner.settings.load(), &url, &config) {
            return error(e);
        }
        let mut source = self.inner.settings.load().to_source();
        source.base_urls = Some(vec![url]);
        source.keys = Some(vec![tower_openai_settings::ApiKey::new(key)]);
        source.configs = Some(Map::from_iter([("0".to_owned(), config)]));
        source.enable = Some(true);
        let settings = match crate::stack::settings(source) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                return error(ErrorResponse::bad_request(e.to_string()).with_code("invalid_value"));
            }
        };
        let Some(connection) = settings.connection(0).cloned() else {
            return error(ErrorResponse::internal("no connection to check"));
        };
        // The connection's list timeout, and never more than the check's own cap.
        let timeout = Some(
            connection
                .timeout_model_list()
                .map_or(VERIFY_TIMEOUT, |t| t.min(VERIFY_TIMEOUT)),
        );
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = http::Uri::from_static("/models");
        req.extensions_mut()
            .insert(SettingsSnapshot(settings.clone()));
        req.extensions_mut().insert(SelectedConnection(connection));
        req.extensions_mut().insert(RequestTimeout(timeout));
        let lower = self.inner.lower.clone();
        let exchange = async move {
            let res = lower.oneshot(req).await?;
            let (parts, body) = res.into_parts();
            Ok::<_, tower_openai_core::BoxError>(read_verify_answer(body).await.map(|b| (parts, b)))
        };
        let result = match timeout {
            Some(limit) => match tokio::time::timeout(limit, exchange).await {
                Ok(r) => r,
                // The same answer as the upstream's own timeout, which races this one
                // (both run out at `limit`): which of them fires first must not change it.
                Err(_) => {
                    return error(
                        ErrorResponse::gateway_timeout(format!(
                            "The connection did not answer within {} s",
                            limit.as_secs_f64()
                        ))
                        .with_code("upstream_timeout"),
                    );
                }
            },
            None => exchange.await,
        };
        match result {
            Err(e) => error(ErrorResponse::from_error(&*e)),
            Ok(Err(refused)) => error(refused),
            Ok(Ok((parts, bytes))) => {
                // V-5: the upstream's status and body, as they are.
                let mut res = Response::new(Full::new(bytes));
                *res.status_mut() = parts.status;
                if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                    res.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
                }
                boxed(res)
            }
        }
    }
}
