//! The measurements: latency, throughput, streaming, memory, CPU.

use super::*;

/// CPU seconds (user + system) used by this process and, if given, by the proxy process
/// being measured, from `/proc/{pid}/stat`.
pub(crate) fn cpu_seconds(process: Option<u32>) -> f64 {
    proc_cpu_seconds("self") + process.map_or(0.0, |pid| proc_cpu_seconds(&pid.to_string()))
}

pub(crate) fn proc_cpu_seconds(pid: &str) -> f64 {
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

pub(crate) async fn timed(client: &HttpClient, req: Request<Full<Bytes>>) -> Option<Duration> {
    let start = Instant::now();
    let res = client.request(req).await.ok()?;
    let ok = res.status() == StatusCode::OK;
    res.into_body().collect().await.ok()?;
    ok.then(|| start.elapsed())
}

/// Requests per block in [`latency_at_c1`], and how many of them warm up (not counted).
pub(crate) const BLOCK: usize = 25;
pub(crate) const BLOCK_WARM_UP: usize = 5;

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
pub(crate) async fn latency_at_c1(
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
                    if let Some(d) = timed(&client, sys.chat(body)).await
                        && n >= BLOCK_WARM_UP
                    {
                        latencies[i].push(d);
                    }
                }
            }
        }
        latencies
    })
    .await
    .expect("the latency run does not panic")
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Requests per second and CPU seconds per 1 000 requests at `concurrency`, for `duration`,
/// from [`load`]'s generator (one request, encoded once; only `200`s count).
pub(crate) async fn throughput(
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
pub(crate) async fn stream_once(
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

pub(crate) fn rss_kib(pid: u32, field: &str) -> u64 {
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

/// Peak RSS of the real `openai-gateway` binary, idle and with `streams` slow streams open.
pub(crate) async fn memory(upstream: SocketAddr, streams: usize) -> Option<(f64, f64)> {
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

/// Warm up pools and catalogs; every system must answer.
pub(crate) async fn warm_up(client: &HttpClient, systems: &[System]) {
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
