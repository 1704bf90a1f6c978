//! Which headers cross the proxy (SPEC X-4, principle 5).

use http::header::{self, HeaderMap, HeaderName};

/// RFC 9110 §7.6.1 connection-specific headers, plus the non-standard ones proxies strip.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The caller's credentials: never forwarded as they are. An auth layer that forwards them
/// on purpose (`auth_type = session`) puts them in [`UpstreamHeaders`].
///
/// [`UpstreamHeaders`]: tower_openai_core::UpstreamHeaders
const CALLER_CREDENTIALS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::COOKIE,
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-api-key"),
];

/// Remove hop-by-hop headers, including those the `Connection` header names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Headers of the caller's request that must not reach the upstream as they are.
pub(crate) fn scrub_request(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    for name in &CALLER_CREDENTIALS {
        headers.remove(name);
    }
    // The client sets `Host` from the upstream URL.
    headers.remove(header::HOST);
    // Ask for identity: the body is relayed unchanged, SSE frames are not held back by a
    // compressor, and a terminal error event can be appended to a stream.
    headers.remove(header::ACCEPT_ENCODING);
}

/// Headers of the upstream's response that must not reach the caller.
pub(crate) fn scrub_response(headers: &mut HeaderMap, streaming: bool) {
    remove_hop_by_hop(headers);
    // Cookies are scoped to the upstream's domain, not the gateway's.
    headers.remove(header::SET_COOKIE);
    if streaming {
        // The stream may end with an error event the upstream did not send.
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// Whether a response is a server-sent-events stream.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn request_loses_hop_by_hop_credentials_host_and_encoding() {
        let mut h = map(&[
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("authorization", "Bearer caller"),
            ("cookie", "a=b"),
            ("api-key", "k"),
            ("host", "gateway"),
            ("accept-encoding", "gzip"),
            ("content-type", "application/json"),
            ("openai-beta", "assistants=v2"),
            ("user-agent", "sdk"),
        ]);
        scrub_request(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort();
        assert_eq!(left, ["content-type", "openai-beta", "user-agent"]);
    }

    #[test]
    fn response_loses_hop_by_hop_and_cookies_and_stream_length() {
        let mut h = map(&[
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("set-cookie", "s=1"),
            ("content-length", "10"),
            ("content-type", "text/event-stream; charset=utf-8"),
            ("x-request-id", "r"),
        ]);
        assert!(is_event_stream(&h));
        scrub_response(&mut h, true);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort();
        assert_eq!(left, ["content-type", "x-request-id"]);
        let mut plain = map(&[
            ("content-length", "10"),
            ("content-type", "application/json"),
        ]);
        assert!(!is_event_stream(&plain));
        scrub_response(&mut plain, false);
        assert_eq!(plain["content-length"], "10");
    }
}
