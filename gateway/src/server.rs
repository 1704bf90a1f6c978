//! Serving the app with hyper: HTTP/1.1 and HTTP/2, graceful shutdown.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project::{pin_project, pinned_drop};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower::util::Oneshot;
use tower_openai_core::{Body, BoxError};
use tower_openai_time::ShutdownSignal;
use tower_openai_time::{BodyTimeouts, SleepSlot};

use super::admission::{Activity, Admission, Refused};
use super::config::Limits;
use super::drain::Drain;
use super::serving::{ConnectionTimer, RepollSelfWakes, SpareExtensions};

/// How the server bounds what callers can make it hold, and how it shuts down.
#[derive(Clone, Debug)]
pub(crate) struct ServeOptions {
    pub(crate) limits: Limits,
    /// How long requests in flight may run on after shutdown starts.
    pub(crate) grace: Duration,
    /// Cut when the grace period ends: event streams still open end with a terminal error
    /// event instead of being cut mid-stream.
    pub(crate) cut: ShutdownSignal,
}

impl ServeOptions {
    pub(crate) fn new(limits: Limits, grace: Duration) -> Self {
        Self {
            limits,
            grace,
            cut: ShutdownSignal::new(),
        }
    }
}

/// While the server is full, how often it looks for a connection gone idle.
const ROOM_CHECK: Duration = Duration::from_millis(50);

