//! [`Exchange`]: what the stack learns about one request, in one place, for whoever reports
//! it (the access log, the metrics, the trace span).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use http::Extensions;

use crate::extensions::{ApiRoute, RequestedModel, SelectedConnection, User};
use crate::settings::Connection;

const NONE: u64 = u64::MAX;

/// What the stack learned about one request: its route, user, model, connection, token
/// usage and how its answer ended.
///
/// The layer that reports requests (the observe layer's metrics and access log) puts one in
/// the request extensions; layers below fill in what they learn, and the reporter reads it
/// when the response body ends. Cloning shares it. Each value is set once (the first writer
/// wins, except usage, which the last usage seen replaces): no lock on the request path.
#[derive(Clone, Debug, Default)]
pub struct Exchange(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    route: OnceLock<&'static str>,
    user: OnceLock<Arc<str>>,
    model: OnceLock<Box<str>>,
    response_model: OnceLock<Box<str>>,
    /// The last connection selected (a group layer may try several).
    connection: Mutex<Option<Arc<Connection>>>,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    /// The usage is an estimate (the answer ended without one).
    estimated: AtomicBool,
    ending: AtomicU8,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            route: OnceLock::new(),
            user: OnceLock::new(),
            model: OnceLock::new(),
            response_model: OnceLock::new(),
            connection: Mutex::new(None),
            input_tokens: AtomicU64::new(NONE),
            output_tokens: AtomicU64::new(NONE),
            estimated: AtomicBool::new(false),
            ending: AtomicU8::new(0),
        }
    }
}

/// Token counts an upstream reported for one answer (`usage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_tokens` (chat, completions, embeddings) or `input_tokens` (responses).
    pub input_tokens: u64,
    /// `completion_tokens` or `output_tokens`; 0 when the answer has none (embeddings).
    pub output_tokens: u64,
}

/// How a response body ended early, as the layer that ended it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The upstream's body broke off (a reset, an idle-read timeout) after the head went out.
    UpstreamBroke,
    /// The server's shutdown grace period ended the body.
    Shutdown,
}

impl Exchange {
    /// A new, empty exchange.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record what the standard extensions already say: the route ([`ApiRoute`]), the user
    /// ([`User`]), the model once routed ([`RequestedModel`]: a model the catalog knows, never
    /// an arbitrary string a caller sent, so it is safe as a metrics label) and the
    /// connection ([`SelectedConnection`]). Values already recorded are kept, except the
    /// connection: the last one noted is the one that answered (a group may try several).
    pub fn note(&self, extensions: &Extensions) {
        if let Some(route) = extensions.get::<ApiRoute>() {
            let _ = self.0.route.set(route.name);
        }
        if self.0.user.get().is_none()
            && let Some(user) = extensions.get::<User>()
        {
            self.set_user(user.id.clone());
        }
        if self.0.model.get().is_none()
            && let Some(m) = extensions.get::<RequestedModel>()
        {
            let _ = self.0.model.set(m.requested.as_str().into());
        }
        if let Some(SelectedConnection(c)) = extensions.get::<SelectedConnection>() {
            *self.connection_slot() = Some(c.clone());
        }
    }

    /// Record the route (the first report wins).
    pub fn set_route(&self, route: &'static str) {
        let _ = self.0.route.set(route);
    }

    /// Record the caller's id.
    pub fn set_user(&self, id: Arc<str>) {
        let _ = self.0.user.set(id);
    }

    /// Record the model the answer names (its `model`; the first report wins).
    pub fn set_response_model(&self, model: &str) {
        let _ = self.0.response_model.set(model.into());
    }

    /// Record the token usage of the answer (a later report replaces an earlier one: a
    /// stream's final usage chunk is the total).
    pub fn set_usage(&self, usage: Usage) {
        self.0
            .input_tokens
            .store(usage.input_tokens.min(NONE - 1), Ordering::Relaxed);
        self.0
            .output_tokens
            .store(usage.output_tokens.min(NONE - 1), Ordering::Relaxed);
    }

    /// Record an estimate of the answer's usage, unless the upstream reported it (see
    /// [`MeterUsage`](crate::MeterUsage)).
    pub fn set_estimated_usage(&self, usage: Usage) {
        if self.usage().is_none() {
            self.set_usage(usage);
            self.0.estimated.store(true, Ordering::Relaxed);
        }
    }

