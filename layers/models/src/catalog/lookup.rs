//! [`Lookup`]: what the catalog answers.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::Snapshot;

/// The catalog's answer: a list now, or one being built.
pub enum Lookup {
    /// The current list (possibly stale, with a refresh under way).
    Ready(Arc<Snapshot>),
    /// No list for these settings yet; resolves when the build finishes.
    Pending(BoxFuture<'static, Arc<Snapshot>>),
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Ready(s) => f.debug_tuple("Ready").field(s).finish(),
            Lookup::Pending(_) => f.write_str("Pending"),
        }
    }
}
