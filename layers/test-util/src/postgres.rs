//! A throwaway Postgres cluster on a free port (Debian's `postgresql` package), for tests
//! that need a real one. Run as root, the server runs as the `postgres` user.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running cluster, stopped and removed when dropped.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn bin(name: &str) -> Option<PathBuf> {
    let candidates = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name));
    std::iter::once(PathBuf::from(format!("/usr/local/bin/{name}")))
        .chain(candidates)
        .find(|p| p.exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `program args…`, as the `postgres` user when we are root (Postgres refuses root).
fn command(program: &PathBuf, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// Start a cluster, or `None` when Postgres is not installed.
    pub fn start() -> Option<Self> {
        let initdb = bin("initdb")?;
        let postgres = bin("postgres")?;
        let root = is_root();
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("tower-openai-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        if root {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .ok()?;
            assert!(status.success(), "chown of {} failed", dir.display());
        }
        let data = dir.join("data");
        let status = command(&initdb, root)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        assert!(status.success(), "initdb failed in {}", data.display());
        let child = command(&postgres, root)
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
            ])
            .arg(format!("unix_socket_directories={}", dir.display()))
            .args(["-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut pg = Self {
            port,
            dir,
            child: Some(child),
        };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // Accepting connections is not yet accepting queries: give start-up a moment.
                std::thread::sleep(Duration::from_millis(300));
                return Some(pg);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        pg.stop();
        panic!("postgres did not listen on {port}");
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop the server (the data stays until dropped).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster, or a skip (a failure when `TOWER_OPENAI_REQUIRE_POSTGRES` is set, as in CI).
pub fn postgres_or_skip() -> Option<Postgres> {
    let pg = Postgres::start();
    if pg.is_none() {
        assert!(
            std::env::var_os("TOWER_OPENAI_REQUIRE_POSTGRES").is_none(),
            "Postgres is not installed (apt-get install postgresql)"
        );
        eprintln!("skipped: Postgres is not installed (apt-get install postgresql)");
    }
    pg
}
