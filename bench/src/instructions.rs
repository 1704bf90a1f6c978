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

/// What is counted.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counted<'a> {
    /// An `openai-gateway` binary with the benchmark's configuration.
    Gateway(&'a std::path::Path),
    /// The bare hyper proxy (this binary's `--serve-bare`): the floor any proxy pays.
    Bare,
}

/// The instructions `what` spends per small chat request, or why it could not be counted.
pub(crate) async fn per_request(what: Counted<'_>) -> Result<f64, String> {
    let up = upstream_of_one_chunk().await;
    let few = counted_run(what, up, FEW).await?;
    let many = counted_run(what, up, MANY).await?;
    if many <= few {
        return Err(format!(
            "the longer run counted fewer instructions ({many} ≤ {few})"
        ));
    }
    Ok((many - few) as f64 / (MANY - FEW) as f64)
}

/// The mock upstream the counted runs send to: answers in one chunk, at once.
async fn upstream_of_one_chunk() -> SocketAddr {
    let one = || upstream::Stream {
        chunks: 1,
        gap: Duration::ZERO,
    };
    upstream::start(Instant::now(), one(), one()).await
}

/// One run under callgrind: its instruction total.
async fn counted_run(what: Counted<'_>, up: SocketAddr, requests: usize) -> Result<u64, String> {
    counted_run_keeping(what, up, requests, None).await
}

/// [`counted_run`], copying callgrind's output to `keep` (for `callgrind_annotate`).
async fn counted_run_keeping(
    what: Counted<'_>,
    up: SocketAddr,
    requests: usize,
    keep: Option<&std::path::Path>,
) -> Result<u64, String> {
    let events = counted_events(what, up, requests, keep, false).await?;
    events
        .iter()
        .find(|(name, _)| name == "Ir")
        .map(|(_, n)| *n)
        .ok_or_else(|| "no instruction total in the callgrind output".into())
}

/// Every event callgrind counted in one run, by name (`Ir`; with `cache_sim`, also the
/// simulated caches' misses: `I1mr`, `D1mr`, `D1mw`, `ILmr`, `DLmr`, `DLmw`).
async fn counted_events(
    what: Counted<'_>,
    up: SocketAddr,
    requests: usize,
    keep: Option<&std::path::Path>,
    cache_sim: bool,
) -> Result<Vec<(String, u64)>, String> {
    let port = free_port();
    let (file, dir) = gateway_config(up, &format!("instructions-{port}"));
    let out = dir.join("callgrind.out");
    let _ = std::fs::remove_file(&out);
    let mut command = tokio::process::Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        // Nothing is counted until the warm-up is over (start-up work varies from run to
        // run: the metrics recorder calibrates its clock for as long as it takes).
        .arg("--instr-atstart=no")
        .arg(format!("--callgrind-out-file={}", out.display()));
    if cache_sim {
        command.arg("--cache-sim=yes");
    }
    let (model, key) = match what {
        Counted::Gateway(exe) => {
            command
                .arg(exe)
                .arg("--config")
                .arg(&file)
                .arg("--data-dir")
                .arg(&dir);
            ("bench.bench-model", Some("sk-alice"))
        }
        Counted::Bare => {
            command
                .arg(std::env::current_exe().map_err(|e| e.to_string())?)
                .arg("--serve-bare")
                .arg(up.to_string())
                .arg(port.to_string());
            ("bench-model", None)
        }
    };
    let mut child = command
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEWAY_SHUTDOWN_GRACE", "1")
        // One worker thread: no work stealing and fewer wake-ups whose number varies from
        // run to run.
        .env("TOKIO_WORKER_THREADS", "1")
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
        model,
        key,
        pid: child.id(),
    };
    let body = system.small_chat();
    for i in 0..WARM_UP + requests {
        if i == WARM_UP {
            let pid = child.id().unwrap_or_default().to_string();
            let on = tokio::process::Command::new("callgrind_control")
                .stderr(std::process::Stdio::null())
                .args(["--instr=on", &pid])
                .stdout(std::process::Stdio::null())
                .status()
                .await
                .map_err(|e| format!("cannot run callgrind_control: {e}"))?;
            if !on.success() {
                return Err("callgrind_control could not switch counting on".into());
            }
        }
        if timed(&client, system.chat(&body)).await.is_none() {
            return Err(format!("request {i} failed"));
        }
    }
    drop(client);
    // SIGTERM: a clean exit writes the counts.
    let _ = stop_cleanly(&mut child, Duration::from_secs(60)).await;
    let text = std::fs::read_to_string(&out)
        .map_err(|e| format!("no callgrind output at {}: {e}", out.display()))?;
    if let Some(keep) = keep {
        let _ = std::fs::copy(&out, keep);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let names = text
        .lines()
        .find_map(|l| l.strip_prefix("events:"))
        .ok_or("no event names in the callgrind output")?;
    let totals = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .ok_or("no totals in the callgrind output")?;
    Ok(names
        .split_whitespace()
        .zip(totals.split_whitespace())
        .filter_map(|(name, n)| Some((name.to_owned(), n.parse().ok()?)))
        .collect())
}

