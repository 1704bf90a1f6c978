//! `--train EXE`: the training run of a profile-guided build (`bench/pgo-build`).
//!
//! An instrumented `openai-gateway` counts which branches and calls its code takes; the
//! optimizing build then lays out and inlines the hot path by those counts. What the
//! training run sends is what the build is tuned for, so it is what a gateway mostly serves:
//! small chats at concurrency 64 (the benchmark's configuration: a user with a key, a model
//! access record, a prefixed connection, user-info headers), then streamed chats, the cached
//! model list, a large body and the usual refusals, in that order of weight. Every answer's
//! status is checked: a training run that served errors would tune the build for errors.
//! The gateway is stopped with SIGTERM, so it exits cleanly and writes its counts.

use super::*;

/// Runs the training against the `openai-gateway` at `exe`; false when any step failed.
pub(crate) async fn run(exe: &std::path::Path) -> bool {
    let epoch = Instant::now();
    let stream = upstream::Stream {
        chunks: 20,
        gap: Duration::ZERO,
    };
    let up = upstream::start(epoch, stream, stream).await;
    let client = client();
    let grace = [("GATEWAY_SHUTDOWN_GRACE".to_owned(), "5".to_owned())];
    let Some((system, mut child)) = spawn_gateway(up, &client, exe, "training", &grace, "").await
    else {
        eprintln!("{} did not start", exe.display());
        return false;
    };
    let ok = steps(&client, &system, epoch).await;
    // SIGTERM: a clean exit writes the profile (a killed process writes nothing).
    let exited = stop_cleanly(&mut child, Duration::from_secs(60)).await;
    match exited {
        Some(Ok(status)) if status.success() => ok,
        Some(Ok(status)) => {
            eprintln!("the trained gateway exited with {status}");
            false
        }
        _ => {
            eprintln!("the trained gateway did not exit within 60 s of SIGTERM");
            false
        }
    }
}

/// The training's requests, each step's answers checked.
async fn steps(client: &HttpClient, system: &System, epoch: Instant) -> bool {
    // The hot path: small chats at concurrency 64, 5 s.
    let body = system.small_chat();
    let chat = system.clone();
    let (rps, _) = throughput(
        Arc::new(move || chat.chat(&body)),
        64,
        Duration::from_secs(5),
        None,
    )
    .await;
    println!("chats at concurrency 64: {rps:.0} requests/s");
    if rps < 1.0 {
        eprintln!("no chat was answered 200");
        return false;
    }
    // Streamed chats, one after another.
    for i in 0..300 {
        match stream_once(client, system, epoch).await {
            Some((_, _, _, events)) if events > 0 => {}
            _ => {
                eprintln!("streamed chat {i} failed");
                return false;
            }
        }
    }
    println!("300 streamed chats");
    // The model list from cache, and large bodies (1 MB of content).
    let large = format!(
        r#"{{"model":"{}","messages":[{{"role":"user","content":"{}"}}]}}"#,
        system.model,
        "x".repeat(1 << 20)
    );
    // The refusals a shared gateway answers every day.
    let stranger = System {
        key: Some("sk-nobody"),
        ..system.clone()
    };
    let small = system.small_chat();
    // Who asks, the path, the body (none: a GET), the answer expected, how many times.
    let answers: [(&System, &str, Option<&str>, StatusCode, usize); 5] = [
        (system, "models", None, StatusCode::OK, 2000),
        (system, "chat/completions", Some(&large), StatusCode::OK, 50),
        (
            &stranger,
            "chat/completions",
            Some(&small),
            StatusCode::UNAUTHORIZED,
            500,
        ),
        // No access record: refused, whether or not an upstream serves it.
        (
            system,
            "chat/completions",
            Some(r#"{"model":"bench.no-such-model","messages":[]}"#),
            StatusCode::FORBIDDEN,
            500,
        ),
        (
            system,
            "chat/completions",
            Some(r#"{"model":"#),
            StatusCode::BAD_REQUEST,
            500,
        ),
    ];
    for (who, path, body, want, times) in answers {
        let make = || who.request(path, body.map(str::to_owned));
        let what = format!("{} /{path}", make().method());
        for _ in 0..times {
            let status = match client.request(make()).await {
                Ok(res) => {
                    let status = res.status();
                    let _ = res.into_body().collect().await;
                    Some(status)
                }
                Err(_) => None,
            };
            if status != Some(want) {
                eprintln!("{what}: {status:?}, expected {want}");
                return false;
            }
        }
        println!("{times} × {what} → {want}");
    }
    true
}
