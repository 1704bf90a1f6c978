//! [`GroupLayer`]: a grouped model's request goes to one of its connections, and on to the
//! next when the first fails before answering.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Request, Response, StatusCode, header};
use pin_project::pin_project;
use tokio::time::Instant;
use tower::ServiceExt;
use tower::retry::budget::{Budget, TpsBudget};
use tower_layer::Layer;
use tower_openai_core::error::{UpstreamError, UpstreamErrorKind, find_cause};
use tower_openai_core::{
    ApiRoute, BoxError, Connection, ConnectionGroup, Payload, RequestedModel, RouteKind,
    SelectedConnection, SettingsSnapshot, User,
};
use tower_service::Service;

use crate::health::{Candidate, HealthMap, pick};
use crate::names;

/// How a group behaves (`GATEWAY_MAX_ATTEMPTS`, `GATEWAY_COOLDOWN_FAILURES`,
/// `GATEWAY_COOLDOWN_SECONDS` in the gateway).
#[derive(Clone, Debug)]
pub struct GroupPolicy {
    /// Attempts per request, the first included (default 3).
    pub max_attempts: usize,
    /// Failures in a row that cool a connection down (default 3).
    pub cooldown_failures: u32,
    /// How long a connection is skipped once cooled down (default 30 s).
    pub cooldown: Duration,
    /// The longest `Retry-After` honoured (default 1 hour).
    pub max_retry_after: Duration,
    /// Retries allowed per second at least, whatever the traffic (default 10).
    pub retry_min_per_sec: u32,
    /// Retries allowed as a share of first attempts, over 10 s (default 0.2).
    pub retry_ratio: f32,
}

impl Default for GroupPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            cooldown_failures: 3,
            cooldown: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(3600),
            retry_min_per_sec: 10,
            retry_ratio: 0.2,
        }
    }
}

/// The state every request of the process shares: each connection's load, latency, failures
/// and cooldown, and the retry budget. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Groups {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    policy: GroupPolicy,
    health: HealthMap,
    budget: TpsBudget,
}

impl Groups {
    /// Groups with `policy`.
    pub fn new(policy: GroupPolicy) -> Self {
        let budget = TpsBudget::new(
            Duration::from_secs(10),
            policy.retry_min_per_sec,
            policy.retry_ratio,
        );
        Self {
            shared: Arc::new(Shared {
                policy,
                health: HealthMap::new(),
                budget,
            }),
        }
    }

    /// The layer.
    pub fn layer(&self) -> GroupLayer {
        GroupLayer {
            groups: self.clone(),
        }
    }

    /// When `connection`'s cooldown ends, if it is cooling down.
    pub fn cooldown_until(&self, connection: &Connection) -> Option<SystemTime> {
        self.shared.health.cooldown_until(connection)
    }
}

impl Default for Groups {
    fn default() -> Self {
        Self::new(GroupPolicy::default())
    }
}

/// Chooses among the connections of a grouped model (the [`ConnectionGroup`] select writes)
/// per attempt. See the [crate docs](crate).
#[derive(Clone, Debug, Default)]
pub struct GroupLayer {
    groups: Groups,
}

impl GroupLayer {
    /// A layer over `groups`' shared state.
    pub fn new(groups: Groups) -> Self {
        Self { groups }
    }
}

impl<S> Layer<S> for GroupLayer {
    type Service = Group<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Group {
            inner,
            shared: self.groups.shared.clone(),
        }
    }
}

/// The service of [`GroupLayer`].
#[derive(Clone, Debug)]
pub struct Group<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Group<S> {
    /// `inner`, its grouped models served through `groups`' shared state.
    pub fn new(inner: S, groups: &Groups) -> Self {
        Self {
            inner,
            shared: groups.shared.clone(),
        }
    }

    /// A [`GroupLayer`] over `groups`.
    pub fn layer(groups: &Groups) -> GroupLayer {
        GroupLayer::new(groups.clone())
    }

    tower_openai_core::define_inner_service_accessors!();
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> Service<Request<B>> for Group<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: http_body::Body + Default + Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(ConnectionGroup(group)) = req.extensions().get::<ConnectionGroup>().cloned()
        else {
            return ResponseFuture::Direct {
                future: self.inner.call(req),
            };
        };
        // Call the service `poll_ready` readied first; later attempts use clones.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::Group {
            future: Box::pin(attempts(self.shared.clone(), inner, req, group)),
        }
    }
}

