use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};
use tower_service::Service;

use super::{CollectPayloadLayer, ResponseFuture};
use crate::body::{Body, ResponseBody};
use crate::error::{BoxError, ErrorResponse};

/// Collects JSON request bodies into a [`Payload`](super::Payload).
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
    spare: Option<Spare<S>>,
}

impl<S: Clone> Clone for CollectPayload<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limit: self.limit,
            spare: None,
        }
    }
}

impl<S> CollectPayload<S> {
    /// Wrap `inner`, refusing JSON bodies over `limit` bytes.
    pub fn new(inner: S, limit: usize) -> Self {
        Self {
            inner,
            limit,
            spare: None,
        }
    }

    /// A layer with this limit.
    pub fn layer(limit: usize) -> CollectPayloadLayer {
        CollectPayloadLayer::new(limit)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwrap the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
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
        if !carries_json(req.method(), req.headers()) || req.body().is_end_stream() {
            return ResponseFuture::called(self.inner.call(req.map(Body::new)));
        }
        if content_length(req.headers()).is_some_and(|len| len > self.limit as u64) {
            return ResponseFuture::rejected(ErrorResponse::payload_too_large(self.limit));
        }
        // The service readied by `poll_ready` is the one that must be called: move it into
        // the future and keep another here (to be readied before the next call): the one an
        // earlier request handed back, or a fresh clone.
        let spare = self.spare.get_or_insert_with(Spare::default);
        let next = spare.take().unwrap_or_else(|| self.inner.clone());
        let inner = std::mem::replace(&mut self.inner, next);
        let (parts, body) = req.into_parts();
        ResponseFuture::collecting(
            Limited::new(body, self.limit).collect(),
            parts,
            inner,
            spare.clone(),
            self.limit,
        )
    }
}

/// Whether a request's body is one we read as JSON.
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
        if let Ok(mut slot) = self.0.lock() {
            if slot.is_none() {
                *slot = Some(service);
            }
        }
    }
}

fn carries_json(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return false;
    }
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        // SDKs always say; curl users often do not. Try it as JSON.
        return true;
    };
    let Ok(ct) = ct.to_str() else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
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
    use crate::Payload;
    use http::StatusCode;
    use http_body_util::{Full, StreamBody};
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

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
