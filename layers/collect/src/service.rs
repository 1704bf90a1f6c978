use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use tower_service::Service;

use super::budget::{Budgeted, BufferBudget};
use crate::{CollectPayloadLayer, ResponseFuture};
use tower_openai_core::body::{Body, ResponseBody};
use tower_openai_core::error::{BoxError, ErrorResponse};
use tower_openai_core::extensions::{ApiRoute, RouteKind, User};
use tower_openai_core::payload::{Form, Payload};
use tower_openai_time::{BodyTimeouts, SleepSlot, TimeoutBody};
use tower_openai_util::body::media_type;

/// Collects JSON request bodies into a [`Payload`](tower_openai_core::Payload).
///
/// See the [module docs](super).
///
/// A request whose body must be read first takes the readied inner service into its
/// future, as tower services do, and leaves a clone in its place. Cloning a deep stack is a
/// reference-count bump per layer, on counts every worker thread shares; so the future hands
/// the service back once it has called it, and the next request takes that one instead of
/// a new clone. A clone of this service (one per connection, as servers make them) gets a
/// hand-back slot of its own, so connections never share one.
#[derive(Debug)]
pub struct CollectPayload<S> {
    inner: S,
    limit: usize,
    timeouts: BodyTimeouts,
    budget: Option<BufferBudget>,
    /// The body timer requests through this instance borrow; not shared by clones (a
    /// server makes one per connection).
    sleeps: SleepSlot,
    spare: Option<Spare<S>>,
}

impl<S: Clone> Clone for CollectPayload<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limit: self.limit,
            timeouts: self.timeouts,
            budget: self.budget.clone(),
            sleeps: SleepSlot::new(),
            spare: None,
        }
    }
}

impl<S> CollectPayload<S> {
    /// Wrap `inner`, refusing bodies over `limit` bytes, bodies that send nothing for
    /// [`DEFAULT_READ_TIMEOUT`](crate::DEFAULT_READ_TIMEOUT) and bodies not complete within
    /// [`DEFAULT_TOTAL_TIMEOUT`](crate::DEFAULT_TOTAL_TIMEOUT); no buffer budget.
    pub fn new(inner: S, limit: usize) -> Self {
        Self {
            inner,
            limit,
            timeouts: super::layer::DEFAULT_TIMEOUTS,
            budget: None,
            sleeps: SleepSlot::new(),
            spare: None,
        }
    }

    /// Refuse with 408 a body that sends nothing for `timeout` (`None`: wait forever).
    pub fn read_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.timeouts.idle = timeout;
        self
    }

    /// Refuse with 408 a body not complete within `timeout` of the first wait for it
    /// (`None`: no limit).
    pub fn total_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.timeouts.total = timeout;
        self
    }

    /// Count the bodies it buffers against `budget` (503 `gateway_overloaded` past it).
    pub fn budget(mut self, budget: BufferBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// A layer with this limit.
    pub fn layer(limit: usize) -> CollectPayloadLayer {
        CollectPayloadLayer::new(limit)
    }

    tower_openai_util::define_inner_service_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for CollectPayload<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let reading = match reading(&req) {
            Ok(Some(reading)) => reading,
            Ok(None) => return ResponseFuture::called(self.inner.call(req.map(Body::new))),
            Err(e) => return ResponseFuture::rejected(e),
        };
        // A body that may stream on is not refused for its length before it is seen.
        if reading != Reading::Sniffed
            && content_length(req.headers()).is_some_and(|len| len > self.limit as u64)
        {
            return ResponseFuture::rejected(ErrorResponse::payload_too_large(self.limit));
        }
        // The service readied by `poll_ready` is the one that must be called: move it into
        // the future and keep another here (to be readied before the next call): the one an
        // earlier request handed back, or a fresh clone.
        let spare = self.spare.get_or_insert_with(Spare::default);
        let next = spare.take().unwrap_or_else(|| self.inner.clone());
        let inner = std::mem::replace(&mut self.inner, next);
        let reservation = self
            .budget
            .as_ref()
            .map(|budget| budget.reserve(req.extensions().get::<User>().map(|u| &*u.id)));
        let (parts, body) = req.into_parts();
        let body = Budgeted::new(
            TimeoutBody::new(body, self.timeouts, &self.sleeps),
            reservation,
        );
        if reading == Reading::Sniffed {
            return ResponseFuture::sniffing(body, parts, inner, spare.clone(), self.limit);
        }
        ResponseFuture::collecting(body, parts, inner, spare.clone(), self.limit, reading)
    }
}

