use tower_layer::Layer;

use crate::{Catalog, Models};

/// Answers `GET /models` and `GET /models/{…}` from a [`Catalog`]. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct ModelsLayer {
    catalog: Catalog,
}

impl ModelsLayer {
    /// Serve the lists of `catalog`.
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }
}

impl<S> Layer<S> for ModelsLayer {
    type Service = Models<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Models::new(inner, self.catalog.clone())
    }
}
