//! A plain HTTP client, for the requests layers make themselves (token endpoints).

use http::{Request, Response};
use tower::util::BoxCloneSyncService;

use crate::{Body, BoxBody, BoxError};

/// Sends a request with an absolute URI and returns the response.
///
/// Layers that talk to services of their own (an OAuth token endpoint, Azure's managed
/// identity endpoint) take one of these, so every request goes out through the same pooled
/// client and TLS settings. The upstream crate's `Upstream` is one: a request that carries an
/// absolute URI and no selected connection is sent to that URI.
pub type HttpClient = BoxCloneSyncService<Request<Body>, Response<BoxBody>, BoxError>;
