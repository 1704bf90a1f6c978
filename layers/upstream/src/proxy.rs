//! Outbound proxies: `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY`, read as curl
//! reads them (hyper-util's proxy matcher).
//!
//! - A plain-HTTP upstream behind a proxy: the connection goes to the proxy, and requests are
//!   sent in absolute form (`POST http://host/v1/chat/completions`), with
//!   `Proxy-Authorization` when the proxy URL carries credentials.
//! - An HTTPS upstream behind a proxy: a `CONNECT host:port` tunnel through the proxy, then
//!   TLS to the upstream inside it, so the proxy never sees the traffic.
//! - `NO_PROXY` hosts, loopback hosts (`localhost`, `127.0.0.0/8`, `::1`: a model server on
//!   the same machine), and every host when no proxy is set, are connected to directly.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HeaderValue;
use http::uri::{Scheme, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use pin_project::pin_project;
use tokio::net::TcpStream;
use tower::ServiceExt;
use tower_openai_core::BoxError;
use tower_service::Service;

use crate::resolve::Resolver;

/// Which proxy, if any, serves each destination.
#[derive(Clone, Default)]
pub(crate) struct Proxies(Option<Arc<Matcher>>);

impl std::fmt::Debug for Proxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The matcher's proxy URLs may carry credentials: never print them.
        f.write_str(if self.0.is_some() {
            "Proxies(configured)"
        } else {
            "Proxies(none)"
        })
    }
}

/// Whether `host` is this machine: never sent to a proxy (as Go's `ProxyFromEnvironment`).
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Proxies {
    /// The proxy for `dst`, if it goes through one.
    fn intercept(&self, dst: &Uri) -> Option<hyper_util::client::proxy::matcher::Intercept> {
        let matcher = self.0.as_ref()?;
        if dst.host().is_none_or(is_loopback) {
            return None;
        }
        matcher.intercept(dst)
    }

    /// From the variables curl reads, looked up through `lookup` (upper case first, then
    /// lower case). `None` when none of them is set.
    pub(crate) fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            lookup(name)
                .or_else(|| lookup(&name.to_ascii_lowercase()))
                .filter(|v| !v.trim().is_empty())
        };
        let (all, http, https) = (get("ALL_PROXY"), get("HTTP_PROXY"), get("HTTPS_PROXY"));
        if all.is_none() && http.is_none() && https.is_none() {
            return Self(None);
        }
        let mut builder = Matcher::builder();
        if let Some(v) = all {
            builder = builder.all(v);
        }
        if let Some(v) = http {
            builder = builder.http(v);
        }
        if let Some(v) = https {
            builder = builder.https(v);
        }
        if let Some(v) = get("NO_PROXY") {
            builder = builder.no(v);
        }
        Self(Some(Arc::new(builder.build())))
    }

    /// `Proxy-Authorization` for a plain-HTTP request to `uri` sent through a proxy with
    /// credentials. (A tunnel sends its own on `CONNECT`; the upstream never sees it.)
    pub(crate) fn authorization(&self, uri: &Uri) -> Option<HeaderValue> {
        if uri.scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        let intercept = self.intercept(uri)?;
        let mut value = intercept.basic_auth()?.clone();
        value.set_sensitive(true);
        Some(value)
    }
}

/// The TCP connector under TLS: direct, to an HTTP proxy, or through a `CONNECT` tunnel.
#[derive(Clone, Debug)]
pub(crate) struct ProxyConnector {
    http: HttpConnector<Resolver>,
    proxies: Proxies,
}

impl ProxyConnector {
    pub(crate) fn new(http: HttpConnector<Resolver>, proxies: Proxies) -> Self {
        Self { http, proxies }
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let intercept = self.proxies.intercept(&dst);
        let http = self.http.clone();
        // Once per new pooled connection, not per request: boxing is fine.
        Box::pin(async move {
            let Some(intercept) = intercept else {
                let tcp = http.oneshot(dst).await?;
                return Ok(ProxyStream::new(tcp, false));
            };
            if dst.scheme() == Some(&Scheme::HTTPS) {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), http);
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let tcp = tunnel.oneshot(dst).await.map_err(|e| {
                    let error: BoxError = format!("the proxy did not open a tunnel: {e}").into();
                    error
                })?;
                Ok(ProxyStream::new(tcp, false))
            } else {
                let tcp = http.oneshot(intercept.uri().clone()).await?;
                // Tells the client to send requests in absolute form.
                Ok(ProxyStream::new(tcp, true))
            }
        })
    }
}

/// A connection, direct or to a proxy.
#[pin_project]
#[derive(Debug)]
pub(crate) struct ProxyStream {
    #[pin]
    inner: TokioIo<TcpStream>,
    /// Connected to an HTTP proxy that forwards each request (not a tunnel).
    forwarding: bool,
}

impl ProxyStream {
    fn new(inner: TokioIo<TcpStream>, forwarding: bool) -> Self {
        Self { inner, forwarding }
    }
}

impl Connection for ProxyStream {
    /// No `HttpInfo` (the socket's addresses) as the connection's extra: hyper-util would
    /// insert a copy into every response's extensions, and nothing reads it.
    fn connected(&self) -> Connected {
        Connected::new().proxy(self.forwarding)
    }
}

impl Read for ProxyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl Write for ProxyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn nothing_set_means_no_proxy() {
        let p = Proxies::from_lookup(&env(&[("NO_PROXY", "example.com")]));
        assert!(p.0.is_none());
        assert!(
            p.authorization(&"http://example.com/v1".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn lower_case_names_count_and_no_proxy_wins() {
        let p = Proxies::from_lookup(&env(&[
            ("http_proxy", "http://u:p@127.0.0.1:3128"),
            ("no_proxy", "internal.example"),
        ]));
        let auth = p
            .authorization(&"http://api.example/v1".parse().unwrap())
            .unwrap();
        assert_eq!(auth.to_str().unwrap(), "Basic dTpw");
        assert!(auth.is_sensitive());
        assert!(
            p.authorization(&"http://internal.example/v1".parse().unwrap())
                .is_none()
        );
        // HTTPS goes through a tunnel, which carries its own credentials.
        assert!(
            p.authorization(&"https://api.example/v1".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn loopback_hosts_are_never_proxied() {
        let p = Proxies::from_lookup(&env(&[("ALL_PROXY", "http://u:p@proxy.example:3128")]));
        for url in [
            "http://localhost:8000/v1",
            "http://LOCALHOST/v1",
            "http://vllm.localhost/v1",
            "http://127.0.0.1:11434/v1",
            "http://127.1.2.3/v1",
            "http://[::1]:8000/v1",
        ] {
            let uri: Uri = url.parse().unwrap();
            assert!(p.intercept(&uri).is_none(), "{url}");
            assert!(p.authorization(&uri).is_none(), "{url}");
        }
        let remote: Uri = "http://10.0.0.5/v1".parse().unwrap();
        assert!(p.intercept(&remote).is_some());
    }

    #[test]
    fn debug_never_shows_the_proxy_url() {
        let p = Proxies::from_lookup(&env(&[("HTTPS_PROXY", "http://user:s3cret@proxy:8080")]));
        assert!(!format!("{p:?}").contains("s3cret"));
    }
}
