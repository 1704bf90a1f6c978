use std::sync::Arc;

use tower_layer::Layer;

use crate::config::HeadersConfig;
use crate::service::Headers;

/// Adds attribution, user-info and per-connection headers. See the [crate docs](crate).
#[derive(Clone, Debug, Default)]
pub struct HeadersLayer {
    config: Arc<HeadersConfig>,
}

impl HeadersLayer {
    /// With this configuration (shared by every service the layer makes).
    pub fn new(config: HeadersConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for HeadersLayer {
    type Service = Headers<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Headers::from_shared(inner, self.config.clone())
    }
}
