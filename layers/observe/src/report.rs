//! [`ObserveLayer`]: every request reported once, when its response body ends.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use pin_project::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_openai_core::error::UpstreamFailure;
use tower_openai_core::{
    ApiRoute, Ending, EndingReport, RequestedModel, SelectedConnection, UsageReport, User,
};
use tower_openai_settings::Connection;
use tower_openai_util::body::media_type;
use tower_openai_util::body::{BodyEnd, BodyWatch, WatchedBody};
use tower_service::Service;

use crate::handles::{Handles, record_metrics};
use crate::ledger::{Ledger, LedgerEntry, record_span};

/// The `tracing` target of the access log lines.
pub const ACCESS_LOG_TARGET: &str = "tower_openai::access";

/// How a response body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was read to its end.
    Completed,
    /// The upstream broke off (an error frame, or an error event the upstream service sent
    /// in its place).
    UpstreamBroke,
    /// The caller went away before the end (the body, or the response future, was dropped).
    CallerLeft,
    /// The server's shutdown grace period cut it.
    Shutdown,
}

impl Outcome {
    /// `completed`, `upstream_broke`, `caller_left` or `shutdown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::UpstreamBroke => "upstream_broke",
            Outcome::CallerLeft => "caller_left",
            Outcome::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reports every request once, when its response body ends: an access log line (target
/// [`ACCESS_LOG_TARGET`], level INFO) and metrics through the [`metrics`] facade (the
/// application's recorder; nothing is recorded without one). Names and labels: [`names`](crate::names).
///
/// What it reports it reads from the request and the response, never from a shared object:
/// the caller ([`User`], in the request), and from the answer's extensions the route
/// ([`ApiRoute`]), the routed model ([`RequestedModel`]), the connection
/// ([`SelectedConnection`]), the token usage ([`UsageReport`], filled in as the body
/// passes), an early end the body hides ([`EndingReport`]) and an upstream failure
/// ([`UpstreamFailure`]). The end is the body's last frame, an error frame, or the body (or
/// the response future) being dropped first: a stream is accounted when it ends, not when
/// its head goes out, and `gateway_streams_active` counts exactly the event streams in
/// flight.
///
/// If the request runs inside a `tracing` span, that span also gets the OpenTelemetry GenAI
/// semantic-convention fields when the body ends, for those it declares (`tracing` records
/// only declared fields): `gen_ai.operation.name`, `gen_ai.request.model`,
/// `gen_ai.response.model`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`,
/// `server.address`, `http.response.status_code`, `outcome` and `otel.status_code`.
///
/// Stack it near the top (above `Rescue` (`tower-openai-rescue`): it reports responses,
/// and the Rescue layer makes transport errors responses), below the layer that sets
/// `x-request-id` (which it logs) and the one that identifies the caller.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: bool,
    access_log: bool,
    ledger: Option<Arc<dyn Ledger>>,
    /// The metric handles, made at first use (after the application installed its
    /// recorder) and kept per label set.
    handles: Arc<OnceLock<Handles>>,
}

impl fmt::Debug for ObserveLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserveLayer")
            .field("metrics", &self.metrics)
            .field("access_log", &self.access_log)
            .field("ledger", &self.ledger.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ObserveLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ObserveLayer {
    /// Metrics and the access log.
    pub fn new() -> Self {
        Self {
            metrics: true,
            access_log: true,
            ledger: None,
            handles: Arc::new(OnceLock::new()),
        }
    }

    /// Record each answer of a model route (its caller, key, model, usage and cost) in
    /// `ledger` when its body ends.
    pub fn ledger(mut self, ledger: impl Ledger) -> Self {
        self.ledger = Some(Arc::new(ledger));
        self
    }

    /// Record metrics (default on).
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Write the access log line (default on; it is an INFO event, so the subscriber's filter
    /// also decides).
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    pub(crate) fn handles(&self) -> &Handles {
        self.handles.get_or_init(Handles::new)
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            config: self.clone(),
        }
    }
}

/// Reports every request once, when its response body ends. See [`ObserveLayer`].
#[derive(Clone, Debug)]
pub struct Observe<S> {
    inner: S,
    config: ObserveLayer,
}

impl<S> Observe<S> {
    /// Wrap `inner`, with metrics and the access log.
    pub fn new(inner: S) -> Self {
        ObserveLayer::new().layer(inner)
    }

    /// A layer with metrics and the access log.
    pub fn layer() -> ObserveLayer {
        ObserveLayer::new()
    }

    tower_openai_util::define_inner_service_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let record = Record {
            config: self.config.clone(),
            start: Instant::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            request_id: req.headers().get("x-request-id").cloned(),
            user: req.extensions().get::<User>().map(|u| u.id.clone()),
            key: req.extensions().get::<User>().and_then(|u| u.key.clone()),
            route: None,
            model: None,
            connection: None,
            usage: None,
            ending: None,
            status: None,
            stream: false,
            failure: None,
            first_byte: None,
            outcome: None,
            span: Some(tracing::Span::current()).filter(|s| !s.is_disabled()),
        };
        ResponseFuture {
            inner: self.inner.call(req),
            report: Some(Report(Box::new(record))),
        }
    }
}

/// Response future of [`Observe`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    report: Option<Report>,
}

