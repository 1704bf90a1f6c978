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
//!   as a seventh system (A/B comparisons);
//! - `--layers`: the added latency, requests/s and CPU of the stack built up one layer at a
//!   time (what each layer costs);
//! - `--profile-gateway SECS [models] [bare] [c1]`: load only the in-process gateway (chat,
//!   or the cached model list; the bare proxy instead with `bare`; at concurrency 1 with
//!   `c1`) for a profiler attached to this process;
//! - `--profile-process SECS [bare] [c1] [stream] [models]`: load only the `openai-gateway`
//!   process (or the bare proxy's; at concurrency 1 with `c1`; one streamed completion after
//!   another with `stream`; the cached model list with `models`), its pid printed, for a
//!   profiler attached to it. It prints how busy each side's cores were;
//! - `--soak [N]` (default 100 000): N streamed requests through the `openai-gateway`
//!   process with random caller hang-ups and upstream faults (reset, stall, error status,
//!   refused connection); checks the RSS after warm-up against the end, that no upstream
//!   stream is left open, and that every caller got a complete stream or an error.

mod load;
mod proxy;
mod soak;
mod upstream;

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
use tower_openai::core::endpoint::AppliesCredentials;
use tower_openai::core::payload::CollectPayloadLayer;
use tower_openai::core::settings::ApiKey;
use tower_openai::core::{LoadSettingsLayer, RescueLayer, SettingsHandle, SettingsSource};
use tower_openai::models::Catalog;
use tower_openai::select::SelectLayer;
use tower_openai::upstream::Upstream;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

// The same allocator as the openai-gateway binary, for every system measured here.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Debug)]
struct System {
    name: &'static str,
    /// Where `chat/completions` lives: `http://ADDR/v1` or `http://ADDR`.
    base: String,
    model: &'static str,
    key: Option<&'static str>,
    /// The process serving it, when it is not this one.
    pid: Option<u32>,
}

impl System {
    fn new(
        name: &'static str,
        base: String,
        model: &'static str,
        key: Option<&'static str>,
    ) -> Self {
        Self {
            name,
            base,
            model,
            key,
            pid: None,
        }
    }

    /// A small chat request body for this system's model.
    fn small_chat(&self) -> String {
        format!(
            r#"{{"model":"{}","messages":[{{"role":"user","content":"Say hello."}}],"max_tokens":16}}"#,
            self.model
        )
    }

    fn chat(&self, body: &str) -> Request<Full<Bytes>> {
        self.request("chat/completions", Some(body.to_owned()))
    }

    fn request(&self, path: &str, body: Option<String>) -> Request<Full<Bytes>> {
        let builder = Request::builder().uri(format!("{}/{path}", self.base));
        let builder = match &self.key {
            Some(k) => builder.header("authorization", format!("Bearer {k}")),
            None => builder,
        };
        match body {
            Some(b) => builder
                .method("POST")
                .header("content-type", "application/json")
                .body(Full::from(b))
                .expect("request"),
            None => builder
                .method("GET")
                .body(Full::default())
                .expect("request"),
        }
    }
}

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector)
}

/// CPU seconds (user + system) used by this process and, if given, by the proxy process
/// being measured, from `/proc/{pid}/stat`.
fn cpu_seconds(process: Option<u32>) -> f64 {
    proc_cpu_seconds("self") + process.map_or(0.0, |pid| proc_cpu_seconds(&pid.to_string()))
}

fn proc_cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields
        .get(11)
        .and_then(|f| f.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0);
    // Linux reports them in USER_HZ, which is 100 on every mainstream kernel build.
    ticks / 100.0
}

async fn timed(client: &HttpClient, req: Request<Full<Bytes>>) -> Option<Duration> {
    let start = Instant::now();
    let res = client.request(req).await.ok()?;
    let ok = res.status() == StatusCode::OK;
    res.into_body().collect().await.ok()?;
    ok.then(|| start.elapsed())
}

/// Where the systems of the main run sit in its list.
const DIRECT: usize = 0;
const BARE: usize = 1;
const GATEWAY: usize = 2;
const BARE_PROCESS: usize = 4;
const GATEWAY_PROCESS: usize = 5;

/// Requests per block in [`latency_at_c1`], and how many of them warm up (not counted).
const BLOCK: usize = 25;
const BLOCK_WARM_UP: usize = 5;

