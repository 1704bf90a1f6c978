//! What [`ObserveLayer`](crate::ObserveLayer) tells others when a body ends: the spend
//! [`Ledger`], and the request span's semantic-convention fields.

use std::sync::Arc;

use http::Uri;
use tower_openai_core::UsageReport;

use crate::report::{Outcome, Record, as_i64};

/// Where [`ObserveLayer`](crate::ObserveLayer) records what each answer of a model route used, when its body ends
/// (the application's spend records: the gateway sums them per day, user, key and model and
/// writes them to its database). Called on the thread that ends the body: it must not block.
pub trait Ledger: Send + Sync + 'static {
    /// Record one answer.
    fn record(&self, entry: &LedgerEntry<'_>);
}

/// One answer, as [`Ledger::record`] is told it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LedgerEntry<'a> {
    /// The caller's id.
    pub user: &'a Arc<str>,
    /// The id of the key the caller used, when the key store names keys.
    pub key: Option<&'a Arc<str>>,
    /// The model as the caller named it.
    pub model: &'a Arc<str>,
    /// Its token usage (all zero when the answer reported none and was not estimated).
    pub usage: tower_openai_core::TokenUsage,
    /// Its cost in USD (0 when the model has no price).
    pub cost_usd: f64,
    /// Whether the usage is an estimate (a metered answer that ended without usage).
    pub estimated: bool,
}

/// Record the OpenTelemetry GenAI semantic-convention fields in `span` (a field the span did
/// not declare is ignored by `tracing`).
pub(crate) fn record_span(span: &tracing::Span, r: &Record, status: u16, outcome: Outcome) {
    if let Some(route) = r.route {
        let operation = match route {
            "chat/completions" | "responses" | "messages" => "chat",
            "completions" => "text_completion",
            "embeddings" => "embeddings",
            other => other,
        };
        span.record("gen_ai.operation.name", operation);
    }
    if let Some(model) = &r.model {
        span.record("gen_ai.request.model", &**model);
    }
    if let Some(model) = r.usage.as_ref().and_then(UsageReport::response_model) {
        span.record("gen_ai.response.model", model);
    }
    if let Some(usage) = r.usage() {
        // As i64: OpenTelemetry's integers are signed (a u64 would be exported as text).
        span.record("gen_ai.usage.input_tokens", as_i64(usage.input_tokens));
        span.record("gen_ai.usage.output_tokens", as_i64(usage.output_tokens));
    }
    if let Some(connection) = &r.connection
        && let Ok(uri) = connection.url().parse::<Uri>()
        && let Some(host) = uri.host()
    {
        span.record("server.address", host);
    }
    span.record("http.response.status_code", i64::from(status));
    span.record("outcome", outcome.as_str());
    if status >= 500 || outcome == Outcome::UpstreamBroke {
        span.record("otel.status_code", "ERROR");
    }
}
