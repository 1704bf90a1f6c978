//! `openai-gateway`: parse the flags, set up tracing, serve.

use std::process::ExitCode;

use clap::Parser;
use openai_gateway::{Args, run, telemetry};

// A proxy allocates small buffers on every request from every worker thread; mimalloc's
// per-thread heaps avoid the arena-lock contention glibc malloc showed under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.healthcheck {
        let listen = args
            .listen
            .clone()
            .or_else(|| std::env::var("GATEWAY_LISTEN").ok())
            .unwrap_or_else(|| openai_gateway::DEFAULT_LISTEN.to_owned());
        return if openai_gateway::healthcheck(&listen) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
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
    // Logs (and OpenTelemetry export, when configured): docs/observability.md.
    let telemetry = telemetry::init(runtime.handle());
    let result = runtime.block_on(run(args, &|name| std::env::var(name).ok()));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openai-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
