//! Following an upstream's redirects, when the operator allows it
//! (`AIOHTTP_CLIENT_ALLOW_REDIRECTS=true`): a bounded number of hops, and credentials never
//! carried to another origin.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Uri, header};
use tower_http::follow_redirect::policy::{Action, Attempt, Policy};
use tower_openai_core::Body;

/// The caller's headers a hop to another origin still carries: the request's content and
/// tracing, never credentials, user information or a connection's custom headers.
const KEPT_ACROSS_ORIGINS: [&str; 8] = [
    "content-type",
    "content-length",
    "accept",
    "user-agent",
    "idempotency-key",
    "traceparent",
    "tracestate",
    "x-request-id",
];

/// At most `left` more hops; the request's own origin remembered at the first request, and
/// every header but [`KEPT_ACROSS_ORIGINS`] dropped on a hop to another.
#[derive(Clone, Debug)]
pub(crate) struct Hops {
    left: usize,
    origin: Option<(Option<String>, Option<String>)>,
    /// The request's bytes, sent again on a 307/308 (a streamed body is not: its redirect is
    /// answered as it is).
    body: Option<Bytes>,
}

impl Hops {
    pub(crate) fn new(max: usize, body: Option<Bytes>) -> Self {
        Self {
            left: max,
            origin: None,
            body,
        }
    }
}

fn origin_of(uri: &Uri) -> (Option<String>, Option<String>) {
    (
        uri.scheme_str().map(str::to_ascii_lowercase),
        uri.authority().map(|a| a.as_str().to_ascii_lowercase()),
    )
}

fn keep_only_safe(headers: &mut HeaderMap) {
    let names: Vec<header::HeaderName> = headers
        .keys()
        .filter(|n| !KEPT_ACROSS_ORIGINS.contains(&n.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

impl<E> Policy<Body, E> for Hops {
    fn redirect(&mut self, _attempt: &Attempt<'_>) -> Result<Action, E> {
        if self.left == 0 {
            return Ok(Action::Stop);
        }
        self.left -= 1;
        Ok(Action::Follow)
    }

    fn on_request(&mut self, request: &mut Request<Body>) {
        let here = origin_of(request.uri());
        match &self.origin {
            None => self.origin = Some(here),
            Some(origin) if *origin != here => keep_only_safe(request.headers_mut()),
            Some(_) => {}
        }
        // The `Host` the service set is the first upstream's.
        if let Some(host) = request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            request.headers_mut().insert(header::HOST, host);
        }
    }

    fn clone_body(&self, _body: &Body) -> Option<Body> {
        self.body.clone().map(Body::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hop_to_another_origin_carries_no_credentials() {
        let mut hops = Hops::new(1, None);
        let mut first = Request::post("https://up.example/v1/chat/completions")
            .header("authorization", "Bearer sk")
            .header("x-api-key", "sk")
            .header("x-custom-secret", "s")
            .header("content-type", "application/json")
            .header("host", "up.example")
            .body(Body::default())
            .unwrap();
        Policy::<Body, ()>::on_request(&mut hops, &mut first);
        assert_eq!(first.headers()["authorization"], "Bearer sk");
        let mut same = first.clone_for_test("https://up.example/v2/chat/completions");
        Policy::<Body, ()>::on_request(&mut hops, &mut same);
        assert_eq!(same.headers()["authorization"], "Bearer sk");
        for elsewhere in [
            "https://other.example/v1",
            "http://up.example/v1",
            "https://up.example:8443/v1",
        ] {
            let mut hop = first.clone_for_test(elsewhere);
            Policy::<Body, ()>::on_request(&mut hops, &mut hop);
            let names: Vec<&str> = hop.headers().keys().map(|n| n.as_str()).collect();
            assert_eq!(names.len(), 2, "{elsewhere}: {names:?}");
            assert!(names.contains(&"content-type") && names.contains(&"host"));
            assert_eq!(
                hop.headers()["host"],
                hop.uri().authority().unwrap().as_str()
            );
        }
    }

    trait CloneForTest {
        fn clone_for_test(&self, uri: &str) -> Request<Body>;
    }

    impl CloneForTest for Request<Body> {
        fn clone_for_test(&self, uri: &str) -> Request<Body> {
            let mut req = Request::new(Body::default());
            *req.uri_mut() = uri.parse().unwrap();
            *req.headers_mut() = self.headers().clone();
            req
        }
    }
}
