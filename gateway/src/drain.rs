//! Graceful shutdown of the served connections, with no lock on the request path.
//!
//! hyper-util's `GracefulShutdown` watches each connection through a `tokio::sync::watch`
//! receiver, and polling its `changed()` locks the channel's waiter list: every poll of every
//! connection takes one mutex that all worker threads share. Here each poll reads an atomic
//! flag; a connection's waker is stored once (and again only if it changes), and a shutdown
//! wakes the stored wakers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use hyper_util::server::graceful::GracefulConnection;
use pin_project::{pin_project, pinned_drop};
use tokio::sync::Notify;

/// Tells the connections it watches to finish, and waits for them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Drain(Arc<State>);

#[derive(Debug, Default)]
struct State {
    draining: AtomicBool,
    next_id: AtomicU64,
    /// The live connections, with the waker each was last polled with.
    live: Mutex<HashMap<u64, Waker>>,
    /// Notified when the last live connection ends.
    ended: Notify,
}

impl State {
    fn live(&self) -> MutexGuard<'_, HashMap<u64, Waker>> {
        // A panic while holding this lock leaves the map consistent: keep using it.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drain {
    /// Watch `conn`: once [`shutdown`](Self::shutdown) is called, it is told to finish the
    /// requests in flight and close.
    pub(crate) fn watch<C: GracefulConnection>(&self, conn: C) -> Watched<C> {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        self.0.live().insert(id, Waker::noop().clone());
        Watched {
            conn,
            drain: self.clone(),
            id,
            waker: None,
            told: false,
        }
    }

    /// Tell every watched connection to finish, then wait until all have ended.
    pub(crate) async fn shutdown(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self.0.live().values().cloned().collect();
        for waker in wakers {
            waker.wake();
        }
        loop {
            let ended = self.0.ended.notified();
            let mut ended = std::pin::pin!(ended);
            // Registered before the check, so an end between the two is not missed.
            ended.as_mut().enable();
            if self.0.live().is_empty() {
                return;
            }
            ended.await;
        }
    }
}

/// A connection watched by a [`Drain`].
#[pin_project(PinnedDrop)]
#[derive(Debug)]
pub(crate) struct Watched<C> {
    #[pin]
    conn: C,
    drain: Drain,
    id: u64,
    /// The waker stored in the drain's map (`None`: the placeholder `watch` stored).
    waker: Option<Waker>,
    /// Whether the connection was told to finish.
    told: bool,
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if !*this.told {
            let state = &this.drain.0;
            if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                state.live().insert(*this.id, cx.waker().clone());
                *this.waker = Some(cx.waker().clone());
            }
            // Read after the waker is stored: a shutdown that set the flag earlier is seen
            // here, and one that sets it later wakes the stored waker.
            if state.draining.load(Ordering::SeqCst) {
                *this.told = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.poll(cx)
    }
}

#[pinned_drop]
impl<C> PinnedDrop for Watched<C> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        let state = &this.drain.0;
        let mut live = state.live();
        live.remove(this.id);
        if live.is_empty() {
            state.ended.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::oneshot;

    use super::*;

    /// Serve one connection on a fresh listener, watched by `drain`; the response to each
    /// request waits for `release` (when given). The client's stream.
    async fn serve_one(drain: &Drain, release: Option<oneshot::Receiver<()>>) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let release = Arc::new(Mutex::new(release));
        let svc = service_fn(move |_req| {
            let release = release.lock().unwrap().take();
            async move {
                if let Some(release) = release {
                    let _ = release.await;
                }
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        });
        let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
        tokio::spawn(drain.watch(conn));
        client
    }

    async fn request(client: &mut TcpStream) {
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
    }

    /// Read until the response's 2-byte body arrived.
    async fn response(client: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"\r\n\r\nok") {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the response ended");
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_at_once() {
        let drain = Drain::default();
        let mut client = serve_one(&drain, None).await;
        request(&mut client).await;
        assert!(response(&mut client).await.starts_with("HTTP/1.1 200"));
        tokio::time::timeout(Duration::from_secs(10), drain.shutdown())
            .await
            .expect("shutdown waited on an idle connection");
        let mut buf = [0u8; 16];
        assert_eq!(client.read(&mut buf).await.unwrap(), 0, "not closed");
        assert!(drain.0.live().is_empty());
    }

    #[tokio::test]
    async fn a_request_in_flight_is_answered_before_shutdown_returns() {
        let drain = Drain::default();
        let (release, held) = oneshot::channel();
        let mut client = serve_one(&drain, Some(held)).await;
        request(&mut client).await;
        // Let the server read the request and call the service.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let shutdown = drain.shutdown();
        let mut shutdown = std::pin::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => panic!("shutdown returned with a request in flight"),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        release.send(()).unwrap();
        let answer = response(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Told to finish: the answer closes the connection.
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        tokio::time::timeout(Duration::from_secs(10), shutdown)
            .await
            .expect("shutdown did not return once the connection ended");
    }

    #[tokio::test]
    async fn a_connection_accepted_during_shutdown_is_told_at_its_first_poll() {
        let drain = Drain::default();
        drain.0.draining.store(true, Ordering::SeqCst);
        let mut client = serve_one(&drain, None).await;
        request(&mut client).await;
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        loop {
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        // Told to finish before it read a request, hyper closes the connection.
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        assert!(drain.0.live().is_empty());
        tokio::time::timeout(Duration::from_secs(10), drain.shutdown())
            .await
            .expect("shutdown did not return");
    }
}
