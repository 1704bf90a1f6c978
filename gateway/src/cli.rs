//! Command-line flags (see the README's configuration reference).

use std::path::PathBuf;

use clap::Parser;

/// `openai-gateway`: an OpenAI-compatible gateway in front of one or more upstreams.
///
/// Settings come from flags, then the environment (Open WebUI's variable names), then the
/// TOML file, then defaults.
#[derive(Clone, Debug, Default, Parser)]
#[command(name = "openai-gateway", version, about, long_about = None)]
pub struct Args {
    /// Where to serve [env: GATEWAY_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// TOML configuration file [env: GATEWAY_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Persisted admin changes and the speech cache [env: DATA_DIR] [default: ./data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Also start an in-process mock OpenAI upstream and use it as connection 0, so the
    /// gateway works offline with no key
    #[arg(long)]
    pub demo: bool,

    /// Permit single-user mode (no `[[users]]`) on a non-loopback address
    #[arg(long)]
    pub allow_anonymous: bool,

    /// Refuse JSON request bodies larger than this with 413 [env: GATEWAY_MAX_BODY_BYTES]
    /// [default: 67108864]
    #[arg(long, value_name = "N")]
    pub max_body_bytes: Option<usize>,

    /// Accept at most this many open connections at once [env: GATEWAY_MAX_CONNECTIONS]
    /// [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
}
