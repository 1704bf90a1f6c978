use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use tower_openai_core::payload::Form;
use tower_openai_core::{
    ApiRoute, Body, BoxError, Payload, RequestTimeout, SelectedConnection, UpstreamHeaders,
};
use tower_openai_time::SleepSlot;
use tower_service::Service;

use crate::client::{ClientOptions, Clients, Relay};
use crate::future::{Pending, ResponseFuture};
use crate::headers::HeaderNotAllowed;
use crate::{NoConnectionSelected, ResponseBody};

/// Sends each request to its selected connection and streams the answer back.
///
/// See the [crate docs](crate).
#[derive(Debug)]
pub struct Upstream {
    clients: Arc<Clients>,
    /// What a response needs from the service (the allowlists, the shutdown signal), in an
    /// `Arc` of this instance's own: a request's future holds a clone, and a count shared by
    /// every connection would bounce between cores.
    relay: Arc<Relay>,
    /// The idle timer each request arms, kept for the next request through this instance.
    /// Not shared by clones: a server makes one per connection.
    sleeps: SleepSlot,
}

impl Clone for Upstream {
    fn clone(&self) -> Self {
        Self {
            clients: self.clients.clone(),
            relay: Arc::new(Relay::clone(&self.relay)),
            sleeps: SleepSlot::new(),
        }
    }
}

impl Default for Upstream {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstream {
    /// An upstream service with the default client options.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configure the client.
    pub fn builder() -> UpstreamBuilder {
        UpstreamBuilder::default()
    }

    /// This service as a plain [`HttpClient`](tower_openai_core::client::HttpClient) for
    /// requests with absolute URIs (token endpoints), sharing its connection pools.
    pub fn http_client(&self) -> tower_openai_core::client::HttpClient {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        tower::util::BoxCloneSyncService::new(ServiceExt::<Request<Body>>::map_response(
            self.clone(),
            |res| res.map(|b| b.boxed_unsync()),
        ))
    }
}

/// Builds an [`Upstream`].
#[derive(Clone, Debug, Default)]
pub struct UpstreamBuilder {
    options: ClientOptions,
}

impl UpstreamBuilder {
    /// How long a TCP connect may take (default 10 s). A refused or unreachable connection
    /// is answered with 502.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// Trust these certificate authorities too (besides the bundled web roots) when
    /// verifying upstream certificates: a company CA, a self-signed upstream
    /// (`AIOHTTP_CLIENT_SSL_CERT_FILE`). Certificates that do not parse are ignored.
    pub fn extra_roots(
        mut self,
        roots: impl IntoIterator<Item = rustls::pki_types::CertificateDer<'static>>,
    ) -> Self {
        self.options.extra_roots.extend(roots);
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.options.pool_idle_timeout = timeout;
        self
    }

    /// The most idle connections kept per upstream host (default unbounded).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.options.pool_max_idle_per_host = max;
        self
    }

    /// TCP keep-alive probes on upstream connections (default 60 s; `None` turns them off).
    pub fn tcp_keepalive(mut self, interval: Option<Duration>) -> Self {
        self.options.tcp_keepalive = interval;
        self
    }

    /// Resolve `host` to `ip` instead of asking DNS (like curl's `--resolve`); the port still
    /// comes from the URL. For pinning an upstream to an address, and for tests that stand a
    /// local mock in for a public host.
    pub fn resolve(mut self, host: impl Into<String>, ip: std::net::IpAddr) -> Self {
        self.options.resolve.insert(host.into(), ip);
        self
    }

