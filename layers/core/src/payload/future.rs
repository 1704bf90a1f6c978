use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body_util::LengthLimitError;
use http_body_util::{Limited, combinators::Collect};
use pin_project::pin_project;
use tower_service::Service;

use super::idle::{BodyTimedOut, IdleTimeout};
use super::service::{Reading, Spare, admit};
use crate::body::{Body, ResponseBody};
use crate::error::{ErrorResponse, find_cause};

/// Response future of [`CollectPayload`](super::CollectPayload).
#[pin_project]
pub struct ResponseFuture<S, B>
where
    S: Service<Request<Body>>,
    B: http_body::Body,
    B::Error: Into<crate::BoxError>,
{
    #[pin]
    state: State<S, B>,
}

// The collecting state holds the request head; boxing it would cost an allocation per
// request to save stack space in a future that exists once per request.
#[allow(clippy::large_enum_variant)]
#[pin_project(project = StateProj)]
enum State<S, B>
where
    S: Service<Request<Body>>,
    B: http_body::Body,
    B::Error: Into<crate::BoxError>,
{
    Collecting {
        #[pin]
        collect: Collect<Limited<IdleTimeout<B>>>,
        parts: Option<Parts>,
        inner: Option<S>,
        spare: Spare<S>,
        limit: usize,
        reading: Reading,
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
    B::Error: Into<crate::BoxError>,
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
        collect: Collect<Limited<IdleTimeout<B>>>,
        parts: Parts,
        inner: S,
        spare: Spare<S>,
        limit: usize,
        reading: Reading,
    ) -> Self {
        Self {
            state: State::Collecting {
                collect,
                parts: Some(parts),
                inner: Some(inner),
                spare,
                limit,
                reading,
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::BoxError>,
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
                    parts,
                    inner,
                    spare,
                    limit,
                    reading,
                } => match ready!(collect.poll(cx)) {
                    Ok(collected) => {
                        let (Some(mut parts), Some(mut inner)) = (parts.take(), inner.take())
                        else {
                            return Poll::Ready(Ok(ResponseBody::rejected(
                                ErrorResponse::internal("polled after completion"),
                            )));
                        };
                        if let Err(error) = admit(*reading, &mut parts, collected.to_bytes()) {
                            // Handed back unused: it was readied, and it is the next one's.
                            spare.give_back(inner);
                            State::Rejected { error: Some(error) }
                        } else {
                            let future = inner.call(Request::from_parts(parts, Body::empty()));
                            // Its future owns what it needs: the service can serve the next
                            // request.
                            spare.give_back(inner);
                            State::Called { future }
                        }
                    }
                    Err(err) => {
                        let error = if find_cause::<LengthLimitError>(&*err).is_some() {
                            ErrorResponse::payload_too_large(*limit)
                        } else if let Some(BodyTimedOut(after)) = find_cause(&*err) {
                            ErrorResponse::new(
                                http::StatusCode::REQUEST_TIMEOUT,
                                format!(
                                    "The request body sent nothing for {} s",
                                    after.as_secs_f64()
                                ),
                            )
                            .with_code("request_timeout")
                        } else {
                            tracing::debug!(error = %err, "could not read request body");
                            ErrorResponse::bad_request("Could not read the request body")
                                .with_code("invalid_body")
                        };
                        State::Rejected { error: Some(error) }
                    }
                },
            };
            this.state.set(next);
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<Body>>,
    B: http_body::Body,
    B::Error: Into<crate::BoxError>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
