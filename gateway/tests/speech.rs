//! The text-to-speech cache through the real gateway (Open WebUI rules S-2 … S-6 with fixes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use openai_gateway::Args;
use serde_json::json;
use tower_openai_test_util::{MockUpstream, Reply, Sse};

use common::*;

fn speech(input: &str) -> String {
    json!({"model": "tts-1", "input": input, "voice": "alloy"}).to_string()
}

async fn gateway(
    mock: &MockUpstream,
    data_dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> openai_gateway::RunningGateway {
    let mut pairs = vec![("OPENAI_API_BASE_URLS", mock.url())];
    pairs.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start_with(
        Args {
            data_dir: Some(data_dir.to_owned()),
            ..Args::default()
        },
        &pairs,
    )
    .await
}

/// The cache commits on a task after the body ends; wait for it.
async fn settled(dir: &std::path::Path, entries: usize) {
    let speech_dir = dir.join("cache/audio/speech");
    for _ in 0..200 {
        let bins = std::fs::read_dir(&speech_dir)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "bin")
                })
                .count()
            })
            .unwrap_or(0);
        if bins == entries {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the cache never held {entries} entries");
}

#[tokio::test]
async fn a_hit_is_served_from_disk_with_the_upstreams_content_type_and_no_upstream_call() {
    let mock = MockUpstream::builder()
        .any(
            "/v1/audio/speech",
            Reply::Bytes {
                status: StatusCode::OK,
                content_type: "audio/ogg".into(),
                body: "OggS-audio-bytes".into(),
            },
        )
        .start()
        .await;
    let dir = temp_dir();
    let gw = gateway(&mock, &dir, &[]).await;
    let first = answer(post_json(
        &format!("{}/audio/speech", gw.url()),
        &speech("hello"),
    ))
    .await;
    assert_eq!(
        (
            first.status,
            first.headers["x-speech-cache"].to_str().unwrap()
        ),
        (StatusCode::OK, "miss")
    );
    assert_eq!(&first.body[..], b"OggS-audio-bytes");
    settled(&dir, 1).await;
    let calls = mock.requests().len();

    let second = answer(post_json(
        &format!("{}/audio/speech", gw.url()),
        &speech("hello"),
    ))
    .await;
    assert_eq!(second.headers["x-speech-cache"], "hit");
    assert_eq!(second.headers["content-type"], "audio/ogg");
    assert_eq!(&second.body[..], b"OggS-audio-bytes");
    assert_eq!(mock.requests().len(), calls, "a hit reached the upstream");
    // A different body (even just whitespace) is a different key.
    let spaced = json!({"model": "tts-1", "input": "hello", "voice": "alloy"})
        .to_string()
        .replace(':', ": ");
    assert_eq!(
        answer(post_json(&format!("{}/audio/speech", gw.url()), &spaced))
            .await
            .headers["x-speech-cache"],
        "miss"
    );
}

#[tokio::test]
async fn upstream_errors_keep_their_status_and_are_not_cached() {
    let mock = MockUpstream::builder()
        .status(
            "/v1/audio/speech",
            400,
            json!({"error": {"message": "voice not found", "type": "invalid_request_error"}}),
        )
        .start()
        .await;
    let dir = temp_dir();
    let gw = gateway(&mock, &dir, &[]).await;
    for _ in 0..2 {
        let res = answer(post_json(
            &format!("{}/audio/speech", gw.url()),
            &speech("x"),
        ))
        .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
        assert_eq!(res.json()["error"]["message"], "voice not found");
    }
    assert_eq!(mock.count("/v1/audio/speech"), 2);
}