/// `count` sequential chat requests per system, in interleaved blocks so machine drift hits
/// every system alike.
///
/// Blocks, not single requests: a proxy leaves work behind after its answer (its pooled
/// connections go back to the pool, the mock's connection task finishes), and at
/// concurrency 1 that work runs during the *next* request. Round robin request by request
/// charged each system for its predecessor's leftovers (the system after the bare proxy
/// measured 10-15 µs slower, whichever it was). In a block each system pays for its own;
/// the first requests of a block, which still overlap the previous system's, are not
/// counted.
async fn latency_at_c1(
    client: &HttpClient,
    systems: &[System],
    count: usize,
    body: &dyn Fn(&System) -> String,
) -> Vec<Vec<Duration>> {
    let bodies: Vec<String> = systems.iter().map(body).collect();
    let (client, systems) = (client.clone(), systems.to_vec());
    // The requests are made from a task on the runtime, as the throughput runs' are, not
    // from the thread that blocks on `main`: that thread is outside the runtime, and every
    // wake-up between it and a worker would add a futex call to every request measured.
    tokio::spawn(async move {
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); systems.len()];
        let per_block = BLOCK - BLOCK_WARM_UP;
        for _ in 0..count.div_ceil(per_block) {
            for (i, (sys, body)) in systems.iter().zip(&bodies).enumerate() {
                for n in 0..BLOCK {
                    if let Some(d) = timed(&client, sys.chat(body)).await {
                        if n >= BLOCK_WARM_UP {
                            latencies[i].push(d);
                        }
                    }
                }
            }
        }
        latencies
    })
    .await
    .expect("the latency run does not panic")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Requests per second and CPU seconds per 1 000 requests at `concurrency`, for `duration`,
/// from [`load`]'s generator (one request, encoded once; only `200`s count).
async fn throughput(
    make: Arc<dyn Fn() -> Request<Full<Bytes>> + Send + Sync>,
    concurrency: usize,
    duration: Duration,
    process: Option<u32>,
) -> (f64, f64) {
    let req = load::Encoded::new(make()).await;
    let tally = Arc::new(load::Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_seconds(process);
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(load::worker(req.clone(), stop.clone(), tally.clone())))
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for mut w in workers {
        // A worker finishes the request it is on; one that hangs is not waited for.
        if tokio::time::timeout(Duration::from_secs(5), &mut w)
            .await
            .is_err()
        {
            w.abort();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = tally.ok.load(Ordering::Relaxed) as f64;
    let failed = tally.failed.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("  ({failed} requests failed and were not counted)");
    }
    let cpu = cpu_seconds(process) - cpu_before;
    (n / elapsed, if n > 0.0 { cpu / n * 1000.0 } else { 0.0 })
}

/// Per-chunk delay (arrival minus the upstream's send stamp), time to first chunk, and
/// whether every event arrived in a frame of its own.
async fn stream_once(
    client: &HttpClient,
    sys: &System,
    epoch: Instant,
) -> Option<(Vec<Duration>, Duration, usize, usize)> {
    let body = format!(r#"{{"model":"{}","stream":true,"messages":[]}}"#, sys.model);
    let start = Instant::now();
    let res = client.request(sys.chat(&body)).await.ok()?;
    let mut body = res.into_body();
    let mut delays = Vec::new();
    let mut ttfb = None;
    let (mut frames, mut events) = (0, 0);
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let now = epoch.elapsed();
        ttfb.get_or_insert_with(|| start.elapsed());
        frames += 1;
        for event in std::str::from_utf8(data)
            .ok()?
            .split("\n\n")
            .filter(|e| e.starts_with("data: {"))
        {
            events += 1;
            let v: Value = serde_json::from_str(&event[6..]).ok()?;
            let sent = Duration::from_nanos(v["t"].as_u64()?);
            delays.push(now.saturating_sub(sent));
        }
    }
    Some((delays, ttfb?, frames, events))
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_080)
}

