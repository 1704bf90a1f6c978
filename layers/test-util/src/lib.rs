//! Test helpers for tower-openai (not published).
//!
//! - [`MockUpstream`]: an OpenAI-compatible upstream on `127.0.0.1:0` with a fluent builder,
//!   fault modes, and a record of every request it received.
//! - [`ScriptedBody`]: a body that yields scripted frames, delays and errors, for SSE
//!   chunking and mid-stream failures.
//! - [`trace_init`]: tracing to the test writer.
//! - [`postgres`]: a throwaway Postgres cluster on a free port.
//! - [`scratch_dir`]: a fresh folder for one test; those of ended test processes are removed.

mod body;
pub mod examples;
mod mock;
pub mod postgres;
mod proxy;
mod scratch;

pub use crate::body::{ScriptedBody, Step};
pub use crate::mock::{MockBuilder, MockUpstream, RecordedRequest, Reply, Sse};
pub use crate::proxy::RecordingProxy;
pub use crate::scratch::scratch_dir;

/// Install a tracing subscriber that writes through the test harness (once per process;
/// later calls do nothing). Honours `RUST_LOG`.
pub fn trace_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug")),
        )
        .with_test_writer()
        .try_init();
}
