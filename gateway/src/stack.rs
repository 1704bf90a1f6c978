//! The one function that assembles the gateway's stack.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, header};
use http_body_util::BodyExt;
use tower::util::{BoxCloneSyncService, Either};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tower_openai::endpoint::Endpoint;
use tower_openai_acl::AclLayer;
use tower_openai_anthropic::{AnthropicErrorsLayer, AnthropicLayer};
use tower_openai_auth::AuthLayer;
use tower_openai_collect::CollectPayloadLayer;
use tower_openai_core::{Body, BoxBody, BoxError, ErrorResponse, RequestTimeout};
use tower_openai_headers::HeadersConfig;
use tower_openai_identity::IdentifyLayer;
use tower_openai_models::ModelsLayer;
use tower_openai_observe::{ObserveLayer, UsageLayer};
use tower_openai_policy::PolicyLayer;
use tower_openai_ratelimit::RateLimitLayer;
use tower_openai_reasoning::ReasoningLayer;
use tower_openai_rescue::RescueLayer;
use tower_openai_responses::ResponsesLayer;
use tower_openai_select::SelectLayer;
use tower_openai_settings::LoadSettingsLayer;
use tower_openai_speech_cache::SpeechCacheLayer;
use tower_openai_upstream::Upstream;
use tracing::Level;

use super::Gateway;
use super::router::Router;
use super::security::CorsOrigins;
use super::telemetry::{self, REQUEST_SPAN_TARGET};
use tower_openai_settings::{ConfigError, Settings, SettingsSource};

/// Settings from `source`, with every stacked layer's section of each connection's config
/// checked (auth's `auth_type` and `entra_scope`, azure's `api_version`, the headers layer's
/// `headers`, group's `weight` and `priority`): a config the layers cannot use is refused when
/// it is loaded or updated, naming the member, never met by a request.
pub(crate) fn settings(source: SettingsSource) -> Result<Settings, ConfigError> {
    let settings = source.build()?;
    settings.check::<tower_openai_auth::AuthOptions>()?;
    settings.check::<tower_openai_azure::AzureOptions>()?;
    settings.check::<tower_openai_headers::ConnectionHeaders>()?;
    settings.check::<tower_openai_group::GroupOptions>()?;
    settings.check::<tower_openai_responses::ResponsesOptions>()?;
    Ok(settings)
}

/// The gateway as one type-erased service: what hyper serves and what tests drive.
pub type App = BoxCloneSyncService<Request<Body>, Response<BoxBody>, Infallible>;

/// The part of the stack that acts on a selected connection: the library's endpoint stack
/// (azure → auth → headers → upstream). The catalog fetches `GET /models` through it too,
/// so model discovery uses each connection's full auth and headers (Open WebUI sends only
/// the bearer key).
///
/// A concrete type, not boxed: the API stack clones it on every request, and its clone is a
/// few reference-count bumps.
pub(crate) type Lower = Endpoint;

/// The same, boxed, for the admin routes.
pub(crate) type BoxedLower = BoxCloneSyncService<Request<Body>, Response<BoxBody>, BoxError>;

/// The stack below select, built once and shared by the API stack and the catalog.
pub(crate) fn lower(upstream: Upstream, auth: AuthLayer, headers: HeadersConfig) -> Lower {
    Endpoint::builder(upstream)
        .auth(auth)
        .headers(headers)
        .build()
}

/// [`lower`], boxed.
pub(crate) fn boxed_lower(lower: Lower) -> BoxedLower {
    BoxCloneSyncService::new(ServiceExt::<Request<Body>>::map_response(lower, |res| {
        res.map(box_body)
    }))
}

/// Build the gateway's service.
///
/// In a `ServiceBuilder`, the first layer added is the outermost: a request walks the layers
/// top to bottom, the response walks back up.
pub(crate) fn app(gateway: &Gateway) -> App {
    BoxCloneSyncService::new(service(gateway).map_response(|res| res.map(box_body)))
}

