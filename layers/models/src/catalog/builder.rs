//! [`CatalogBuilder`]: a [`Catalog`]'s options.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::{Catalog, Fetch, Inner};
#[cfg(doc)]
use tower_openai_core::routing::Route;

/// Builds a [`Catalog`].
#[derive(Clone)]
pub struct CatalogBuilder {
    pub(super) fetch: Fetch,
    pub(super) grace: Duration,
    pub(super) max_list_bytes: usize,
    pub(super) groups: bool,
}

impl fmt::Debug for CatalogBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogBuilder")
            .field("grace", &self.grace)
            .field("max_list_bytes", &self.max_list_bytes)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl CatalogBuilder {
    /// How long a failing connection keeps its last good models (default 5 minutes;
    /// zero drops them at the first failure).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The largest `/models` body read from an upstream (default 16 MiB).
    pub fn max_list_bytes(mut self, max: usize) -> Self {
        self.max_list_bytes = max;
        self
    }

    /// Model groups (default off, Open WebUI's behaviour: the first connection that lists a
    /// model id serves it). On, a model id several enabled connections list is one model
    /// served by all of them: listed once with `urlIdxs`, routed as [`Route::Group`] for a
    /// group layer to choose among them per request.
    pub fn groups(mut self, on: bool) -> Self {
        self.groups = on;
        self
    }

    /// Build the catalog.
    pub fn build(self) -> Catalog {
        Catalog {
            inner: Arc::new(Inner {
                fetch: self.fetch,
                grace: self.grace,
                max_list_bytes: self.max_list_bytes,
                groups: self.groups,
                current: ArcSwapOption::empty(),
                building: Mutex::new(None),
                health: Mutex::new(HashMap::new()),
            }),
        }
    }
}
