use tower_layer::Layer;

use crate::Select;

/// Routes requests by model. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct SelectLayer<R> {
    routes: R,
}

impl<R> SelectLayer<R> {
    /// Route with `routes` (cloned into each service; share state behind an `Arc`, as the
    /// models layer's `Catalog` does).
    pub fn new(routes: R) -> Self {
        Self { routes }
    }
}

impl<S, R: Clone> Layer<S> for SelectLayer<R> {
    type Service = Select<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Select::new(inner, self.routes.clone())
    }
}