/// The stack as a concrete type (what the server runs: no boxed clone per request), in the
/// order a request walks it: the edge, the API, the endpoint. In a `ServiceBuilder` the first
/// layer added is the outermost. Its response body is boxed once, by the catch-panic layer:
/// the router and the trace layer's choice pass the bodies below them on as enums.
pub(crate) fn service(
    gateway: &Gateway,
) -> impl Service<
    Request<Body>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let security = Arc::new(gateway.config.security.clone());

    // 1. The edge, above the request span.
    let edge = ServiceBuilder::new()
        // Mark credentials sensitive before tracing (or anything else) sees the request.
        .map_request({
            let key_header = gateway.config.security.api_key_header.clone();
            move |req| mark_sensitive(req, &key_header)
        })
        // A caller's `x-request-id` is kept when it is short, visible ASCII; otherwise (or
        // when there is none) the gateway makes one. It goes upstream with the request and
        // back on every answer, the gateway's own errors and preflights included.
        .map_request(drop_unusable_request_id)
        .layer(SetRequestIdLayer::x_request_id(NextRequestId))
        .layer(PropagateRequestIdLayer::x_request_id());

    // 2. One span per request (method, route, status, latency; never headers or the query
    //    string), only when the subscriber records it: see `traced`.

    // 3. The guard: who is calling, the access line, CORS, and the router.
    let cors = cors_layer(&gateway.config.security.cors_origins);
    let guard = ServiceBuilder::new()
        // Who is calling (or the answer owed to a caller who cannot be identified), before
        // anything reports the request: the access line names the caller of every request.
        // (In single-user mode, a request from a host or origin that is not allowed is owed a
        // 403 instead.)
        .map_request({
            let (callers, security) = (gateway.callers.clone(), security.clone());
            move |req| super::identity::guard_single_user(&callers, &security, req)
        })
        .layer(
            IdentifyLayer::new(gateway.callers.clone())
                .key_header(gateway.config.security.api_key_header.clone()),
        )
        // One access line and the metrics per request, when its body ends; below the request
        // id (it logs it) and inside the trace span.
        .layer(ObserveLayer::new().ledger(gateway.spend.clone()))
        // Browsers: a preflight is answered here (it carries no key, and the identity step
        // only marks an unknown caller; the router refuses one); without
        // GATEWAY_CORS_ORIGINS no CORS header is ever sent.
        .option_layer(cors)
        // Every error answer of an Anthropic request (`/v1/messages`, its count_tokens) in
        // Anthropic's shape, whoever refused it: identity, policy, limits, access, upstream.
        .layer(AnthropicErrorsLayer::new().prefix("/openai"))
        // A bug below must cost one request a 500, not the connection.
        .layer(CatchPanicLayer::custom(|_| {
            ErrorResponse::internal("The gateway hit an internal error").into_response()
        }))
        // `/healthz`, the admin routes (admins only), and the API under `/v1` and `/openai`
        // with the prefix stripped; an unidentified caller is refused here.
        .layer(tower::layer::layer_fn({
            let (admin, security) = (gateway.admin.router(), security.clone());
            move |api| Router::new(api, admin.clone(), security.clone())
        }));

    // 4. The API: one request of the OpenAI API, from its route to its connection.
    let api = ServiceBuilder::new()
        // Transport failures from below (connect, timeout) become 502/504 JSON here; above
        // this point everything is a response.
        .layer(RescueLayer::new())
        // Model route or passthrough, before anything reads the body: odd paths are refused
        // here, the passthrough is refused unless turned on, and the collector below learns
        // which bodies it must read whole.
        .layer(PolicyLayer::new().passthrough(gateway.config.security.passthrough))
        // Requests and tokens per user and minute: after the policy (only model routes are
        // limited), before the body is read (a refusal costs no read).
        .layer(RateLimitLayer::new(gateway.limits.store.clone(), {
            let limits = gateway.limits.clone();
            move |ext: &http::Extensions| limits.of(ext)
        }))
        // One settings snapshot per request, before anything reads settings, so an update
        // in flight never mixes old and new values.
        .layer(LoadSettingsLayer::new(gateway.settings.clone()))
        // Read the JSON body once, under the cap and the buffer budget, before any layer
        // needs the model. (Its deadlines are the server's, set on every body at the edge.)
        .layer(
            CollectPayloadLayer::new(gateway.config.max_body_bytes)
                .read_timeout(None)
                .total_timeout(None)
                .budget(gateway.buffers.clone()),
        )
        // AIOHTTP_CLIENT_STREAM_IDLE_TIMEOUT: a streamed request's own idle-read timeout.
        .option_layer(gateway.config.stream_idle_timeout.map(|timeout| {
            tower::util::MapRequestLayer::new(move |req| stream_idle_timeout(req, timeout))
        }))
        // Who may use which model: after the payload (it reads the model), before the list
        // (it hands models its per-user filter) and before routing (a refused model costs
        // no catalog look-up).
        .layer(AclLayer::new(gateway.callers.directory().clone()))
        // `GET /models` answered from the shared catalog, above select: listing needs no
        // connection, and a list request never reaches an upstream here.
        .layer(ModelsLayer::new(gateway.catalog.clone()))
        // Model → connection (prefix stripped); no model → connection 0. Everything below
        // acts on the selected connection.
        .layer(SelectLayer::new(gateway.catalog.clone()))
        // A grouped model (GATEWAY_MODEL_GROUPS): each attempt's connection, balanced by
        // weight and load, failed over before the head, cooled down. Everything below runs
        // once per attempt, for that connection.
        .layer(gateway.groups.layer())
        // Anthropic's Messages API: sent as it is to an Anthropic connection, translated to
        // Chat Completions for any other (count_tokens answered here): below select and the
        // group (each attempt's connection decides), above usage (which reads the chat
        // answer) and the per-connection layers (which see a chat request).
        .layer(AnthropicLayer::new())
        // Token usage from answers and streams into the response's UsageReport (and, with
        // GATEWAY_STREAM_USAGE, usage asked of every streamed chat): below select and the
        // group, where the connection and the routed model are known.
        .layer(
            UsageLayer::new()
                .ask_streams(gateway.config.observability.stream_usage)
                // The answer's model is reported in traces only.
                .response_model(gateway.config.observability.otel)
                // Each answer priced by the model the caller named (`[[prices]]`).
                .prices(gateway.callers.directory().clone()),
        )
        // Text-to-speech answered from disk: below select and acl (the model is known and
        // allowed), above everything that costs work per request (a hit fetches no token).
        .layer(SpeechCacheLayer::new(gateway.speech.clone()))
        // Reasoning-model rewrites need the outgoing (stripped) model and the connection's
        // URL, so below select; above azure, which uses its decision.
        .layer(ReasoningLayer::new())
        // A chat routed to an `api_type: "responses"` connection goes out as a Responses
        // request and comes back as Chat Completions: below the payload's last edit
        // (reasoning), below usage (which reads the converted answer), above azure.
        .layer(ResponsesLayer::new());

    // 5. The endpoint: azure → auth → headers → upstream, for the selected connection
    //    (`lower`, shared with the catalog's model-list fetches).
    let endpoint = gateway.lower.clone();

    edge.service(traced(
        guard.service(api.service(endpoint)),
        gateway.config.observability.otel,
    ))
}

