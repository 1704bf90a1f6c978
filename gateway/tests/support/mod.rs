//! Running the real `openai-gateway` binary for a test: a free port, its own data dir, a
//! raw HTTP/1.1 chat over a socket.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A port nothing listens on (yet), and one no other test of this process was given: the
/// system may hand a port it just freed out again, and two gateways told the same port would
/// share one test's requests.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// The binary on a free port with its own data dir; `configure` sets its environment.
/// Killed, and its data dir removed, when dropped (unless [`Gateway::stop`] took it).
pub struct Gateway {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Gateway {
    pub fn start(tag: &str, configure: impl FnOnce(&mut Command)) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("tower-openai-{tag}-{port}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_openai-gateway"));
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        configure(&mut cmd);
        Self {
            port,
            child: Some(cmd.spawn().unwrap()),
            dir,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A connection to it, once it listens (at most 5 s).
    pub fn connect(&self) -> TcpStream {
        for _ in 0..100 {
            if let Ok(c) = TcpStream::connect(("127.0.0.1", self.port)) {
                return c;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the gateway does not listen on {}", self.port);
    }

    /// `POST {path}` with a JSON `body` and extra header lines; the whole answer as text.
    pub fn post(&self, path: &str, headers: &str, body: &str) -> String {
        let mut conn = self.connect();
        write!(
            conn,
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer
    }

    /// `GET {path}`; the status and the body (answers with a length, not chunked).
    pub fn get(&self, path: &str, headers: &str) -> (u16, String) {
        let mut conn = self.connect();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nhost: localhost\r\n{headers}connection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        status_and_body(&answer)
    }

    /// SIGTERM, then wait for it to exit: its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        child.wait().unwrap()
    }

    /// Kill it; its stderr, if it was piped.
    pub fn stop(mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return String::new();
        };
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        String::from_utf8(output.stderr).unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The status and body of a raw HTTP/1.1 answer.
pub fn status_and_body(answer: &str) -> (u16, String) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A real `redis-server` on a free port (no persistence), killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Start one on a free port; `None` when `redis-server` is not installed.
    pub fn start() -> Option<Self> {
        Self::start_on(free_port())
    }

    /// Start one on `port` (again, after [`stop`](Self::stop)).
    pub fn start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Self {
                    port,
                    child: Some(child),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not listen on {port}");
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `redis-server`, or a skip (a failure when `TOWER_OPENAI_REQUIRE_REDIS` is set, as in CI).
pub fn redis_or_skip() -> Option<Redis> {
    let redis = Redis::start();
    if redis.is_none() {
        assert!(
            std::env::var_os("TOWER_OPENAI_REQUIRE_REDIS").is_none(),
            "redis-server is not installed (apt-get install redis-server)"
        );
        eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
    }
    redis
}

/// A mock upstream serving model `m`, on a runtime of its own (the tests are synchronous).
pub fn mock_upstream() -> (
    tokio::runtime::Runtime,
    tower_openai_test_util::MockUpstream,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock = rt.block_on(
        tower_openai_test_util::MockUpstream::builder()
            .models(["m"])
            .start(),
    );
    (rt, mock)
}
