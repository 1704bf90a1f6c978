//! What the catalog remembers of each connection's model-list fetches.

use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;
use tower_openai_core::error::{UpstreamError, find_cause};

#[derive(Default)]
pub(super) struct Health {
    pub(super) last_good: Option<(Instant, Arc<Vec<Value>>)>,
    pub(super) failing: Option<String>,
    /// The last fetch: when (wall clock), and how many models or why none.
    pub(super) last_fetch: Option<(std::time::SystemTime, Result<usize, String>)>,
}

/// One connection's health, as the catalog last saw it (`GET /openai/status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionHealth {
    /// The connection's index.
    pub index: usize,
    /// Its base URL.
    pub url: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Whether its last model-list fetch worked (a connection with static `model_ids`, or
    /// an Azure one, is up without a fetch).
    pub up: bool,
    /// How many models it contributed to the last list.
    pub models: usize,
    /// The last fetch: when (seconds since the Unix epoch), and the upstream's own reason
    /// when it failed.
    pub last_fetch: Option<(u64, Result<usize, String>)>,
}

/// A fetch failure as the catalog logs and reports it.
pub(super) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    match find_cause::<UpstreamError>(err) {
        Some(e) => e.to_string(),
        None => err.to_string(),
    }
}
