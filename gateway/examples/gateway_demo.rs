//! The gateway in `--demo` mode, in one process: its built-in mock upstream as connection 0,
//! and a small client that lists the models and streams one chat completion, printing each
//! event as it arrives. No network, no key. (`cargo run -p openai-gateway -- --demo` serves the same.)
//!
//! Run: `cargo run -p openai-gateway --example gateway_demo`

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use openai_gateway::{Gateway, GatewayConfig};
use tower_openai::settings::SettingsSource;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // What `openai-gateway --demo --listen 127.0.0.1:0` does.
    let mut config = GatewayConfig::for_settings(SettingsSource::default());
    config.demo = true;
    config.data_dir =
        std::env::temp_dir().join(format!("tower-openai-demo-{}", std::process::id()));
    let gateway = Gateway::new(config).await?;
    let upstream = gateway.demo_url().unwrap_or_default();
    let gateway = gateway.spawn().await?;
    println!("gateway on {} → demo upstream {upstream}", gateway.url());

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let models = client
        .request(Request::get(format!("{}/models", gateway.url())).body(Full::default())?)
        .await?;
    let list: serde_json::Value =
        serde_json::from_slice(&models.into_body().collect().await?.to_bytes())?;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    println!("models: {}", ids.join(", "));

    let req = Request::post(format!("{}/chat/completions", gateway.url()))
        .header("content-type", "application/json")
        .body(Full::from(
            r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        ))?;
    let res = client.request(req).await?;
    println!("status {}", res.status());
    let mut body = res.into_body();
    let mut events = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            for event in String::from_utf8_lossy(data)
                .split("\n\n")
                .filter(|e| !e.is_empty())
            {
                events += 1;
                println!("{event}");
            }
        }
    }
    println!("{events} events");
    gateway.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
