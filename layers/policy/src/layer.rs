use tower_layer::Layer;

use crate::service::Policy;

/// Applies the route policy. See the [crate docs](crate).
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicyLayer {
    passthrough: bool,
}

impl PolicyLayer {
    /// The policy with the passthrough off (the default).
    pub fn new() -> Self {
        Self::default()
    }

    /// Forward paths that are not model routes to connection 0
    /// (`ENABLE_OPENAI_API_PASSTHROUGH`). Off by default.
    pub fn passthrough(mut self, on: bool) -> Self {
        self.passthrough = on;
        self
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = Policy<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Policy::new(inner).passthrough(self.passthrough)
    }
}