/// How a collected body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reading {
    /// No route classified the request: a JSON body is collected and parsed when a layer
    /// asks (a library stack without the policy layer).
    Lazy,
    /// A passthrough request with a JSON body: admitted only when it is a JSON object
    /// whose `model`, if any, is a string.
    Passthrough,
    /// A passthrough request whose body is said to be something else: read whole only if it
    /// starts with `{` (an upstream may read it as JSON whatever its type), and then, if it
    /// is a JSON object, checked as a JSON passthrough body; streamed on otherwise.
    Sniffed,
    /// A JSON model route: an object with a string `model`, whatever the content type said.
    ModelJson,
    /// A multipart model route: a form with one `model` field.
    Form,
}

/// How `req`'s body is to be read: `None` streams it through untouched.
fn reading<B: http_body::Body>(req: &Request<B>) -> Result<Option<Reading>, ErrorResponse> {
    let headers = req.headers();
    if req.extensions().get::<ApiRoute>().is_some()
        && headers
            .get_all(header::CONTENT_TYPE)
            .iter()
            .nth(1)
            .is_some()
    {
        // Two content types (two multipart boundaries): the gateway would read the body by
        // one and the upstream may read it by the other.
        return Err(
            ErrorResponse::bad_request("The request has more than one Content-Type")
                .with_code("invalid_body"),
        );
    }
    let reading = match req.extensions().get::<ApiRoute>().map(|r| r.kind()) {
        Some(RouteKind::ModelJson) => Reading::ModelJson,
        Some(RouteKind::ModelForm) => {
            if !is_multipart_form(headers) {
                return Err(unsupported("This route takes a multipart/form-data body"));
            }
            Reading::Form
        }
        Some(RouteKind::Models) => return Ok(None),
        Some(RouteKind::Passthrough) if req.body().is_end_stream() || !has_body(req.method()) => {
            return Ok(None);
        }
        Some(RouteKind::Passthrough) if carries_json(req.method(), headers) => Reading::Passthrough,
        Some(RouteKind::Passthrough) => Reading::Sniffed,
        None if carries_json(req.method(), headers) && !req.body().is_end_stream() => Reading::Lazy,
        None => return Ok(None),
    };
    if !matches!(reading, Reading::Lazy | Reading::Sniffed) && !identity_encoded(headers) {
        // A compressed body cannot be checked: refused rather than forwarded unread.
        return Err(unsupported(
            "Compressed request bodies are not accepted (Content-Encoding must be identity)",
        ));
    }
    Ok(Some(reading))
}

fn unsupported(message: &'static str) -> ErrorResponse {
    ErrorResponse::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
        .with_code("unsupported_media_type")
}

fn identity_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_ENCODING).iter().all(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').all(|e| {
                let e = e.trim();
                e.is_empty() || e.eq_ignore_ascii_case("identity")
            })
        })
    })
}

fn is_multipart_form(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|t| t.eq_ignore_ascii_case("multipart/form-data"))
}