/// `inner` in one span per request when the subscriber records request spans
/// (`RUST_LOG=info`, or OpenTelemetry export); otherwise `inner` alone. (Unrecorded, the trace
/// layer would still read the clock at the start, at the response and twice per body frame.)
fn traced<S, B>(
    inner: S,
    otel: bool,
) -> impl Service<
    Request<Body>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static,
{
    if !request_tracing_enabled() {
        return Either::Right(
            inner.map_response(|res: Response<B>| res.map(http_body_util::Either::Right)),
        );
    }
    Either::Left(
        ServiceBuilder::new()
            .layer(
                TraceLayer::new_for_http()
                    // The path, never the query string (it can carry tokens or
                    // personal data), and the request id.
                    .make_span_with(move |req: &Request<Body>| {
                        let id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        // The semantic-convention fields are recorded by the observe
                        // layer when the body ends.
                        // Values a caller chose are recorded as strings (escaped
                        // when printed), the path cut to 256 bytes; the span's name is
                        // the method and the route, never the caller's path (a span
                        // name must be of low cardinality).
                        let span = tracing::info_span!(
                            target: REQUEST_SPAN_TARGET,
                            "request",
                            method = req.method().as_str(),
                            path = tower_openai_observe::logged_path(req.uri().path()),
                            request_id = id,
                            otel.kind = "server",
                            otel.name = span_name(req.method(), req.uri().path()),
                            otel.status_code = tracing::field::Empty,
                            gen_ai.operation.name = tracing::field::Empty,
                            gen_ai.request.model = tracing::field::Empty,
                            gen_ai.response.model = tracing::field::Empty,
                            gen_ai.usage.input_tokens = tracing::field::Empty,
                            gen_ai.usage.output_tokens = tracing::field::Empty,
                            server.address = tracing::field::Empty,
                            http.response.status_code = tracing::field::Empty,
                            outcome = tracing::field::Empty,
                        );
                        if otel {
                            telemetry::continue_trace(&span, req.headers());
                        }
                        span
                    })
                    // The access line (the observe layer) is the one line per request,
                    // written when the body ends; a failure is logged once, where it
                    // happens (the rescue step, the upstream body).
                    .on_response(())
                    .on_failure(()),
            )
            // Inside the span: the upstream is sent the gateway's trace context.
            .map_request(move |mut req: Request<Body>| {
                if otel {
                    telemetry::propagate_trace(req.headers_mut());
                }
                req
            })
            .service(inner)
            .map_response(|res| res.map(http_body_util::Either::Left)),
    )
}

