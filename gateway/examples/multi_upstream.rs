//! The gateway in front of several upstreams with model prefixes and per-user access: each
//! user's model list is printed. Configured in TOML, as `openai-gateway --config` would be;
//! runs offline against three in-process mock upstreams.
//!
//! Run: `cargo run -p openai-gateway --example multi_upstream`

use http::Request;
use http_body_util::{BodyExt, Full};
use openai_gateway::{Args, Gateway, GatewayConfig};
use tower_openai_test_util::MockUpstream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let vllm = MockUpstream::builder()
        .models(["llama3", "qwen2"])
        .start()
        .await;
    let ollama = MockUpstream::builder()
        .models(["llama3", "phi3"])
        .start()
        .await;
    let openai = MockUpstream::builder()
        .models(["gpt-4o", "gpt-4o-mini"])
        .start()
        .await;

    let dir = std::env::temp_dir().join(format!("tower-openai-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[openai]
base_urls = ["{}", "{}", "{}"]

[openai.configs."0"]
prefix_id = "vllm"
connection_type = "local"

[openai.configs."1"]
prefix_id = "ollama"
connection_type = "local"

[[users]]
id = "alice"
groups = ["research"]
api_key = "sk-alice"

[[users]]
id = "bob"
api_key = "sk-bob"

[[users]]
id = "root"
role = "admin"
api_key = "sk-root"

[[models]]
id = "vllm.llama3"
owner = "root"
access = {{ read_groups = ["research"] }}

[[models]]
id = "ollama.phi3"
owner = "bob"
access = "private"

[[models]]
id = "gpt-4o-mini"
owner = "root"
access = "public"
"#,
            vllm.url(),
            ollama.url(),
            openai.url()
        ),
    )?;
    let args = Args {
        config: Some(config),
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.join("data")),
        ..Args::default()
    };
    let gateway = Gateway::new(GatewayConfig::load(&args, &|_| None)?)
        .await?
        .spawn()
        .await?;

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    for (user, key) in [
        ("alice", "sk-alice"),
        ("bob", "sk-bob"),
        ("root", "sk-root"),
    ] {
        let req = Request::get(format!("{}/models", gateway.url()))
            .header("authorization", format!("Bearer {key}"))
            .body(Full::default())?;
        let body = client
            .request(req)
            .await?
            .into_body()
            .collect()
            .await?
            .to_bytes();
        let list: serde_json::Value = serde_json::from_slice(&body)?;
        let ids: Vec<&str> = list["data"]
            .as_array()
            .map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect())
            .unwrap_or_default();
        println!("{user:>5} sees: {}", ids.join(", "));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
