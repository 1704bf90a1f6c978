use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Extensions, Response};
use hyper::body::Incoming;
use pin_project::pin_project;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tower_openai_core::error::UpstreamError;
use tower_openai_core::{BoxError, EndingReport};
use tower_openai_time::{SleepSlot, SlotSleep, deadline};

use crate::ResponseBody;
use crate::client::Relay;
use crate::headers::{is_event_stream, scrub_response};

type ClientFuture = hyper_util::client::legacy::ResponseFuture;

type ClientResult = Result<Response<Incoming>, hyper_util::client::legacy::Error>;

/// The client's answer, after a place among the host's requests in flight when they are
/// limited (the place is then held by the answer's body).
pub(crate) enum Pending {
    /// Sent at once.
    Sent(ClientFuture),
    /// Waiting for a place among the host's requests, or following redirects.
    Boxed(Pin<Box<dyn Future<Output = (ClientResult, Option<OwnedSemaphorePermit>)> + Send>>),
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sent(_) => "Sent",
            Self::Boxed(_) => "Boxed",
        })
    }
}

impl Pending {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<(ClientResult, Option<OwnedSemaphorePermit>)> {
        match self {
            Self::Sent(f) => Pin::new(f).poll(cx).map(|r| (r, None)),
            Self::Boxed(f) => f.as_mut().poll(cx),
        }
    }
}

/// Response future of [`Upstream`](crate::Upstream).
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture {
    #[pin]
    state: State,
}

#[pin_project(project = StateProj)]
#[derive(Debug)]
enum State {
    Waiting {
        response: Pending,
        idle: Option<SlotSleep>,
        timeout: Option<Duration>,
        connection: usize,
        /// The allowlists for a connection's answer; `None` for a direct request.
        relay: Option<Arc<Relay>>,
        /// A broken stream ends with an error event in Anthropic's shape.
        anthropic: bool,
        /// The request's extension map, emptied: the answer's extensions go into it (the
        /// layers above add theirs to a map already grown to hold them).
        extensions: Extensions,
    },
    Failed {
        error: Option<BoxError>,
    },
}

impl ResponseFuture {
    /// `response`, failing after `timeout` without an answer (a sleep from `sleeps`).
    pub(crate) fn new(
        response: Pending,
        timeout: Option<Duration>,
        connection: usize,
        sleeps: &SleepSlot,
        relay: Option<Arc<Relay>>,
    ) -> Self {
        Self {
            state: State::Waiting {
                response,
                idle: timeout.map(|t| sleeps.sleep_until(deadline(Instant::now(), t))),
                timeout,
                connection,
                relay,
                anthropic: false,
                extensions: Extensions::new(),
            },
        }
    }

    /// Give the answer the request's extension map, emptied (no values carry over; the
    /// allocation does).
    pub(crate) fn reusing(mut self, mut map: Extensions) -> Self {
        if let State::Waiting { extensions, .. } = &mut self.state {
            map.clear();
            *extensions = map;
        }
        self
    }

    /// End a broken stream with Anthropic's `event: error` (a Messages request).
    pub(crate) fn anthropic_events(mut self, on: bool) -> Self {
        if let State::Waiting { anthropic, .. } = &mut self.state {
            *anthropic = on;
        }
        self
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "upstream future polled after completion".into()))),
            StateProj::Waiting {
                response,
                idle,
                timeout,
                connection,
                relay,
                anthropic,
                extensions,
            } => {
                if let Poll::Ready((result, permit)) = response.poll(cx) {
                    return Poll::Ready(match result {
                        Ok(res) => Ok(relay_answer(
                            res,
                            *timeout,
                            *connection,
                            relay.as_deref(),
                            *anthropic,
                            std::mem::take(extensions),
                        )
                        .map(|body| body.holding(permit))),
                        Err(e) if e.is_connect() => {
                            Err(UpstreamError::connect(*connection, e).into())
                        }
                        Err(e) => Err(UpstreamError::protocol(*connection, e).into()),
                    });
                }
                if let Some(idle) = idle
                    && Pin::new(idle).poll(cx).is_ready()
                {
                    return Poll::Ready(Err(UpstreamError::timeout(
                        *connection,
                        timeout.unwrap_or_default(),
                    )
                    .into()));
                }
                Poll::Pending
            }
        }
    }
}

fn relay_answer(
    res: Response<Incoming>,
    timeout: Option<Duration>,
    connection: usize,
    relay: Option<&Relay>,
    anthropic: bool,
    reused: Extensions,
) -> Response<ResponseBody> {
    let (mut parts, body) = res.into_parts();
    let answered = std::mem::replace(&mut parts.extensions, reused);
    parts.extensions.extend(answered);
    let sse = is_event_stream(&parts.headers);
    match relay {
        Some(relay) => relay.allowlists.filter_response(&mut parts.headers, sse),
        None => scrub_response(&mut parts.headers, sse),
    }
    // An error status sent as an event stream reaches the caller as a JSON error with that
    // status (Open WebUI 0.7+).
    if sse && parts.status.as_u16() >= 400 {
        parts.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let status = parts.status.as_u16();
        return Response::from_parts(
            parts,
            ResponseBody::new(body, timeout, connection, false, None).answered_as_json(status),
        );
    }
    let shutdown = relay.and_then(|r| r.shutdown.as_ref());
    // An event stream that breaks (or that shutdown cuts) ends with a terminal event, not an
    // error: how it ended is told to the layers above in the response extensions.
    let ending = sse.then(EndingReport::new);
    if let Some(ending) = &ending {
        parts.extensions.insert(ending.clone());
    }
    Response::from_parts(
        parts,
        ResponseBody::new(body, timeout, connection, sse, shutdown)
            .reporting_to(ending)
            .anthropic_events(anthropic),
    )
}