/// A request with `"stream": true` (and no timeout of its own) waits at most `timeout` for
/// the upstream's head and between its body reads.
fn stream_idle_timeout(mut req: Request<Body>, timeout: std::time::Duration) -> Request<Body> {
    let streamed = req
        .extensions()
        .get::<tower_openai_core::Payload>()
        .is_some_and(|p| matches!(p.get::<bool>("stream"), Ok(Some(true))));
    if streamed && req.extensions().get::<RequestTimeout>().is_none() {
        req.extensions_mut().insert(RequestTimeout(Some(timeout)));
    }
    req
}

/// Mark the credentials a request carries sensitive (never shown by `Debug`, so never
/// logged), in one pass over its headers. (tower-http's `SetSensitiveRequestHeadersLayer`
/// looks each of the five names up in turn: five hash look-ups per request, most of them
/// for headers the request does not carry.)
fn mark_sensitive<B>(mut req: Request<B>, key_header: &HeaderName) -> Request<B> {
    for (name, value) in req.headers_mut().iter_mut() {
        if matches!(
            name.as_str(),
            "authorization" | "cookie" | "proxy-authorization" | "api-key" | "x-api-key"
        ) || name == key_header
        {
            value.set_sensitive(true);
        }
    }
    req
}

/// A request span's name: the method and the route (`POST chat/completions`, `GET models`,
/// `POST passthrough`, `GET /healthz`, `GET other`).
fn span_name(method: &Method, path: &str) -> String {
    let route = match super::router::strip_prefix(path) {
        Some(rest) => {
            tower_openai_policy::classify(method, if rest.is_empty() { "/" } else { rest })
                .map_or("passthrough", |r| r.as_str())
        }
        None if path == "/healthz" => "/healthz",
        None => match super::admin::AdminRoute::of(path) {
            Some(_) => "admin",
            None => "other",
        },
    };
    format!("{method} {route}")
}

/// Makes request ids: 128 random bits per thread, then a count, as 32 hex digits. Unique
/// without a shared counter (no cache line bounced between cores) and without a random
/// number read from the kernel per request.
#[derive(Clone, Copy, Debug)]
struct NextRequestId;

impl MakeRequestId for NextRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        use std::cell::Cell;
        use std::hash::{BuildHasher, Hasher};
        thread_local! {
            static NEXT: Cell<(u64, u64)> = Cell::new({
                // std seeds each RandomState from the OS's randomness.
                let mut h = std::hash::RandomState::new().build_hasher();
                h.write_u64(0);
                let high = h.finish();
                let mut h = std::hash::RandomState::new().build_hasher();
                h.write_u64(1);
                (high, h.finish())
            });
        }
        let (high, low) = NEXT.with(|n| {
            let (high, low) = n.get();
            n.set((high, low.wrapping_add(1)));
            (high, low)
        });
        // Hex digits written in place: no formatting machinery on the request path.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; 32];
        for (i, digit) in id.iter_mut().enumerate() {
            let word = if i < 16 { high } else { low };
            let shift = 60 - 4 * (i % 16);
            *digit = HEX[((word >> shift) & 0xf) as usize];
        }
        // Shared from the start: the id is cloned into the request's header, its extensions
        // and the answer's header, and bytes copied into a plain buffer would be moved into
        // a shared one (another allocation) at the first clone.
        HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
            .ok()
            .map(RequestId::new)
    }
}

/// Remove an `x-request-id` the gateway will not repeat: longer than 128 bytes, or not
/// visible ASCII (it ends up in logs and in upstream requests).
fn drop_unusable_request_id<B>(mut req: Request<B>) -> Request<B> {
    let usable = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= 128 && b.iter().all(|c| (0x21..=0x7e).contains(c))
    };
    let header = HeaderName::from_static("x-request-id");
    let all_usable = {
        let mut values = req.headers().get_all(&header).iter();
        match (values.next(), values.next()) {
            (None, _) => true,
            (Some(v), None) => usable(v),
            (Some(_), Some(_)) => false,
        }
    };
    if !all_usable {
        req.headers_mut().remove(&header);
    }
    req
}

