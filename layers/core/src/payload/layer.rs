use std::time::Duration;

use tower_layer::Layer;

use super::CollectPayload;

/// The default body limit, 64 MiB (the gateway's `--max-body-bytes` default).
pub const DEFAULT_LIMIT: usize = 64 * 1024 * 1024;

/// The default body read timeout, 30 s (the gateway's `GATEWAY_BODY_READ_TIMEOUT` default).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Collects JSON request bodies into a [`Payload`](super::Payload) under a size limit.
///
/// See the [module docs](super).
#[derive(Clone, Copy, Debug)]
pub struct CollectPayloadLayer {
    limit: usize,
    read_timeout: Option<Duration>,
}

impl CollectPayloadLayer {
    /// Refuse bodies larger than `limit` bytes, and bodies that send nothing for
    /// [`DEFAULT_READ_TIMEOUT`].
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            read_timeout: Some(DEFAULT_READ_TIMEOUT),
        }
    }

    /// Refuse with 408 a body that sends nothing for `timeout` (`None`: wait forever).
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
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
        CollectPayload::new(inner, self.limit).read_timeout(self.read_timeout)
    }
}
