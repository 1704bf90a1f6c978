/// Decides whether an outgoing model id is a reasoning model.
///
/// Implemented for closures `Fn(&str) -> bool`, for [`DefaultReasoningModels`] (the rule of
/// [`is_reasoning_model`](crate::is_reasoning_model)) and for `()` (no model is
/// a reasoning model: the layer only converts `logit_bias` and `max_completion_tokens`).
pub trait ReasoningModels: Send + Sync + 'static {
    /// Whether `model` (lower-cased, prefix stripped) is a reasoning model.
    fn is_reasoning(&self, model: &str) -> bool;
}

/// The default rule: `o<digit>…`, `gpt-N` with N ≥ 5, optionally after `…openai.`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultReasoningModels;

impl ReasoningModels for DefaultReasoningModels {
    fn is_reasoning(&self, model: &str) -> bool {
        crate::is_reasoning_model(model)
    }
}

impl ReasoningModels for () {
    fn is_reasoning(&self, _model: &str) -> bool {
        false
    }
}

impl<F> ReasoningModels for F
where
    F: Fn(&str) -> bool + Send + Sync + 'static,
{
    fn is_reasoning(&self, model: &str) -> bool {
        self(model)
    }
}
