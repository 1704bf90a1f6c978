//! Logs and traces: the `tracing` subscriber of the binary, and OpenTelemetry export.
//!
//! Logs go to stderr, one line per event (plain, colours only on a terminal; or JSON with
//! `LOG_FORMAT=json`), filtered by `RUST_LOG`. With `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, each request's span is also exported over
//! OTLP/HTTP (protobuf) through the gateway's own HTTP client; the SDK reads the other
//! standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`). Unset, no exporter,
//! propagator or OpenTelemetry layer exists.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpError};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tower::ServiceExt;
use tower_openai_core::Body;
use tower_openai_util::body::read_capped;
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The target of the per-request span (the one OpenTelemetry exports). It is tower-http's
/// trace target, so `RUST_LOG=tower_http=info` keeps working as documented.
pub(crate) const REQUEST_SPAN_TARGET: &str = "tower_http::trace::make_span";

/// The service name when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "openai-gateway";

/// How long one export may take, answer included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest collector answer read.
const MAX_EXPORT_ANSWER: usize = 1 << 20;

/// Whether OpenTelemetry export is configured in `env`: an OTLP endpoint is set and
/// `OTEL_SDK_DISABLED` is not `true`.
pub fn otel_configured(env: &dyn Fn(&str) -> Option<String>) -> bool {
    let set = |name| env(name).is_some_and(|v: String| !v.trim().is_empty());
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The installed subscriber's parts that need an orderly end.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Export the spans still buffered and stop the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("openai-gateway: OpenTelemetry export did not finish: {e}");
        }
    }
}

/// Install the process's `tracing` subscriber (logs, and OpenTelemetry export when
/// configured), reading the process environment. `runtime` runs the exporter's requests.
pub fn init(runtime: &tokio::runtime::Handle) -> Telemetry {
    use std::io::IsTerminal;
    let env = |name: &str| std::env::var(name).ok();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = env("LOG_FORMAT").is_some_and(|v| v.trim().eq_ignore_ascii_case("json"));
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed()
    };
    let provider = otel_configured(&env).then(|| {
        let service = env("OTEL_SERVICE_NAME")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        tracer_provider(runtime.clone(), service)
    });
    let provider = match provider {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            eprintln!("openai-gateway: OpenTelemetry export is off: {e}");
            None
        }
        None => None,
    };
    // Only the request spans go to OpenTelemetry, whatever RUST_LOG says about logs.
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("openai-gateway"))
            .with_filter(Targets::new().with_target(REQUEST_SPAN_TARGET, Level::INFO))
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otel)
        .init();
    Telemetry { provider }
}

fn tracer_provider(
    runtime: tokio::runtime::Handle,
    service: String,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithHttpConfig;
    let client = OtlpClient {
        client: tower_openai_upstream::Upstream::new().http_client(),
        runtime,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build())
        .with_batch_exporter(exporter)
        .build())
}

/// The exporter's HTTP client: the gateway's own (hyper, rustls, the proxy variables), its
/// requests run on the server's runtime (the SDK exports from a thread of its own).
#[derive(Debug)]
struct OtlpClient {
    client: tower_openai_core::client::HttpClient,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let answer = async {
                let res = client.oneshot(request.map(Body::from)).await?;
                let (parts, body) = res.into_parts();
                let body = read_capped(body, MAX_EXPORT_ANSWER)
                    .await
                    .map_err(|e| -> HttpError { e.to_string().into() })?;
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            tokio::time::timeout(EXPORT_TIMEOUT, answer)
                .await
                .map_err(|_| -> HttpError { "the collector did not answer in time".into() })?
        });
        task.await?
    }
}

/// Continue the caller's W3C trace (`traceparent`, `tracestate`) in `span`.
///
/// The caller's trace id and parent span are kept, its `sampled` flag is not: whether the
/// gateway records a request is its own decision, so a caller cannot hide its requests from
/// the traces by sending `-00`.
pub(crate) fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags};
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let remote = parent.span().span_context().clone();
    let parent = if remote.is_valid() && !remote.is_sampled() {
        opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            remote.trace_id(),
            remote.span_id(),
            remote.trace_flags() | TraceFlags::SAMPLED,
            true,
            remote.trace_state().clone(),
        ))
    } else {
        parent
    };
    let _ = span.set_parent(parent);
}

/// Replace the request's `traceparent`/`tracestate` with the current span's, so the
/// upstream's spans are children of the gateway's.
pub(crate) fn propagate_trace(headers: &mut HeaderMap) {
    headers.remove("traceparent");
    headers.remove("tracestate");
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}
