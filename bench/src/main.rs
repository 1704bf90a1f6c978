//! `tower-openai-bench`: the gateway measured against a direct call and a bare hyper proxy,
//! in one run, in interleaved rounds so machine drift hits every system alike.
//!
//! Run: `cargo run --release -p tower-openai-bench` (add `-- --quick` for a short run,
//! `-- --json FILE` to choose where the JSON goes; default `bench/results.json`).
//!
//! The systems: direct to the mock upstream, a bare hyper proxy, the full gateway stack and
//! select + auth alone, all in this process; then the bare proxy and the real
//! `openai-gateway` binary, each in a process of its own (as they are deployed: their
//! runtimes share no threads with the load generator). The targets are checked for both
//! views.
//!
//! Other modes:
//! - `--also-gateway PATH`: another build of `openai-gateway`, measured in the same rounds
//!   as a seventh system (A/B comparisons); `--against COMMIT` builds that commit's binary
//!   (once, under `target/bench-builds`) and measures it so;
//! - `--layers`: the added latency, requests/s and CPU of the stack built up one layer at a
//!   time (what each layer costs);
//! - `--profile-gateway SECS [models] [bare] [c1]`: load only the in-process gateway (chat,
//!   or the cached model list; the bare proxy instead with `bare`; at concurrency 1 with
//!   `c1`) for a profiler attached to this process;
//! - `--profile-process SECS [bare] [c1] [stream] [models]`: load only the `openai-gateway`
//!   process (or the bare proxy's; at concurrency 1 with `c1`; one streamed completion after
//!   another with `stream`; the cached model list with `models`), its pid printed, for a
//!   profiler attached to it. It prints how busy each side's cores were;
//! - `--instructions [record|check] [FILE]`: the CPU instructions one small chat costs the
//!   `openai-gateway` process, counted by valgrind's callgrind (stable on shared machines);
//!   `check` compares them with the recorded baseline (CI runs it); `compare PATH…` counts
//!   other builds in the same run, `profile FILE` keeps a callgrind profile, `cache [PATH]`
//!   adds simulated first-level cache misses, the gateway against the bare proxy, and
//!   `pgo PATH` checks that a profile-guided build counts at most 0.9 × this one (CI runs it);
//! - `--costs`: an A/B run per optional feature (the same build with and without it),
//!   written as the cost table of `bench/README.md`;
//! - `--train PATH`: the training run of a profile-guided build (`bench/pgo-build`) through
//!   the instrumented `openai-gateway` at PATH;
//! - `--soak [N]` (default 100 000): N streamed requests through the `openai-gateway`
//!   process with random caller hang-ups and upstream faults (reset, stall, error status,
//!   refused connection); checks the RSS after warm-up against the end, that no upstream
//!   stream is left open, and that every caller got a complete stream or an error.

mod ablation;
mod against;
mod costs;
mod groups;
mod instructions;
mod load;
mod measure;
mod proxy;
mod soak;
mod systems;
mod train;
mod upstream;

use crate::ablation::*;
use crate::measure::*;
use crate::systems::*;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openai_gateway::{Args, Gateway, GatewayConfig};
// The benchmark's upstream takes no key: the bare upstream service is the whole endpoint.
use serde_json::{Value, json};
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_openai::auth::AuthLayer;
use tower_openai::collect::CollectPayloadLayer;
use tower_openai::models::AppliesCredentials;
use tower_openai::models::Catalog;
use tower_openai::rescue::RescueLayer;
use tower_openai::select::SelectLayer;
use tower_openai::settings::ApiKey;
use tower_openai::settings::{LoadSettingsLayer, SettingsHandle, SettingsSource};
use tower_openai::upstream::Upstream;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

