//! `--costs`: what each optional feature costs, measured against the same build without it
//! (an A/B run per feature, both in the same rounds), written as the table between the
//! `<!-- costs:begin -->` and `<!-- costs:end -->` marks of `bench/README.md`.

use std::process::Command;

use serde_json::Value;

/// A feature, and how the second gateway process turns it on.
struct Feature {
    name: &'static str,
    env: Vec<String>,
    toml: &'static str,
    /// A Redis the feature needs (started for its run).
    redis: bool,
    /// An identity store of 10 000 users and 20 000 keys the feature needs (`{database}`).
    database: bool,
}

fn features() -> Vec<Feature> {
    let f = |name, env: &[&str], toml, redis| Feature {
        name,
        env: env.iter().map(|s| (*s).to_owned()).collect(),
        toml,
        redis,
        database: false,
    };
    vec![
        Feature {
            database: true,
            ..f(
                "10 000 users and 20 000 keys in the identity store (against 10 users)",
                &["DATABASE_URL={database}"],
                "",
                false,
            )
        },
        f(
            "access log at `info` (`RUST_LOG=info`)",
            &["RUST_LOG=info"],
            "",
            false,
        ),
        f(
            "OpenTelemetry export of every span",
            &["OTEL_EXPORTER_OTLP_ENDPOINT=http://{upstream}"],
            "",
            false,
        ),
        f(
            "stream usage asked of every chat (`GATEWAY_STREAM_USAGE`)",
            &["GATEWAY_STREAM_USAGE=true"],
            "",
            false,
        ),
        f(
            "model groups on (`GATEWAY_MODEL_GROUPS`, one connection)",
            &["GATEWAY_MODEL_GROUPS=true"],
            "",
            false,
        ),
        f(
            "a rate limit that never refuses (memory)",
            &[],
            "[rate_limit]\\nrpm = 1000000000\\ntpm = 1000000000000",
            false,
        ),
        f(
            "prices and a budget on the caller that is never reached (memory)",
            &[],
            "budget = { usd = 1000000000.0, period = \"month\" }\n[[prices]]\nmodel = \"bench*\"\ninput = 2.5\noutput = 10.0",
            false,
        ),
        f(
            "Redis configured (`REDIS_URL`)",
            &["REDIS_URL={redis}"],
            "",
            true,
        ),
        f(
            "a rate limit that never refuses (Redis)",
            &["REDIS_URL={redis}"],
            "[rate_limit]\\nrpm = 1000000000",
            true,
        ),
        f(
            "prices and a budget on the caller that is never reached (Redis)",
            &["REDIS_URL={redis}"],
            "budget = { usd = 1000000000.0, period = \"month\" }\n[[prices]]\nmodel = \"bench*\"\ninput = 2.5\noutput = 10.0",
            true,
        ),
    ]
}

/// A row of the table: the feature, and its cost against the same build without it.
struct Row {
    name: &'static str,
    p50_us: f64,
    rps_ratio: f64,
    cpu_ratio: f64,
}

/// Run every feature's A/B and write the table; whether it worked.
pub(crate) fn run(quick: bool, only: Option<&str>) -> bool {
    let Some(gateway) = super::gateway_exe() else {
        return false;
    };
    let Ok(me) = std::env::current_exe() else {
        return false;
    };
    let mut rows = Vec::new();
    for feature in features() {
        if only.is_some_and(|only| !feature.name.contains(only)) {
            continue;
        }
        eprintln!("== {}", feature.name);
        let database = if feature.database {
            match big_directory() {
                Some(db) => Some(db),
                None => {
                    eprintln!("   could not build the identity store");
                    return false;
                }
            }
        } else {
            None
        };
        let redis = if feature.redis {
            match LocalRedis::start() {
                Some(r) => Some(r),
                None => {
                    eprintln!("   skipped: redis-server is not installed");
                    continue;
                }
            }
        } else {
            None
        };
        let json =
            std::env::temp_dir().join(format!("tower-openai-costs-{}.json", std::process::id()));
        let mut cmd = Command::new(&me);
        cmd.arg("--json")
            .arg(&json)
            .arg("--also-gateway")
            .arg(&gateway)
            .args(["--other-toml", feature.toml]);
        if quick {
            cmd.arg("--quick");
        }
        for kv in &feature.env {
            let mut kv = match &redis {
                Some(r) => kv.replace("{redis}", &r.url()),
                None => kv.clone(),
            };
            if let Some(db) = &database {
                kv = kv.replace("{database}", &db.url);
            }
            cmd.args(["--other-env", &kv]);
        }
        let ok = cmd
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        drop(redis);
        drop(database);
        let results: Option<Value> = std::fs::read_to_string(&json)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let _ = std::fs::remove_file(&json);
        let Some(row) = results.filter(|_| ok).and_then(|r| row(feature.name, &r)) else {
            eprintln!("   no result");
            return false;
        };
        eprintln!(
            "   {:+.0} µs p50, {:.0} % rps, {:.2} × CPU",
            row.p50_us,
            row.rps_ratio * 100.0,
            row.cpu_ratio
        );
        rows.push(row);
    }
    write_table(&rows, quick, only.is_some())
}

