//! What the select layer needs of a model catalog, without depending on one.
//!
//! A catalog (the models layer's `Catalog`, or your own registry) implements
//! [`ModelRoutes`]: given the settings snapshot a request runs with and a model id, it says
//! which connection serves the model. The answer is immediate when the catalog is warm; a
//! cold catalog returns a future that resolves once its first list is built.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tower_openai_settings::Settings;

/// A boxed, sendable future (used only on cold paths).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The answer to "which connection serves this model?".
pub enum Route {
    /// Connection index.
    Connection(usize),
    /// Several connections serve the model (model groups are on): their indices, in list
    /// order. Without a group layer below select, the first one is used.
    Group(Arc<[usize]>),
    /// No connection lists this model.
    Unknown,
    /// The catalog is being built; the future resolves to the route once it is (never to
    /// `Pending` again).
    Pending(BoxFuture<Route>),
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Connection(i) => f.debug_tuple("Connection").field(i).finish(),
            Route::Group(g) => f.debug_tuple("Group").field(g).finish(),
            Route::Unknown => f.write_str("Unknown"),
            Route::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// Looks a model id up to the connection that serves it.
///
/// Implementations must be cheap to call on a warm catalog (a hash lookup): the select layer
/// calls it once per request.
pub trait ModelRoutes: Send + Sync + 'static {
    /// Route `model` (as the caller named it, prefix included) under `settings`.
    fn route(&self, settings: &Arc<Settings>, model: &str) -> Route;
}

impl<T: ModelRoutes + ?Sized> ModelRoutes for Arc<T> {
    fn route(&self, settings: &Arc<Settings>, model: &str) -> Route {
        (**self).route(settings, model)
    }
}
