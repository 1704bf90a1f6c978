//! The failover policy: a `tower::retry::Policy` that moves a grouped request on to the next
//! connection of its group (linkerd's outbound retries have the same shape).

use std::future::Ready;
use std::sync::Arc;

use http::{Request, Response};
use tower::retry::Policy;
use tower::retry::budget::Budget;
use tower_openai_core::{ApiRoute, BoxError, ConnectionGroup, Payload, RouteKind, User};
use tower_openai_settings::{Settings, SettingsSnapshot};

use crate::attempt::{Attempt, bind, moves_on};
use crate::health::{Candidate, pick};
use crate::names;
use crate::service::Shared;

/// One grouped request's failover: the connections it has not tried, the attempts it has
/// left, and whether its body can be sent again.
#[derive(Clone)]
pub(crate) struct Failover {
    shared: Arc<Shared>,
    /// The group's enabled connections not tried yet.
    candidates: Vec<Candidate>,
    /// Attempts left after the one in flight.
    attempts_left: usize,
    requested: Arc<str>,
    caller: u64,
}

impl Failover {
    /// The failover of `req` over `group`, and its first attempt bound into `req`; `None` when
    /// no connection of the group is usable (all disabled since routing): the request is
    /// then bound to the group's first connection, once.
    pub(crate) fn start<B: http_body::Body>(
        shared: &Arc<Shared>,
        req: &mut Request<B>,
        group: ConnectionGroup,
    ) -> Option<Self> {
        let ext = req.extensions();
        let settings = ext.get::<SettingsSnapshot>().map(|s| s.0.clone());
        let connections = |settings: &Arc<Settings>| {
            group
                .connections
                .iter()
                .filter_map(|&i| settings.connection(i))
                .cloned()
                .collect::<Vec<_>>()
        };
        let mut candidates: Vec<Candidate> = match &settings {
            Some(settings) => connections(settings)
                .into_iter()
                .filter(|c| c.config().enable)
                .map(|c| {
                    let health = shared.health.of(&c);
                    Candidate::new(c, health)
                })
                .collect(),
            None => Vec::new(),
        };
        // Only a body the gateway holds whole (a JSON payload) can be sent again; a form or a
        // streamed body goes out once.
        let resendable = ext
            .get::<ApiRoute>()
            .is_some_and(|r| r.kind() == RouteKind::ModelJson)
            && ext.get::<Payload>().is_some()
            && req.body().is_end_stream();
        let requested = group.model.clone();
        let caller = caller_hash(ext.get::<User>());
        let Some(choice) = pick(&candidates, shared.health.now_ms(), fastrand::f64) else {
            if let Some(first) = settings
                .as_ref()
                .and_then(|s| connections(s).into_iter().next())
            {
                let health = shared.health.of(&first);
                bind(
                    req,
                    Attempt {
                        candidate: Candidate::new(first, health),
                        probe: false,
                        caller,
                    },
                    &requested,
                );
            }
            return None;
        };
        shared.budget.deposit();
        let first = candidates.swap_remove(choice.at);
        bind(
            req,
            Attempt {
                candidate: first,
                probe: choice.probe,
                caller,
            },
            &requested,
        );
        Some(Self {
            shared: shared.clone(),
            candidates,
            attempts_left: if resendable {
                shared.policy.max_attempts.max(1) - 1
            } else {
                0
            },
            requested,
            caller,
        })
    }
}

impl<B: Default, R> Policy<Request<B>, Response<R>, BoxError> for Failover {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        req: &mut Request<B>,
        result: &mut Result<Response<R>, BoxError>,
    ) -> Option<Self::Future> {
        if !moves_on(result)
            || self.attempts_left == 0
            || self.candidates.is_empty()
            || !self.shared.budget.withdraw()
        {
            return None;
        }
        let choice = pick(&self.candidates, self.shared.health.now_ms(), fastrand::f64)?;
        if let Some(failed) = req.extensions().get::<Attempt>() {
            let connection = failed.candidate.connection.index().to_string();
            tracing::debug!(connection = %connection, "failing over to the next connection of the group");
            metrics::counter!(names::FAILOVERS_TOTAL, "connection" => connection).increment(1);
        }
        self.attempts_left -= 1;
        let candidate = self.candidates.swap_remove(choice.at);
        bind(
            req,
            Attempt {
                candidate,
                probe: choice.probe,
                caller: self.caller,
            },
            &self.requested,
        );
        // The failed answer is dropped unread; the request goes to the next connection.
        Some(std::future::ready(()))
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        if self.attempts_left == 0 || self.candidates.is_empty() {
            return None;
        }
        // A resendable request's body is the payload in its extensions; the body is empty.
        let mut copy = Request::new(B::default());
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

/// Who is calling, as a number (anonymous callers are one caller).
fn caller_hash(user: Option<&User>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.map_or("", |u| &*u.id).hash(&mut h);
    h.finish()
}