/// Admit a collected body as `reading` says: the extension the layers below read (or, for
/// a body forwarded as it came, its bytes), or the 4xx to answer. A model route's body must
/// be readable whole, so that what the gateway checked is what the upstream is sent.
pub(super) fn admit(
    reading: Reading,
    parts: &mut http::request::Parts,
    bytes: Bytes,
) -> Result<Option<Bytes>, ErrorResponse> {
    match reading {
        Reading::Sniffed => {
            let payload = Payload::new(bytes);
            if payload.check().is_err() {
                // Not a JSON object (`{` then something else): no upstream reads it as one.
                return Ok(Some(payload.original().clone()));
            }
            if payload.model().is_err() {
                return Err(ErrorResponse::bad_request("`model` must be a string")
                    .with_code("invalid_body"));
            }
            parts.extensions.insert(payload);
        }
        Reading::Lazy => {
            parts.extensions.insert(Payload::new(bytes));
        }
        // An empty passthrough body (a `DELETE` with no content type) is no JSON to read.
        Reading::Passthrough if bytes.is_empty() => {}
        Reading::Passthrough | Reading::ModelJson => {
            let payload = Payload::new(bytes);
            payload.check().map_err(|e| e.to_response())?;
            let model = payload
                .model()
                .map_err(|e| ErrorResponse::bad_request(e.to_string()).with_code("invalid_body"))?;
            if reading == Reading::ModelJson {
                if model.is_none() {
                    return Err(match payload.get_raw("model") {
                        Ok(Some(_)) => ErrorResponse::bad_request("`model` must be a string")
                            .with_code("invalid_body"),
                        _ => ErrorResponse::bad_request("you must provide a model parameter")
                            .with_code("missing_model"),
                    });
                }
                // `"stream": "yes"` is a stream to some upstreams and not to the gateway's
                // metering: only a boolean (or null) is read one way by everyone.
                if let Ok(Some(raw)) = payload.get_raw("stream")
                    && !matches!(raw, "true" | "false" | "null")
                {
                    return Err(ErrorResponse::bad_request("`stream` must be a boolean")
                        .with_code("invalid_body"));
                }
                // Read as JSON whatever the caller's content type said: sent as JSON.
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
            }
            parts.extensions.insert(payload);
        }
        Reading::Form => {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let form = Form::parse(bytes, content_type).map_err(|e| e.to_response())?;
            parts.extensions.insert(form);
        }
    }
    Ok(None)
}

/// Where a request's future hands the inner service back once it has called it.
#[derive(Debug)]
pub(super) struct Spare<S>(Arc<Mutex<Option<S>>>);

impl<S> Default for Spare<S> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<S> Clone for Spare<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S> Spare<S> {
    fn take(&self) -> Option<S> {
        self.0.lock().ok()?.take()
    }

    /// Keep `service` for the next request, unless one is kept already.
    pub(super) fn give_back(&self, service: S) {
        if let Ok(mut slot) = self.0.lock()
            && slot.is_none()
        {
            *slot = Some(service);
        }
    }
}

