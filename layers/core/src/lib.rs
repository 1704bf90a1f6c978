//! Shared vocabulary of the tower-openai layers.
//!
//! Every layer crate depends on this one and on no other layer: a type two layers need lives
//! here, and only such types (a test checks that each item is named by at least two other
//! crates). How a layer is built from them (its response future, a body that watches or
//! converts the answer) is in `tower-openai-util`.
//!
//! - [`extensions`]: the typed values layers pass through `http::Extensions` ([`User`],
//!   [`SelectedConnection`], [`UpstreamHeaders`], …).
//! - [`payload`]: the request body of a model route, read once under a cap: JSON parsed at
//!   most once ([`Payload`]), or a multipart form ([`Form`](payload::Form)).
//! - [`error`]: the OpenAI-shaped [`ErrorResponse`] every rejection is built with, and the
//!   transport [`UpstreamError`](error::UpstreamError).
//! - [`body`]: the request [`Body`], the rejection-or-inner [`ResponseBody`], [`BoxBody`].
//! - [`report`]: what an answer's body tells the layers above as it ends: the token usage
//!   and cost ([`UsageReport`]), an early end ([`EndingReport`]).
//! - [`endpoint`]: [`ConnectionEndpoint`](endpoint::ConnectionEndpoint), what the model
//!   catalog may fetch through.
//! - [`routing`]: the [`ModelRoutes`](routing::ModelRoutes) interface the select layer routes
//!   with, implemented by the models layer's catalog.

pub mod body;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod extensions;
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
