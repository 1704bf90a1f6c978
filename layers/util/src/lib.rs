//! Building blocks the tower-openai layers are written with.
//!
//! [`tower-openai-core`](tower_openai_core) is the vocabulary layers share (the extensions,
//! the payload, the errors, the body types); this crate is how a layer is built from them,
//! in the shapes tower-http uses:
//!
//! - [`future`]: the two request-step futures. [`Rejectable`](future::Rejectable) for a
//!   step that checks a request synchronously (answer, or call the inner service);
//!   [`Deferred`](future::Deferred) for a step that decides asynchronously and then calls
//!   the inner service it readied. Each layer wraps one in an opaque `ResponseFuture` of its
//!   own with [`check_response_future!`] or [`deferred_response_future!`] (tower-http's
//!   `opaque_future!` shape), so no type of this crate is named in a layer's public API.
//! - [`body`]: the end-of-body hook ([`WatchedBody`](body::WatchedBody)), the converting
//!   body ([`ReframedBody`](body::ReframedBody)) and the event-stream splitter
//!   ([`SseEvents`](body::SseEvents)).
//!
//! A stack's user never needs this crate; a layer of your own can use it as ours do.
//!
//! ```
//! use http::{Request, Response};
//! use tower_openai_core::{ErrorResponse, ResponseBody};
//! use tower_openai_util::future::Rejectable;
//!
//! // A step that refuses a request without an `authorization` header.
//! fn check<F>(req: &Request<()>, call: impl FnOnce() -> F) -> Rejectable<F> {
//!     if req.headers().contains_key("authorization") {
//!         Rejectable::inner(call())
//!     } else {
//!         Rejectable::rejected(ErrorResponse::unauthorized("a key is needed"))
//!     }
//! }
//!
//! # tokio_test::block_on(async {
//! let refused = check(&Request::new(()), || async {
//!     Ok::<_, std::convert::Infallible>(Response::new(()))
//! });
//! let res: Response<ResponseBody<()>> = refused.await.unwrap();
//! assert_eq!(res.status(), 401);
//! # });
//! ```

pub mod body;
pub mod future;

#[doc(hidden)]
pub mod __private {
    pub use tower_openai_core::{ErrorResponse, ResponseBody};
}

/// Writes a service's `get_ref`, `get_mut` and `into_inner` for its `inner` field, as
/// tower-http's own macro does, so that every service of every layer has the same surface.
/// Used inside `impl<S, …> Service<S, …> { … }` blocks whose inner service type is `S`.
#[macro_export]
macro_rules! define_inner_service_accessors {
    () => {
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
    };
}

/// Declares a layer's opaque `ResponseFuture<F>`: the inner service's future `F`, or a
/// rejection the layer answered itself (tower-http's `opaque_future!` shape: a user sees a
/// future that yields the response, never the shared type inside). For the layers that check
/// a request synchronously (answer, or pass it on).
#[macro_export]
macro_rules! check_response_future {
    ($(#[$meta:meta])*) => {
        $(#[$meta])*
        #[::pin_project::pin_project]
        pub struct ResponseFuture<F> {
            #[pin]
            inner: $crate::future::Rejectable<F>,
        }

        impl<F> ResponseFuture<F> {
            /// The inner service's future.
            pub(crate) fn inner(future: F) -> Self {
                Self {
                    inner: $crate::future::Rejectable::inner(future),
                }
            }

            /// The answer to a refused request.
            pub(crate) fn rejected(error: $crate::__private::ErrorResponse) -> Self {
                Self {
                    inner: $crate::future::Rejectable::rejected(error),
                }
            }
        }

        impl<F, B, E> ::std::future::Future for ResponseFuture<F>
        where
            F: ::std::future::Future<Output = Result<::http::Response<B>, E>>,
        {
            type Output = Result<::http::Response<$crate::__private::ResponseBody<B>>, E>;

            fn poll(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<Self::Output> {
                self.project().inner.poll(cx)
            }
        }

        impl<F> ::std::fmt::Debug for ResponseFuture<F> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("ResponseFuture").finish_non_exhaustive()
            }
        }
    };
}

/// Declares a layer's opaque `ResponseFuture<S, B>` around [`future::Deferred`], so the
/// deferred-call protocol (a decision, then the service `poll_ready` readied) stays inside the
/// layer crates and a user sees only a future that yields the response.
#[macro_export]
macro_rules! deferred_response_future {
    ($(#[$meta:meta])*) => {
        $(#[$meta])*
        #[::pin_project::pin_project]
        pub struct ResponseFuture<S, B>
        where
            S: ::tower_service::Service<::http::Request<B>>,
        {
            #[pin]
            inner: $crate::future::Deferred<S, B>,
        }

        impl<S, B> From<$crate::future::Deferred<S, B>> for ResponseFuture<S, B>
        where
            S: ::tower_service::Service<::http::Request<B>>,
        {
            fn from(inner: $crate::future::Deferred<S, B>) -> Self {
                Self { inner }
            }
        }

        impl<S, B, ResBody> ::std::future::Future for ResponseFuture<S, B>
        where
            S: ::tower_service::Service<::http::Request<B>, Response = ::http::Response<ResBody>>,
        {
            type Output = Result<::http::Response<$crate::__private::ResponseBody<ResBody>>, S::Error>;

            fn poll(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<Self::Output> {
                self.project().inner.poll(cx)
            }
        }

        impl<S, B> ::std::fmt::Debug for ResponseFuture<S, B>
        where
            S: ::tower_service::Service<::http::Request<B>>,
        {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("ResponseFuture").finish_non_exhaustive()
            }
        }
    };
}
