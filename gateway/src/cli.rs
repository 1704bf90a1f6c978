//! Command-line flags (see the README's configuration reference).

use std::path::PathBuf;

use clap::Parser;

/// `openai-gateway`: an OpenAI-compatible gateway in front of one or more upstreams.
///
/// Settings come from flags, then the environment (Open WebUI's variable names), then the
/// TOML file, then defaults. (The defaults are in the help text, not clap defaults: a clap
/// default would hide the TOML file's value.)
#[derive(Clone, Debug, Default, Parser)]
#[command(name = "openai-gateway", version, about, long_about = None)]
pub struct Args {
    /// Where to serve [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR", env = "GATEWAY_LISTEN")]
    pub listen: Option<String>,

    /// TOML configuration file
    #[arg(long, value_name = "FILE", env = "GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,

    /// Persisted admin changes and the speech cache [default: ./data]
    #[arg(long, value_name = "DIR", env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Also start an in-process mock OpenAI upstream and use it as connection 0, so the
    /// gateway works offline with no key
    #[arg(long)]
    pub demo: bool,

    /// Permit single-user mode (no `[[users]]`) on a non-loopback address
    #[arg(long)]
    pub allow_anonymous: bool,

    /// Refuse request bodies larger than this with 413 [default: 67108864]
    #[arg(long, value_name = "N", env = "GATEWAY_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Accept at most this many open connections at once [default: 10000]
    #[arg(long, value_name = "N", env = "GATEWAY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Also serve `GET /metrics` (Prometheus text, no key) on this address, and nothing else
    #[arg(long, value_name = "ADDR", env = "GATEWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}
