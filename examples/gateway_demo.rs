//! The gateway in one process: a mock OpenAI upstream on 127.0.0.1, the gateway in front of
//! it (routing by model through its cached model list), and one streamed chat completion
//! printed event by event as it arrives. No network, no key.
//!
//! Run: `cargo run --example gateway_demo`

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_openai::core::SettingsSource;
use tower_openai::gateway::{Gateway, GatewayConfig};
use tower_openai_test_util::MockUpstream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // An OpenAI-compatible upstream that streams its chunks 20 ms apart.
    let upstream = MockUpstream::builder()
        .stream_gap(Duration::from_millis(20))
        .start()
        .await;

    // The gateway, configured in code as the environment would configure it
    // (`OPENAI_API_BASE_URLS=http://127.0.0.1:PORT/v1`), on 127.0.0.1:0.
    let settings = SettingsSource {
        base_urls: Some(vec![upstream.url()]),
        ..Default::default()
    };
    let gateway = Gateway::new(GatewayConfig::for_settings(settings))
        .await?
        .spawn()
        .await?;
    println!("gateway on {} → upstream {}", gateway.url(), upstream.url());

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
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
    // The gateway fetched the model list once (to route `gpt-4o-mini`), then the chat.
    println!(
        "{events} events; the upstream saw {} model-list and {} chat request(s)",
        upstream.count("/v1/models"),
        upstream.count("/v1/chat/completions")
    );
    gateway.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
