//! `--instructions`: the CPU instructions one request costs the real `openai-gateway` binary
//! on its default path, counted by valgrind's callgrind. Counts, not seconds: the same
//! binary, inputs and environment give the same count whatever else the machine is doing,
//! so a check against a recorded baseline can run on a shared CI machine.
//!
//! The binary runs under `valgrind --tool=callgrind` twice, once with [`FEW`] and once with
//! [`MANY`] small chat requests (sent one after another, after the same warm-up); the
//! difference of the two totals over the difference of the counts is the cost of one
//! request, with start-up, warm-up and shutdown cancelled out.

use super::*;

/// Requests in the shorter run.
const FEW: usize = 200;
/// Requests in the longer run.
const MANY: usize = 1200;
/// Requests sent first in each run (pools, the model list, lazily built state).
const WARM_UP: usize = 50;

/// The recorded baseline (`bench/instructions.json`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Baseline {
    /// Instructions per small chat request, gateway process only.
    pub(crate) instructions_per_request: f64,
    /// How much more a check allows, as a fraction (0.10: 10 %).
    pub(crate) tolerance: f64,
    /// The command that recorded it.
    pub(crate) command: String,
    /// The commit it was recorded at.
    pub(crate) commit: String,
    /// The toolchain that built the binary.
    pub(crate) rustc: String,
}

/// The instructions `exe` spends per small chat request, or why it could not be counted.
pub(crate) async fn per_request(exe: &std::path::Path) -> Result<f64, String> {
    let up = upstream::start(
        Instant::now(),
        upstream::Stream {
            chunks: 1,
            gap: Duration::ZERO,
        },
        upstream::Stream {
            chunks: 1,
            gap: Duration::ZERO,
        },
    )
    .await;
    let few = counted_run(exe, up, FEW).await?;
    let many = counted_run(exe, up, MANY).await?;
    if many <= few {
        return Err(format!(
            "the longer run counted fewer instructions ({many} ≤ {few})"
        ));
    }
    Ok((many - few) as f64 / (MANY - FEW) as f64)
}

/// One run under callgrind: its instruction total.
async fn counted_run(
    exe: &std::path::Path,
    up: SocketAddr,
    requests: usize,
) -> Result<u64, String> {
    let port = free_port();
    let (file, dir) = gateway_config(up, &format!("instructions-{port}"));
    let out = dir.join("callgrind.out");
    let _ = std::fs::remove_file(&out);
    let mut child = tokio::process::Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(&dir)
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEWAY_SHUTDOWN_GRACE", "1")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run valgrind ({e}); install it (Debian: valgrind)"))?;
    // Under valgrind the start takes seconds; only a connection is waited for, so every run
    // sends exactly the same requests.
    let mut listening = false;
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !listening {
        return Err("the gateway under valgrind did not listen within 60 s".into());
    }
    let client = client();
    let system = System {
        name: "counted",
        base: format!("http://127.0.0.1:{port}/v1"),
        model: "bench.bench-model",
        key: Some("sk-alice"),
        pid: child.id(),
    };
    let body = system.small_chat();
    for i in 0..WARM_UP + requests {
        if timed(&client, system.chat(&body)).await.is_none() {
            return Err(format!("request {i} failed"));
        }
    }
    drop(client);
    // SIGTERM: a clean exit writes the counts.
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    let text = std::fs::read_to_string(&out)
        .map_err(|e| format!("no callgrind output at {}: {e}", out.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| "no instruction total in the callgrind output".into())
}

/// `--instructions [record|check] [FILE]`: print the count; `record` writes it as the
/// baseline, `check` fails when it is more than the baseline's tolerance above it.
pub(crate) async fn run(words: &[String]) -> bool {
    let mode = words.first().map_or("print", String::as_str);
    let file = words
        .get(1)
        .map_or("bench/instructions.json", String::as_str);
    let Some(exe) = gateway_exe() else {
        return false;
    };
    eprintln!(
        "counting instructions: {} under callgrind, {FEW} and {MANY} chats after {WARM_UP} …",
        exe.display()
    );
    let count = match per_request(&exe).await {
        Ok(count) => count,
        Err(e) => {
            eprintln!("{e}");
            return false;
        }
    };
    println!("{count:.0} instructions per small chat request (openai-gateway process)");
    match mode {
        "record" => {
            let baseline = Baseline {
                instructions_per_request: count.round(),
                tolerance: 0.10,
                command: format!(
                    "cargo run --release -p tower-openai-bench -- --instructions record {file}"
                ),
                commit: command_output("git", &["rev-parse", "--short", "HEAD"]),
                rustc: command_output("rustc", &["--version"]),
            };
            let text = serde_json::to_string_pretty(&baseline).unwrap_or_default();
            if let Err(e) = std::fs::write(file, text + "\n") {
                eprintln!("cannot write {file}: {e}");
                return false;
            }
            println!("recorded in {file}");
            true
        }
        "check" => {
            let baseline: Baseline = match std::fs::read_to_string(file)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("cannot read the baseline {file}: {e}");
                    return false;
                }
            };
            let allowed = baseline.instructions_per_request * (1.0 + baseline.tolerance);
            let ratio = count / baseline.instructions_per_request;
            println!(
                "baseline {:.0} (commit {}, {}): {:.3} × the baseline, at most {:.2} × allowed",
                baseline.instructions_per_request,
                baseline.commit,
                baseline.rustc,
                ratio,
                1.0 + baseline.tolerance
            );
            if count > allowed {
                eprintln!(
                    "the default path got {:.1} % more expensive than the baseline: find the \
                     cost (bench/README.md, \"Instructions per request\"), or re-record the \
                     baseline with its command if the cost is wanted",
                    (ratio - 1.0) * 100.0
                );
                return false;
            }
            true
        }
        _ => true,
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
