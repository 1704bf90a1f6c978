//! Shared vocabulary of the tower-openai layers.
//!
//! Every layer crate depends on this one and on no other layer: a type two layers need lives
//! here.
//!
//! - [`extensions`]: the typed values layers pass through `http::Extensions` ([`User`],
//!   [`SelectedConnection`], [`UpstreamHeaders`], …).
//! - [`payload`]: the request body of a model route, read once under a cap: JSON parsed at
//!   most once ([`Payload`]), or a multipart form ([`Form`](payload::Form)).
//! - [`error`]: the OpenAI-shaped [`ErrorResponse`] every rejection is built with, and the
//!   transport [`UpstreamError`](error::UpstreamError).
//! - [`body`]: the request [`Body`], the rejection-or-inner [`ResponseBody`], [`BoxBody`].
//! - [`endpoint`]: [`ConnectionEndpoint`](endpoint::ConnectionEndpoint), what the model
//!   catalog may fetch through.
//! - [`routing`]: the [`ModelRoutes`](routing::ModelRoutes) interface the select layer routes
//!   with, implemented by the models layer's catalog.

pub mod body;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod extensions;
#[doc(hidden)]
pub mod future;
pub mod payload;
pub mod report;
pub mod routing;

pub use crate::body::{Body, BoxBody, ResponseBody};
pub use crate::error::{BoxError, ErrorResponse};
pub use crate::extensions::{
    ApiRoute, ConnectionGroup, ListFilter, MeterUsage, RequestTimeout, RequestedModel, Role,
    RouteKind, SelectedConnection, UpstreamHeaders, User,
};
pub use crate::payload::{Payload, PayloadError};
pub use crate::report::{Ending, EndingReport, PriceList, TokenPrices, TokenUsage, UsageReport};

/// Writes a service's `get_ref`, `get_mut` and `into_inner` for its `inner` field, as
/// tower-http's own macro does, so that every service of every layer has the same surface.
/// Used inside `impl<S, …> Service<S, …> { … }` blocks whose inner service type is `S`.
#[macro_export]
#[doc(hidden)]
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
#[doc(hidden)]
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
            pub(crate) fn rejected(error: $crate::ErrorResponse) -> Self {
                Self {
                    inner: $crate::future::Rejectable::rejected(error),
                }
            }
        }

        impl<F, B, E> ::std::future::Future for ResponseFuture<F>
        where
            F: ::std::future::Future<Output = Result<::http::Response<B>, E>>,
        {
            type Output = Result<::http::Response<$crate::ResponseBody<B>>, E>;

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
#[doc(hidden)]
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
            type Output = Result<::http::Response<$crate::ResponseBody<ResBody>>, S::Error>;

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
