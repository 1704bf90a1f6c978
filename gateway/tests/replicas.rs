//! Several `openai-gateway` processes on one real Redis (`REDIS_URL`): an admin update on one
//! is served by all within 2 s; a process started later takes the shared settings; Redis
//! stopped, everybody keeps serving and updates are refused with 503; Redis back, updates
//! flow again; a per-user rate limit holds across processes, and without Redis per process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::{Gateway, Redis, mock_upstream, redis_or_skip, status_and_body};

/// A gateway on `redis` (or none) in front of `upstream`; `extra` configures it further.
fn gateway(
    upstream: &str,
    redis: Option<&Redis>,
    prefix: &str,
    extra: impl FnOnce(&mut Command),
) -> Gateway {
    let url = redis.map(Redis::url);
    Gateway::start("replicas", |cmd| {
        cmd.env("OPENAI_API_BASE_URLS", upstream)
            .env("REDIS_KEY_PREFIX", prefix)
            .env_remove("REDIS_URL");
        if let Some(url) = url {
            cmd.env("REDIS_URL", url);
        }
        extra(cmd);
    })
}

fn base_urls(g: &Gateway) -> Value {
    let (status, body) = g.get("/openai/config", "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["OPENAI_API_BASE_URLS"].clone()
}

fn update(g: &Gateway, url: &str) -> (u16, String) {
    let body = json!({
        "ENABLE_OPENAI_API": true,
        "OPENAI_API_BASE_URLS": [url],
        "OPENAI_API_KEYS": [""],
        "OPENAI_API_CONFIGS": {},
    })
    .to_string();
    status_and_body(&g.post("/openai/config/update", "", &body))
}

/// Wait (at most `limit`) until `g` serves `url` as its only connection.
fn serves(g: &Gateway, url: &str, limit: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    // Each look takes some time too: the bound is on the sleeps, the looks come on top.
    while waited < limit {
        if base_urls(g) == json!([url]) {
            return true;
        }
        std::thread::sleep(step);
        waited += step;
    }
    false
}

#[test]
fn an_update_on_one_process_is_served_by_all_and_by_a_process_started_later() {
    let Some(redis) = redis_or_skip() else { return };
    let (_rt, first) = mock_upstream();
    let (_rt2, second) = mock_upstream();
    let a = gateway(&first.url(), Some(&redis), "t-update", |_| {});
    let b = gateway(&first.url(), Some(&redis), "t-update", |_| {});
    assert_eq!(base_urls(&b), json!([first.url()]));
    let (status, body) = update(&a, &second.url());
    assert_eq!(status, 200, "{body}");
    assert!(
        serves(&b, &second.url(), Duration::from_secs(2)),
        "not within 2 s"
    );
    // A third process, configured with the old URL, starts on the shared settings.
    let c = gateway(&first.url(), Some(&redis), "t-update", |_| {});
    assert_eq!(base_urls(&c), json!([second.url()]));
    // Each serves through the new connection.
    for g in [&a, &b, &c] {
        let answer = g.post("/v1/chat/completions", "", r#"{"model":"m"}"#);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert_eq!(first.count("/v1/chat/completions"), 0);
    assert_eq!(second.count("/v1/chat/completions"), 3);
}

#[test]
fn without_redis_everybody_keeps_serving_updates_are_refused_and_flow_again_after() {
    let Some(mut redis) = redis_or_skip() else {
        return;
    };
    let (_rt, first) = mock_upstream();
    let (_rt2, second) = mock_upstream();
    let a = gateway(&first.url(), Some(&redis), "t-outage", |_| {});
    let b = gateway(&first.url(), Some(&redis), "t-outage", |_| {});
    a.connect();
    b.connect();
    redis.stop();
    for g in [&a, &b] {
        let answer = g.post("/v1/chat/completions", "", r#"{"model":"m"}"#);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let (status, body) = update(&a, &second.url());
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("settings_store_unavailable"), "{body}");
    assert_eq!(base_urls(&a), json!([first.url()]));
    // Redis back (empty: no persistence): once reconnected, an update reaches everybody.
    let _redis = Redis::start_on(redis.port).unwrap();
    let mut accepted = false;
    for _ in 0..100 {
        if update(&a, &second.url()).0 == 200 {
            accepted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        accepted,
        "no update accepted within 10 s of Redis coming back"
    );
    assert!(serves(&b, &second.url(), Duration::from_secs(5)));
}

/// Send `FLUSHALL` to `redis` (an inline command over RESP).
fn flush_all(redis: &Redis) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    conn.write_all(b"FLUSHALL\r\n").unwrap();
    let mut reply = [0u8; 5];
    conn.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
}

/// Update on `a` until one is accepted (at most 10 s: Redis may be reconnecting).
fn updated(a: &Gateway, url: &str) {
    for _ in 0..100 {
        if update(a, url).0 == 200 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no update accepted within 10 s");
}

#[test]
fn replicas_agree_after_redis_restarts_empty_or_is_flushed() {
    let Some(mut redis) = redis_or_skip() else {
        return;
    };
    let upstreams: Vec<_> = (0..4).map(|_| mock_upstream()).collect();
    let url = |i: usize| upstreams[i].1.url();
    let a = gateway(&url(0), Some(&redis), "t-epoch", |_| {});
    let b = gateway(&url(0), Some(&redis), "t-epoch", |_| {});
    a.connect();
    b.connect();
    // The first update: the shared count is 1, and both run it.
    updated(&a, &url(1));
    assert!(serves(&b, &url(1), Duration::from_secs(2)));
    // Redis restarts with nothing: the next update is the count's first again, yet new.
    redis.stop();
    let mut redis = Redis::start_on(redis.port).unwrap();
    updated(&a, &url(2));
    assert!(
        serves(&b, &url(2), Duration::from_secs(5)),
        "the other process kept its settings after Redis restarted empty"
    );
    // Flushed between two updates: the same.
    flush_all(&redis);
    updated(&a, &url(3));
    assert!(
        serves(&b, &url(3), Duration::from_secs(2)),
        "the other process kept its settings after Redis was flushed"
    );
    redis.stop();
}

/// The windows are the minutes of the clock: start well inside one.
fn away_from_a_minute_boundary() {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into >= 55 {
        std::thread::sleep(Duration::from_secs(61 - into));
    }
}

fn limited_config(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "tower-openai-replicas-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &path,
        "[rate_limit]\nrpm = 3\n\n[[users]]\nid = \"alice\"\napi_key = \"sk-alice\"\n",
    )
    .unwrap();
    path
}

fn chats_until_refused(gateways: &[&Gateway], tries: usize) -> usize {
    let mut ok = 0;
    for i in 0..tries {
        let answer = gateways[i % gateways.len()].post(
            "/v1/chat/completions",
            "authorization: Bearer sk-alice\r\n",
            r#"{"model":"m"}"#,
        );
        if answer.starts_with("HTTP/1.1 200") {
            ok += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        }
    }
    ok
}

#[test]
fn a_rate_limit_holds_across_processes_with_redis_and_per_process_without() {
    let Some(redis) = redis_or_skip() else { return };
    let (_rt, mock) = mock_upstream();
    away_from_a_minute_boundary();
    let config = limited_config("shared");
    let with_config = |cmd: &mut Command| {
        cmd.arg("--config")
            .arg(&config)
            .env("BYPASS_MODEL_ACCESS_CONTROL", "true");
    };
    let a = gateway(&mock.url(), Some(&redis), "t-limit", with_config);
    let b = gateway(&mock.url(), Some(&redis), "t-limit", with_config);
    // Three a minute, whichever process is asked.
    assert_eq!(chats_until_refused(&[&a, &b], 6), 3);
    drop((a, b));
    let alone = limited_config("alone");
    let with_alone = |cmd: &mut Command| {
        cmd.arg("--config")
            .arg(&alone)
            .env("BYPASS_MODEL_ACCESS_CONTROL", "true");
    };
    let c = gateway(&mock.url(), None, "t-limit-alone", with_alone);
    let d = gateway(&mock.url(), None, "t-limit-alone", with_alone);
    // Without Redis each process counts alone: three each.
    assert_eq!(chats_until_refused(&[&c, &d], 8), 6);
}
