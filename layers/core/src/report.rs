//! What a layer below learns about an answer after its head went out, for the layers above:
//! a report put in the response extensions with the head, and filled in as the body passes.
//!
//! Facts known by the time the head goes up (the route, the model, the connection, an
//! upstream failure) travel as plain response extensions. Two facts are known only as the
//! body passes or ends: the token usage ([`UsageReport`], written by the usage layer's body)
//! and an early end that the body hides from the layers above ([`EndingReport`], written by
//! the upstream's body when it turns a broken stream into a terminal error event). The
//! layers above read them when their own watch of the body ends, which is after the inner
//! body's (see [`WatchedBody`](crate::body::WatchedBody)).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Token counts an upstream reported for one answer (`usage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// `prompt_tokens` (chat, completions, embeddings) or `input_tokens` (responses).
    pub input_tokens: u64,
    /// `completion_tokens` or `output_tokens`; 0 when the answer has none (embeddings).
    pub output_tokens: u64,
}

const NONE: u64 = u64::MAX;

/// The token usage of one answer, filled in by the usage layer as the body passes; read by
/// the layers above at the end of the body (metrics, access log, rate limits, budgets).
/// Clones share it.
#[derive(Clone, Debug, Default)]
pub struct UsageReport(Arc<UsageCell>);

#[derive(Debug)]
struct UsageCell {
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    estimated: AtomicBool,
    response_model: OnceLock<Box<str>>,
}

impl Default for UsageCell {
    fn default() -> Self {
        Self {
            input_tokens: AtomicU64::new(NONE),
            output_tokens: AtomicU64::new(NONE),
            estimated: AtomicBool::new(false),
            response_model: OnceLock::new(),
        }
    }
}

impl UsageReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record the usage the upstream reported (a later report replaces an earlier one: a
    /// stream's final usage chunk is the total).
    pub fn set(&self, usage: TokenUsage) {
        let cell = &self.0;
        cell.input_tokens
            .store(usage.input_tokens.min(NONE - 1), Ordering::Relaxed);
        cell.output_tokens
            .store(usage.output_tokens.min(NONE - 1), Ordering::Relaxed);
        cell.estimated.store(false, Ordering::Relaxed);
    }

    /// Record an estimate, unless the upstream reported the usage (an answer that ended
    /// without usage, for a caller whose tokens are counted: see
    /// [`MeterUsage`](crate::MeterUsage)).
    pub fn set_estimate(&self, usage: TokenUsage) {
        if self.usage().is_none() {
            self.set(usage);
            self.0.estimated.store(true, Ordering::Relaxed);
        }
    }

    /// The usage, if the upstream reported it (or it was estimated).
    pub fn usage(&self) -> Option<TokenUsage> {
        let input = self.0.input_tokens.load(Ordering::Relaxed);
        let output = self.0.output_tokens.load(Ordering::Relaxed);
        (input != NONE).then_some(TokenUsage {
            input_tokens: input,
            output_tokens: output,
        })
    }

    /// Whether [`usage`](Self::usage) is an estimate.
    pub fn is_estimate(&self) -> bool {
        self.0.estimated.load(Ordering::Relaxed)
    }

    /// Record the model the answer names (the first report wins).
    pub fn set_response_model(&self, model: &str) {
        let _ = self.0.response_model.set(model.into());
    }

    /// The model the answer named, if it was read.
    pub fn response_model(&self) -> Option<&str> {
        self.0.response_model.get().map(|m| &**m)
    }
}

/// How a response body ended early, as the layer that ended it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The upstream's body broke off (a reset, an idle-read timeout) after the head went out.
    UpstreamBroke,
    /// The server's shutdown grace period ended the body.
    Shutdown,
}

/// An early end that a body hides from the layers above (it ends them with a terminal event
/// instead of an error), told to them through the response extensions. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct EndingReport(Arc<AtomicU8>);

impl EndingReport {
    /// No early end yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record how the body ended early (the first report wins).
    pub fn set(&self, ending: Ending) {
        let code = match ending {
            Ending::UpstreamBroke => 1,
            Ending::Shutdown => 2,
        };
        let _ = self
            .0
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// How the body ended early, if it did.
    pub fn get(&self) -> Option<Ending> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(Ending::UpstreamBroke),
            2 => Some(Ending::Shutdown),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_replaced_and_an_estimate_never_replaces_a_report() {
        let r = UsageReport::new();
        assert_eq!(r.usage(), None);
        r.set_estimate(TokenUsage {
            input_tokens: 1,
            output_tokens: 2,
        });
        assert!(r.is_estimate());
        r.set(TokenUsage {
            input_tokens: 3,
            output_tokens: u64::MAX,
        });
        assert_eq!(
            r.usage(),
            Some(TokenUsage {
                input_tokens: 3,
                output_tokens: u64::MAX - 1
            })
        );
        assert!(!r.is_estimate());
        r.set_estimate(TokenUsage::default());
        assert_eq!(r.usage().map(|u| u.input_tokens), Some(3));
        r.set_response_model("a");
        r.set_response_model("b");
        assert_eq!(r.response_model(), Some("a"));
    }

    #[test]
    fn the_first_ending_wins() {
        let e = EndingReport::new();
        assert_eq!(e.get(), None);
        e.set(Ending::Shutdown);
        e.clone().set(Ending::UpstreamBroke);
        assert_eq!(e.get(), Some(Ending::Shutdown));
    }
}
