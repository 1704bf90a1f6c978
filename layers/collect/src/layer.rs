use std::time::Duration;

use tower_layer::Layer;

use super::CollectPayload;
use super::budget::BufferBudget;
use tower_openai_time::BodyTimeouts;

/// The default body limit, 64 MiB (the gateway's `--max-body-bytes` default).
pub const DEFAULT_LIMIT: usize = 64 * 1024 * 1024;

/// The default body read timeout, 30 s (the gateway's `GATEWAY_BODY_READ_TIMEOUT` default).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The default total body timeout, 300 s (the gateway's `GATEWAY_BODY_TOTAL_TIMEOUT`
/// default).
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(300);

pub(super) const DEFAULT_TIMEOUTS: BodyTimeouts = BodyTimeouts {
    idle: Some(DEFAULT_READ_TIMEOUT),
    total: Some(DEFAULT_TOTAL_TIMEOUT),
};

/// Collects JSON request bodies into a [`Payload`](tower_openai_core::Payload) under a size limit.
///
/// See the [module docs](super).
#[derive(Clone, Debug)]
pub struct CollectPayloadLayer {
    limit: usize,
    timeouts: BodyTimeouts,
    budget: Option<BufferBudget>,
}

impl CollectPayloadLayer {
    /// Refuse bodies larger than `limit` bytes, bodies that send nothing for
    /// [`DEFAULT_READ_TIMEOUT`] and bodies not complete within [`DEFAULT_TOTAL_TIMEOUT`].
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            timeouts: DEFAULT_TIMEOUTS,
            budget: None,
        }
    }

    /// Refuse with 408 a body that sends nothing for `timeout` (`None`: wait forever).
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeouts.idle = timeout;
        self
    }

    /// Refuse with 408 a body not complete within `timeout` of the first wait for it
    /// (`None`: no limit).
    pub fn total_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeouts.total = timeout;
        self
    }

    /// Count the bodies it buffers against `budget`: past either of its caps, 503
    /// `gateway_overloaded`. The budget is shared by every clone (one per process).
    pub fn budget(mut self, budget: BufferBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Default for CollectPayloadLayer {
    fn default() -> Self {
        Self::new(DEFAULT_LIMIT)
    }
}

impl<S> Layer<S> for CollectPayloadLayer {
    type Service = CollectPayload<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let svc = CollectPayload::new(inner, self.limit)
            .read_timeout(self.timeouts.idle)
            .total_timeout(self.timeouts.total);
        match &self.budget {
            Some(budget) => svc.budget(budget.clone()),
            None => svc,
        }
    }
}
