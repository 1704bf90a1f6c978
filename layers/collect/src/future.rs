use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{Request, Response};
use http_body::{Body as _, Frame};
use http_body_util::LengthLimitError;
use http_body_util::{Limited, combinators::Collect};
use pin_project::pin_project;
use tower_service::Service;

use super::budget::{Budgeted, Overloaded};
use super::prefixed::Prefixed;
use super::service::{Reading, Spare, admit};
use tower_openai_core::body::{Body, ResponseBody};
use tower_openai_core::error::{BoxError, ErrorResponse, find_cause};
use tower_openai_time::{BodyTimedOut, TimeoutBody};

/// The caller's body as the collector reads it: timed, and counted against the budget.
pub(super) type Watched<B> = Budgeted<TimeoutBody<B>>;

/// Response future of [`CollectPayload`](crate::CollectPayload).
#[pin_project]
pub struct ResponseFuture<S, B>
where
    S: Service<Request<Body>>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    #[pin]
    state: State<S, B>,
}

/// What a request waits on before the inner service is called.
struct Pending<S> {
    parts: Parts,
    inner: S,
    spare: Spare<S>,
    limit: usize,
}

// What waits for the body (the request head and the readied service below, over 600 bytes)
// is boxed: one allocation per collected request, where inline it made every future above
// this one as large, and each of them is moved once more as the stack is called.
#[pin_project(project = StateProj)]
enum State<S, B>
where
    S: Service<Request<Body>>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    /// Reading a body that must be read whole.
    Collecting {
        #[pin]
        collect: Collect<Limited<Watched<B>>>,
        pending: Option<Box<Pending<S>>>,
        reading: Reading,
    },
    /// Reading the start of a passthrough body to see whether it is a JSON object (then it
    /// is read whole and checked) or not (then it streams on). Boxed: it may be handed on.
    Sniffing {
        body: Option<Pin<Box<Watched<B>>>>,
        read: BytesMut,
        /// Whether the body starts with `{`: read it all.
        json: bool,
        pending: Option<Box<Pending<S>>>,
    },
    Called {
        #[pin]
        future: S::Future,
    },
    Rejected {
        error: Option<ErrorResponse>,
    },
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<Body>>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    pub(super) fn called(future: S::Future) -> Self {
        Self {
            state: State::Called { future },
        }
    }

    pub(super) fn rejected(error: ErrorResponse) -> Self {
        Self {
            state: State::Rejected { error: Some(error) },
        }
    }

    pub(super) fn collecting(
        body: Watched<B>,
        parts: Parts,
        inner: S,
        spare: Spare<S>,
        limit: usize,
        reading: Reading,
    ) -> Self
    where
        B: http_body::Body<Data = Bytes>,
    {
        use http_body_util::BodyExt;
        Self {
            state: State::Collecting {
                collect: Limited::new(body, limit).collect(),
                pending: Some(Box::new(Pending {
                    parts,
                    inner,
                    spare,
                    limit,
                })),
                reading,
            },
        }
    }

    pub(super) fn sniffing(
        body: Watched<B>,
        parts: Parts,
        inner: S,
        spare: Spare<S>,
        limit: usize,
    ) -> Self {
        Self {
            state: State::Sniffing {
                body: Some(Box::pin(body)),
                read: BytesMut::new(),
                json: false,
                pending: Some(Box::new(Pending {
                    parts,
                    inner,
                    spare,
                    limit,
                })),
            },
        }
    }
}

/// The answer to a body that could not be read.
fn read_error(err: &BoxError, limit: usize) -> ErrorResponse {
    if find_cause::<LengthLimitError>(&**err).is_some() {
        ErrorResponse::payload_too_large(limit)
    } else if let Some(timed_out) = find_cause::<BodyTimedOut>(&**err) {
        ErrorResponse::from(timed_out)
    } else if let Some(overloaded) = find_cause::<Overloaded>(&**err) {
        overloaded.to_response()
    } else {
        tracing::debug!(error = %err, "could not read request body");
        ErrorResponse::bad_request("Could not read the request body").with_code("invalid_body")
    }
}

