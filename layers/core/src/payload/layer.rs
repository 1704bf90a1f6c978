use tower_layer::Layer;

use super::CollectPayload;

/// The default body limit, 64 MiB (the gateway's `--max-body-bytes` default).
pub const DEFAULT_LIMIT: usize = 64 * 1024 * 1024;

/// Collects JSON request bodies into a [`Payload`](super::Payload) under a size limit.
///
/// See the [module docs](super).
#[derive(Clone, Copy, Debug)]
pub struct CollectPayloadLayer {
    limit: usize,
}

impl CollectPayloadLayer {
    /// Refuse JSON bodies larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit }
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
        CollectPayload::new(inner, self.limit)
    }
}