/// Response future of [`Group`].
#[pin_project(project = ResponseFutureProj)]
pub enum ResponseFuture<F, ResBody> {
    /// Not a grouped model: the inner service's future.
    Direct {
        /// The inner future.
        #[pin]
        future: F,
    },
    /// The attempts over a group.
    Group {
        /// The attempts.
        future: BoxFuture<Result<Response<ResBody>, BoxError>>,
    },
}

impl<F, ResBody> std::fmt::Debug for ResponseFuture<F, ResBody> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResponseFuture::Direct { .. } => "ResponseFuture::Direct",
            ResponseFuture::Group { .. } => "ResponseFuture::Group",
        })
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F, ResBody>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Direct { future } => future.poll(cx).map_err(Into::into),
            ResponseFutureProj::Group { future } => future.as_mut().poll(cx),
        }
    }
}

/// Who is calling, as a number (anonymous callers are one caller).
fn caller_hash(user: Option<&User>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.map_or("", |u| &*u.id).hash(&mut h);
    h.finish()
}

/// The statuses that move a request to the next connection of its group.
fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` in seconds (an HTTP date is not honoured: no clock agreement is assumed).
fn retry_after(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    let secs: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(max))
}

async fn attempts<S, B, ResBody>(
    shared: Arc<Shared>,
    mut inner: S,
    req: Request<B>,
    group: Arc<[usize]>,
) -> Result<Response<ResBody>, BoxError>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body + Default,
{
    let policy = &shared.policy;
    let settings = req
        .extensions()
        .get::<SettingsSnapshot>()
        .map(|s| s.0.clone());
    let mut candidates: Vec<Candidate> = match &settings {
        Some(settings) => group
            .iter()
            .filter_map(|&i| settings.connection(i))
            .filter(|c| c.config().enable)
            .map(|c| Candidate::new(c.clone(), shared.health.of(c)))
            .collect(),
        None => Vec::new(),
    };
    // Only a body the gateway holds whole (a JSON payload) can be sent again; a form or a
    // streamed body goes out once.
    let resendable = req
        .extensions()
        .get::<ApiRoute>()
        .is_some_and(|r| r.kind() == RouteKind::ModelJson)
        && req.extensions().get::<Payload>().is_some()
        && req.body().is_end_stream();
    let max_attempts = if resendable {
        policy.max_attempts.max(1)
    } else {
        1
    };
    shared.budget.deposit();
    let requested = req
        .extensions()
        .get::<RequestedModel>()
        .map(|m| m.requested.clone());
    let caller = caller_hash(req.extensions().get::<User>());
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let now = shared.health.now_ms();
        let Some(choice) = pick(&candidates, now, fastrand::f64) else {
            // No usable connection of the group (all disabled since routing): the request
            // as select prepared it.
            let req = Request::from_parts(parts, body.take().unwrap_or_default());
            return inner.call(req).await.map_err(Into::into);
        };
        let candidate = candidates.swap_remove(choice.at);
        let connection = candidate.connection.index().to_string();
        let req = prepare(
            &parts,
            body.take().unwrap_or_default(),
            &candidate.connection,
            requested.as_ref(),
        );
        candidate.health.start();
        let started = Instant::now();
        let result: Result<_, BoxError> = if attempt == 1 {
            inner.call(req).await.map_err(Into::into)
        } else {
            inner.clone().oneshot(req).await.map_err(Into::into)
        };
        candidate.health.end();
        let last = attempt >= max_attempts || candidates.is_empty();
        let (failure, cool_for) = match &result {
            Ok(res) if retryable_status(res.status()) => {
                let wait = matches!(res.status().as_u16(), 429 | 503)
                    .then(|| retry_after(res.headers(), policy.max_retry_after))
                    .flatten();
                (Some(res.status().as_str().to_owned()), wait)
            }
            Ok(_) => (None, None),
            Err(e) => {
                let kind = find_cause::<UpstreamError>(&**e).map(|u| u.kind());
                let label = kind.map_or("error", |k| k.as_str()).to_owned();
                (Some(label), None)
            }
        };
        let Some(failure) = failure else {
            candidate
                .health
                .observe_latency(started.elapsed(), shared.health.now_ms());
            candidate.health.succeeded(choice.probe);
            metrics::counter!(names::ATTEMPTS_TOTAL, "connection" => connection, "result" => "ok")
                .increment(1);
            return result;
        };
        // A 500 may be the caller's own doing (a payload the upstream chokes on): it counts
        // toward a cooldown only with another caller's.
        let own_doing =
            matches!(&result, Ok(res) if res.status() == StatusCode::INTERNAL_SERVER_ERROR);
        if candidate.health.failed(
            choice.probe,
            shared.health.now_ms(),
            policy.cooldown_failures.max(1),
            policy.cooldown,
            cool_for,
            own_doing.then_some(caller),
        ) {
            tracing::warn!(connection = %connection, url = candidate.connection.url(), "connection cooling down");
            metrics::counter!(names::COOLDOWNS_TOTAL, "connection" => connection.clone())
                .increment(1);
        }
        metrics::counter!(
            names::ATTEMPTS_TOTAL,
            "connection" => connection.clone(),
            "result" => failure.clone(),
        )
        .increment(1);
        // Connect errors and timeouts before the head, and the retryable statuses, move on
        // (another kind of transport error may have reached the upstream: not retried).
        let moves_on = match &result {
            Ok(_) => true,
            Err(e) => matches!(
                find_cause::<UpstreamError>(&**e).map(|u| u.kind()),
                Some(UpstreamErrorKind::Connect | UpstreamErrorKind::Timeout)
            ),
        };
        if last || !moves_on || !shared.budget.withdraw() {
            return result;
        }
        tracing::debug!(connection = %connection, %failure, "failing over to the next connection of the group");
        metrics::counter!(names::FAILOVERS_TOTAL, "connection" => connection).increment(1);
        // The failed answer is dropped unread; the request goes to the next connection.
        drop(result);
    }
}

/// The request for one attempt on `connection`: the same method, URI, headers and extensions,
/// with the connection selected and the payload's model as that connection is sent it.
fn prepare<B>(
    parts: &http::request::Parts,
    body: B,
    connection: &Arc<Connection>,
    requested: Option<&Arc<str>>,
) -> Request<B> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    let ext = req.extensions_mut();
    ext.insert(SelectedConnection(connection.clone()));
    if let Some(requested) = requested {
        let upstream = connection.upstream_model(requested);
        if let Some(payload) = ext.get_mut::<Payload>()
            && payload.model().ok().flatten() != Some(upstream)
        {
            let _ = payload.set_str("model", upstream);
        }
        ext.insert(RequestedModel {
            requested: requested.clone(),
            upstream: upstream.into(),
        });
    }
    req
}

#[cfg(test)]
mod readiness {
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::Empty;
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower_openai_core::{
        ApiRoute, ConnectionGroup, Payload, SelectedConnection, Settings, SettingsSnapshot,
    };

    use crate::GroupLayer;

    /// The first attempt goes through the instance `poll_ready` readied; the second, after a
    /// 503, through a clone that is readied in turn (the mock panics on a call to an instance
    /// that was not).
    #[tokio::test]
    async fn each_attempt_calls_a_readied_instance() {
        let (mut svc, mut handle) =
            tower_test::mock::spawn_layer::<Request<Empty<Bytes>>, Response<()>, _>(
                GroupLayer::default(),
            );
        handle.allow(0);
        assert_pending!(svc.poll_ready());
        handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let settings = Arc::new(Settings::for_urls(["http://a/v1", "http://b/v1"]).unwrap());
        let mut req = Request::post("/chat/completions")
            .body(Empty::new())
            .unwrap();
        req.extensions_mut().insert(SettingsSnapshot(settings));
        req.extensions_mut().insert(ApiRoute::ChatCompletions);
        req.extensions_mut()
            .insert(ConnectionGroup(Arc::from([0usize, 1])));
        req.extensions_mut()
            .insert(Payload::new(Bytes::from_static(br#"{"model":"m"}"#)));
        let mut call = tokio::spawn(svc.call(req));
        let mut seen = Vec::new();
        let (first, respond) = tokio::select! {
            next = handle.next_request() => next.unwrap(),
            ended = &mut call => panic!("the call ended before reaching the service: {ended:?}"),
        };
        seen.push(
            first
                .extensions()
                .get::<SelectedConnection>()
                .unwrap()
                .0
                .index(),
        );
        respond.send_response(
            Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body(())
                .unwrap(),
        );
        // The retry waits for its clone to be ready.
        tokio::task::yield_now().await;
        assert!(!call.is_finished());
        handle.allow(1);
        let (second, respond) = tokio::select! {
            next = handle.next_request() => next.unwrap(),
            ended = &mut call => panic!("the retry ended before reaching the service: {ended:?}"),
        };
        seen.push(
            second
                .extensions()
                .get::<SelectedConnection>()
                .unwrap()
                .0
                .index(),
        );
        respond.send_response(Response::new(()));
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
        seen.sort_unstable();
        assert_eq!(seen, [0, 1]);
        assert_pending!(svc.poll_ready());
    }
}