/// Peak RSS of the real `openai-gateway` binary, idle and with `streams` slow streams open.
async fn memory(upstream: SocketAddr, streams: usize) -> Option<(f64, f64)> {
    let Some(exe) = gateway_exe() else {
        eprintln!("skipping the memory measurement");
        return None;
    };
    let port = free_port();
    let data = std::env::temp_dir().join(format!("tower-openai-bench-{}", std::process::id()));
    let mut child = tokio::process::Command::new(&exe)
        .env("OPENAI_API_BASE_URLS", format!("http://{upstream}/v1"))
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", &data)
        .env("RUST_LOG", "warn")
        .env("MODELS_CACHE_TTL", "")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let pid = child.id()?;
    let client = client();
    let sys = System::new(
        "process",
        format!("http://127.0.0.1:{port}/v1"),
        "bench-model",
        None,
    );
    if !wait_ready(&client, &sys.base, None).await {
        eprintln!("the gateway process did not start; skipping the memory measurement");
        return None;
    }
    for _ in 0..20 {
        timed(
            &client,
            sys.chat(r#"{"model":"bench-model","messages":[]}"#),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_kib(pid, "VmRSS:") as f64 / 1024.0;

    let started = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let (client, sys, started) = (client.clone(), sys.clone(), started.clone());
            tokio::spawn(async move {
                let body = r#"{"model":"bench-model","stream":true,"slow":true,"messages":[]}"#;
                let Ok(res) = client.request(sys.chat(body)).await else {
                    return;
                };
                let mut body = res.into_body();
                let mut first = true;
                while let Some(Ok(_)) = body.frame().await {
                    if first {
                        started.fetch_add(1, Ordering::Relaxed);
                        first = false;
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.load(Ordering::Relaxed) < streams as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = rss_kib(pid, "VmHWM:") as f64 / 1024.0;
    eprintln!(
        "  {} of {streams} streams open while measuring",
        started.load(Ordering::Relaxed)
    );
    for t in tasks {
        t.abort();
    }
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&data);
    Some((idle, loaded))
}

/// The full gateway's configuration file (a user, a model access record, a prefixed
/// connection with user-info headers), in a fresh directory that is also its data dir.
fn gateway_config(upstream: SocketAddr, tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tower-openai-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[openai]
base_urls = ["http://{upstream}/v1"]
keys = ["sk-upstream"]
models_cache_ttl = 60
forward_user_info_headers = true

[openai.configs."0"]
prefix_id = "bench"

[[users]]
id = "alice"
name = "Alice"
email = "alice@example.com"
groups = ["bench"]
api_key = "sk-alice"

[[models]]
id = "bench.bench-model"
owner = "admin"
access = {{ read_groups = ["bench"] }}
"#
        ),
    )
    .expect("config");
    (file, dir)
}

/// The real `openai-gateway` binary, built beside this one (release) if it is missing.
fn gateway_exe() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe()
        .ok()?
        .parent()?
        .join("openai-gateway");
    if !exe.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        eprintln!("building openai-gateway (release) …");
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "-p", "openai-gateway"])
            .status()
            .ok()?;
        if !status.success() || !exe.exists() {
            eprintln!("could not build {}", exe.display());
            return None;
        }
    }
    Some(exe)
}

