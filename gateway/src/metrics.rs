//! The Prometheus recorder behind `GET /metrics`.
//!
//! The layers record through the `metrics` facade; the gateway installs
//! `metrics-exporter-prometheus` as the process's recorder once (every gateway in the process
//! shares it), unless the embedding application installed a recorder of its own, in which
//! case `/metrics` is not served (404) and the application exports its metrics itself.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_openai_models::Catalog;
use tower_openai_observe::names;
use tower_openai_settings::Settings;

/// Latency buckets, seconds: from a cached answer (milliseconds) to a long generation.
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes (so they
/// do not pile up in memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use; `None` when
/// another recorder was installed first.
pub(crate) fn prometheus() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            names::describe();
            tower_openai_group::names::describe();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let upkeep = handle.clone();
                runtime.spawn(async move {
                    let mut every = tokio::time::interval(UPKEEP_EVERY);
                    loop {
                        every.tick().await;
                        upkeep.run_upkeep();
                    }
                });
            }
            Some(handle)
        })
        .clone()
}

/// The metrics in Prometheus text format, with each connection's `gateway_connection_up`
/// refreshed from the catalog first.
pub(crate) async fn render(
    handle: &PrometheusHandle,
    catalog: &Catalog,
    settings: &Arc<Settings>,
) -> String {
    for health in catalog.health(settings).await {
        metrics::gauge!(names::CONNECTION_UP, "connection" => health.index.to_string()).set(
            if health.up && health.enabled {
                1.0
            } else {
                0.0
            },
        );
    }
    handle.render()
}

/// Serve `GET /metrics` (and nothing else, no key) on `listener` until the task is dropped:
/// `--metrics-listen`. HTTP/1 only; at most [`METRICS_CONNECTIONS`] connections at once, each
/// with a 10 s head timeout, so a slow client cannot hold the scrape port.
pub(crate) async fn serve(listener: tokio::net::TcpListener, admin: crate::admin::Admin) {
    use std::convert::Infallible;

    use http::{Method, Request, Response, StatusCode};
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower_openai_core::ErrorResponse;

    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let admin = admin.clone();
                async move {
                    let res = if req.uri().path() != "/metrics" {
                        crate::admin::error(
                            ErrorResponse::not_found("This listener serves only GET /metrics")
                                .with_code("unknown_url"),
                        )
                    } else if req.method() != Method::GET {
                        crate::admin::error(
                            ErrorResponse::new(StatusCode::METHOD_NOT_ALLOWED, "Use GET here")
                                .with_code("method_not_allowed"),
                        )
                    } else {
                        admin.metrics().await
                    };
                    Ok::<Response<_>, Infallible>(res)
                }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

/// Connections the metrics listener holds at once.
pub(crate) const METRICS_CONNECTIONS: usize = 16;
