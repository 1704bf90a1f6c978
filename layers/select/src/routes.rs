//! A fixed model-to-connection map, the simplest [`ModelRoutes`].

use std::collections::HashMap;
use std::sync::Arc;

use tower_openai_core::routing::{ModelRoutes, Route};
use tower_openai_settings::Settings;

/// A fixed map of model ids to connections, for tests and simple setups.
///
/// ```
/// use std::sync::Arc;
/// use tower_openai_core::routing::{ModelRoutes, Route};
/// use tower_openai_select::StaticRoutes;
/// use tower_openai_settings::Settings;
///
/// let routes = StaticRoutes::new([("llama3", 1), ("gpt-4o", 0)]);
/// let settings = Arc::new(Settings::for_urls(["http://a/v1", "http://b/v1"]).unwrap());
/// assert!(matches!(routes.route(&settings, "llama3"), Route::Connection(1)));
/// assert!(matches!(routes.route(&settings, "nope"), Route::Unknown));
/// ```
#[derive(Clone, Debug, Default)]
pub struct StaticRoutes {
    map: Arc<HashMap<String, usize>>,
}

impl StaticRoutes {
    /// Route each model id to its connection index.
    pub fn new<I, S>(routes: I) -> Self
    where
        I: IntoIterator<Item = (S, usize)>,
        S: Into<String>,
    {
        Self {
            map: Arc::new(routes.into_iter().map(|(k, v)| (k.into(), v)).collect()),
        }
    }
}

impl ModelRoutes for StaticRoutes {
    fn route(&self, _settings: &Arc<Settings>, model: &str) -> Route {
        match self.map.get(model) {
            Some(&i) => Route::Connection(i),
            None => Route::Unknown,
        }
    }
}
