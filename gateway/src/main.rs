//! `openai-gateway`: parse the flags, set up tracing, serve.

use std::process::ExitCode;

use clap::Parser;
use openai_gateway::{Args, run};
use tracing_subscriber::EnvFilter;

// A proxy allocates small buffers on every request from every worker thread; mimalloc's
// per-thread heaps avoid the arena-lock contention glibc malloc showed under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs go to stderr, one line per event: plain text (colours only when stderr is a
/// terminal, so log files carry no escape codes), or one JSON object per line with
/// `LOG_FORMAT=json`.
fn init_logs() {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.trim().eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logs();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("openai-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, &|name| std::env::var(name).ok())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openai-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
