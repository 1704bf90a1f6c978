//! A real Prometheus (the `prometheus` binary, Debian's package) scrapes the gateway's
//! `--metrics-listen` port, and a query through its HTTP API returns the request count this
//! test produced; every query of the Grafana dashboard is one it accepts.
//!
//! Skipped (with a message) when `prometheus` is not on `PATH`, unless
//! `TOWER_OPENAI_REQUIRE_PROMETHEUS` is set, as `.ci/run` does after installing it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{answer, get, post_json, temp_dir};
use http::StatusCode;
use tower_openai_test_util::MockUpstream;

/// Kills the child when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_gateway_and_counts_the_requests() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("TOWER_OPENAI_REQUIRE_PROMETHEUS").is_none(),
            "prometheus is not installed (apt-get install prometheus)"
        );
        eprintln!("skipped: prometheus is not installed (apt-get install prometheus)");
        return;
    }
    let mock = MockUpstream::builder().models(["prom-model"]).start().await;
    let gw = common::start_with_metrics_listener(&mock.url()).await;
    let target = gw.metrics_addr().unwrap();
    const REQUESTS: usize = 7;
    for _ in 0..REQUESTS {
        let res = answer(post_json(
            &format!("{}/chat/completions", gw.url()),
            r#"{"model":"prom-model"}"#,
        ))
        .await;
        assert_eq!(res.status, StatusCode::OK);
    }

    let dir = temp_dir();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: gateway\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );

    let query = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=sum(gateway_requests_total%7Bmodel%3D%22prom-model%22%7D)"
    );
    // Up to about 60 s.
    let mut attempts = 0;
    let mut last = String::new();
    loop {
        if let Ok(Ok(res)) = tokio::time::timeout(
            Duration::from_secs(2),
            common::client().request(get(&query)),
        )
        .await
        {
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            last = String::from_utf8_lossy(&body).into_owned();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                let count = v["data"]["result"][0]["value"][1].as_str();
                if count.and_then(|c| c.parse::<usize>().ok()) == Some(REQUESTS) {
                    break;
                }
            }
        }
        attempts += 1;
        assert!(
            attempts < 240,
            "Prometheus never reported {REQUESTS} requests; last answer: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every query of the Grafana dashboard is one this Prometheus accepts.
    for q in common::dashboard_queries() {
        let url = format!("http://127.0.0.1:{port}/api/v1/query?query={}", encode(&q));
        let res = answer(get(&url)).await;
        let v = res.json();
        assert_eq!(v["status"], "success", "{q}: {v}");
    }
}

/// Percent-encode a query for a URL's query string.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
