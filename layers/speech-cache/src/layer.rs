use tower_layer::Layer;

use crate::service::SpeechCache;
use crate::store::SpeechStore;

/// Answers `POST /audio/speech` from a disk cache. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct SpeechCacheLayer {
    store: SpeechStore,
}

impl SpeechCacheLayer {
    /// Cache in `store` (shared by every service the layer makes).
    pub fn new(store: SpeechStore) -> Self {
        Self { store }
    }
}

impl<S> Layer<S> for SpeechCacheLayer {
    type Service = SpeechCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SpeechCache::new(inner, self.store.clone())
    }
}