impl<F, ResBody, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut report = this.report.take();
        Poll::Ready(match result {
            Ok(res) => {
                if let Some(report) = report.as_mut() {
                    report.0.head(&res);
                }
                Ok(res.map(|inner| WatchedBody::new(inner, report)))
            }
            Err(e) => {
                // No response: a 500 for the record (the Rescue layer, stacked below, makes
                // this rare).
                if let Some(report) = report.as_mut() {
                    report.0.status = Some(StatusCode::INTERNAL_SERVER_ERROR);
                    report.0.outcome = Some(Outcome::UpstreamBroke);
                }
                Err(e)
            }
        })
    }
}

/// The response body of [`Observe`]: the inner body, reported when it ends.
pub type ResponseBody<B> = WatchedBody<B, Report>;

/// One request's report, written when its body ends (or, with no body, when it is dropped).
pub struct Report(Box<Record>);

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report").finish_non_exhaustive()
    }
}

impl BodyWatch for Report {
    fn on_data(&mut self, data: &Bytes) {
        if self.0.first_byte.is_none() && !data.is_empty() {
            self.0.first_byte = Some(Instant::now());
        }
    }

    fn on_end(mut self, end: BodyEnd) {
        self.0.outcome = match end {
            BodyEnd::Completed => self.0.outcome.or(Some(Outcome::Completed)),
            BodyEnd::Failed => Some(Outcome::UpstreamBroke),
            BodyEnd::Dropped => self.0.outcome,
        };
        // Reported as it drops.
    }
}

pub(crate) struct Record {
    pub(crate) config: ObserveLayer,
    pub(crate) start: Instant,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) user: Option<Arc<str>>,
    pub(crate) key: Option<Arc<str>>,
    pub(crate) route: Option<&'static str>,
    pub(crate) model: Option<Arc<str>>,
    pub(crate) connection: Option<Arc<Connection>>,
    pub(crate) usage: Option<UsageReport>,
    pub(crate) ending: Option<EndingReport>,
    pub(crate) status: Option<StatusCode>,
    pub(crate) stream: bool,
    pub(crate) failure: Option<UpstreamFailure>,
    pub(crate) first_byte: Option<Instant>,
    pub(crate) outcome: Option<Outcome>,
    /// The span the request ran in, for the semantic-convention fields (see
    /// [`ObserveLayer`]).
    pub(crate) span: Option<tracing::Span>,
}

impl Record {
    fn head<B: Body>(&mut self, res: &Response<B>) {
        self.status = Some(res.status());
        // A body with nothing to read (empty, or a HEAD answer) may never be polled.
        if res.body().is_end_stream() {
            self.outcome = Some(Outcome::Completed);
        }
        let ext = res.extensions();
        self.failure = ext.get::<UpstreamFailure>().copied();
        // The route of every answer, refusals included.
        self.route = ext.get::<ApiRoute>().map(|r| r.as_str());
        // The model once routed: a model the catalog knows, never an arbitrary string a
        // caller sent, so it is safe as a metrics label.
        self.model = ext.get::<RequestedModel>().map(|m| m.requested.clone());
        self.connection = ext.get::<SelectedConnection>().map(|c| c.0.clone());
        self.usage = ext.get::<UsageReport>().cloned();
        self.ending = ext.get::<EndingReport>().cloned();
        if self.user.is_none() {
            self.user = ext.get::<User>().map(|u| u.id.clone());
        }
        self.stream =
            media_type(res.headers()).is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"));
        if self.stream && self.config.metrics {
            self.config.handles().streams_active().increment(1.0);
        }
    }