    /// Whether [`usage`](Self::usage) is an estimate.
    pub fn usage_estimated(&self) -> bool {
        self.0.estimated.load(Ordering::Relaxed)
    }

    /// Record how the body ended early (the first report wins).
    pub fn set_ending(&self, ending: Ending) {
        let code = match ending {
            Ending::UpstreamBroke => 1,
            Ending::Shutdown => 2,
        };
        let _ = self
            .0
            .ending
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The route name ([`ApiRoute::name`]), once known.
    pub fn route(&self) -> Option<&'static str> {
        self.0.route.get().copied()
    }

    /// The caller's id, once known.
    pub fn user(&self) -> Option<&str> {
        self.0.user.get().map(|u| &**u)
    }

    /// The model as the caller named it, once select routed it.
    pub fn model(&self) -> Option<&str> {
        self.0.model.get().map(|m| &**m)
    }

    /// The index of the connection the request went to, once known.
    pub fn connection(&self) -> Option<usize> {
        self.connection_slot().as_ref().map(|c| c.index())
    }

    /// The connection the request went to, once known.
    pub fn selected_connection(&self) -> Option<Arc<Connection>> {
        self.connection_slot().clone()
    }

    /// The connection slot (never held across an await; a poisoned lock still holds a
    /// valid value).
    fn connection_slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Connection>>> {
        self.0
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The model the answer named, if it did.
    pub fn response_model(&self) -> Option<&str> {
        self.0.response_model.get().map(|m| &**m)
    }

    /// The answer's token usage, if the upstream reported it.
    pub fn usage(&self) -> Option<Usage> {
        let input = self.0.input_tokens.load(Ordering::Relaxed);
        let output = self.0.output_tokens.load(Ordering::Relaxed);
        (input != NONE).then_some(Usage {
            input_tokens: input,
            output_tokens: output,
        })
    }

    /// How the body ended early, if a layer below ended it.
    pub fn ending(&self) -> Option<Ending> {
        match self.0.ending.load(Ordering::Relaxed) {
            1 => Some(Ending::UpstreamBroke),
            2 => Some(Ending::Shutdown),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use http::Extensions;

    use super::{Ending, Exchange, Usage};
    use crate::extensions::{ApiRoute, RequestedModel, RouteKind, SelectedConnection, User};
    use crate::settings::Settings;

    #[test]
    fn notes_the_standard_extensions_and_keeps_the_first_values() {
        let settings = Settings::for_urls(["http://a/v1", "http://b/v1"]).unwrap();
        let mut ext = Extensions::new();
        ext.insert(ApiRoute {
            kind: RouteKind::ModelJson,
            name: "chat/completions",
        });
        ext.insert(User {
            id: "alice".into(),
            ..User::default()
        });
        ext.insert(RequestedModel {
            requested: "local.llama3".into(),
            upstream: "llama3".into(),
        });
        ext.insert(SelectedConnection(settings.connections()[1].clone()));
        let x = Exchange::new();
        assert_eq!(
            (x.route(), x.user(), x.model(), x.connection()),
            (None, None, None, None)
        );
        x.note(&ext);
        let again = x.clone();
        let mut other = Extensions::new();
        other.insert(User {
            id: "mallory".into(),
            ..User::default()
        });
        again.note(&other);
        other.insert(SelectedConnection(settings.connections()[0].clone()));
        again.note(&other);
        assert_eq!(x.route(), Some("chat/completions"));
        assert_eq!(x.user(), Some("alice"));
        assert_eq!(x.model(), Some("local.llama3"));
        // The last connection noted is the one that answered.
        assert_eq!(x.connection(), Some(0));
    }

    #[test]
    fn usage_is_replaced_and_the_first_ending_wins() {
        let x = Exchange::new();
        assert_eq!(x.usage(), None);
        x.set_usage(Usage {
            input_tokens: 1,
            output_tokens: 2,
        });
        x.set_usage(Usage {
            input_tokens: 3,
            output_tokens: u64::MAX,
        });
        assert_eq!(
            x.usage(),
            Some(Usage {
                input_tokens: 3,
                output_tokens: u64::MAX - 1
            })
        );
        assert_eq!(x.ending(), None);
        x.set_ending(Ending::Shutdown);
        x.set_ending(Ending::UpstreamBroke);
        assert_eq!(x.ending(), Some(Ending::Shutdown));
    }
}