/// Wait until `GET {base}/models` answers (a started process is serving).
async fn wait_ready(client: &HttpClient, base: &str, key: Option<&'static str>) -> bool {
    let sys = System {
        name: "process",
        base: base.to_owned(),
        model: "",
        key,
        pid: None,
    };
    for _ in 0..200 {
        if timed(client, sys.request("models", None)).await.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The bare proxy and the full gateway each in a process of its own, as they are deployed:
/// their runtimes do not share threads with the load generator or the mock.
async fn processes(
    upstream: SocketAddr,
    client: &HttpClient,
) -> Option<(System, System, Vec<tokio::process::Child>)> {
    let bare_port = free_port();
    let bare = tokio::process::Command::new(std::env::current_exe().ok()?)
        .args([
            "--serve-bare",
            &upstream.to_string(),
            &bare_port.to_string(),
        ])
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let bare_base = format!("http://127.0.0.1:{bare_port}/v1");
    if !wait_ready(client, &bare_base, None).await {
        eprintln!("the bare proxy process did not start");
        return None;
    }
    let bare_system = System {
        name: "bare (process)",
        base: bare_base,
        model: "bench-model",
        key: None,
        pid: bare.id(),
    };
    let (gateway_system, gateway) =
        spawn_gateway(upstream, client, &gateway_exe()?, "gateway (process)").await?;
    Some((bare_system, gateway_system, vec![bare, gateway]))
}

/// An `openai-gateway` binary (`exe`) serving the benchmark's configuration in a process of
/// its own.
async fn spawn_gateway(
    upstream: SocketAddr,
    client: &HttpClient,
    exe: &std::path::Path,
    name: &'static str,
) -> Option<(System, tokio::process::Child)> {
    let port = free_port();
    // One data directory per gateway process, named after its port.
    let (file, dir) = gateway_config(upstream, &format!("process-{port}"));
    let gateway = tokio::process::Command::new(exe)
        .args([
            "--config".as_ref(),
            file.as_os_str(),
            "--data-dir".as_ref(),
            dir.as_os_str(),
        ])
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let base = format!("http://127.0.0.1:{port}/v1");
    if !wait_ready(client, &base, Some("sk-alice")).await {
        eprintln!("{} did not start", exe.display());
        return None;
    }
    let system = System {
        name,
        base,
        model: "bench.bench-model",
        key: Some("sk-alice"),
        pid: gateway.id(),
    };
    Some((system, gateway))
}

async fn gateway_full(upstream: SocketAddr) -> String {
    let (file, dir) = gateway_config(upstream, "full");
    let args = Args {
        config: Some(file),
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir),
        ..Args::default()
    };
    let config = GatewayConfig::load(&args, &|_| None).expect("config loads");
    let running = Gateway::new(config)
        .await
        .expect("gateway")
        .spawn()
        .await
        .expect("bind");
    let url = running.url();
    std::mem::forget(running); // serve until the benchmark exits
    url
}

/// The connection the library stacks use: the mock, prefix `bench`, a key, a cached list.
fn bench_settings(upstream: SocketAddr) -> tower_openai::core::Settings {
    SettingsSource {
        base_urls: Some(vec![format!("http://{upstream}/v1")]),
        keys: Some(vec![ApiKey::new("sk-upstream")]),
        configs: json!({"0": {"prefix_id": "bench"}}).as_object().cloned(),
        models_cache_ttl: Some(Some(Duration::from_secs(60))),
        ..Default::default()
    }
    .build()
    .expect("settings")
}

async fn select_and_auth(upstream: SocketAddr) -> String {
    let settings = bench_settings(upstream);
    let upstream_svc = Upstream::new();
    let catalog = Catalog::new(AppliesCredentials(upstream_svc.clone()));
    let stack = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .layer(LoadSettingsLayer::new(SettingsHandle::new(settings)))
        .layer(CollectPayloadLayer::default())
        .layer(SelectLayer::new(catalog))
        .layer(AuthLayer::new())
        .service(upstream_svc);
    let app: proxy::App = BoxCloneSyncService::new(tower::ServiceExt::<
        Request<tower_openai::core::Body>,
    >::map_response(
        stack,
        |res: http::Response<_>| {
            res.map(|b| http_body_util::BodyExt::map_err(b, Into::into).boxed_unsync())
        },
    ));
    format!("http://{}", proxy::serve(app).await)
}

/// One stack of the ablation: `layers` applied over the upstream, served like the others.
fn serve_stack<S, B>(stack: S) -> proxy::App
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower_openai::core::BoxError>,
    S: tower::Service<
            Request<tower_openai::core::Body>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    BoxCloneSyncService::new(
        tower::ServiceExt::<Request<tower_openai::core::Body>>::map_response(
            stack,
            |res: http::Response<_>| {
                res.map(|b| http_body_util::BodyExt::map_err(b, Into::into).boxed_unsync())
            },
        ),
    )
}

/// The baselines: direct to the mock, and the bare proxy.
async fn baselines(up: SocketAddr) -> Vec<System> {
    vec![
        System::new("direct", format!("http://{up}/v1"), "bench-model", None),
        System::new(
            "bare proxy",
            format!("http://{}/v1", proxy::bare(up).await),
            "bench-model",
            None,
        ),
    ]
}

/// A system serving `app` in this process.
async fn served(name: &'static str, app: proxy::App, model: &'static str) -> System {
    System::new(
        name,
        format!("http://{}", proxy::serve(app).await),
        model,
        None,
    )
}

/// Warm up pools and catalogs; every system must answer.
async fn warm_up(client: &HttpClient, systems: &[System]) {
    for sys in systems {
        for _ in 0..50 {
            assert!(
                timed(client, sys.chat(&sys.small_chat())).await.is_some(),
                "{} does not answer",
                sys.name
            );
        }
    }
}