    fn outcome(&self) -> Outcome {
        match self.ending.as_ref().and_then(EndingReport::get) {
            Some(Ending::UpstreamBroke) => Outcome::UpstreamBroke,
            Some(Ending::Shutdown) => Outcome::Shutdown,
            None => self.outcome.unwrap_or(Outcome::CallerLeft),
        }
    }

    pub(crate) fn connection_index(&self) -> Option<usize> {
        self.connection.as_ref().map(|c| c.index())
    }

    pub(crate) fn usage(&self) -> Option<tower_openai_core::TokenUsage> {
        self.usage.as_ref().and_then(UsageReport::usage)
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let end = Instant::now();
        let outcome = self.outcome();
        // Before any head went out, the caller left: logged as nginx does (499).
        let status = self.status.map_or(499, |s| s.as_u16());
        let duration = end.duration_since(self.start);
        let ttfb = self.first_byte.unwrap_or(end).duration_since(self.start);
        let usage = self.usage();
        let cost = self.usage.as_ref().and_then(UsageReport::cost);
        if self.config.access_log
            && tracing::enabled!(target: ACCESS_LOG_TARGET, tracing::Level::INFO)
        {
            let dash = "-";
            let request_id = self
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or(dash);
            // A root event: printed without the request span's fields, so no field is
            // printed twice and the line is one logfmt record. Every value a caller chose
            // is a string (escaped when printed); the path is cut to 256 bytes.
            tracing::info!(
                target: ACCESS_LOG_TARGET,
                parent: None,
                request_id,
                user = self.user.as_deref().unwrap_or(dash),
                method = self.method.as_str(),
                path = logged_path(self.uri.path()),
                model = self.model.as_deref().unwrap_or(dash),
                connection = %OrDash(self.connection_index().map(|c| c as u64)),
                status,
                ttfb_ms = millis(ttfb),
                duration_ms = millis(duration),
                input_tokens = %OrDash(usage.map(|u| u.input_tokens)),
                output_tokens = %OrDash(usage.map(|u| u.output_tokens)),
                cost_usd = %OrDash(cost),
                outcome = outcome.as_str(),
            );
        }
        if self.config.metrics {
            record_metrics(self, status, outcome, duration, ttfb, cost);
        }
        if let (Some(ledger), Some(user), Some(model)) =
            (&self.config.ledger, &self.user, &self.model)
        {
            ledger.record(&LedgerEntry {
                user,
                key: self.key.as_ref(),
                model,
                usage: usage.unwrap_or_default(),
                cost_usd: cost.unwrap_or(0.0),
                estimated: self.usage.as_ref().is_some_and(UsageReport::is_estimate),
            });
        }
        if let Some(span) = &self.span {
            record_span(span, self, status, outcome);
        }
    }
}

pub(crate) fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The longest path logged, in bytes.
pub const MAX_LOGGED_PATH: usize = 256;

