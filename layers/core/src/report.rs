//! What a layer below learns about an answer after its head went out, for the layers above:
//! a report put in the response extensions with the head, and filled in as the body passes.
//!
//! Facts known by the time the head goes up (the route, the model, the connection, an
//! upstream failure) travel as plain response extensions. Two facts are known only as the
//! body passes or ends: the token usage ([`UsageReport`], written by the usage layer's body)
//! and an early end that the body hides from the layers above ([`EndingReport`], written by
//! the upstream's body when it turns a broken stream into a terminal error event). The
//! layers above read them when their own watch of the body ends, which is after the inner
//! body's (see `tower_openai_util::body::WatchedBody`).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Token counts an upstream reported for one answer (`usage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// `prompt_tokens` (chat, completions, embeddings) or `input_tokens` (responses).
    pub input_tokens: u64,
    /// `completion_tokens` or `output_tokens`; 0 when the answer has none (embeddings).
    pub output_tokens: u64,
    /// The part of the input the upstream served from its prompt cache
    /// (`prompt_tokens_details.cached_tokens` or `input_tokens_details.cached_tokens`; 0 when
    /// the answer does not say). Counted within `input_tokens`.
    pub cached_tokens: u64,
}

/// What tokens cost: USD per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TokenPrices {
    /// Input (prompt) tokens.
    pub input: f64,
    /// Output (completion) tokens.
    pub output: f64,
    /// Cached input tokens (give the input price when there is no cheaper one).
    pub cached_input: f64,
}

impl TokenPrices {
    /// What an answer with `usage` costs, in USD:
    /// (input − cached) × input price + cached × cached-input price + output × output price,
    /// each per million tokens (cached tokens beyond the input are taken as all of it).
    pub fn cost(&self, usage: &TokenUsage) -> f64 {
        let cached = usage.cached_tokens.min(usage.input_tokens);
        let per = |tokens: u64, usd: f64| tokens as f64 * usd / 1_000_000.0;
        per(usage.input_tokens - cached, self.input)
            + per(cached, self.cached_input)
            + per(usage.output_tokens, self.output)
    }
}

/// Where the usage layer finds a model's prices (the model as the caller named it).
pub trait PriceList: Send + Sync + 'static {
    /// The prices of `model`, if it has some.
    fn prices(&self, model: &str) -> Option<TokenPrices>;

    /// Whether there are any prices at all (when not, no model is looked up).
    fn is_empty(&self) -> bool {
        false
    }
}

impl<P: PriceList + ?Sized> PriceList for Arc<P> {
    fn prices(&self, model: &str) -> Option<TokenPrices> {
        (**self).prices(model)
    }

    fn is_empty(&self) -> bool {
        (**self).is_empty()
    }
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
    cached_tokens: AtomicU64,
    estimated: AtomicBool,
    response_model: OnceLock<Box<str>>,
    prices: Option<TokenPrices>,
    /// Prices are in use, and the answer's model has none.
    unpriced: bool,
}

impl Default for UsageCell {
    fn default() -> Self {
        Self {
            input_tokens: AtomicU64::new(NONE),
            output_tokens: AtomicU64::new(NONE),
            cached_tokens: AtomicU64::new(0),
            estimated: AtomicBool::new(false),
            response_model: OnceLock::new(),
            prices: None,
            unpriced: false,
        }
    }
}

impl UsageReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty report for an answer whose tokens cost `prices` (see [`cost`](Self::cost)).
    pub fn priced(prices: TokenPrices) -> Self {
        Self(Arc::new(UsageCell {
            prices: Some(prices),
            ..UsageCell::default()
        }))
    }

    /// An empty report for an answer whose model has no price where prices are in use
    /// ([`is_unpriced`](Self::is_unpriced)).
    pub fn unpriced() -> Self {
        Self(Arc::new(UsageCell {
            unpriced: true,
            ..UsageCell::default()
        }))
    }

    /// Whether prices are in use and the answer's model has none (its tokens are counted as
    /// unpriced).
    pub fn is_unpriced(&self) -> bool {
        self.0.unpriced
    }

    /// Record the usage the upstream reported (a later report replaces an earlier one: a
    /// stream's final usage chunk is the total).
    pub fn set(&self, usage: TokenUsage) {
        let cell = &self.0;
        cell.input_tokens
            .store(usage.input_tokens.min(NONE - 1), Ordering::Relaxed);
        cell.output_tokens
            .store(usage.output_tokens.min(NONE - 1), Ordering::Relaxed);
        cell.cached_tokens
            .store(usage.cached_tokens, Ordering::Relaxed);
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
            cached_tokens: self.0.cached_tokens.load(Ordering::Relaxed),
        })
    }

    /// What the answer cost in USD, when its model has prices and its usage is known (or
    /// estimated).
    pub fn cost(&self) -> Option<f64> {
        Some(self.0.prices?.cost(&self.usage()?))
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
            cached_tokens: 0,
        });
        assert!(r.is_estimate());
        r.set(TokenUsage {
            input_tokens: 3,
            output_tokens: u64::MAX,
            cached_tokens: 1,
        });
        assert_eq!(
            r.usage(),
            Some(TokenUsage {
                input_tokens: 3,
                output_tokens: u64::MAX - 1,
                cached_tokens: 1,
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
    fn an_answer_costs_its_tokens_at_their_prices() {
        let prices = TokenPrices {
            input: 2.5,
            output: 10.0,
            cached_input: 1.25,
        };
        let usage = TokenUsage {
            input_tokens: 1_000,
            output_tokens: 200,
            cached_tokens: 400,
        };
        // 600 × 2.5 + 400 × 1.25 + 200 × 10, per million.
        assert!((prices.cost(&usage) - 0.004).abs() < 1e-15);
        // More cached tokens than input: all of the input, at the cached price.
        let odd = TokenUsage {
            cached_tokens: 5_000,
            ..usage
        };
        assert!((prices.cost(&odd) - 0.00325).abs() < 1e-15);
        let report = UsageReport::priced(prices);
        assert_eq!(report.cost(), None);
        report.set(usage);
        assert_eq!(report.cost(), Some(prices.cost(&usage)));
        assert_eq!(UsageReport::new().cost(), None);
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