/// tower-http's CORS for `GATEWAY_CORS_ORIGINS`; `None` when unset.
fn cors_layer(origins: &CorsOrigins) -> Option<CorsLayer> {
    let allow = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("x-upstream-request-id"),
                header::RETRY_AFTER,
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Whether the current subscriber records the request spans (`RUST_LOG=info`, or
/// `tower_http=info`, or OpenTelemetry export; not `warn` alone).
fn request_tracing_enabled() -> bool {
    tracing::enabled!(target: REQUEST_SPAN_TARGET, Level::INFO)
}

fn box_body<B>(body: B) -> BoxBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BodyExt::map_err(body, Into::into).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use http::{Request, StatusCode};
    use tower::ServiceExt;
    use tower_openai_core::Body;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::MakeWriter;

    use crate::{Args, Gateway, GatewayConfig};

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// What the gateway logs for `req` under `filter` (its stack built under it too).
    async fn logged_with(filter: &str, req: Request<Body>) -> String {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_writer(out.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let dir = std::env::temp_dir().join(format!(
            "tower-openai-stack-trace-{filter}-{}",
            std::process::id()
        ));
        let args = Args {
            demo: true,
            data_dir: Some(dir.clone()),
            ..Args::default()
        };
        let config = GatewayConfig::load(&args, &|_| None).unwrap();
        let gateway = Gateway::new(config).await.unwrap();
        let res = gateway.app().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // The access line is written when the body ends.
        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
        drop(gateway);
        let _ = std::fs::remove_dir_all(dir);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn credentials_are_marked_sensitive_and_nothing_else() {
        let req = Request::get("/")
            .header("authorization", "Bearer sk-1")
            .header("x-api-key", "sk-2")
            .header("api-key", "sk-3")
            .header("cookie", "a=b")
            .header("cookie", "c=d")
            .header("proxy-authorization", "Basic x")
            .header("x-gateway-key", "sk-4")
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let req = super::mark_sensitive(req, &http::HeaderName::from_static("x-gateway-key"));
        for (name, value) in req.headers() {
            assert_eq!(value.is_sensitive(), name != "content-type", "{name}");
        }
        assert!(!format!("{:?}", req.headers()).contains("sk-"));
    }

    #[test]
    fn request_ids_are_32_hex_digits_and_never_repeat() {
        use tower_http::request_id::MakeRequestId;
        let req = Request::new(());
        let ids: Vec<String> = (0..1000)
            .map(|_| {
                let id = super::NextRequestId.make_request_id(&req).unwrap();
                id.header_value().to_str().unwrap().to_owned()
            })
            .collect();
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "{id}"
            );
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        // A count in the low half: consecutive ids differ by one.
        let low = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
        assert_eq!(low(&ids[1]), low(&ids[0]).wrapping_add(1));
    }

    #[test]
    fn the_trace_layer_is_stacked_only_when_its_spans_or_events_are_recorded() {
        for (filter, expected) in [
            ("info", true),
            ("warn,tower_http=info", true),
            ("warn", false),
            ("debug,tower_http=warn", false),
        ] {
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new(filter))
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                assert_eq!(super::request_tracing_enabled(), expected, "{filter}");
            });
        }
    }

    #[tokio::test]
    async fn the_query_string_is_never_logged() {
        let req = Request::get("http://localhost/v1/models?api_key=sk-in-the-query")
            .body(Body::empty())
            .unwrap();
        let logged = logged_with("trace", req).await;
        assert!(
            logged.contains(r#"request{method="GET" path="/v1/models""#),
            "{logged}"
        );
        assert!(!logged.contains("sk-in-the-query"), "{logged}");
    }

    #[tokio::test]
    async fn requests_are_traced_only_when_the_subscriber_records_them() {
        let healthz = || Request::get("/healthz").body(Body::empty()).unwrap();
        let info = logged_with("info", healthz()).await;
        let access = info
            .lines()
            .find(|l| l.contains("tower_openai::access"))
            .unwrap_or_else(|| panic!("no access line in {info}"));
        for field in [r#"path="/healthz""#, "status=200", r#"outcome="completed""#] {
            assert!(access.contains(field), "{field} in {access}");
        }
        // The access line is a record of its own: the span's fields are not repeated on it.
        assert!(!access.contains("request{"), "{access}");
        let warn = logged_with("warn", healthz()).await;
        assert!(!warn.contains("/healthz"), "{warn}");
    }
}