/// `path` as logs and spans record it: cut to [`MAX_LOGGED_PATH`] bytes (a request path is
/// ASCII; a cut never splits a character).
pub fn logged_path(path: &str) -> &str {
    if path.len() <= MAX_LOGGED_PATH {
        return path;
    }
    let mut end = MAX_LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// Milliseconds with three decimals (a microsecond), printed short.
fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// A number, or `-` when unknown.
struct OrDash<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(n) => n.fmt(f),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, StreamBody};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    use tower_openai_core::extensions::{ApiRoute, User};

    use crate::{ObserveLayer, UsageLayer, names};

    type Frames = Vec<Result<http_body::Frame<Bytes>, std::io::Error>>;

    /// What the policy layer writes, in the request and on the answer.
    const ROUTE: ApiRoute = ApiRoute::ChatCompletions;
    type Metric = (String, Vec<(String, String)>, DebugValue);

    /// Run one request through observe → usage → an upstream answering `frames` as an event
    /// stream; `read` frames of the answer are read before it is dropped. The metrics.
    fn run(frames: Frames, read: usize) -> Vec<Metric> {
        let recorder = DebuggingRecorder::new();
        let snapshotter: Snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async move {
                let upstream = service_fn(move |_req: Request<String>| {
                    let frames = frames.clone_frames();
                    async move {
                        let body = StreamBody::new(futures_util::stream::iter(frames));
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "text/event-stream")
                                .body(body)
                                .unwrap(),
                        )
                    }
                });
                let svc = ServiceBuilder::new()
                    .layer(ObserveLayer::new())
                    .map_request(|mut req: Request<String>| {
                        req.extensions_mut().insert(ROUTE);
                        req
                    })
                    .map_response(|mut res: Response<_>| {
                        res.extensions_mut().insert(ROUTE);
                        res
                    })
                    .layer(UsageLayer::new())
                    .service(upstream);
                let mut req = Request::new(String::new());
                req.extensions_mut().insert(User {
                    id: "alice".into(),
                    ..User::default()
                });
                let mut body = svc.oneshot(req).await.unwrap().into_body();
                for _ in 0..read {
                    let _ = body.frame().await;
                }
            });
        });
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                (key.name().to_owned(), labels, value)
            })
            .collect()
    }

    trait CloneFrames {
        fn clone_frames(&self) -> Frames;
    }
    impl CloneFrames for Frames {
        fn clone_frames(&self) -> Frames {
            self.iter()
                .map(|f| match f {
                    Ok(f) => Ok(http_body::Frame::data(
                        f.data_ref().cloned().unwrap_or_default(),
                    )),
                    Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                })
                .collect()
        }
    }

    fn value(metrics: &[Metric], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        metrics
            .iter()
            .find(|(n, labels, _)| {
                n == name
                    && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| match v {
                DebugValue::Counter(n) => *n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            })
    }

    fn data(s: &str) -> Result<http_body::Frame<Bytes>, std::io::Error> {
        Ok(http_body::Frame::data(Bytes::from(s.to_owned())))
    }

    #[test]
    fn a_completed_stream_counts_its_tokens_per_user_and_leaves_no_stream_active() {
        let m = run(
            vec![
                data("data: {\"choices\":[{}]}\n\n"),
                data(
                    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
                ),
                data("data: [DONE]\n\n"),
            ],
            10,
        );
        assert_eq!(
            value(&m, names::TOKENS_TOTAL, Some(("direction", "input"))),
            Some(3.0)
        );
        assert_eq!(
            value(&m, names::TOKENS_TOTAL, Some(("direction", "output"))),
            Some(4.0)
        );
        assert!(
            m.iter().any(|(n, l, _)| n == names::TOKENS_TOTAL
                && l.contains(&("user".into(), "alice".into())))
        );
        assert_eq!(
            value(
                &m,
                names::STREAM_OUTCOMES_TOTAL,
                Some(("outcome", "completed"))
            ),
            Some(1.0)
        );
        assert_eq!(value(&m, names::STREAMS_ACTIVE, None), Some(0.0));
        assert_eq!(
            value(
                &m,
                names::REQUESTS_TOTAL,
                Some(("route", "chat/completions"))
            ),
            Some(1.0)
        );
    }

    #[test]
    fn a_stream_the_caller_drops_is_caller_left_and_a_broken_one_upstream_broke() {
        let left = run(vec![data("data: 1\n\n"), data("data: 2\n\n")], 1);
        assert_eq!(
            value(
                &left,
                names::STREAM_OUTCOMES_TOTAL,
                Some(("outcome", "caller_left"))
            ),
            Some(1.0)
        );
        assert_eq!(value(&left, names::STREAMS_ACTIVE, None), Some(0.0));
        let broke = run(
            vec![data("data: 1\n\n"), Err(std::io::Error::other("reset"))],
            10,
        );
        assert_eq!(
            value(
                &broke,
                names::STREAM_OUTCOMES_TOTAL,
                Some(("outcome", "upstream_broke"))
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &broke,
                names::UPSTREAM_ERRORS_TOTAL,
                Some(("kind", "stream"))
            ),
            Some(1.0)
        );
    }
}
