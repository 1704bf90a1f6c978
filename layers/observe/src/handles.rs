//! Metric handles kept per label set, so a request records with atomics instead of building
//! a labelled key (allocating its label values) and looking it up in the recorder each time.
//!
//! The label sets are bounded by what they are made of (routes, routed models, connections,
//! statuses, configured users); the caches are bounded too, at [`MAX_LABEL_SETS`] each: past
//! that, the least used set is registered again on its next use (correct, only slower).

use std::hash::{Hash, Hasher};

use metrics::{Counter, Gauge, Histogram};
use quick_cache::Equivalent;
use quick_cache::sync::Cache;

use crate::UsageReport;
use crate::names;
use crate::report::{Outcome, Record};

/// The label sets kept per cache.
pub(crate) const MAX_LABEL_SETS: usize = 4096;

/// The handles of one process's recorder, shared by every [`Observe`](crate::Observe).
pub(crate) struct Handles {
    requests: Cache<RequestKey, RequestHandles>,
    tokens: Cache<TokenKey, (Counter, Counter)>,
    /// By model and user (the connection left out).
    spend: Cache<TokenKey, Gauge>,
    unpriced: Cache<Box<str>, Counter>,
    streams_active: Gauge,
}

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handles")
            .field("requests", &self.requests.len())
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

/// A request's counter and histograms.
#[derive(Clone)]
pub(crate) struct RequestHandles {
    pub(crate) requests: Counter,
    pub(crate) duration: Histogram,
    pub(crate) ttfb: Histogram,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct RequestKey {
    route: &'static str,
    model: Box<str>,
    connection: Option<usize>,
    status: u16,
}

#[derive(Hash)]
struct RequestKeyRef<'a> {
    route: &'static str,
    model: &'a str,
    connection: Option<usize>,
    status: u16,
}

impl Equivalent<RequestKey> for RequestKeyRef<'_> {
    fn equivalent(&self, key: &RequestKey) -> bool {
        self.route == key.route
            && self.model == &*key.model
            && self.connection == key.connection
            && self.status == key.status
    }
}

#[derive(Clone, PartialEq, Eq)]
struct TokenKey {
    model: Box<str>,
    connection: Option<usize>,
    user: Box<str>,
}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (&*self.model, self.connection, &*self.user).hash(state);
    }
}

struct TokenKeyRef<'a> {
    model: &'a str,
    connection: Option<usize>,
    user: &'a str,
}

impl Hash for TokenKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.model, self.connection, self.user).hash(state);
    }
}

impl Equivalent<TokenKey> for TokenKeyRef<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        self.model == &*key.model && self.connection == key.connection && self.user == &*key.user
    }
}

fn connection_label(connection: Option<usize>) -> String {
    connection.map(|c| c.to_string()).unwrap_or_default()
}

impl Handles {
    pub(crate) fn new() -> Self {
        Self {
            requests: Cache::new(MAX_LABEL_SETS),
            tokens: Cache::new(MAX_LABEL_SETS),
            spend: Cache::new(MAX_LABEL_SETS),
            unpriced: Cache::new(MAX_LABEL_SETS),
            streams_active: metrics::gauge!(names::STREAMS_ACTIVE),
        }
    }

    pub(crate) fn streams_active(&self) -> &Gauge {
        &self.streams_active
    }

    pub(crate) fn request(
        &self,
        route: &'static str,
        model: &str,
        connection: Option<usize>,
        status: u16,
    ) -> RequestHandles {
        let key = RequestKeyRef {
            route,
            model,
            connection,
            status,
        };
        if let Some(found) = self.requests.get(&key) {
            return found;
        }
        let conn = connection_label(connection);
        let labels = [
            ("route", route.to_owned()),
            ("model", model.to_owned()),
            ("connection", conn.clone()),
        ];
        let handles = RequestHandles {
            requests: metrics::counter!(
                names::REQUESTS_TOTAL,
                "route" => route,
                "model" => model.to_owned(),
                "connection" => conn,
                "status" => status.to_string(),
            ),
            duration: metrics::histogram!(names::REQUEST_DURATION_SECONDS, &labels),
            ttfb: metrics::histogram!(names::TIME_TO_FIRST_BYTE_SECONDS, &labels),
        };
        self.requests.insert(
            RequestKey {
                route,
                model: model.into(),
                connection,
                status,
            },
            handles.clone(),
        );
        handles
    }

