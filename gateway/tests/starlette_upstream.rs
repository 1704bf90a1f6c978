//! Ways past the access check found by a hostile trial, against an upstream that reads
//! requests as LiteLLM does (`tests/python/litellm_like.py`: Starlette, `?model=` over the
//! body, forms read by python-multipart): whatever a caller sends, the model the upstream
//! runs is the one the gateway checked, or nothing reaches it.
//!
//! Needs `python3` with `starlette`, `python-multipart` and `uvicorn`; skipped without them,
//! unless `TOWER_OPENAI_REQUIRE_PYTHON` is set (as in CI), where it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use openai_gateway::RunningGateway;
use serde_json::Value;

use common::*;

/// The LiteLLM-like upstream, killed when dropped.
struct Upstream {
    child: Child,
    port: u16,
}

impl Upstream {
    fn start() -> Option<Self> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/litellm_like.py");
        let child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => return missing(&e.to_string()),
        };
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        match (read, line.trim().parse()) {
            (Ok(_), Ok(port)) => Some(Self { child, port }),
            _ => {
                let _ = child.kill();
                missing("it did not start")
            }
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Every model the upstream ran, in order.
    async fn seen(&self) -> Vec<Value> {
        let a = answer(get(&format!("http://127.0.0.1:{}/_seen", self.port))).await;
        a.json().as_array().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn missing<T>(why: &str) -> Option<T> {
    assert!(
        std::env::var_os("TOWER_OPENAI_REQUIRE_PYTHON").is_none(),
        "the Starlette upstream is required ({why}): pip install starlette python-multipart uvicorn"
    );
    eprintln!("skipped: the Starlette upstream could not start ({why})");
    None
}

/// Alice may use `up.allowed`, not `up.secret`.
async fn gateway(upstream: &Upstream) -> RunningGateway {
    let text = format!(
        r#"
[openai]
base_urls = ["{}"]
[openai.configs."0"]
prefix_id = "up"

[[users]]
id = "alice"
api_key = "sk-alice"

[[users]]
id = "root"
role = "admin"
api_key = "sk-root"

[[models]]
id = "up.allowed"
owner = "root"
access = "public"
"#,
        upstream.url()
    );
    start_toml(&text, &[]).await
}

fn as_alice(req: Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let (mut parts, body) = req.into_parts();
    parts
        .headers
        .insert("authorization", "Bearer sk-alice".parse().unwrap());
    Request::from_parts(parts, body)
}

fn form(content_type: &str, body: String) -> (String, Vec<u8>) {
    (content_type.to_owned(), body.into_bytes())
}

fn post_form(url: &str, (content_type, body): (String, Vec<u8>)) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", content_type)
        .body(Full::from(body))
        .unwrap()
}

#[tokio::test]
async fn a_query_model_never_reaches_an_upstream_that_prefers_it() {
    let Some(upstream) = Upstream::start() else {
        return;
    };
    let gw = gateway(&upstream).await;
    let base = gw.url();
    for route in [
        "chat/completions",
        "completions",
        "embeddings",
        "images/generations",
    ] {
        let a = answer(as_alice(post_json(
            &format!("{base}/{route}?model=secret&model=up.secret"),
            r#"{"model": "up.allowed", "messages": [], "prompt": "x", "input": "x"}"#,
        )))
        .await;
        assert_eq!(a.status, StatusCode::OK, "{route}: {}", a.text());
        assert_eq!(a.json()["model"], "allowed", "{route}");
    }
    let seen = upstream.seen().await;
    assert_eq!(seen.len(), 4);
    for s in seen {
        assert_eq!(s["model"], "allowed", "{s}");
        assert_eq!(s["query"], "", "{s}");
    }
}

#[tokio::test]
async fn a_form_read_two_ways_is_refused_and_a_plain_one_runs_the_checked_model() {
    let Some(upstream) = Upstream::start() else {
        return;
    };
    let gw = gateway(&upstream).await;
    let url = format!("{}/audio/transcriptions", gw.url());
    let part = |b: &str, disposition: &str, value: &str| {
        format!("--{b}\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n")
    };
    let attacks = [
        // The gateway's old reading: `zzz`; python-multipart's: `model` (the last one wins).
        form(
            "multipart/form-data; boundary=AAAA",
            format!(
                "{}{}--AAAA--\r\n",
                part("AAAA", r#"form-data; name="model""#, "up.allowed"),
                part(
                    "AAAA",
                    r#"form-data; NAME="model"; x="a;name=zzz;b""#,
                    "secret"
                ),
            ),
        ),
        // Two boundaries: the first form for the gateway, the last for Starlette.
        form(
            "multipart/form-data; boundary=AAAA; boundary=BBBB",
            format!(
                "{}--AAAA--\r\n{}--BBBB--\r\n",
                part("AAAA", r#"form-data; name="model""#, "up.allowed"),
                part("BBBB", r#"form-data; name="model""#, "secret"),
            ),
        ),
        // A file named `model`.
        form(
            "multipart/form-data; boundary=AAAA",
            format!(
                "{}--AAAA--\r\n",
                part(
                    "AAAA",
                    r#"form-data; name="model"; filename="up.allowed""#,
                    "secret"
                ),
            ),
        ),
    ];
    for attack in attacks {
        let a = answer(as_alice(post_form(&url, attack))).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
        assert_eq!(error_code(&a), "invalid_body");
    }
    assert_eq!(upstream.seen().await, Vec::<Value>::new());

    // What an SDK sends still works, and the upstream reads the checked model.
    let plain = form(
        "multipart/form-data; boundary=AAAA",
        format!(
            "{}{}--AAAA--\r\n",
            part(
                "AAAA",
                r#"form-data; name="file"; filename="a.wav""#,
                "RIFF"
            ),
            part("AAAA", r#"form-data; name="model""#, "up.allowed"),
        ),
    );
    let a = answer(as_alice(post_form(&url, plain))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let seen = upstream.seen().await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["model"], "allowed");
}