/// `--instructions cache`: instructions and simulated cache misses per request (callgrind's
/// `--cache-sim`, the host's cache sizes), the gateway against the bare proxy. A proxy whose
/// hot code or data outgrows the first-level caches runs fewer instructions a nanosecond;
/// the instruction count alone does not show it.
async fn cache_report(exe: &std::path::Path) -> bool {
    let up = upstream_of_one_chunk().await;
    const SHOWN: [(&str, &str); 5] = [
        ("Ir", "instructions"),
        ("I1mr", "L1 instruction misses"),
        ("D1mr", "L1 data read misses"),
        ("D1mw", "L1 data write misses"),
        ("ILmr", "last-level instruction misses"),
    ];
    let mut columns = Vec::new();
    for what in [Counted::Gateway(exe), Counted::Bare] {
        let few = counted_events(what, up, FEW, None, true).await;
        let many = counted_events(what, up, MANY, None, true).await;
        let (few, many) = match (few, many) {
            (Ok(few), Ok(many)) => (few, many),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{e}");
                return false;
            }
        };
        let per = |name: &str| {
            let of = |events: &[(String, u64)]| {
                events
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0.0, |(_, v)| *v as f64)
            };
            (of(&many) - of(&few)) / (MANY - FEW) as f64
        };
        columns.push(SHOWN.map(|(name, _)| per(name)));
    }
    println!(
        "{:<32} {:>12} {:>12} {:>8}",
        "per request", "gateway", "bare", "×"
    );
    for (i, (_, label)) in SHOWN.iter().enumerate() {
        let (gateway, bare) = (columns[0][i], columns[1][i]);
        println!(
            "{label:<32} {gateway:>12.0} {bare:>12.0} {:>8.2}",
            gateway / bare.max(1.0)
        );
    }
    true
}

/// What a profile-guided build may count at most, against the plain release build (it
/// counts 0.80 × in CI).
const PGO_AT_MOST: f64 = 0.9;

/// `--instructions [record|check|profile|compare|cache|pgo] [FILE]`: print the count; `record`
/// writes it as the baseline, `check` fails when it is more than the baseline's tolerance
/// above it, `profile` keeps one run's callgrind output in FILE (default `callgrind.out`),
/// `compare PATH…` counts other builds too, `cache [PATH]` adds simulated cache misses (of
/// this build or the one at PATH), `pgo PATH` fails unless the profile-guided build at PATH
/// counts at most 0.9 × this build's instructions.
pub(crate) async fn run(words: &[String]) -> bool {
    let mode = words.first().map_or("print", String::as_str);
    let file = words
        .get(1)
        .map_or("bench/instructions.json", String::as_str);
    let Some(exe) = gateway_exe() else {
        return false;
    };
    if mode == "compare" {
        // `compare PATH…`: this build and other builds of openai-gateway, one after another.
        let mut builds = vec![exe.clone()];
        builds.extend(words[1..].iter().map(std::path::PathBuf::from));
        let mut counts = Vec::new();
        for build in &builds {
            match per_request(Counted::Gateway(build)).await {
                Ok(count) => counts.push(count),
                Err(e) => {
                    eprintln!("{}: {e}", build.display());
                    return false;
                }
            }
        }
        for (build, count) in builds.iter().zip(&counts) {
            println!(
                "{count:>9.0} instructions per request ({:.3} × this build): {}",
                count / counts[0],
                build.display()
            );
        }
        return true;
    }
    if mode == "pgo" {
        // `pgo PATH`: the profile-guided build at PATH must count at most PGO_AT_MOST × this
        // build's instructions (a training run that stopped counting, or a profile that was
        // not applied, leaves the two alike).
        let Some(pgo) = words.get(1).map(std::path::PathBuf::from) else {
            eprintln!("--instructions pgo PATH: the profile-guided build's path is missing");
            return false;
        };
        let (plain, guided) = match (
            per_request(Counted::Gateway(&exe)).await,
            per_request(Counted::Gateway(&pgo)).await,
        ) {
            (Ok(plain), Ok(guided)) => (plain, guided),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{e}");
                return false;
            }
        };
        let ratio = guided / plain;
        println!(
            "{plain:.0} instructions per request in this build, {guided:.0} in the profile-guided \
             build ({ratio:.3} ×; at most {PGO_AT_MOST} × allowed)"
        );
        return ratio <= PGO_AT_MOST;
    }
    if mode == "cache" {
        // `cache [PATH]`: this build, or another build of openai-gateway.
        let exe = words.get(1).map_or(exe, std::path::PathBuf::from);
        return cache_report(&exe).await;
    }
    if mode == "profile" {
        // One run of MANY requests, its callgrind output kept for `callgrind_annotate`.
        let keep = std::path::Path::new(words.get(1).map_or("callgrind.out", String::as_str));
        let up = upstream_of_one_chunk().await;
        let what = if words.iter().any(|w| w == "bare") {
            Counted::Bare
        } else {
            Counted::Gateway(&exe)
        };
        let requests = if words.iter().any(|w| w == "few") {
            FEW
        } else {
            MANY
        };
        return match counted_run_keeping(what, up, requests, Some(keep)).await {
            Ok(total) => {
                println!(
                    "{total} instructions in all; the profile is in {}",
                    keep.display()
                );
                true
            }
            Err(e) => {
                eprintln!("{e}");
                false
            }
        };
    }
    eprintln!(
        "counting instructions: {} under callgrind, {FEW} and {MANY} chats after {WARM_UP} …",
        exe.display()
    );
    let count = match per_request(Counted::Gateway(&exe)).await {
        Ok(count) => count,
        Err(e) => {
            eprintln!("{e}");
            return false;
        }
    };
    println!("{count:.0} instructions per small chat request (openai-gateway process)");
    if mode == "print" {
        match per_request(Counted::Bare).await {
            Ok(bare) => println!(
                "{bare:.0} instructions per request for the bare hyper proxy: the gateway is {:.2} ×",
                count / bare
            ),
            Err(e) => eprintln!("the bare proxy could not be counted: {e}"),
        }
    }
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
