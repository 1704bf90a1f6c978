//! OpenTelemetry through the real binary: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, a request's
//! span is exported over OTLP/HTTP (protobuf, decoded here with the `opentelemetry-proto`
//! types) with the GenAI semantic-convention attributes, continuing the caller's
//! `traceparent`; and the upstream receives the gateway's own `traceparent` in that trace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use support::Gateway;
use tower_openai_test_util::MockUpstream;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// A collector on 127.0.0.1:0 that keeps every span it is sent (and where, and how).
async fn collector() -> (
    std::net::SocketAddr,
    Arc<Mutex<Vec<(String, String, Span)>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = spans.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let kept = kept.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let content_type = req
                            .headers()
                            .get("content-type")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let export = ExportTraceServiceRequest::decode(body).unwrap();
                        for span in export
                            .resource_spans
                            .into_iter()
                            .flat_map(|r| r.scope_spans)
                            .flat_map(|s| s.spans)
                        {
                            kept.lock()
                                .unwrap()
                                .push((path.clone(), content_type.clone(), span));
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, spans)
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The caller's `traceparent` header line.
fn traceparent() -> String {
    format!("traceparent: 00-{TRACE_ID}-{CALLER_SPAN_ID}-01\r\n")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_request_span_is_exported_with_genai_attributes_in_the_callers_trace() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (collector, spans) = rt.block_on(collector());
    let mock = rt.block_on(MockUpstream::builder().models(["m"]).start());

    let gateway = Gateway::start("otel", |cmd| {
        cmd.env("OPENAI_API_BASE_URLS", mock.url())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
            .env("OTEL_SERVICE_NAME", "gateway-under-test")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            // Spans are exported whatever the log filter says.
            .env("RUST_LOG", "warn");
    });
    let answer = gateway.post("/v1/chat/completions", &traceparent(), r#"{"model":"m"}"#);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Up to 20 s.
    let mut waits = 0;
    let span = loop {
        let found = spans
            .lock()
            .unwrap()
            .iter()
            .find(|(_, _, s)| s.name == "POST chat/completions")
            .cloned();
        if let Some(found) = found {
            break found;
        }
        waits += 1;
        assert!(
            waits < 400,
            "no span exported: {:?}",
            spans
                .lock()
                .unwrap()
                .iter()
                .map(|(_, _, s)| s.name.clone())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(gateway);

    let (path, content_type, span) = span;
    assert_eq!(path, "/v1/traces");
    assert_eq!(content_type, "application/x-protobuf");
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), CALLER_SPAN_ID);
    let text = |key| match attribute(&span, key) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        other => panic!("{key}: {other:?} in {:?}", span.attributes),
    };
    let int = |key| match attribute(&span, key) {
        Some(AnyValue::IntValue(n)) => *n,
        other => panic!("{key}: {other:?} in {:?}", span.attributes),
    };
    assert_eq!(text("gen_ai.operation.name"), "chat");
    assert_eq!(text("gen_ai.request.model"), "m");
    assert_eq!(text("gen_ai.response.model"), "m");
    assert_eq!(int("gen_ai.usage.input_tokens"), 5);
    assert_eq!(int("gen_ai.usage.output_tokens"), 6);
    assert_eq!(text("server.address"), "127.0.0.1");
    assert_eq!(int("http.response.status_code"), 200);

    // The upstream was sent the gateway's span as the parent, in the caller's trace.
    let sent = mock.last_request().unwrap();
    let traceparent = sent.header("traceparent").expect("traceparent upstream");
    assert_eq!(
        traceparent,
        format!("00-{TRACE_ID}-{}-01", hex(&span.span_id))
    );
}

#[test]
fn without_an_endpoint_the_callers_traceparent_passes_unchanged() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock = rt.block_on(MockUpstream::builder().models(["m"]).start());
    let gateway = Gateway::start("otel-off", |cmd| {
        cmd.env("OPENAI_API_BASE_URLS", mock.url())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    });
    let answer = gateway.post("/v1/chat/completions", &traceparent(), r#"{"model":"m"}"#);
    drop(gateway);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Off, the gateway takes no part in the trace: the caller's context passes through (it
    // is on the forwarded-header allowlist).
    assert_eq!(
        mock.last_request().unwrap().header("traceparent"),
        Some(format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01").as_str())
    );
}

#[test]
fn a_callers_unsampled_flag_does_not_hide_its_requests() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (collector, spans) = rt.block_on(collector());
    let mock = rt.block_on(MockUpstream::builder().models(["m"]).start());
    let gateway = Gateway::start("otel-unsampled", |cmd| {
        cmd.env("OPENAI_API_BASE_URLS", mock.url())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("RUST_LOG", "warn");
    });
    // `-00`: the caller says "not sampled".
    let header = format!("traceparent: 00-{TRACE_ID}-{CALLER_SPAN_ID}-00\r\n");
    let answer = gateway.post("/v1/chat/completions", &header, r#"{"model":"m"}"#);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut waits = 0;
    let span = loop {
        let found = spans
            .lock()
            .unwrap()
            .iter()
            .find(|(_, _, s)| s.name == "POST chat/completions")
            .cloned();
        if let Some(found) = found {
            break found.2;
        }
        waits += 1;
        assert!(waits < 400, "the request was not traced");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Still the caller's trace, and the upstream is told it is sampled.
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), CALLER_SPAN_ID);
    let sent = mock.last_request().unwrap();
    assert_eq!(
        sent.header("traceparent").unwrap(),
        format!("00-{TRACE_ID}-{}-01", hex(&span.span_id))
    );
}