/// Call the inner service with `parts` and `body`, handing the service back for the next
/// request once called.
fn call<S>(pending: Pending<S>, body: Body) -> S::Future
where
    S: Service<Request<Body>>,
{
    let Pending {
        parts,
        mut inner,
        spare,
        ..
    } = pending;
    let future = inner.call(Request::from_parts(parts, body));
    // Its future owns what it needs: the service can serve the next request.
    spare.give_back(inner);
    future
}

/// Admit the collected `bytes` and call the inner service, or reject.
fn admit_and_call<S, B>(mut pending: Pending<S>, reading: Reading, bytes: Bytes) -> State<S, B>
where
    S: Service<Request<Body>>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    match admit(reading, &mut pending.parts, bytes) {
        Ok(forward) => State::Called {
            future: call(pending, forward.map_or_else(Body::empty, Body::from)),
        },
        Err(error) => {
            // Handed back unused: it was readied, and it is the next one's.
            pending.spare.give_back(pending.inner);
            State::Rejected { error: Some(error) }
        }
    }
}

/// The answer of a future polled again after it completed.
fn gone<B, E>() -> Poll<Result<Response<ResponseBody<B>>, E>> {
    Poll::Ready(Ok(ResponseBody::rejected(ErrorResponse::internal(
        "polled after completion",
    ))))
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    return Poll::Ready(ready!(future.poll(cx)).map(ResponseBody::inner));
                }
                StateProj::Rejected { error } => {
                    let error = error
                        .take()
                        .unwrap_or_else(|| ErrorResponse::internal("polled after completion"));
                    return Poll::Ready(Ok(ResponseBody::rejected(error)));
                }
                StateProj::Collecting {
                    collect,
                    pending,
                    reading,
                } => {
                    let collected = ready!(collect.poll(cx));
                    let Some(pending) = pending.take() else {
                        return gone();
                    };
                    match collected {
                        Ok(collected) => admit_and_call(*pending, *reading, collected.to_bytes()),
                        Err(err) => State::Rejected {
                            error: Some(read_error(&err, pending.limit)),
                        },
                    }
                }
                StateProj::Sniffing {
                    body,
                    read,
                    json,
                    pending,
                } => {
                    let (Some(stream), Some(limit)) =
                        (body.as_mut(), pending.as_ref().map(|p| p.limit))
                    else {
                        return gone();
                    };
                    let frame = ready!(stream.as_mut().poll_frame(cx));
                    let ended = match frame {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => {
                                read.extend_from_slice(&data);
                                false
                            }
                            // Trailers end what is read here; a JSON body has none to keep.
                            Err(_) => true,
                        },
                        Some(Err(err)) => {
                            this.state.set(State::Rejected {
                                error: Some(read_error(&err, limit)),
                            });
                            continue;
                        }
                        None => true,
                    };
                    if read.len() > limit {
                        this.state.set(State::Rejected {
                            error: Some(ErrorResponse::payload_too_large(limit)),
                        });
                        continue;
                    }
                    if !*json {
                        match read.iter().find(|b| !b.is_ascii_whitespace()) {
                            Some(b'{') => *json = true,
                            // Not a JSON object: streamed on as it came, the bytes read first.
                            Some(_) => {
                                let (Some(mut rest), Some(pending)) = (body.take(), pending.take())
                                else {
                                    return gone();
                                };
                                // Streamed, not held: no longer counted against the budget.
                                rest.as_mut().release();
                                let first = VecDeque::from([Frame::data(read.split().freeze())]);
                                let body = Body::new(Prefixed::new(first, rest, ended));
                                this.state.set(State::Called {
                                    future: call(*pending, body),
                                });
                                continue;
                            }
                            // Only white space so far.
                            None if !ended => continue,
                            None => {}
                        }
                    }
                    if !ended {
                        continue;
                    }
                    let Some(pending) = pending.take() else {
                        return gone();
                    };
                    admit_and_call(*pending, Reading::Sniffed, read.split().freeze())
                }
            };
            this.state.set(next);
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<Body>>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