/// Serve `app` on `listener` until `shutdown` resolves; then stop accepting, and give the
/// connections in flight (long streams included) up to the grace period to finish. Streams
/// still open then end with a terminal event, and get a moment to send it.
pub(crate) async fn serve<S, B>(
    listener: TcpListener,
    app: S,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) where
    S: tower::Service<
            http::Request<Body>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = &options.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // A client that opens a connection and sends no request head, or sits idle between
        // requests, is dropped.
        .header_read_timeout(limits.header_read_timeout)
        // A head larger than this, or with more fields, is answered 431.
        .max_buf_size(limits.max_head_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_http2_streams)
        .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(limits.http2_keep_alive.0)
        .keep_alive_timeout(limits.http2_keep_alive.1);
    // Every request body, on every route, has an idle and a total deadline (408 past
    // either), however it is read below.
    let body_timeouts = BodyTimeouts {
        idle: Some(limits.body_read_timeout),
        total: Some(limits.body_total_timeout),
    };
    let drain = Drain::default();
    let admission = Admission::new(limits.max_connections, limits.max_connections_per_ip);
    let mut shutdown = std::pin::pin!(shutdown);

    'serve: loop {
        // At the limit with no idle connection to close, stop accepting until there is
        // room: the kernel's backlog holds the rest.
        while !admission.has_room() {
            tokio::select! {
                () = tokio::time::sleep(ROOM_CHECK) => {}
                () = &mut shutdown => break 'serve,
            }
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Too many from this address: closed at once. No room (every connection became
        // busy since the check above): this one waits for room, and no other is accepted
        // meanwhile.
        let admitted = loop {
            match admission.admit(peer.ip()) {
                Ok(admitted) => break admitted,
                Err(Refused::PerIp) => {
                    tracing::debug!(%peer, "connection closed: too many from its address");
                    continue 'serve;
                }
                Err(Refused::Full) => tokio::select! {
                    () = tokio::time::sleep(ROOM_CHECK) => {}
                    () = &mut shutdown => break 'serve,
                },
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = admitted.activity().clone();
        let svc = PerConnection {
            app: RefCell::new(app.clone()),
            activity: activity.clone(),
            body_timeouts,
            sleeps: SleepSlot::new(),
            spare: SpareExtensions::new(),
        };
        // A timer per connection: the head timeout of each request reuses one sleep.
        let mut per_connection = builder.clone();
        per_connection.http1().timer(ConnectionTimer::new());
        let conn = per_connection
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = RepollSelfWakes::new(drain.watch(conn));
        let idle_limit = limits.header_read_timeout;
        let id = admitted.id();
        let mut served = tokio::spawn(async move {
            // Held until the connection ends (or is aborted): its place in the limits.
            let _admitted = admitted;
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
        admission.set_abort(id, served.abort_handle());
        // The idle watchdog runs beside the connection, not in its task: the connection's
        // many polls per request never poll its timer.
        tokio::spawn(async move {
            tokio::select! {
                _ = &mut served => {}
                // Nothing in flight for the header-read timeout: before the first request
                // (protocol detection, an HTTP/2 preface with no request) or between
                // requests (HTTP/2 has no idle timeout of its own). Aborting the
                // connection's task closes it.
                () = activity.idle_for(idle_limit) => {
                    served.abort();
                    tracing::debug!(%peer, "idle connection closed");
                }
            }
        });
    }

    drop(listener);
    tracing::info!("shutting down: waiting for requests in flight");
    let grace = options.grace;
    tokio::select! {
        () = drain.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "grace period over; ending the streams still open");
            options.cut.cut();
            // Let them send their terminal event and close.
            let _ = tokio::time::timeout(Duration::from_secs(2), drain.shutdown()).await;
        }
    }
}

/// A response body that tells its connection's [`Activity`] when it is done.
#[pin_project(PinnedDrop)]
struct Tracked<B> {
    #[pin]
    inner: B,
    activity: Option<Arc<Activity>>,
}

#[pinned_drop]
impl<B> PinnedDrop for Tracked<B> {
    fn drop(self: Pin<&mut Self>) {
        if let Some(activity) = self.project().activity.take() {
            activity.end();
        }
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The app as hyper serves it on one connection: one instance of the stack per connection,
/// called in place while it is ready.
///
/// Serving with `app.clone().oneshot(req)` clones the whole stack per request: a dozen
/// reference counts shared by every connection bumped and dropped each time, and on a busy
/// multi-core machine those cache lines bounce between cores. Every layer of the gateway's
/// stack is always ready, so the connection's own instance is readied and called directly.
/// A stack that is not ready (a layer a user added that applies back-pressure) is served
/// as before, through a clone that waits for readiness.
struct PerConnection<S> {
    app: RefCell<S>,
    activity: Arc<Activity>,
    body_timeouts: BodyTimeouts,
    /// The timer the request bodies of this connection borrow.
    sleeps: SleepSlot,
    /// The extension map this connection's requests reuse.
    spare: SpareExtensions,
}

/// The response future of [`PerConnection`]: counts the request in flight until its body
/// is dropped.
#[pin_project(PinnedDrop)]
struct Counted<F> {
    #[pin]
    inner: F,
    activity: Option<Arc<Activity>>,
    spare: SpareExtensions,
}

impl<F, B> Future for Counted<F>
where
    F: Future<Output = Result<http::Response<B>, std::convert::Infallible>>,
{
    type Output = Result<http::Response<Tracked<B>>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut res) = ready!(this.inner.poll(cx));
        this.spare.keep(res.extensions_mut());
        // Handed to the body: its drop ends the request.
        let activity = this.activity.take();
        Poll::Ready(Ok(res.map(|inner| Tracked { inner, activity })))
    }
}

#[pinned_drop]
impl<F> PinnedDrop for Counted<F> {
    fn drop(self: Pin<&mut Self>) {
        // Dropped before the response head (the caller left): the request is over.
        if let Some(activity) = self.project().activity.take() {
            activity.end();
        }
    }
}

impl<S, B> hyper::service::Service<http::Request<Incoming>> for PerConnection<S>
where
    S: tower::Service<
            http::Request<Body>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone,
{
    type Response = http::Response<Tracked<B>>;
    type Error = std::convert::Infallible;
    type Future = Counted<Either<S::Future, Oneshot<S, http::Request<Body>>>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let mut req = req.map(|body| Body::incoming(body, self.body_timeouts, &self.sleeps));
        self.spare.give(req.extensions_mut());
        self.activity.begin();
        let mut app = self.app.borrow_mut();
        // hyper's `call` has no task context to wait with, so this is a probe, not a wait:
        // a ready instance is called at once; one that is not gets no promise from us to be
        // polled again by a wake (the waker is a no-op, so its wake is lost by design), and
        // the request waits on a clone of its own through `oneshot`, which polls readiness
        // with the request's real waker. The instance itself is probed afresh on the next
        // request; nothing depends on the lost wake.
        let mut cx = Context::from_waker(Waker::noop());
        let inner = match app.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Either::Left(app.call(req)),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => Either::Right(app.clone().oneshot(req)),
        };
        Counted {
            inner,
            activity: Some(self.activity.clone()),
            spare: self.spare.clone(),
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;

    use super::*;

    /// Answers with how many times it has been cloned. With `back_pressure`, `poll_ready`
    /// is `Pending` (waking at once) before each call, as a concurrency limit may be.
    struct Probe {
        clones: Arc<AtomicUsize>,
        back_pressure: bool,
        ready: bool,
    }

    impl Clone for Probe {
        fn clone(&self) -> Self {
            self.clones.fetch_add(1, Ordering::SeqCst);
            Self {
                clones: self.clones.clone(),
                back_pressure: self.back_pressure,
                ready: false,
            }
        }
    }

    impl tower::Service<http::Request<Body>> for Probe {
        type Response = http::Response<tower_openai_core::BoxBody>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            if self.back_pressure && !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _req: http::Request<Body>) -> Self::Future {
            self.ready = false;
            let clones = self.clones.load(Ordering::SeqCst).to_string();
            let body = Full::new(Bytes::from(clones))
                .map_err(|never| match never {})
                .boxed_unsync();
            std::future::ready(Ok(http::Response::new(body)))
        }
    }

    /// Serve a fresh probe; its address.
    async fn serve_probe(back_pressure: bool) -> std::net::SocketAddr {
        let probe = Probe {
            clones: Arc::new(AtomicUsize::new(0)),
            back_pressure,
            ready: false,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            probe,
            std::future::pending(),
            ServeOptions::new(Limits::default(), Duration::from_secs(1)),
        ));
        addr
    }

    /// Serve a probe and make three requests on one connection; the answers.
    async fn answers(back_pressure: bool) -> Vec<String> {
        let addr = serve_probe(back_pressure).await;
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let res = client
                .get(format!("http://{addr}/").parse().unwrap())
                .await
                .unwrap();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            seen.push(String::from_utf8(body.to_vec()).unwrap());
        }
        seen
    }

    /// Serve a probe; a raw connection to it.
    async fn raw_connection() -> tokio::net::TcpStream {
        let addr = serve_probe(false).await;
        tokio::net::TcpStream::connect(addr).await.unwrap()
    }

    /// Everything the server sends until it closes the connection.
    async fn until_closed(conn: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_head_that_never_ends_is_dropped_after_30_s() {
        use tokio::io::AsyncWriteExt;
        let mut conn = raw_connection().await;
        let start = tokio::time::Instant::now();
        conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut conn).await;
        assert!(!answer.contains("200"), "{answer}");
        assert!(start.elapsed() >= Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_head_gets_the_full_timeout_on_a_kept_alive_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = raw_connection().await;
        // Requests 25 s apart: each head starts its own 30 s (the reused sleep is reset).
        for _ in 0..3 {
            conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            tokio::time::sleep(Duration::from_secs(25)).await;
        }
        // Then silence: closed 30 s after the last answer.
        let start = tokio::time::Instant::now();
        until_closed(&mut conn).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(4), "{waited:?}");
        assert!(waited <= Duration::from_secs(6), "{waited:?}");
    }

    #[tokio::test]
    async fn a_ready_stack_is_called_in_place_without_a_clone_per_request() {
        // One clone for the connection, none per request.
        assert_eq!(answers(false).await, ["1", "1", "1"]);
    }

    #[tokio::test]
    async fn a_stack_that_is_not_ready_is_served_through_a_clone_that_waits() {
        // Request 1: the connection's instance is not ready, so a clone waits and answers
        // (2 clones so far); the instance became ready meanwhile and serves request 2 in
        // place; request 3 finds it not ready again and gets a clone of its own.
        assert_eq!(answers(true).await, ["2", "2", "3"]);
    }
}