// The same allocator as the openai-gateway binary, for every system measured here.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The gateway measured against a direct call and a bare hyper proxy, in one run (see
/// bench/README.md).
#[derive(Debug, clap::Parser)]
#[command(name = "tower-openai-bench")]
struct BenchArgs {
    /// A short run (3 rounds instead of 7)
    #[arg(long)]
    quick: bool,
    /// Where the results go
    #[arg(long, value_name = "FILE", default_value = "bench/results.json")]
    json: String,
    /// What each layer adds, building the stack up one layer at a time
    #[arg(long)]
    layers: bool,
    /// Another build of `openai-gateway`, measured in the same rounds (A/B)
    #[arg(long, value_name = "PATH")]
    also_gateway: Option<String>,
    /// The `openai-gateway` of an earlier commit (built once, under target/bench-builds),
    /// measured in the same rounds as this build (A/B against the start of a round of work)
    #[arg(long, value_name = "COMMIT", conflicts_with = "also_gateway")]
    against: Option<String>,
    /// KEY=VALUE added to the `--also-gateway` process's environment (repeatable; `{upstream}`
    /// in VALUE is the mock upstream's address), e.g. `RUST_LOG=info` to measure the access
    /// log, or `OTEL_EXPORTER_OTLP_ENDPOINT=http://{upstream}` to measure trace export
    #[arg(long, value_name = "KEY=VALUE")]
    other_env: Vec<String>,
    /// TOML appended to the `--also-gateway` process's configuration, e.g.
    /// `'[rate_limit]\nrpm = 1000000000'` to measure a rate limit that never refuses
    #[arg(long, value_name = "TOML", default_value = "")]
    other_toml: String,
    /// Load only the in-process gateway for SECS, for a profiler; words after it: `models`
    /// (the cached list), `bare` (the bare proxy instead), `c1` (concurrency 1)
    #[arg(long, num_args = 1.., value_names = ["SECS", "MODE"])]
    profile_gateway: Option<Vec<String>>,
    /// Load only the `openai-gateway` process for SECS; words after it: `bare`, `c1`,
    /// `stream` (one stream after another), `models`
    #[arg(long, num_args = 1.., value_names = ["SECS", "MODE"])]
    profile_process: Option<Vec<String>>,
    /// A model group of two connections, one failing 20 % of requests: N requests per system
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "2000")]
    groups: Option<usize>,
    /// N streamed requests through the `openai-gateway` process with random faults
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "100000")]
    soak: Option<usize>,
    /// The CPU instructions of one small chat in the `openai-gateway` process, counted by
    /// valgrind's callgrind: `--instructions` prints it, `--instructions record [FILE]`
    /// records it as the baseline, `--instructions check [FILE]` fails when it is more than
    /// the baseline's tolerance (10 %) above it (default FILE: bench/instructions.json);
    /// `compare PATH…`, `profile [FILE] [bare]`, `cache [PATH]` and `pgo PATH` as in
    /// bench/README.md
    #[arg(long, num_args = 0.., value_names = ["MODE", "FILE"])]
    instructions: Option<Vec<String>>,
    /// What each optional feature costs (access log, OpenTelemetry, stream usage, groups,
    /// rate limits in memory and in Redis, Redis): an A/B run of this build against itself
    /// per feature, written as the table in bench/README.md
    #[arg(long)]
    costs: bool,
    /// With `--costs`: only the features whose name holds this text (their rows of the table
    /// are replaced, the others kept)
    #[arg(long, value_name = "TEXT")]
    costs_only: Option<String>,
    /// The training run of a profile-guided build (`bench/pgo-build`): chats, streams, the
    /// model list, a large body and refusals through the instrumented `openai-gateway` at
    /// PATH, stopped with SIGTERM so it writes its profile
    #[arg(long, value_name = "PATH")]
    train: Option<String>,
    /// (internal) serve the bare proxy in this process: UPSTREAM PORT
    #[arg(long, num_args = 2, value_names = ["UPSTREAM", "PORT"], hide = true)]
    serve_bare: Option<Vec<String>>,
}