    /// Send upstream requests through the proxies the environment names, as curl does:
    /// `HTTPS_PROXY` for HTTPS upstreams (a `CONNECT` tunnel), `HTTP_PROXY` for plain-HTTP
    /// ones (requests in absolute form), `ALL_PROXY` for both, and none for the hosts in
    /// `NO_PROXY`. Lower-case names count too. Credentials in a proxy URL
    /// (`http://user:pass@proxy:3128`) are sent as `Proxy-Authorization`. Proxies are
    /// reached over plain HTTP.
    ///
    /// `lookup` reads a variable (`|name| std::env::var(name).ok()` for the process
    /// environment). Without this call no proxy is used.
    pub fn proxies_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        self.options.proxies = crate::proxy::Proxies::from_lookup(&lookup);
        self
    }

    /// Forward these caller headers too, besides `content-type`, `accept`, `user-agent`,
    /// `openai-beta`, `idempotency-key`, `x-stainless-*`, `traceparent`, `tracestate` and
    /// `x-request-id`. Credentials, hop-by-hop headers and `x-openwebui-*` are refused.
    pub fn forward_headers(
        mut self,
        names: impl IntoIterator<Item = http::HeaderName>,
    ) -> Result<Self, HeaderNotAllowed> {
        self.options
            .allowlists
            .add_forward(names.into_iter().collect())?;
        Ok(self)
    }

    /// Show the caller these upstream headers too, besides `content-type`,
    /// `content-length`, `content-encoding`, `retry-after`, `openai-processing-ms`,
    /// `openai-version` and `x-ratelimit-*`. Hop-by-hop headers and `set-cookie` are refused.
    pub fn expose_headers(
        mut self,
        names: impl IntoIterator<Item = http::HeaderName>,
    ) -> Result<Self, HeaderNotAllowed> {
        self.options
            .allowlists
            .add_expose(names.into_iter().collect())?;
        Ok(self)
    }

    /// End event streams with a terminal `gateway_shutting_down` error event when `signal`
    /// is cut (the server's shutdown grace period is over), instead of leaving them cut off
    /// mid-stream.
    pub fn shutdown(mut self, signal: tower_openai_time::ShutdownSignal) -> Self {
        self.options.shutdown = Some(signal);
        self
    }

    /// At most `max` requests in flight to one upstream host (scheme, host and port) at a
    /// time, each holding its place until its answer's body is dropped; the others wait their
    /// turn, within their timeout (`AIOHTTP_POOL_CONNECTIONS_PER_HOST`). Default: no limit.
    pub fn max_in_flight_per_host(mut self, max: usize) -> Self {
        self.options.max_per_host = Some(max.max(1));
        self
    }

    /// Reuse a host's DNS answer for `ttl` when opening new connections
    /// (`AIOHTTP_POOL_DNS_TTL`); failures are never kept. Default (and a zero `ttl`): each
    /// new connection resolves anew.
    pub fn dns_ttl(mut self, ttl: Duration) -> Self {
        self.options.dns_ttl = Some(ttl);
        self
    }

    /// Follow at most `max` redirects of an upstream's (`AIOHTTP_CLIENT_ALLOW_REDIRECTS`):
    /// 301/302 turn a `POST` into a `GET`, 303 too, 307/308 send the same request again; a
    /// hop to another origin (scheme, host or port) carries no credentials, user
    /// information or custom headers — only the content and tracing headers. Default: none
    /// followed, the redirect is the answer.
    pub fn follow_redirects(mut self, max: usize) -> Self {
        self.options.max_redirects = Some(max);
        self
    }

    /// Build the service. Its clients (and their connection pools) are shared by clones.
    pub fn build(self) -> Upstream {
        Upstream {
            clients: Arc::new(Clients::new(&self.options)),
            relay: Arc::new(Relay {
                allowlists: self.options.allowlists.clone(),
                shutdown: self.options.shutdown.clone(),
            }),
            sleeps: SleepSlot::new(),
        }
    }
}

impl Upstream {
    /// Direct mode: a request the gateway makes itself (a token endpoint), sent to its
    /// absolute URI with the verifying client. Only hop-by-hop headers are removed.
    fn direct<B>(&self, mut parts: http::request::Parts, body: B) -> ResponseFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        crate::headers::remove_hop_by_hop(&mut parts.headers);
        if let Some(auth) = self.clients.proxies.authorization(&parts.uri) {
            parts.headers.insert(header::PROXY_AUTHORIZATION, auth);
        }
        let timeout = parts
            .extensions
            .get::<RequestTimeout>()
            .map_or(Some(DIRECT_TIMEOUT), |t| t.0);
        let mut out = Request::new(Body::new(body));
        *out.method_mut() = parts.method;
        *out.uri_mut() = parts.uri;
        *out.headers_mut() = parts.headers;
        ResponseFuture::new(
            Pending::Sent(self.clients.verified.request(out)),
            timeout,
            usize::MAX,
            &self.sleeps,
            None,
        )
    }
}

/// A `Content-Length` value. (`HeaderValue::from(usize)` builds it in a growable buffer and
/// then converts it: two allocations where one will do.)
fn length_value(len: usize) -> HeaderValue {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = len;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&digits[start..]).unwrap_or_else(|_| HeaderValue::from(len))
}