/// `--layers`: the added latency of the stack built up one layer at a time, to see what
/// each layer costs.
async fn ablation(up: SocketAddr, client: &HttpClient, rounds: usize, per_round: usize) {
    use tower_openai::core::{Body, SelectedConnection};
    let settings = bench_settings(up);
    let connection = settings.connection(0).expect("one connection").clone();
    let handle = SettingsHandle::new(settings);
    let upstream_svc = Upstream::new();
    let catalog = Catalog::new(AppliesCredentials(upstream_svc.clone()));
    let with_connection = move |mut req: Request<Body>| {
        req.extensions_mut()
            .insert(SelectedConnection(connection.clone()));
        req
    };

    let upstream_only = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .map_request(with_connection.clone())
        .service(upstream_svc.clone());
    let payload = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .layer(CollectPayloadLayer::default())
        .map_request(with_connection.clone())
        .service(upstream_svc.clone());
    let select = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .layer(LoadSettingsLayer::new(handle.clone()))
        .layer(CollectPayloadLayer::default())
        .layer(SelectLayer::new(catalog.clone()))
        .service(upstream_svc.clone());
    let auth = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .layer(LoadSettingsLayer::new(handle.clone()))
        .layer(CollectPayloadLayer::default())
        .layer(SelectLayer::new(catalog.clone()))
        .layer(AuthLayer::new())
        .service(upstream_svc.clone());
    let lower = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .layer(LoadSettingsLayer::new(handle.clone()))
        .layer(CollectPayloadLayer::default())
        .layer(SelectLayer::new(catalog.clone()))
        .layer(tower_openai::reasoning::ReasoningLayer::new())
        .layer(tower_openai::azure::AzureLayer::new())
        .layer(AuthLayer::new())
        .layer(tower_openai::headers::HeadersLayer::new(Default::default()))
        .service(upstream_svc.clone());
    let mut systems = baselines(up).await;
    systems.extend([
        served("upstream", serve_stack(upstream_only), "bench-model").await,
        served("+ payload", serve_stack(payload), "bench-model").await,
        served("+ select", serve_stack(select), "bench.bench-model").await,
        served("+ auth", serve_stack(auth), "bench.bench-model").await,
        served(
            "+ rewrites, headers",
            serve_stack(lower),
            "bench.bench-model",
        )
        .await,
        System::new(
            "gateway (full)",
            gateway_full(up).await,
            "bench.bench-model",
            Some("sk-alice"),
        ),
    ]);
    let small = System::small_chat;
    warm_up(client, &systems).await;
    let mut latencies = latency_at_c1(client, &systems, rounds * per_round, &small).await;
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    for _ in 0..rounds {
        for (i, sys) in systems.iter().enumerate() {
            let (s, b) = (sys.clone(), small(sys));
            let (r, c) = throughput(
                Arc::new(move || s.chat(&b)),
                64,
                Duration::from_millis(700),
                None,
            )
            .await;
            rps[i].push(r);
            cpu[i].push(c);
        }
    }
    for l in &mut latencies {
        l.sort();
    }
    let direct = us(percentile(&latencies[0], 0.5));
    println!(
        "\n{:<22} {:>10} {:>10} {:>10} {:>10}",
        "stack", "p50 µs", "+p50 µs", "rps c=64", "CPU µs/req"
    );
    for (i, sys) in systems.iter().enumerate() {
        let p50 = us(percentile(&latencies[i], 0.5));
        println!(
            "{:<22} {:>10.0} {:>10.0} {:>10.0} {:>10.1}",
            sys.name,
            p50,
            p50 - direct,
            median(rps[i].clone()),
            median(cpu[i].clone()) * 1000.0
        );
    }
}

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
    /// Load only the in-process gateway for SECS, for a profiler; words after it: `models`
    /// (the cached list), `bare` (the bare proxy instead), `c1` (concurrency 1)
    #[arg(long, num_args = 1.., value_names = ["SECS", "MODE"])]
    profile_gateway: Option<Vec<String>>,
    /// Load only the `openai-gateway` process for SECS; words after it: `bare`, `c1`,
    /// `stream` (one stream after another), `models`
    #[arg(long, num_args = 1.., value_names = ["SECS", "MODE"])]
    profile_process: Option<Vec<String>>,
    /// N streamed requests through the `openai-gateway` process with random faults
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "100000")]
    soak: Option<usize>,
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
    let args = <BenchArgs as clap::Parser>::parse();
    if let Some(bare) = &args.serve_bare {
        // A child process: the bare proxy on its own runtime.
        let upstream: SocketAddr = bare[0].parse().expect("upstream address");
        let port: u16 = bare[1].parse().expect("port");
        proxy::bare_on(upstream, port).await;
        std::future::pending::<()>().await;
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
        let Some((system, child)) =
            spawn_gateway(up, &client, std::path::Path::new(path), "gateway (other)").await
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
