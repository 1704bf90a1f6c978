//! Command-line flags (see the README's configuration reference).

use std::path::PathBuf;

use clap::Parser;

/// `openai-gateway`: an OpenAI-compatible gateway in front of one or more upstreams.
///
/// Settings come from flags, then the environment (Open WebUI's variable names), then the
/// TOML file, then defaults. The flags are only flags: the configuration loader reads every
/// variable itself, once, so an error names the variable (and a flag's default, in the help
/// text, never hides the TOML file's value).
#[derive(Clone, Debug, Default, Parser)]
#[command(name = "openai-gateway", version, about, long_about = None)]
pub struct Args {
    /// Where to serve (env GATEWAY_LISTEN) [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// TOML configuration file (env GATEWAY_CONFIG)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Persisted admin changes and the speech cache (env DATA_DIR) [default: ./data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Also start an in-process mock OpenAI upstream and use it as connection 0, so the
    /// gateway works offline with no key
    #[arg(long)]
    pub demo: bool,

    /// Permit single-user mode (no `[[users]]`) on a non-loopback address
    #[arg(long)]
    pub allow_anonymous: bool,

    /// Refuse request bodies larger than this with 413 (env GATEWAY_MAX_BODY_BYTES)
    /// [default: 67108864]
    #[arg(long, value_name = "N")]
    pub max_body_bytes: Option<usize>,

    /// Accept at most this many open connections at once (env GATEWAY_MAX_CONNECTIONS)
    /// [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Also serve `GET /metrics` (Prometheus text, no key) on this address, and nothing else
    /// (env GATEWAY_METRICS_LISTEN)
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Ask the gateway serving on `--listen` for `/healthz` and exit 0 when it answers 200,
    /// 1 otherwise (a container's health check, with no other tool in the image)
    #[arg(long)]
    pub healthcheck: bool,
}

/// `--healthcheck`: `GET /healthz` on `listen` (an unspecified address is asked on
/// loopback); whether it answered 200 within 3 s.
pub fn healthcheck(listen: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;
    let Ok(mut addr) = listen.parse::<SocketAddr>() else {
        return false;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let limit = Duration::from_secs(3);
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, limit) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(limit));
    let _ = conn.set_write_timeout(Some(limit));
    if conn
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}
