use tower_layer::Layer;

use crate::service::Azure;

/// Rewrites requests for Azure OpenAI connections. See the [crate docs](crate).
#[derive(Clone, Copy, Debug, Default)]
pub struct AzureLayer {
    _priv: (),
}

impl AzureLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for AzureLayer {
    type Service = Azure<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Azure::new(inner)
    }
}
