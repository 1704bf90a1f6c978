//! Which headers cross the proxy (SPEC X-4, principle 5).

use http::header::{self, HeaderMap, HeaderName};

/// RFC 9110 §7.6.1 connection-specific headers, plus the non-standard ones proxies strip, and
/// `Upgrade`.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The caller's headers [`scrub_request`] removes besides the hop-by-hop ones.
const CALLER_ONLY: [HeaderName; 6] = [
    // The caller's credentials: never forwarded as they are. An auth layer that forwards
    // them on purpose (`auth_type = session`) puts them in `UpstreamHeaders`.
    header::AUTHORIZATION,
    header::COOKIE,
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-api-key"),
    // The client sets `Host` from the upstream URL.
    header::HOST,
    // Ask for identity: the body is relayed unchanged, SSE frames are not held back by a
    // compressor, and a terminal error event can be appended to a stream.
    header::ACCEPT_ENCODING,
];

/// Remove each of `names` (at most 32) that `headers` has, with all its values.
///
/// One pass over the map's own few names finds which are there, and only those are
/// removed: a message has a handful of headers, and a lookup for each of `names` on every
/// request would cost more.
fn remove_present(headers: &mut HeaderMap, names: &[HeaderName]) {
    let mut present = 0u32;
    for name in headers.keys() {
        if let Some(i) = names.iter().position(|n| n == name) {
            present |= 1 << i;
        }
    }
    for (i, name) in names.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Remove the headers `Connection` names (before `Connection` itself goes).
fn remove_connection_named(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in &named {
        headers.remove(name);
    }
}

/// Remove hop-by-hop headers, including those the `Connection` header names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    remove_connection_named(headers);
    remove_present(headers, &HOP_BY_HOP);
}

/// Headers of the caller's request that must not reach the upstream as they are: hop-by-hop
/// headers (and those `Connection` names), the caller's credentials, `Host` and
/// `Accept-Encoding`.
pub(crate) fn scrub_request(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    remove_present(headers, &CALLER_ONLY);
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
            const SSE: &str = "text/event-stream";
            // Compared in place: no lower-case copy of every response's content type.
            ct.trim_start()
                .as_bytes()
                .get(..SSE.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(SSE.as_bytes()))
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
    fn every_scrubbed_name_goes_with_all_its_values_and_nothing_else_does() {
        let mut h = HeaderMap::new();
        for name in HOP_BY_HOP.iter().chain(&CALLER_ONLY) {
            h.append(name.clone(), HeaderValue::from_static("1"));
            h.append(name.clone(), HeaderValue::from_static("2"));
        }
        h.insert("x-kept", HeaderValue::from_static("k"));
        scrub_request(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "k");
        // Nothing to remove: nothing changes.
        let mut clean = map(&[("content-type", "application/json"), ("accept", "*/*")]);
        let before = clean.clone();
        scrub_request(&mut clean);
        assert_eq!(clean, before);
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

    #[test]
    fn an_event_stream_is_recognised_whatever_the_case_and_leading_space() {
        for ct in [
            "text/event-stream",
            " Text/Event-Stream;charset=utf-8",
            "TEXT/EVENT-STREAM",
        ] {
            assert!(is_event_stream(&map(&[("content-type", ct)])), "{ct}");
        }
        for ct in ["text/event", "text/plain", ""] {
            assert!(!is_event_stream(&map(&[("content-type", ct)])), "{ct}");
        }
        assert!(!is_event_stream(&HeaderMap::new()));
    }
}
