//! The pooled HTTP client: hyper-util's legacy client over rustls, HTTP/1.1 and HTTP/2.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tower_openai_core::Body;

use crate::proxy::{Proxies, ProxyConnector};
use crate::resolve::Resolver;

pub(crate) type HttpClient = Client<Shared<HttpsConnector<ProxyConnector>>, Body>;

/// A connector behind one `Arc`.
///
/// hyper-util's client clones its connector for every request, whether it connects or
/// reuses a pooled connection. The TLS connector holds several `Arc`s (TLS config, server
/// name resolver, DNS overrides, proxies), and their counts, shared by every worker thread,
/// would be bumped and dropped on every request. Behind one `Arc` that is one count; the
/// connector itself is cloned only when a connection is actually opened.
#[derive(Debug)]
pub(crate) struct Shared<C>(Arc<C>);

impl<C> Clone for Shared<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C> tower::Service<http::Uri> for Shared<C>
where
    C: tower::Service<http::Uri> + Clone + Send + 'static,
    C::Future: Send,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the clone's business, checked in `call`'s future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        // Once per new connection, not per request: cloning and boxing are fine here.
        Box::pin(tower::ServiceExt::oneshot((*self.0).clone(), dst))
    }
}

/// How the upstream client connects (set through `UpstreamBuilder`).
#[derive(Clone, Debug)]
pub(crate) struct ClientOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle_per_host: usize,
    pub(crate) tcp_keepalive: Option<Duration>,
    pub(crate) resolve: HashMap<String, IpAddr>,
    pub(crate) proxies: Proxies,
    pub(crate) allowlists: crate::headers::Allowlists,
    pub(crate) shutdown: Option<tower_openai_time::ShutdownSignal>,
    /// Certificate authorities trusted besides the bundled web roots.
    pub(crate) extra_roots: Vec<CertificateDer<'static>>,
    /// The most requests in flight per upstream host (`None`: no limit).
    pub(crate) max_per_host: Option<usize>,
    /// How long a DNS answer is reused (`None`: resolved anew for each new connection).
    pub(crate) dns_ttl: Option<Duration>,
    /// The most redirects followed (`None`: none; the redirect is the answer).
    pub(crate) max_redirects: Option<usize>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: usize::MAX,
            tcp_keepalive: Some(Duration::from_secs(60)),
            resolve: HashMap::new(),
            proxies: Proxies::default(),
            allowlists: Default::default(),
            shutdown: None,
            extra_roots: Vec::new(),
            max_per_host: None,
            dns_ttl: None,
            max_redirects: None,
        }
    }
}

/// The two clients: one verifying certificates, one not (`AIOHTTP_CLIENT_SESSION_SSL=false`).
/// Both share nothing but their options; each keeps its own connection pool.
#[derive(Clone, Debug)]
pub(crate) struct Clients {
    pub(crate) verified: HttpClient,
    pub(crate) unverified: HttpClient,
    pub(crate) proxies: Proxies,
    pub(crate) allowlists: crate::headers::Allowlists,
    pub(crate) host_limits: Option<Arc<crate::limit::HostLimits>>,
    pub(crate) max_redirects: Option<usize>,
}

/// What relaying an upstream's answer needs.
#[derive(Clone, Debug)]
pub(crate) struct Relay {
    pub(crate) allowlists: crate::headers::Allowlists,
    pub(crate) shutdown: Option<tower_openai_time::ShutdownSignal>,
}

impl Clients {
    pub(crate) fn new(options: &ClientOptions) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verified = if options.extra_roots.is_empty() {
            HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(provider.clone())
                // The ring provider supports the default protocol versions; this cannot fail.
                .unwrap_or_else(|e| panic!("rustls ring provider rejected default versions: {e}"))
                .https_or_http()
                .enable_all_versions()
                .wrap_connector(connector(options))
        } else {
            // The web roots and the operator's own authorities (a CA bundle).
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let (_added, _ignored) = roots.add_parsable_certificates(options.extra_roots.clone());
            let config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap_or_else(|e| panic!("rustls ring provider rejected default versions: {e}"))
                .with_root_certificates(roots)
                .with_no_client_auth();
            HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_all_versions()
                .wrap_connector(connector(options))
        };
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("rustls ring provider rejected default versions: {e}"))
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(NoVerification(
                provider.signature_verification_algorithms,
            )));
        let unverified = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(connector(options));
        Self {
            verified: build(options, verified),
            unverified: build(options, unverified),
            proxies: options.proxies.clone(),
            allowlists: options.allowlists.clone(),
            host_limits: options
                .max_per_host
                .map(|n| Arc::new(crate::limit::HostLimits::new(n))),
            max_redirects: options.max_redirects,
        }
    }
}

fn connector(options: &ClientOptions) -> ProxyConnector {
    ProxyConnector::new(http_connector(options), options.proxies.clone())
}

fn http_connector(options: &ClientOptions) -> HttpConnector<Resolver> {
    let mut http =
        HttpConnector::new_with_resolver(Resolver::new(options.resolve.clone(), options.dns_ttl));
    http.enforce_http(false);
    // Small SSE frames must leave as soon as they are written.
    http.set_nodelay(true);
    http.set_connect_timeout(Some(options.connect_timeout));
    http.set_keepalive(options.tcp_keepalive);
    http
}

fn build(options: &ClientOptions, connector: HttpsConnector<ProxyConnector>) -> HttpClient {
    let connector = Shared(Arc::new(connector));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(options.pool_idle_timeout)
        .pool_max_idle_per_host(options.pool_max_idle_per_host)
        .build(connector)
}

/// Accepts any certificate (signatures are still checked, so the handshake is real).
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
