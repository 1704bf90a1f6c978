use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::service::Reasoning;
use crate::strategy::{DefaultReasoningModels, ReasoningModels};

/// Rewrites chat completions for reasoning models. See the [crate docs](crate).
pub struct ReasoningLayer<R = DefaultReasoningModels> {
    rule: Arc<R>,
}

impl ReasoningLayer {
    /// With the default rule.
    pub fn new() -> Self {
        Self {
            rule: Arc::new(DefaultReasoningModels),
        }
    }
}

impl Default for ReasoningLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> ReasoningLayer<R> {
    /// Use another rule (a closure `Fn(&str) -> bool`, or `()` for none).
    pub fn rule<R2: ReasoningModels>(self, rule: R2) -> ReasoningLayer<R2> {
        ReasoningLayer {
            rule: Arc::new(rule),
        }
    }
}

impl<R> Clone for ReasoningLayer<R> {
    fn clone(&self) -> Self {
        Self {
            rule: self.rule.clone(),
        }
    }
}

impl<R> fmt::Debug for ReasoningLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReasoningLayer").finish_non_exhaustive()
    }
}

impl<S, R> Layer<S> for ReasoningLayer<R> {
    type Service = Reasoning<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Reasoning::from_shared(inner, self.rule.clone())
    }
}
