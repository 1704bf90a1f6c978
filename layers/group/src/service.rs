//! [`GroupLayer`]: a grouped model's request goes to one of its connections, and on to the
//! next when the first fails before answering.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Request, Response, header};
use pin_project::pin_project;
use tower::retry::Retry;
use tower::retry::budget::TpsBudget;
use tower::retry::future::ResponseFuture as RetryFuture;
use tower_layer::Layer;
use tower_openai_core::{BoxError, ConnectionGroup};
use tower_openai_settings::Connection;
use tower_service::Service;

use crate::attempt::Book;
use crate::failover::Failover;
use crate::health::HealthMap;

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
pub(crate) struct Shared {
    pub(crate) policy: GroupPolicy,
    pub(crate) health: HealthMap,
    pub(crate) budget: TpsBudget,
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

    tower_openai_util::define_inner_service_accessors!();
}

impl<S, B, R> Service<Request<B>> for Group<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body + Default,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let failover = match req.extensions().get::<ConnectionGroup>().cloned() {
            Some(group) => Failover::start(&self.shared, &mut req, group),
            None => None,
        };
        let Some(failover) = failover else {
            // Not a grouped model, or none of its connections usable (bound to the first).
            return ResponseFuture {
                kind: Kind::Direct {
                    future: self.inner.call(req),
                    _body: PhantomData,
                },
            };
        };
        // The first attempt goes through the service `poll_ready` readied; the retries
        // through clones, each readied in turn by `Retry`.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let mut retry = Retry::new(failover, Book::new(inner, self.shared.clone()));
        ResponseFuture {
            kind: Kind::Failover {
                future: Box::pin(retry.call(req)),
            },
        }
    }
}

/// The attempts of a grouped request: tower's retry future over the failover policy.
type Attempts<S, B> = RetryFuture<Failover, Book<S>, Request<B>>;

/// Response future of [`Group`].
#[pin_project]
pub struct ResponseFuture<S, B, R>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body + Default,
{
    #[pin]
    kind: Kind<S, B, R>,
}

#[pin_project(project = KindProj)]
enum Kind<S, B, R>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body + Default,
{
    Direct {
        #[pin]
        future: S::Future,
        _body: PhantomData<fn() -> R>,
    },
    /// Boxed: the direct path (most requests) keeps a small future.
    Failover { future: Pin<Box<Attempts<S, B>>> },
}

impl<S, B, R> std::fmt::Debug for ResponseFuture<S, B, R>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body + Default,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B, R> Future for ResponseFuture<S, B, R>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body + Default,
{
    type Output = Result<Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct { future, .. } => future.poll(cx).map_err(Into::into),
            KindProj::Failover { future } => future.as_mut().poll(cx),
        }
    }
}

/// `Retry-After` in seconds (an HTTP date is not honoured: no clock agreement is assumed).
pub(crate) fn retry_after(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    let secs: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(max))
}

#[cfg(test)]
mod readiness {
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::Empty;
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower_openai_core::{ApiRoute, ConnectionGroup, Payload, SelectedConnection};
    use tower_openai_settings::{Settings, SettingsSnapshot};

    use crate::GroupLayer;

    /// A chat for `model` over the group `connections` of `settings`, as select and the
    /// collector leave it.
    fn grouped(
        settings: Arc<Settings>,
        connections: &[usize],
        model: &'static str,
    ) -> Request<Empty<Bytes>> {
        let mut req = Request::post("/chat/completions")
            .body(Empty::new())
            .unwrap();
        let ext = req.extensions_mut();
        ext.insert(SettingsSnapshot(settings));
        ext.insert(ApiRoute::ChatCompletions);
        ext.insert(ConnectionGroup {
            connections: Arc::from(connections),
            model: model.into(),
        });
        ext.insert(Payload::new(Bytes::from(format!(
            r#"{{"model":"{model}"}}"#
        ))));
        req
    }

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
        let req = grouped(settings, &[0, 1], "m");
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

    /// An attempt the caller abandons (the response future dropped mid-flight) gives its
    /// connection's load back: a group that counted it forever would steer traffic away from
    /// a connection for nothing.
    #[tokio::test]
    async fn an_abandoned_attempt_gives_its_load_back() {
        let groups = crate::Groups::default();
        let (mut svc, mut handle) =
            tower_test::mock::spawn_layer::<Request<Empty<Bytes>>, Response<()>, _>(groups.layer());
        handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let settings = Arc::new(Settings::for_urls(["http://a/v1"]).unwrap());
        let connection = settings.connection(0).unwrap().clone();
        let req = grouped(settings, &[0], "m");
        let health = groups.shared.health.of(&connection);
        let call = tokio::spawn(svc.call(req));
        let (_seen, _respond) = handle.next_request().await.unwrap();
        assert_eq!(health.in_flight(), 1);
        call.abort();
        let _ = call.await;
        assert_eq!(health.in_flight(), 0);
    }

    /// A group whose connections were all disabled since routing sends the request once, to
    /// its first connection, with the model as that connection is sent it: the group is the
    /// one step that binds a grouped request.
    #[tokio::test]
    async fn a_group_with_no_usable_connection_is_bound_to_its_first() {
        use tower::{Layer, ServiceExt};
        let settings = Arc::new(
            tower_openai_settings::SettingsSource {
                base_urls: Some(vec!["http://a/v1".into(), "http://b/v1".into()]),
                configs: serde_json::json!({
                    "0": {"enable": false, "prefix_id": "a"},
                    "1": {"enable": false}
                })
                .as_object()
                .cloned(),
                ..Default::default()
            }
            .build()
            .unwrap(),
        );
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let svc = crate::Groups::default().layer().layer(tower::service_fn(
            move |req: Request<Empty<Bytes>>| {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let connection = req
                    .extensions()
                    .get::<SelectedConnection>()
                    .map(|c| c.0.index());
                let model = req
                    .extensions()
                    .get::<Payload>()
                    .and_then(|p| p.model().ok().flatten().map(str::to_owned));
                async move {
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .status(StatusCode::SERVICE_UNAVAILABLE)
                            .header("x-seen", format!("{connection:?} {model:?}"))
                            .body(())
                            .unwrap(),
                    )
                }
            },
        ));
        let req = grouped(settings, &[0, 1], "a.m");
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["x-seen"], r#"Some(0) Some("m")"#);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
