//! Helpers for the full-stack tests: start the real gateway (the same `Gateway` that `main`
//! runs) on 127.0.0.1:0 and talk to it over a real socket.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openai_gateway::{Args, Gateway, GatewayConfig, RunningGateway};
use serde_json::Value;
use tower_openai::settings::SettingsSource;

/// An environment made of these pairs only.
pub fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

/// A fresh, empty folder for one test (those of ended test processes are removed).
pub fn temp_dir() -> std::path::PathBuf {
    tower_openai_test_util::scratch_dir("test")
}

/// Start a gateway configured by `env` (and `args`), listening on 127.0.0.1:0, with its own
/// data dir unless `args` names one.
pub async fn start_with(args: Args, pairs: &[(&str, &str)]) -> RunningGateway {
    let args = Args {
        listen: Some(args.listen.unwrap_or_else(|| "127.0.0.1:0".to_owned())),
        data_dir: Some(args.data_dir.unwrap_or_else(temp_dir)),
        ..args
    };
    let config = GatewayConfig::load(&args, &env(pairs)).expect("config loads");
    Gateway::new(config)
        .await
        .expect("gateway starts")
        .spawn()
        .await
        .expect("gateway binds")
}

/// Start a gateway configured by this TOML file's text (written to a fresh folder) and the
/// variables in `pairs`.
pub async fn start_toml(toml: &str, pairs: &[(&str, &str)]) -> RunningGateway {
    let path = temp_dir().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    start_with(
        Args {
            config: Some(path),
            ..Args::default()
        },
        pairs,
    )
    .await
}

/// Start a gateway whose only connection is `upstream_url`.
pub async fn start(upstream_url: &str) -> RunningGateway {
    start_with(Args::default(), &[("OPENAI_API_BASE_URLS", upstream_url)]).await
}

/// Start a gateway whose only connection is `upstream_url`, also serving `/metrics` on a
/// listener of its own (`--metrics-listen 127.0.0.1:0`; see `RunningGateway::metrics_addr`).
pub async fn start_with_metrics_listener(upstream_url: &str) -> RunningGateway {
    start_with(
        Args {
            metrics_listen: Some("127.0.0.1:0".to_owned()),
            ..Args::default()
        },
        &[("OPENAI_API_BASE_URLS", upstream_url)],
    )
    .await
}

/// Start a gateway whose only connection is `upstream_url`, with the passthrough on.
pub async fn start_passthrough(upstream_url: &str) -> RunningGateway {
    start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", upstream_url),
            ("ENABLE_OPENAI_API_PASSTHROUGH", "true"),
        ],
    )
    .await
}

/// Start a gateway from a settings source.
pub async fn start_settings(settings: SettingsSource) -> RunningGateway {
    Gateway::new(GatewayConfig::for_settings(settings))
        .await
        .expect("gateway starts")
        .spawn()
        .await
        .expect("gateway binds")
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(req: Request<Full<Bytes>>) -> Response<Incoming> {
    tokio::time::timeout(Duration::from_secs(30), client().request(req))
        .await
        .expect("the gateway answered within 30 s")
        .expect("the request was sent")
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn answer(req: Request<Full<Bytes>>) -> Answer {
    let res = send(req).await;
    let (parts, body) = res.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(30), body.collect())
        .await
        .expect("the body ended within 30 s")
        .expect("the body was read")
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn post_json(url: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .body(Full::from(body.to_owned()))
        .unwrap()
}

pub fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

/// An address nothing listens on.
pub fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/v1", l.local_addr().unwrap())
}

/// Assert an OpenAI-shaped error body and return its `code`.
pub fn error_code(answer: &Answer) -> String {
    let v = answer.json();
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(v["error"]["type"].is_string(), "{v}");
    assert_eq!(answer.headers["content-type"], "application/json");
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

/// Every query of the Grafana dashboard in `docs/grafana/openai-gateway.json`, with
/// Grafana's `$__rate_interval` replaced by `1m` (what Prometheus itself understands).
pub fn dashboard_queries() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana/openai-gateway.json"
    );
    let dashboard: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
        })
        .collect()
}