/// A SQLite identity store holding 10 000 users with two keys each, removed when dropped.
struct BigDirectory {
    dir: std::path::PathBuf,
    url: String,
}

impl Drop for BigDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn big_directory() -> Option<BigDirectory> {
    use tower_openai::store::{SeedUser, SqlStore};
    let dir = std::env::temp_dir().join(format!("tower-openai-costs-db-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    let url = format!("sqlite://{}", dir.join("gateway.db").display());
    let users: Vec<SeedUser> = (0..10_000)
        .map(|i| SeedUser {
            id: format!("bench-user-{i}"),
            name: format!("Bench user {i}"),
            email: format!("user{i}@bench.invalid"),
            role: tower_openai::core::Role::User,
            groups: vec![format!("group-{}", i % 50)],
            rate_limit: None,
            budget: None,
            keys: ["a", "b"]
                .iter()
                .map(|k| tower_openai::identity::digest(format!("sk-bench-{i}-{k}").as_bytes()))
                .collect(),
        })
        .collect();
    let seeded = {
        let url = url.clone();
        // Its own runtime: `--costs` runs inside the bench's.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let store = SqlStore::open(&url).await.ok()?;
                store.seed(&users, &[]).await.ok()
            })
        })
        .join()
        .ok()
        .flatten()
    };
    seeded.map(|_| BigDirectory { dir, url })
}

fn row(name: &'static str, results: &Value) -> Option<Row> {
    let systems = results["systems"].as_array()?;
    let find = |n: &str| systems.iter().find(|s| s["system"] == n);
    let (base, other) = (find("gateway (process)")?, find("gateway (other)")?);
    let f = |s: &Value, path: &[&str]| {
        path.iter()
            .try_fold(s, |v, k| v.get(*k))
            .and_then(Value::as_f64)
    };
    Some(Row {
        name,
        p50_us: f(other, &["latency_us", "p50"])? - f(base, &["latency_us", "p50"])?,
        rps_ratio: f(other, &["rps_c64"])? / f(base, &["rps_c64"])?,
        cpu_ratio: f(other, &["cpu_seconds_per_1000"])? / f(base, &["cpu_seconds_per_1000"])?,
    })
}

/// Replace the table between the marks of `bench/README.md`.
fn write_table(rows: &[Row], quick: bool, partial: bool) -> bool {
    let path = "bench/README.md";
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("cannot read {path}");
        return false;
    };
    let (begin, end) = ("<!-- costs:begin -->", "<!-- costs:end -->");
    let (Some(a), Some(b)) = (text.find(begin), text.find(end)) else {
        eprintln!("{path} has no {begin} … {end} marks");
        return false;
    };
    let line = |r: &Row| {
        format!(
            "| {} | {:+.0} µs | {:.0} % | {:.2} × |",
            r.name,
            r.p50_us,
            r.rps_ratio * 100.0,
            r.cpu_ratio
        )
    };
    // A partial run replaces its own rows and keeps the others, in the features' order.
    let kept: Vec<String> = if partial {
        text[a..b]
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| feature,"))
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    let mut table = format!(
        "{begin}\n\n| feature, against the same build without it | added p50 | req/s (c=64) | CPU per request |\n|---|---|---|---|\n"
    );
    for feature in features() {
        let new = rows.iter().find(|r| r.name == feature.name).map(line);
        let old = kept
            .iter()
            .find(|l| l.starts_with(&format!("| {} |", feature.name)))
            .cloned();
        if let Some(l) = new.or(old) {
            table.push_str(&l);
            table.push('\n');
        }
    }
    let run = if quick { "a quick run" } else { "a full run" };
    if partial {
        // The note of the last whole run stays; the rows measured alone are named, and an
        // earlier note no longer names a row measured again now.
        let names: Vec<String> = rows.iter().map(|r| format!("\"{}\"", r.name)).collect();
        let note = text[a..b]
            .lines()
            .filter(|l| l.starts_with('('))
            .filter_map(|l| match l.split_once(" since, alone,") {
                Some((named, rest)) => {
                    let kept: Vec<&str> = named
                        .trim_start_matches('(')
                        .split(", ")
                        .filter(|n| !names.iter().any(|now| now == n))
                        .collect();
                    (!kept.is_empty()).then(|| format!("({} since, alone,{rest}", kept.join(", ")))
                }
                None => Some(l.to_owned()),
            })
            .collect::<Vec<_>>()
            .join("\n");
        table.push_str(&format!(
            "\n{note}\n({} since, alone, in {run} of `--costs --costs-only`.)\n\n",
            names.join(", ")
        ));
    } else {
        table.push_str(&format!(
            "\n({} of `cargo run --release -p tower-openai-bench -- --costs`; each row is its \
             own A/B run, both processes in the same rounds.)\n\n",
            run.replacen('a', "A", 1)
        ));
    }
    let out = format!("{}{table}{}", &text[..a], &text[b..]);
    if std::fs::write(path, out).is_err() {
        eprintln!("cannot write {path}");
        return false;
    }
    println!("wrote the table of {} features to {path}", rows.len());
    true
}

/// A `redis-server` on a free port for one run, stopped when dropped.
struct LocalRedis {
    port: u16,
    child: std::process::Child,
}

impl LocalRedis {
    fn start() -> Option<Self> {
        let port = super::free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Self { port, child });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
