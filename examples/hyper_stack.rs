//! A plain hyper server with a hand-built stack: routing by model (a fixed table, no model
//! list), upstream credentials, and the upstream service — nothing else. Runs offline
//! against an in-process mock upstream.
//!
//! Run: `cargo run --features full --example hyper_stack`

use std::convert::Infallible;

use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{ServiceBuilder, ServiceExt};
use tower_openai::ServiceBuilderExt;
use tower_openai::core::Body;
use tower_openai::select::StaticRoutes;
use tower_openai::settings::ApiKey;
use tower_openai::settings::{SettingsHandle, SettingsSource};
use tower_openai::upstream::Upstream;
use tower_openai_test_util::MockUpstream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mock = MockUpstream::start().await;
    let settings = SettingsHandle::new(
        SettingsSource {
            base_urls: Some(vec![mock.url()]),
            keys: Some(vec![ApiKey::new("sk-upstream")]),
            ..Default::default()
        }
        .build()?,
    );

    // Three layers of ours on the upstream service (plus rescue, settings and the payload
    // step every stack needs).
    let stack = ServiceBuilder::new()
        .rescue()
        .policy() // model routes only (the passthrough is off); odd paths refused
        .load_settings(settings)
        .collect_payload(1 << 20)
        .select(StaticRoutes::new([("gpt-4o-mini", 0)]))
        .auth(Default::default())
        .headers(Default::default())
        .service(Upstream::new());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let stack = stack.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let stack = stack.clone();
                    async move {
                        Ok::<_, Infallible>(
                            stack
                                .oneshot(req.map(Body::new))
                                .await
                                .unwrap_or_else(|never| match never {}),
                        )
                    }
                });
                // A request head must arrive within 30 s.
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(30))
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    println!("hyper server on http://{addr}");

    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let req = Request::post(format!("http://{addr}/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::from(
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
        ))?;
    let res = client.request(req).await?;
    println!("status {}", res.status());
    let body = res.into_body().collect().await?.to_bytes();
    println!("answer: {}", String::from_utf8_lossy(&body));
    let seen = mock.last_request().ok_or("the upstream saw nothing")?;
    println!(
        "the upstream saw {} with {:?}",
        seen.path,
        seen.header("authorization")
    );
    Ok(())
}