/// The idle timeout of direct requests without a [`RequestTimeout`].
const DIRECT_TIMEOUT: Duration = Duration::from_secs(30);

impl<B> Service<Request<B>> for Upstream
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = ResponseFuture;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pooled client is always ready; connection limits are the pool's business.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let Some(SelectedConnection(connection)) = parts.extensions.remove::<SelectedConnection>()
        else {
            if parts.uri.scheme().is_some() && parts.uri.authority().is_some() {
                return self.direct(parts, body);
            }
            return ResponseFuture::failed(NoConnectionSelected.into());
        };
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let uri = match connection.base().join(path_and_query) {
            Ok(uri) => uri,
            Err(e) => return ResponseFuture::failed(e.into()),
        };

        self.clients.allowlists.filter_request(&mut parts.headers);
        // The connection's own `Host`, made once per settings snapshot (the client would
        // format it on every request).
        parts
            .headers
            .insert(header::HOST, connection.base().host_header().clone());
        // The bytes sent, kept to send again when a 307/308 redirect is followed.
        let mut resend = None;
        let body = match parts.extensions.remove::<Payload>() {
            Some(payload) => {
                let bytes = payload.to_bytes();
                if self.clients.max_redirects.is_some() {
                    resend = Some(bytes.clone());
                }
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, length_value(bytes.len()));
                if !parts.headers.contains_key(header::CONTENT_TYPE) {
                    parts.headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
                Body::from(bytes)
            }
            None => match parts.extensions.remove::<Form>() {
                // The form as the caller sent it (its content type and boundary kept), with
                // the `model` value routing chose.
                Some(form) => {
                    let bytes = form.to_bytes();
                    if self.clients.max_redirects.is_some() {
                        resend = Some(bytes.clone());
                    }
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, length_value(bytes.len()));
                    Body::from(bytes)
                }
                None => Body::new(body),
            },
        };
        if let Some(extra) = parts.extensions.remove::<UpstreamHeaders>() {
            for (name, value) in extra.into_ordered() {
                parts.headers.insert(name, value);
            }
        }
        for name in [
            header::AUTHORIZATION,
            header::HeaderName::from_static("api-key"),
        ] {
            if let Some(v) = parts.headers.get_mut(&name) {
                v.set_sensitive(true);
            }
        }

        if let Some(auth) = self.clients.proxies.authorization(&uri) {
            parts.headers.insert(header::PROXY_AUTHORIZATION, auth);
        }
        let timeout = parts
            .extensions
            .get::<RequestTimeout>()
            .map_or(connection.timeout(), |t| t.0);
        tracing::debug!(
            connection = connection.index(),
            method = %parts.method,
            path = uri.path(),
            "sending upstream"
        );

        let mut out = Request::new(body);
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.headers_mut() = parts.headers;
        let anthropic = parts.extensions.get::<ApiRoute>() == Some(&ApiRoute::Messages);
        let client = if connection.ssl_verify() {
            &self.clients.verified
        } else {
            &self.clients.unverified
        };
        let pending = match (&self.clients.host_limits, self.clients.max_redirects) {
            (None, None) => Pending::Sent(client.request(out)),
            (limits, redirects) => {
                let host = limits.as_ref().map(|l| l.of(out.uri()));
                let client = client.clone();
                Pending::Boxed(Box::pin(async move {
                    let permit = match host {
                        // The semaphore is never closed; a place is always given eventually.
                        Some(host) => host.acquire_owned().await.ok(),
                        None => None,
                    };
                    let answer = match redirects {
                        Some(max) => {
                            let hops = crate::redirect::Hops::new(max, resend);
                            let follow = tower_http::follow_redirect::FollowRedirect::with_policy(
                                client, hops,
                            );
                            tower::ServiceExt::oneshot(follow, out).await
                        }
                        None => client.request(out).await,
                    };
                    (answer, permit)
                }))
            }
        };
        ResponseFuture::new(
            pending,
            timeout,
            connection.index(),
            &self.sleeps,
            Some(self.relay.clone()),
        )
        .anthropic_events(anthropic)
        .reusing(parts.extensions)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn length_values_are_the_decimal_length() {
        for len in [0, 7, 10, 1234, 1 << 20, usize::MAX] {
            assert_eq!(super::length_value(len), len.to_string().as_str());
        }
    }
}