/// Whether requests with this method carry a body anyone reads.
fn has_body(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether a request's body is one we read as JSON.
fn carries_json(method: &Method, headers: &HeaderMap) -> bool {
    if !has_body(method) {
        return false;
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        // SDKs always say; curl users often do not. Try it as JSON.
        return true;
    }
    let Some((kind, sub)) = media_type(headers).and_then(|t| t.split_once('/')) else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use http_body_util::{BodyExt, Full, StreamBody};
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};
    use tower_openai_core::Payload;

    async fn echo_upstream(req: Request<Body>) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = req.into_parts();
        let streamed = body.collect().await.unwrap().to_bytes();
        let tag = match parts.extensions.get::<Payload>() {
            Some(p) => format!("payload:{}", String::from_utf8_lossy(&p.to_bytes())),
            None => format!("stream:{}", String::from_utf8_lossy(&streamed)),
        };
        Ok(Response::new(Full::from(tag)))
    }

    async fn send(limit: usize, req: Request<Full<Bytes>>) -> (StatusCode, String) {
        let svc = CollectPayload::new(service_fn(echo_upstream), limit);
        let res = svc.oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn json_bodies_become_a_payload() {
        for ct in [
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("application/vnd.x+json"),
            None,
        ] {
            let mut req = Request::post("/x");
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            let (status, body) = send(100, req.body(Full::from("{\"a\":1}")).unwrap()).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, "payload:{\"a\":1}", "content type {ct:?}");
        }
    }

    #[tokio::test]
    async fn other_bodies_stream_through_untouched() {
        let req = Request::post("/audio/transcriptions")
            .header("content-type", "multipart/form-data; boundary=x")
            .body(Full::from("--x\r\n..."))
            .unwrap();
        assert_eq!(
            send(4, req).await,
            (StatusCode::OK, "stream:--x\r\n...".into())
        );
        let get = Request::get("/models").body(Full::default()).unwrap();
        assert_eq!(send(4, get).await, (StatusCode::OK, "stream:".into()));
    }

    #[tokio::test]
    async fn over_the_limit_by_content_length_is_413_before_reading() {
        let req = Request::post("/x")
            .header("content-type", "application/json")
            .header("content-length", "11")
            .body(Full::from("{\"a\":12345}"))
            .unwrap();
        let (status, body) = send(10, req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("request_too_large"));
        // Exactly at the limit is fine.
        let req = Request::post("/x")
            .body(Full::from("{\"a\":1234}"))
            .unwrap();
        assert_eq!(send(10, req).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn over_the_limit_while_streaming_is_413() {
        let chunks = (0..10).map(|_| {
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"0123456789")))
        });
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        let svc = CollectPayload::new(service_fn(echo_upstream), 50);
        let res = svc
            .oneshot(Request::post("/x").body(body).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// Answers 200 and counts its clones.
    #[derive(Debug)]
    struct Counted(Arc<std::sync::atomic::AtomicUsize>);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Self(self.0.clone())
        }
    }

    impl Service<Request<Body>> for Counted {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<Body>) -> Self::Future {
            std::future::ready(Ok(Response::new(Full::default())))
        }
    }

    #[tokio::test]
    async fn one_request_after_another_reuses_the_service_it_handed_back() {
        let clones = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut svc = CollectPayload::new(Counted(clones.clone()), 100);
        let json = || Request::post("/x").body(Full::<Bytes>::from("{}")).unwrap();
        for _ in 0..3 {
            let res = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
                .await
                .unwrap()
                .call(json())
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
        // The first request clones; the others take the service handed back.
        assert_eq!(clones.load(std::sync::atomic::Ordering::SeqCst), 1);

        // Two requests waiting for their bodies at once: the second needs a clone of its own.
        let a = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
            .await
            .unwrap()
            .call(json());
        let b = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
            .await
            .unwrap()
            .call(json());
        assert_eq!(clones.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(a.await.unwrap().status(), StatusCode::OK);
        assert_eq!(b.await.unwrap().status(), StatusCode::OK);

        // A clone of the layer keeps a hand-back slot of its own.
        let mut other = svc.clone();
        let before = clones.load(std::sync::atomic::Ordering::SeqCst);
        ServiceExt::<Request<Full<Bytes>>>::ready(&mut other)
            .await
            .unwrap()
            .call(json())
            .await
            .unwrap();
        ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
            .await
            .unwrap()
            .call(json())
            .await
            .unwrap();
        assert_eq!(clones.load(std::sync::atomic::Ordering::SeqCst), before + 1);
    }

    /// A request classified as `kind`, as the policy layer would.
    fn routed(kind: RouteKind, ct: Option<&str>, body: &'static str) -> Request<Full<Bytes>> {
        let mut req = Request::post("/chat/completions");
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let mut req = req.body(Full::from(body)).unwrap();
        let route = match kind {
            RouteKind::ModelJson => ApiRoute::ChatCompletions,
            RouteKind::ModelForm => ApiRoute::AudioTranscriptions,
            RouteKind::Models => ApiRoute::Models,
            RouteKind::Passthrough => ApiRoute::Passthrough,
        };
        req.extensions_mut().insert(route);
        req
    }

    async fn code(req: Request<Full<Bytes>>) -> (StatusCode, String) {
        let (status, body) = send(1024, req).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (
            status,
            v["error"]["code"].as_str().unwrap_or(&body).to_owned(),
        )
    }

    #[tokio::test]
    async fn a_model_route_is_read_whatever_its_content_type_and_refused_unless_whole() {
        let (status, body) = send(
            1024,
            routed(RouteKind::ModelJson, Some("text/plain"), r#"{"model":"m"}"#),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"payload:{"model":"m"}"#)
        );
        for (body, expected) in [
            ("{\"model\":\"m\"", "invalid_json"),
            ("[1]", "invalid_body"),
            (r#"{"model":1}"#, "invalid_body"),
            (r#"{"model":null}"#, "invalid_body"),
            (r#"{"model":"a","model":"b"}"#, "invalid_body"),
            (r#"{"input":"x"}"#, "missing_model"),
            (r#"{"model":"m","stream":"true"}"#, "invalid_body"),
            (r#"{"model":"m","stream":1}"#, "invalid_body"),
            (r#"{"model":"m","stream":{}}"#, "invalid_body"),
            ("", "invalid_json"),
        ] {
            let got = code(routed(RouteKind::ModelJson, None, body)).await;
            assert_eq!(
                got,
                (StatusCode::BAD_REQUEST, expected.to_owned()),
                "{body}"
            );
        }
        let mut gz = routed(RouteKind::ModelJson, None, r#"{"model":"m"}"#);
        gz.headers_mut()
            .insert("content-encoding", http::HeaderValue::from_static("gzip"));
        assert_eq!(code(gz).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[tokio::test]
    async fn two_content_types_are_refused_on_a_classified_route() {
        for kind in [
            RouteKind::ModelForm,
            RouteKind::ModelJson,
            RouteKind::Passthrough,
        ] {
            let mut req = routed(kind, Some("multipart/form-data; boundary=a"), "{}");
            req.headers_mut().append(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("multipart/form-data; boundary=b"),
            );
            assert_eq!(
                code(req).await,
                (StatusCode::BAD_REQUEST, "invalid_body".to_owned()),
                "{kind:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_form_route_takes_only_a_form_and_a_passthrough_only_readable_json() {
        let form = "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--b--\r\n";
        let req = routed(
            RouteKind::ModelForm,
            Some("multipart/form-data; boundary=b"),
            form,
        );
        assert_eq!(send(1024, req).await.0, StatusCode::OK);
        let req = routed(RouteKind::ModelForm, Some("application/json"), "{}");
        assert_eq!(code(req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let req = routed(
            RouteKind::ModelForm,
            Some("multipart/form-data; boundary=b"),
            "--b--\r\n",
        );
        assert_eq!(
            code(req).await,
            (StatusCode::BAD_REQUEST, "missing_model".to_owned())
        );
        // The passthrough: JSON that cannot be read is refused; other bodies stream.
        let req = routed(RouteKind::Passthrough, Some("application/json"), "{x");
        assert_eq!(code(req).await.1, "invalid_json");
        let req = routed(
            RouteKind::Passthrough,
            Some("application/octet-stream"),
            "{x",
        );
        assert_eq!(
            send(1024, req).await,
            (StatusCode::OK, "stream:{x".to_owned())
        );
        let req = routed(
            RouteKind::Passthrough,
            Some("application/json"),
            r#"{"a":1}"#,
        );
        assert_eq!(
            send(1024, req).await,
            (StatusCode::OK, r#"payload:{"a":1}"#.to_owned())
        );
    }

    #[tokio::test]
    async fn a_passthrough_body_that_is_a_json_object_is_read_whatever_its_type_says() {
        // Read and checked as JSON: an upstream may parse it whatever its type says.
        for ct in [
            Some("text/plain"),
            Some("application/octet-stream"),
            Some("multipart/form-data; boundary=x"),
        ] {
            let req = routed(RouteKind::Passthrough, ct, "  {\"model\":\"m\"}");
            assert_eq!(
                send(1024, req).await,
                (StatusCode::OK, "payload:  {\"model\":\"m\"}".to_owned()),
                "{ct:?}"
            );
            let req = routed(RouteKind::Passthrough, ct, "{\"model\":1}");
            assert_eq!(
                code(req).await,
                (StatusCode::BAD_REQUEST, "invalid_body".to_owned())
            );
        }
        // Anything else streams on as it came, however long (the limit is for what is held).
        let frames = (0..10).map(|i| {
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(if i == 0 {
                "\n\nRIFF".to_owned()
            } else {
                "0123456789".to_owned()
            })))
        });
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let mut req = Request::post("/files")
            .header("content-type", "application/octet-stream")
            .body(body)
            .unwrap();
        req.extensions_mut().insert(ApiRoute::Passthrough);
        let res = CollectPayload::new(service_fn(echo_upstream), 20)
            .oneshot(req)
            .await
            .unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), "stream:".len() + 6 + 90);
        assert!(body.starts_with(b"stream:\n\nRIFF0123"));
    }

    #[tokio::test]
    async fn bodies_past_the_buffer_budget_are_503_and_their_bytes_are_freed() {
        use crate::BufferBudget;
        let budget = BufferBudget::new(100, 70);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(4);
        let held = StreamBody::new(futures_util::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        }));
        let svc = CollectPayload::new(service_fn(echo_upstream), 1024).budget(budget.clone());
        let alice = |body| {
            let mut req = Request::post("/chat/completions")
                .body(Body::new(body))
                .unwrap();
            req.extensions_mut().insert(ApiRoute::ChatCompletions);
            req.extensions_mut().insert(User {
                id: "alice".into(),
                ..User::default()
            });
            req
        };
        // Alice's first body holds 50 bytes and waits.
        tx.send(Ok(http_body::Frame::data(Bytes::from(vec![b' '; 50]))))
            .await
            .unwrap();
        let first = tokio::spawn(svc.clone().oneshot(alice(Body::new(held))));
        while budget.held_by("alice") < 50 {
            tokio::task::yield_now().await;
        }
        // Her second would pass her 70.
        let second = StreamBody::new(futures_util::stream::iter([Ok::<_, Infallible>(
            http_body::Frame::data(Bytes::from(vec![b' '; 30])),
        )]));
        let res = svc.clone().oneshot(alice(Body::new(second))).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "1");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("gateway_overloaded"));
        assert_eq!(budget.held(), 50);
        // The first ends; everything is released.
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(
            b"{\"model\":\"m\"}",
        ))))
        .await
        .unwrap();
        drop(tx);
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_trickles_past_the_total_timeout_is_408() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(20)).await;
                if tx
                    .send(Ok(http_body::Frame::data(Bytes::from_static(b" "))))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let body = StreamBody::new(futures_util::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        }));
        let start = tokio::time::Instant::now();
        let res = CollectPayload::new(service_fn(echo_upstream), 1 << 20)
            .oneshot(Request::post("/x").body(body).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(start.elapsed(), crate::DEFAULT_TOTAL_TIMEOUT);
    }

    #[tokio::test]
    async fn a_body_being_read_keeps_the_service_poll_ready_readied() {
        use tokio_test::{assert_pending, assert_ready_ok};
        let (mut svc, mut handle) = tower_test::mock::spawn_layer::<Request<Body>, Response<()>, _>(
            CollectPayloadLayer::new(1024),
        );
        handle.allow(0);
        assert_pending!(svc.poll_ready::<Request<Full<Bytes>>>());
        handle.allow(1);
        assert_ready_ok!(svc.poll_ready::<Request<Full<Bytes>>>());
        let call = tokio::spawn(svc.call(Request::post("/x").body(Full::from("{}")).unwrap()));
        let (seen, respond) = handle.next_request().await.unwrap();
        assert!(seen.extensions().get::<Payload>().is_some());
        respond.send_response(Response::new(()));
        assert!(call.await.unwrap().is_ok());
        // What is left here is not the readied instance: it must be readied again.
        assert_pending!(svc.poll_ready::<Request<Full<Bytes>>>());
    }

    #[tokio::test]
    async fn a_broken_body_is_400() {
        let frames = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"{"))),
            Err(std::io::Error::other("caller hung up")),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames.into_iter()));
        let svc = CollectPayload::new(service_fn(echo_upstream), 50);
        let res = svc
            .oneshot(Request::post("/x").body(body).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
}
