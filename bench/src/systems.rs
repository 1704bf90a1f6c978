//! The systems measured: the baselines, the gateway in process and as processes.

use super::*;

#[derive(Clone, Debug)]
pub(crate) struct System {
    pub(crate) name: &'static str,
    /// Where `chat/completions` lives: `http://ADDR/v1` or `http://ADDR`.
    pub(crate) base: String,
    pub(crate) model: &'static str,
    pub(crate) key: Option<&'static str>,
    /// The process serving it, when it is not this one.
    pub(crate) pid: Option<u32>,
}

impl System {
    pub(crate) fn new(
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
    pub(crate) fn small_chat(&self) -> String {
        format!(
            r#"{{"model":"{}","messages":[{{"role":"user","content":"Say hello."}}],"max_tokens":16}}"#,
            self.model
        )
    }

    pub(crate) fn chat(&self, body: &str) -> Request<Full<Bytes>> {
        self.request("chat/completions", Some(body.to_owned()))
    }

    pub(crate) fn request(&self, path: &str, body: Option<String>) -> Request<Full<Bytes>> {
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

pub(crate) fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector)
}

/// Where the systems of the main run sit in its list.
pub(crate) const DIRECT: usize = 0;
pub(crate) const BARE: usize = 1;
pub(crate) const GATEWAY: usize = 2;
pub(crate) const BARE_PROCESS: usize = 4;
pub(crate) const GATEWAY_PROCESS: usize = 5;

/// Stops a child process with SIGTERM, so it exits cleanly (and writes a profile or its
/// counts), then waits up to `limit`: its exit status, or `None` if it did not exit in time.
/// The shell's own `kill` sends it: a build container may have no kill(1).
pub(crate) async fn stop_cleanly(
    child: &mut tokio::process::Child,
    limit: Duration,
) -> Option<std::io::Result<std::process::ExitStatus>> {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status();
    }
    tokio::time::timeout(limit, child.wait()).await.ok()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_080)
}

/// The full gateway's configuration file (a user, a model access record, a prefixed
/// connection with user-info headers), in a fresh directory that is also its data dir.
pub(crate) fn gateway_config(
    upstream: SocketAddr,
    tag: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    gateway_config_for(&[upstream], tag)
}

/// [`gateway_config`] with one connection per upstream, each with the `bench` prefix (so
/// with model groups on, `bench.bench-model` is one model served by all of them).
pub(crate) fn gateway_config_for(
    upstreams: &[SocketAddr],
    tag: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tower-openai-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("gateway.toml");
    let urls: Vec<String> = upstreams
        .iter()
        .map(|u| format!("\"http://{u}/v1\""))
        .collect();
    let keys: Vec<&str> = upstreams.iter().map(|_| "\"sk-upstream\"").collect();
    let configs: String = (0..upstreams.len())
        .map(|i| format!("[openai.configs.\"{i}\"]\nprefix_id = \"bench\"\n\n"))
        .collect();
    std::fs::write(
        &file,
        format!(
            r#"
[openai]
base_urls = [{urls}]
keys = [{keys}]
models_cache_ttl = 60
forward_user_info_headers = true

{configs}[[users]]
id = "alice"
name = "Alice"
email = "alice@example.com"
groups = ["bench"]
api_key = "sk-alice"

[[models]]
id = "bench.bench-model"
owner = "admin"
access = {{ read_groups = ["bench"] }}
"#,
            urls = urls.join(", "),
            keys = keys.join(", "),
        ),
    )
    .expect("config");
    (file, dir)
}

/// The real `openai-gateway` binary, built beside this one (release) if it is missing.
pub(crate) fn gateway_exe() -> Option<std::path::PathBuf> {
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
pub(crate) async fn wait_ready(client: &HttpClient, base: &str, key: Option<&'static str>) -> bool {
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
pub(crate) async fn processes(
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
    let (gateway_system, gateway) = spawn_gateway(
        upstream,
        client,
        &gateway_exe()?,
        "gateway (process)",
        &[],
        "",
    )
    .await?;
    Some((bare_system, gateway_system, vec![bare, gateway]))
}

/// An `openai-gateway` binary (`exe`) serving the benchmark's configuration in a process of
/// its own, with `env` added to its environment (`{upstream}` in a value is replaced by the
/// mock upstream's address; with any `env`, its stderr is discarded, so an access log at
/// `info` does not flood the terminal).
pub(crate) async fn spawn_gateway(
    upstream: SocketAddr,
    client: &HttpClient,
    exe: &std::path::Path,
    name: &'static str,
    env: &[(String, String)],
    extra_toml: &str,
) -> Option<(System, tokio::process::Child)> {
    let port = free_port();
    // One data directory per gateway process, named after its port.
    let (file, dir) = gateway_config(upstream, &format!("process-{port}"));
    if !extra_toml.is_empty() {
        // Lines before the first table go into the bench user's own table (a budget, a
        // rate limit of theirs); the rest is appended.
        let split = extra_toml
            .lines()
            .position(|l| l.trim_start().starts_with('['))
            .unwrap_or(extra_toml.lines().count());
        let lines: Vec<&str> = extra_toml.lines().collect();
        let (user, rest) = lines.split_at(split);
        let mut text = std::fs::read_to_string(&file).ok()?;
        let key_line = "api_key = \"sk-alice\"\n";
        let at = text.find(key_line)? + key_line.len();
        text.insert_str(
            at,
            &user.iter().map(|l| format!("{l}\n")).collect::<String>(),
        );
        text.push('\n');
        text.push_str(&rest.join("\n"));
        text.push('\n');
        std::fs::write(&file, text).ok()?;
    }
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.clone(), v.replace("{upstream}", &upstream.to_string())))
        .collect();
    spawn_gateway_with(client, exe, name, port, &file, &dir, &env).await
}

/// An `openai-gateway` binary serving the configuration `file` on `port`, with `env` added to
/// its environment (its stderr discarded when `env` is not empty).
pub(crate) async fn spawn_gateway_with(
    client: &HttpClient,
    exe: &std::path::Path,
    name: &'static str,
    port: u16,
    file: &std::path::Path,
    dir: &std::path::Path,
    env: &[(String, String)],
) -> Option<(System, tokio::process::Child)> {
    let mut command = tokio::process::Command::new(exe);
    command
        .args([
            "--config".as_ref(),
            file.as_os_str(),
            "--data-dir".as_ref(),
            dir.as_os_str(),
        ])
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    if !env.is_empty() {
        command.stderr(std::process::Stdio::null());
    }
    let gateway = command.spawn().ok()?;
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

pub(crate) async fn gateway_full(upstream: SocketAddr) -> String {
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
pub(crate) fn bench_settings(upstream: SocketAddr) -> tower_openai::settings::Settings {
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

pub(crate) async fn select_and_auth(upstream: SocketAddr) -> String {
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
pub(crate) fn serve_stack<S, B>(stack: S) -> proxy::App
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
pub(crate) async fn baselines(up: SocketAddr) -> Vec<System> {
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
pub(crate) async fn served(name: &'static str, app: proxy::App, model: &'static str) -> System {
    System::new(
        name,
        format!("http://{}", proxy::serve(app).await),
        model,
        None,
    )
}