/// The seconds and the words of a `--profile-*` option.
fn profile_words(values: &[String]) -> (u64, &[String]) {
    let secs = values.first().and_then(|s| s.parse().ok()).unwrap_or(10);
    (secs, values.get(1..).unwrap_or_default())
}

#[tokio::main]
async fn main() {
    let mut args = <BenchArgs as clap::Parser>::parse();
    if let Some(commit) = &args.against {
        match against::build(commit) {
            Ok(exe) => args.also_gateway = Some(exe.display().to_string()),
            Err(e) => {
                eprintln!("--against {commit}: {e}");
                std::process::exit(1);
            }
        }
    }
    if let Some(bare) = &args.serve_bare {
        // A child process: the bare proxy on its own runtime.
        let upstream: SocketAddr = bare[0].parse().expect("upstream address");
        let port: u16 = bare[1].parse().expect("port");
        proxy::bare_on(upstream, port).await;
        std::future::pending::<()>().await;
    }
    if let Some(requests) = args.groups {
        let ok = groups::run(requests).await;
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.costs {
        let ok = costs::run(args.quick, args.costs_only.as_deref());
        std::process::exit(if ok { 0 } else { 1 });
    }
    if let Some(words) = &args.instructions {
        let ok = instructions::run(words).await;
        std::process::exit(if ok { 0 } else { 1 });
    }
    if let Some(exe) = &args.train {
        let ok = train::run(std::path::Path::new(exe)).await;
        std::process::exit(if ok { 0 } else { 1 });
    }
    if let Some(total) = args.soak {
        let ok = soak::run(total).await;
        std::process::exit(if ok { 0 } else { 1 });
    }
    let quick = args.quick;
    let json_path = args.json.clone();
    let rounds = if quick { 3 } else { 7 };
    let per_round = if quick { 100 } else { 400 };
    let run_for = Duration::from_millis(if quick { 700 } else { 2000 });

    let epoch = Instant::now();
    let stream_shape = upstream::Stream {
        chunks: 50,
        gap: Duration::from_millis(2),
    };
    let slow_shape = upstream::Stream {
        chunks: 40,
        gap: Duration::from_millis(500),
    };
    let up = upstream::start(epoch, stream_shape, slow_shape).await;
    if args.layers {
        ablation(up, &client(), rounds, per_round).await;
        return;
    }
    let mut systems = baselines(up).await;
    systems.extend([
        System::new(
            "gateway (full)",
            gateway_full(up).await,
            "bench.bench-model",
            Some("sk-alice"),
        ),
        System::new(
            "select + auth",
            select_and_auth(up).await,
            "bench.bench-model",
            None,
        ),
    ]);
    let client = client();
    if let Some(values) = &args.profile_gateway {
        // Load only the full gateway, for a profiler attached to this process.
        let (secs, rest) = profile_words(values);
        // `bare`: the bare proxy instead; `c1`: concurrency 1 instead of 64.
        let g = systems[if rest.iter().any(|a| a == "bare") {
            BARE
        } else {
            GATEWAY
        }]
        .clone();
        let concurrency = if rest.iter().any(|a| a == "c1") {
            1
        } else {
            64
        };
        let body = g.small_chat();
        // `models`: the cached model list instead of chat.
        let models = rest.iter().any(|a| a == "models");
        let make: Arc<dyn Fn() -> Request<Full<Bytes>> + Send + Sync> = if models {
            Arc::new(move || g.request("models", None))
        } else {
            Arc::new(move || g.chat(&body))
        };
        let (r, _) = throughput(make, concurrency, Duration::from_secs(secs), None).await;
        println!("{r:.0} rps");
        return;
    }
    // The same two, each in a process of its own: the real `openai-gateway` binary.
    let Some((bare_process, gateway_process, _children)) = processes(up, &client).await else {
        eprintln!("could not start the proxy processes");
        std::process::exit(1);
    };
    systems.push(bare_process);
    systems.push(gateway_process);
    // `--also-gateway PATH`: another build of `openai-gateway` measured in the same rounds
    // (an A/B comparison that machine drift cannot bias).
    let mut _other = None;
    if let Some(path) = &args.also_gateway {
        let env: Vec<(String, String)> = args
            .other_env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let Some((system, child)) = spawn_gateway(
            up,
            &client,
            std::path::Path::new(path),
            "gateway (other)",
            &env,
            &args.other_toml.replace("\\n", "\n"),
        )
        .await
        else {
            eprintln!("could not start {path}");
            std::process::exit(1);
        };
        systems.push(system);
        _other = Some(child);
    }
    if let Some(values) = &args.profile_process {
        // `--profile-process SECS [bare] [c1] [stream] [models]`: the bare proxy's process instead,
        // concurrency 1 instead of 64 (to compare system calls and wake-ups per request).
        let (secs, rest) = profile_words(values);
        let which = if rest.iter().any(|a| a == "bare") {
            BARE_PROCESS
        } else {
            GATEWAY_PROCESS
        };
        let concurrency = if rest.iter().any(|a| a == "c1") {
            1
        } else {
            64
        };
        let g = systems[which].clone();
        let pid = g.pid;
        if rest.iter().any(|a| a == "stream") {
            // `stream`: one streamed completion after another, for a trace of the time
            // to the first event.
            eprintln!("streaming through {} (pid {pid:?}) for {secs} s", g.name);
            let until = Instant::now() + Duration::from_secs(secs);
            let mut ttfbs = Vec::new();
            while Instant::now() < until {
                if let Some((_, ttfb, _, _)) = stream_once(&client, &g, epoch).await {
                    ttfbs.push(ttfb);
                }
            }
            ttfbs.sort();
            println!(
                "{} streams, time to first event p50 {} µs",
                ttfbs.len(),
                percentile(&ttfbs, 0.5).as_micros()
            );
            return;
        }
        eprintln!(
            "loading {} (pid {pid:?}) at concurrency {concurrency} for {secs} s",
            g.name
        );
        let make: Arc<dyn Fn() -> Request<Full<Bytes>> + Send + Sync> =
            if rest.iter().any(|a| a == "models") {
                // `models`: the cached model list instead of chat.
                Arc::new(move || g.request("models", None))
            } else {
                let body = g.small_chat();
                Arc::new(move || g.chat(&body))
            };
        let wall = Instant::now();
        let (this_before, proxy_before) = (
            proc_cpu_seconds("self"),
            pid.map_or(0.0, |p| proc_cpu_seconds(&p.to_string())),
        );
        let (r, c) = throughput(make, concurrency, Duration::from_secs(secs), pid).await;
        let wall = wall.elapsed().as_secs_f64();
        let this = (proc_cpu_seconds("self") - this_before) / wall;
        let proxy = pid.map_or(0.0, |p| proc_cpu_seconds(&p.to_string())) - proxy_before;
        println!(
            "{r:.0} rps, {:.1} µs CPU per request (both processes); cores busy: {this:.2} \
             in the load generator and mock, {:.2} in the proxy",
            c * 1000.0,
            proxy / wall
        );
        return;
    }
    let small = System::small_chat;
    warm_up(&client, &systems).await;

    eprintln!("latency at concurrency 1 ({rounds} rounds × {per_round} requests per system) …");
    let mut latencies = latency_at_c1(&client, &systems, rounds * per_round, &small).await;
    for l in &mut latencies {
        l.sort();
    }

    eprintln!("throughput at concurrency 64 ({rounds} rounds × {run_for:?} per system) …");
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    let mut models_rps = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, sys) in systems.iter().enumerate() {
            let (s, b) = (sys.clone(), small(sys));
            let pid = s.pid;
            let (r, c) = throughput(Arc::new(move || s.chat(&b)), 64, run_for, pid).await;
            rps[i].push(r);
            cpu[i].push(c);
        }
        for (n, g) in [GATEWAY, GATEWAY_PROCESS].into_iter().enumerate() {
            let g = systems[g].clone();
            models_rps[n].push(
                throughput(
                    Arc::new(move || g.request("models", None)),
                    64,
                    run_for,
                    None,
                )
                .await
                .0,
            );
        }
    }

    eprintln!("streaming (50 events, 2 ms apart) …");
    let mut stream_stats = Vec::new();
    for sys in &systems {
        let (mut delays, mut ttfbs, mut coalesced, mut sent, mut through) =
            (Vec::new(), Vec::new(), 0, 0, 0);
        for _ in 0..(if quick { 5 } else { 20 }) {
            if let Some((d, t, frames, events)) = stream_once(&client, sys, epoch).await {
                through += events;
                sent += stream_shape.chunks;
                coalesced += events.saturating_sub(frames);
                delays.extend(d);
                ttfbs.push(t);
            }
        }
        delays.sort();
        ttfbs.sort();
        stream_stats.push((
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            percentile(&ttfbs, 0.5),
            sent,
            through,
            coalesced,
        ));
    }

    eprintln!("a 1 MB chat body with a prefixed model …");
    let big_text = "x".repeat(1 << 20);
    let mut big = Vec::new();
    for sys in &systems {
        let body = format!(
            r#"{{"model":"{}","messages":[{{"role":"user","content":"{big_text}"}}]}}"#,
            sys.model
        );
        let mut times = Vec::new();
        for _ in 0..(if quick { 10 } else { 40 }) {
            if let Some(d) = timed(&client, sys.chat(&body)).await {
                times.push(d);
            }
        }
        times.sort();
        big.push(percentile(&times, 0.5));
    }

    eprintln!("memory of the openai-gateway process (idle, then 1 000 slow streams) …");
    let mem = memory(up, 1000).await;

    // The report.
    let direct_p50 = percentile(&latencies[0], 0.5);
    let direct_p99 = percentile(&latencies[0], 0.99);
    let mut table = String::new();
    table.push_str(&format!(
        "{:<18} {:>10} {:>10} {:>12} {:>12} {:>10} {:>12} {:>12} {:>10} {:>10}\n",
        "system",
        "p50 µs",
        "p99 µs",
        "+p50 µs",
        "+p99 µs",
        "rps c=64",
        "CPU s/1k",
        "+chunk p99",
        "TTFB µs",
        "1MB p50 ms"
    ));
    let mut systems_json = Vec::new();
    for (i, sys) in systems.iter().enumerate() {
        let p50 = percentile(&latencies[i], 0.5);
        let p99 = percentile(&latencies[i], 0.99);
        let (_, chunk_p99, ttfb, sent, through, coalesced) = stream_stats[i];
        let chunk_delta = us(chunk_p99) - us(stream_stats[0].1);
        let r = median(rps[i].clone());
        let c = median(cpu[i].clone());
        table.push_str(&format!(
            "{:<18} {:>10.0} {:>10.0} {:>12.0} {:>12.0} {:>10.0} {:>12.3} {:>12.0} {:>10.0} {:>10.2}\n",
            sys.name,
            us(p50),
            us(p99),
            us(p50) - us(direct_p50),
            us(p99) - us(direct_p99),
            r,
            c,
            chunk_delta,
            us(ttfb),
            big[i].as_secs_f64() * 1e3
        ));
        systems_json.push(json!({
            "system": sys.name,
            "latency_us": {"p50": us(p50), "p99": us(p99), "added_p50": us(p50) - us(direct_p50), "added_p99": us(p99) - us(direct_p99)},
            "rps_c64": r,
            "cpu_seconds_per_1000": c,
            "stream": {"chunk_delay_p50_us": us(stream_stats[i].0), "chunk_delay_p99_us": us(chunk_p99), "added_chunk_delay_p99_us": chunk_delta, "ttfb_p50_us": us(ttfb), "events_sent": sent, "events_received": through, "events_sharing_a_frame": coalesced},
            "one_mb_body_p50_ms": big[i].as_secs_f64() * 1e3,
        }));
    }
    let models = [median(models_rps[0].clone()), median(models_rps[1].clone())];
    let added = |i: usize| us(percentile(&latencies[i], 0.5)) - us(direct_p50);
    let mut checks = Vec::new();
    // The targets, for the systems in this process and for the two proxy processes.
    for (view, bare, full, models) in [
        ("in process", BARE, GATEWAY, models[0]),
        ("own processes", BARE_PROCESS, GATEWAY_PROCESS, models[1]),
    ] {
        let (bare_added, full_added) = (added(bare), added(full));
        let (bare_rps, full_rps) = (median(rps[bare].clone()), median(rps[full].clone()));
        let chunk_added = us(stream_stats[full].1) - us(stream_stats[DIRECT].1);
        let (_, _, _, sent, through, coalesced) = stream_stats[full];
        checks.push((
            view,
            "full stack added p50 ≤ 1.5 × bare proxy's",
            full_added <= 1.5 * bare_added.max(1.0),
            format!(
                "{full_added:.0} µs vs {bare_added:.0} µs ({:.2}×)",
                full_added / bare_added.max(1.0)
            ),
        ));
        checks.push((
            view,
            "full stack added p50 ≤ 150 µs",
            full_added <= 150.0,
            format!("{full_added:.0} µs"),
        ));
        checks.push((
            view,
            "full stack rps ≥ 75 % of bare proxy's",
            full_rps >= 0.75 * bare_rps,
            format!("{:.1} %", 100.0 * full_rps / bare_rps.max(1.0)),
        ));
        checks.push((
            view,
            "streaming added chunk delay p99 ≤ 1 ms",
            chunk_added <= 1000.0,
            format!("{chunk_added:.0} µs"),
        ));
        checks.push((
            view,
            "every event through, none coalesced",
            sent == through && coalesced == 0,
            format!("{sent} sent, {through} received, {coalesced} sharing a frame"),
        ));
        checks.push((
            view,
            "/v1/models from cache ≥ 2 × bare proxy chat rps",
            models >= 2.0 * bare_rps,
            format!("{models:.0} vs {bare_rps:.0} rps"),
        ));
    }
    if let Some((idle, loaded)) = mem {
        checks.push((
            "process",
            "RSS idle ≤ 30 MB",
            idle <= 30.0,
            format!("{idle:.1} MB"),
        ));
        checks.push((
            "process",
            "RSS with 1 000 streams ≤ 150 MB",
            loaded <= 150.0,
            format!("{loaded:.1} MB"),
        ));
    }
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |s| s.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned())
            )
            .unwrap_or_default()
    );
    println!("\nmachine: {machine}\n");
    print!("{table}");
    println!(
        "\n/v1/models from cache at c=64: {:.0} rps in process, {:.0} rps from the gateway process",
        models[0], models[1]
    );
    if let Some((idle, loaded)) = mem {
        println!(
            "openai-gateway RSS: {idle:.1} MB idle, {loaded:.1} MB peak with 1 000 concurrent streams"
        );
    }
    println!("\ntargets:");
    for (view, name, ok, detail) in &checks {
        println!(
            "  {:<6} {view:<13} {name}: {detail}",
            if *ok { "[ok]" } else { "[MISS]" }
        );
    }
    let report = json!({
        "machine": machine,
        "quick": quick,
        "systems": systems_json,
        "models_rps_c64": {"in_process": models[0], "process": models[1]},
        "rss_mb": mem.map(|(i, l)| json!({"idle": i, "with_1000_streams": l})),
        "targets": checks.iter().map(|(v, n, ok, d)| json!({"view": v, "target": n, "met": ok, "measured": d})).collect::<Vec<_>>(),
    });
    if let Err(e) = std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    ) {
        eprintln!("could not write {json_path}: {e}");
    } else {
        eprintln!("wrote {json_path}");
    }
}