    /// USD spent on `model` by `user`: a gauge that only goes up (the `metrics` facade
    /// counts whole numbers only).
    pub(crate) fn spend(&self, model: &str, user: &str) -> Gauge {
        let key = TokenKeyRef {
            model,
            connection: None,
            user,
        };
        if let Some(found) = self.spend.get(&key) {
            return found;
        }
        let gauge = metrics::gauge!(
            names::SPEND_USD_TOTAL,
            "user" => user.to_owned(),
            "model" => model.to_owned(),
        );
        self.spend.insert(
            TokenKey {
                model: model.into(),
                connection: None,
                user: user.into(),
            },
            gauge.clone(),
        );
        gauge
    }

    /// Tokens of answers whose model has no price.
    pub(crate) fn unpriced(&self, model: &str) -> Counter {
        if let Some(found) = self.unpriced.get(model) {
            return found;
        }
        let counter = metrics::counter!(names::UNPRICED_TOKENS_TOTAL, "model" => model.to_owned());
        self.unpriced.insert(model.into(), counter.clone());
        counter
    }

    /// The input and output token counters.
    pub(crate) fn tokens(
        &self,
        model: &str,
        connection: Option<usize>,
        user: &str,
    ) -> (Counter, Counter) {
        let key = TokenKeyRef {
            model,
            connection,
            user,
        };
        if let Some(found) = self.tokens.get(&key) {
            return found;
        }
        let conn = connection_label(connection);
        let counter = |direction: &'static str| {
            metrics::counter!(
                names::TOKENS_TOTAL,
                "direction" => direction,
                "model" => model.to_owned(),
                "connection" => conn.clone(),
                "user" => user.to_owned(),
            )
        };
        let handles = (counter("input"), counter("output"));
        self.tokens.insert(
            TokenKey {
                model: model.into(),
                connection,
                user: user.into(),
            },
            handles.clone(),
        );
        handles
    }
}

/// Record one request's metrics when its body ended.
pub(crate) fn record_metrics(
    r: &Record,
    status: u16,
    outcome: Outcome,
    duration: std::time::Duration,
    ttfb: std::time::Duration,
    cost: Option<f64>,
) {
    let handles = r.config.handles();
    let route = r.route.unwrap_or("other");
    let model = r.model.as_deref().unwrap_or("");
    let connection = r.connection_index();
    let request = handles.request(route, model, connection, status);
    request.requests.increment(1);
    request.duration.record(duration.as_secs_f64());
    request.ttfb.record(ttfb.as_secs_f64());
    if let Some(usage) = r.usage() {
        let (input, output) = handles.tokens(model, connection, r.user.as_deref().unwrap_or(""));
        input.increment(usage.input_tokens);
        output.increment(usage.output_tokens);
        if let Some(cost) = cost {
            handles
                .spend(model, r.user.as_deref().unwrap_or(""))
                .increment(cost);
        } else if r.usage.as_ref().is_some_and(UsageReport::is_unpriced) {
            handles
                .unpriced(model)
                .increment(usage.input_tokens.saturating_add(usage.output_tokens));
        }
    }
    // Rare events: recorded through the facade directly.
    if r.stream {
        handles.streams_active().decrement(1.0);
        metrics::counter!(names::STREAM_OUTCOMES_TOTAL, "outcome" => outcome.as_str()).increment(1);
    }
    if let Some(failure) = r.failure {
        metrics::counter!(
            names::UPSTREAM_ERRORS_TOTAL,
            "connection" => failure.connection.to_string(),
            "kind" => failure.kind.as_str(),
        )
        .increment(1);
    } else if outcome == Outcome::UpstreamBroke {
        metrics::counter!(
            names::UPSTREAM_ERRORS_TOTAL,
            "connection" => connection.map(|c| c.to_string()).unwrap_or_default(),
            "kind" => "stream",
        )
        .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, RandomState};

    use super::{RequestKey, RequestKeyRef, TokenKey, TokenKeyRef};

    #[test]
    fn borrowed_keys_hash_as_owned_ones() {
        let s = RandomState::new();
        let owned = RequestKey {
            route: "chat/completions",
            model: "m".into(),
            connection: Some(1),
            status: 200,
        };
        let borrowed = RequestKeyRef {
            route: "chat/completions",
            model: "m",
            connection: Some(1),
            status: 200,
        };
        assert_eq!(s.hash_one(&owned), s.hash_one(&borrowed));
        let owned = TokenKey {
            model: "m".into(),
            connection: None,
            user: "u".into(),
        };
        let borrowed = TokenKeyRef {
            model: "m",
            connection: None,
            user: "u",
        };
        assert_eq!(s.hash_one(&owned), s.hash_one(&borrowed));
    }
}
