//! The endpoint stack: what acts on a selected connection, built in one place.
//!
//! `azure → auth → headers → upstream`: the deployment URL and `api-version` for Azure
//! connections, the connection's credentials, its attribution, user-info and custom headers,
//! and the pooled HTTP client. Chat requests go through it below routing, and the model
//! catalog fetches every connection's `GET /models` through **the same** stack, so model
//! discovery authenticates exactly as requests do. [`Catalog::new`] only takes a
//! [`ConnectionEndpoint`]; a bare [`Upstream`] does not compile there.
//!
//! ```no_run
//! use tower::ServiceBuilder;
//! use tower_openai::ServiceBuilderExt;
//! use tower_openai::acl::StaticRecords;
//! use tower_openai::settings::{Settings, SettingsHandle};
//! use tower_openai::endpoint::Endpoint;
//! use tower_openai::models::Catalog;
//! use tower_openai::upstream::Upstream;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = SettingsHandle::new(Settings::for_urls(["http://127.0.0.1:8000/v1"])?);
//! let endpoint = Endpoint::builder(Upstream::new()).build();
//! let catalog = Catalog::new(endpoint.clone()); // discovery with each connection's key
//! let stack = ServiceBuilder::new()
//!     .rescue()
//!     .policy()
//!     .load_settings(settings)
//!     .collect_payload(64 << 20)
//!     .acl(StaticRecords::default())
//!     .models(catalog.clone())
//!     .select(catalog)
//!     .reasoning()
//!     .service(endpoint); // requests with the same key and headers
//! # let _ = stack;
//! # Ok(())
//! # }
//! ```
//!
//! [`Catalog::new`]: crate::models::Catalog::new
//! [`ConnectionEndpoint`]: crate::core::endpoint::ConnectionEndpoint
//! [`Upstream`]: crate::upstream::Upstream

use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use tower::{Layer, Service};
use tower_openai_auth::{Auth, AuthLayer};
use tower_openai_azure::{Azure, AzureLayer};
use tower_openai_core::BoxError;
use tower_openai_core::endpoint::ConnectionEndpoint;
use tower_openai_headers::{Headers, HeadersConfig, HeadersLayer};
use tower_openai_upstream::Upstream;

type Inner = Azure<Auth<Headers<Upstream>>>;

/// `azure → auth → headers → upstream`, acting on the selected connection. See the
/// [module docs](self). Cloning it is a few reference-count bumps.
#[derive(Clone, Debug)]
pub struct Endpoint {
    inner: Inner,
}

impl Endpoint {
    /// Configure the endpoint stack over `upstream`.
    pub fn builder(upstream: Upstream) -> EndpointBuilder {
        EndpointBuilder {
            upstream,
            auth: AuthLayer::new(),
            headers: HeadersConfig::default(),
        }
    }

    /// The stack inside.
    pub fn get_ref(&self) -> &Azure<Auth<Headers<Upstream>>> {
        &self.inner
    }
}

impl ConnectionEndpoint for Endpoint {}

/// Builds an [`Endpoint`].
#[derive(Debug)]
pub struct EndpointBuilder {
    upstream: Upstream,
    auth: AuthLayer,
    headers: HeadersConfig,
}

impl EndpointBuilder {
    /// The credentials layer (Entra ID tokens, OAuth sessions); default
    /// [`AuthLayer::new`].
    pub fn auth(mut self, auth: AuthLayer) -> Self {
        self.auth = auth;
        self
    }

    /// Attribution, user-info and custom headers; default [`HeadersConfig::default`].
    pub fn headers(mut self, headers: HeadersConfig) -> Self {
        self.headers = headers;
        self
    }

    /// Build the stack.
    pub fn build(self) -> Endpoint {
        let upstream = HeadersLayer::new(self.headers).layer(self.upstream);
        let auth = self.auth.layer(upstream);
        Endpoint {
            inner: AzureLayer::new().layer(auth),
        }
    }
}

impl<B> Service<Request<B>> for Endpoint
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    Inner: Service<Request<B>>,
{
    type Response = <Inner as Service<Request<B>>>::Response;
    type Error = <Inner as Service<Request<B>>>::Error;
    type Future = <Inner as Service<Request<B>>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req)
    }
}