#[tokio::test]
async fn a_cut_off_answer_is_never_cached() {
    let mock = MockUpstream::builder()
        .sse(
            "/v1/audio/speech",
            Sse::events(["chunk-1", "chunk-2", "chunk-3"])
                .reset_after(1)
                .content_type("audio/mpeg"),
        )
        .start()
        .await;
    let dir = temp_dir();
    let gw = gateway(&mock, &dir, &[]).await;
    let res = send(post_json(
        &format!("{}/audio/speech", gw.url()),
        &speech("cut"),
    ))
    .await;
    assert!(
        res.into_body().collect().await.is_err(),
        "a cut-off body must not look complete"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let res = send(post_json(
        &format!("{}/audio/speech", gw.url()),
        &speech("cut"),
    ))
    .await;
    assert_eq!(res.headers()["x-speech-cache"], "miss");
    let _ = res.into_body().collect().await;
    assert_eq!(mock.count("/v1/audio/speech"), 2);
    // The writer discards its temporary file on its own task: wait for it.
    let speech_dir = dir.join("cache/audio/speech");
    let mut leftovers = Vec::new();
    for _ in 0..500 {
        leftovers = std::fs::read_dir(&speech_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if leftovers.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn concurrent_identical_misses_make_one_upstream_call() {
    let mock = MockUpstream::builder()
        .delay("/v1/audio/speech", Duration::from_millis(300))
        .start()
        .await;
    let dir = temp_dir();
    let gw = gateway(&mock, &dir, &[]).await;
    let url = format!("{}/audio/speech", gw.url());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { answer(post_json(&url, &speech("together"))).await })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let res = t.await.unwrap();
        assert_eq!(res.status, StatusCode::OK);
        bodies.push(res.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(mock.count("/v1/audio/speech"), 1);
}

#[tokio::test]
async fn the_cache_is_bounded_least_recently_used_first_and_survives_a_restart() {
    let mock = MockUpstream::start().await;
    let dir = temp_dir();
    // The mock answers 22 bytes of "audio" for these requests, and each entry's metadata
    // is 29 bytes more: room for two.
    let gw = gateway(&mock, &dir, &[("SPEECH_CACHE_MAX_BYTES", "110")]).await;
    let url = format!("{}/audio/speech", gw.url());
    for input in ["a", "b"] {
        answer(post_json(&url, &speech(input))).await;
    }
    settled(&dir, 2).await;
    // Use "a" again, so "b" is the least recently used.
    assert_eq!(
        answer(post_json(&url, &speech("a"))).await.headers["x-speech-cache"],
        "hit"
    );
    answer(post_json(&url, &speech("c"))).await;
    settled(&dir, 2).await;
    assert_eq!(
        answer(post_json(&url, &speech("a"))).await.headers["x-speech-cache"],
        "hit"
    );
    assert_eq!(
        answer(post_json(&url, &speech("c"))).await.headers["x-speech-cache"],
        "hit"
    );
    let total: u64 = std::fs::read_dir(dir.join("cache/audio/speech"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 110, "{total} bytes on disk, metadata included");
    assert!(gw.shutdown(Duration::from_secs(10)).await);

    let again = gateway(&mock, &dir, &[("SPEECH_CACHE_MAX_BYTES", "110")]).await;
    let calls = mock.count("/v1/audio/speech");
    let res = answer(post_json(
        &format!("{}/audio/speech", again.url()),
        &speech("c"),
    ))
    .await;
    assert_eq!(res.headers["x-speech-cache"], "hit");
    assert_eq!(mock.count("/v1/audio/speech"), calls);
    assert_eq!(
        answer(post_json(
            &format!("{}/audio/speech", again.url()),
            &speech("b")
        ))
        .await
        .headers["x-speech-cache"],
        "miss"
    );
}

#[tokio::test]
async fn speech_routes_like_any_model_request() {
    // Not only to api.openai.com (S-1): any connection that lists the model.
    let mock = MockUpstream::builder().models(["local-tts"]).start().await;
    let dir = temp_dir();
    let gw = gateway(&mock, &dir, &[]).await;
    let res = answer(post_json(
        &format!("{}/audio/speech", gw.url()),
        r#"{"model":"local-tts","input":"hi"}"#,
    ))
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["content-type"], "audio/mpeg");
    let res = answer(post_json(
        &format!("{}/audio/speech", gw.url()),
        r#"{"model":"unknown-tts","input":"hi"}"#,
    ))
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_shutdown_right_after_a_miss_keeps_the_entry_private_and_without_the_text() {
    let audio = vec![b'a'; 8 << 20];
    let mock = MockUpstream::builder()
        .any(
            "/v1/audio/speech",
            Reply::Bytes {
                status: StatusCode::OK,
                content_type: "audio/mpeg".into(),
                body: audio.clone().into(),
            },
        )
        .start()
        .await;
    let dir = temp_dir();
    let gw = gateway(&mock, &dir, &[]).await;
    let res = answer(post_json(
        &format!("{}/audio/speech", gw.url()),
        &speech("the secret words"),
    ))
    .await;
    assert_eq!(res.body.len(), audio.len());
    // Stopped at once: the write of the entry is awaited before the server returns.
    assert!(gw.shutdown(Duration::from_secs(30)).await);
    let speech_dir = dir.join("cache/audio/speech");
    let files: Vec<_> = std::fs::read_dir(&speech_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        if file.extension().is_some_and(|x| x == "json") {
            let meta = std::fs::read_to_string(file).unwrap();
            assert!(!meta.contains("secret words"), "{meta}");
        }
    }
    let again = gateway(&mock, &dir, &[]).await;
    let calls = mock.count("/v1/audio/speech");
    let res = answer(post_json(
        &format!("{}/audio/speech", again.url()),
        &speech("the secret words"),
    ))
    .await;
    assert_eq!(res.headers["x-speech-cache"], "hit");
    assert_eq!(mock.count("/v1/audio/speech"), calls);
}
