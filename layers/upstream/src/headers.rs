//! Which headers cross the proxy (Open WebUI rule X-4, made an allowlist).

use http::header::{self, HeaderMap, HeaderName};
use tower_openai_util::body::media_type;

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

/// The caller's headers that reach the upstream, besides the names an operator adds.
/// Everything else a caller sends stays at the gateway: credentials (the connection's own
/// are added by the auth layer), `OpenAI-Organization`/`OpenAI-Project` (they would move
/// the gateway's key to another org), forged user-info headers, `Host`, `Accept-Encoding`
/// (the body is relayed unchanged and a terminal error event can be appended), cookies.
const FORWARD: [HeaderName; 8] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::USER_AGENT,
    HeaderName::from_static("openai-beta"),
    HeaderName::from_static("idempotency-key"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
    HeaderName::from_static("x-request-id"),
];

/// Caller header names forwarded by prefix (the OpenAI SDKs' telemetry).
const FORWARD_PREFIXES: [&str; 1] = ["x-stainless-"];

/// The upstream's headers that reach the caller, besides the names an operator adds.
/// Everything else stays at the gateway: an upstream's own accounting (`x-litellm-key-spend`
/// tells every user the master key's spend), cookies, server banners.
const EXPOSE: [HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::RETRY_AFTER,
    HeaderName::from_static("openai-processing-ms"),
    HeaderName::from_static("openai-version"),
];

/// Upstream header names exposed by prefix.
const EXPOSE_PREFIXES: [&str; 1] = ["x-ratelimit-"];

/// The upstream's `x-request-id`, renamed: the gateway's own request id is `x-request-id`.
pub const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

/// Names no operator may add to the caller allowlist: credentials, hop-by-hop headers, and
/// the user-info headers the gateway itself sets.
fn never_forwarded(name: &HeaderName) -> Option<&'static str> {
    const CREDENTIALS: [&str; 5] = [
        "authorization",
        "cookie",
        "proxy-authorization",
        "api-key",
        "x-api-key",
    ];
    let s = name.as_str();
    if CREDENTIALS.contains(&s) {
        Some("it carries a credential")
    } else if HOP_BY_HOP.contains(name) || s == "host" {
        Some("it is a hop-by-hop header")
    } else if s.starts_with("x-openwebui-") {
        Some("the gateway sets the user-info headers itself")
    } else {
        None
    }
}

/// Why a header name cannot be added to an allowlist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the header {name:?} cannot be forwarded: {why}")]
pub struct HeaderNotAllowed {
    /// The name.
    pub name: String,
    /// Why not.
    pub why: &'static str,
}

/// Which headers cross the proxy, each way: the defaults above plus the operator's names.
#[derive(Clone, Debug, Default)]
pub(crate) struct Allowlists {
    pub(crate) forward: Vec<HeaderName>,
    pub(crate) expose: Vec<HeaderName>,
}

impl Allowlists {
    /// Add caller header names to forward, refusing credentials and hop-by-hop names.
    pub(crate) fn add_forward(&mut self, names: Vec<HeaderName>) -> Result<(), HeaderNotAllowed> {
        for name in &names {
            if let Some(why) = never_forwarded(name) {
                return Err(HeaderNotAllowed {
                    name: name.as_str().to_owned(),
                    why,
                });
            }
        }
        self.forward.extend(names);
        Ok(())
    }

    /// Add upstream header names to expose, refusing hop-by-hop names and cookies.
    pub(crate) fn add_expose(&mut self, names: Vec<HeaderName>) -> Result<(), HeaderNotAllowed> {
        for name in &names {
            if HOP_BY_HOP.contains(name) || *name == header::SET_COOKIE {
                return Err(HeaderNotAllowed {
                    name: name.as_str().to_owned(),
                    why: "it is a hop-by-hop header or a cookie",
                });
            }
        }
        self.expose.extend(names);
        Ok(())
    }

    fn forwards(&self, name: &HeaderName) -> bool {
        FORWARD.contains(name)
            || FORWARD_PREFIXES
                .iter()
                .any(|p| name.as_str().starts_with(p))
            || self.forward.contains(name)
    }

    fn exposes(&self, name: &HeaderName) -> bool {
        EXPOSE.contains(name)
            || EXPOSE_PREFIXES.iter().any(|p| name.as_str().starts_with(p))
            || self.expose.contains(name)
    }

    /// Keep only the caller's headers the upstream may see (those `Connection` names go too).
    pub(crate) fn filter_request(&self, headers: &mut HeaderMap) {
        remove_connection_named(headers);
        remove_unless(headers, |name| self.forwards(name));
    }

    /// Keep only the upstream's headers the caller may see; its `x-request-id` becomes
    /// `x-upstream-request-id`.
    pub(crate) fn filter_response(&self, headers: &mut HeaderMap, streaming: bool) {
        remove_connection_named(headers);
        let upstream_id = headers.remove(header::HeaderName::from_static("x-request-id"));
        remove_unless(headers, |name| self.exposes(name));
        if let Some(id) = upstream_id {
            headers.insert(UPSTREAM_REQUEST_ID, id);
        }
        if streaming {
            // The stream may end with an error event the upstream did not send.
            headers.remove(header::CONTENT_LENGTH);
        }
    }
}

/// Remove every header whose name `keep` refuses, with all its values. A message has a
/// handful of headers; nothing is allocated when all are kept.
fn remove_unless(headers: &mut HeaderMap, keep: impl Fn(&HeaderName) -> bool) {
    // The names to drop, on the stack for the usual handful; past that, in a vector.
    const ON_STACK: usize = 16;
    let mut few: [Option<HeaderName>; ON_STACK] = [const { None }; ON_STACK];
    let mut more = Vec::new();
    for (i, name) in headers.keys().filter(|n| !keep(n)).enumerate() {
        match few.get_mut(i) {
            Some(slot) => *slot = Some(name.clone()),
            None => more.push(name.clone()),
        }
    }
    for name in few.iter().flatten().chain(&more) {
        headers.remove(name);
    }
}

/// Headers of a token endpoint's answer that must not be relayed (direct mode).
pub(crate) fn scrub_response(headers: &mut HeaderMap, streaming: bool) {
    remove_hop_by_hop(headers);
    headers.remove(header::SET_COOKIE);
    if streaming {
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// Whether a response is a server-sent-events stream.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"))
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
    fn only_allowlisted_caller_headers_reach_the_upstream() {
        let mut h = map(&[
            ("connection", "keep-alive, x-stainless-private"),
            ("x-stainless-private", "1"),
            ("x-stainless-lang", "python"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("authorization", "Bearer caller"),
            ("cookie", "a=b"),
            ("api-key", "k"),
            ("host", "gateway"),
            ("accept-encoding", "gzip"),
            ("openai-organization", "org-other"),
            ("openai-project", "proj-other"),
            ("x-openwebui-user-role", "admin"),
            ("x-custom", "c"),
            ("content-type", "application/json"),
            ("openai-beta", "assistants=v2"),
            ("user-agent", "sdk"),
            ("x-request-id", "r1"),
            ("traceparent", "00-abc-def-01"),
        ]);
        let lists = Allowlists::default();
        lists.filter_request(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "content-type",
                "openai-beta",
                "traceparent",
                "user-agent",
                "x-request-id",
                "x-stainless-lang"
            ]
        );
    }

    #[test]
    fn an_operator_may_add_names_but_never_credentials_or_hop_by_hop_ones() {
        let mut lists = Allowlists::default();
        lists
            .add_forward(vec![HeaderName::from_static("x-custom")])
            .unwrap();
        let mut h = map(&[("x-custom", "c"), ("x-other", "o")]);
        lists.filter_request(&mut h);
        assert_eq!(h.len(), 1);
        for name in [
            "authorization",
            "cookie",
            "proxy-authorization",
            "api-key",
            "x-api-key",
            "connection",
            "transfer-encoding",
            "host",
            "x-openwebui-user-id",
        ] {
            let err = Allowlists::default()
                .add_forward(vec![HeaderName::from_static(name)])
                .unwrap_err();
            assert_eq!(err.name, name);
        }
        assert!(
            Allowlists::default()
                .add_expose(vec![header::SET_COOKIE])
                .is_err()
        );
    }

    #[test]
    fn only_allowlisted_upstream_headers_reach_the_caller() {
        let mut h = map(&[
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("set-cookie", "s=1"),
            ("content-length", "10"),
            ("content-type", "text/event-stream; charset=utf-8"),
            ("x-request-id", "upstream-id"),
            ("x-litellm-key-spend", "123.4"),
            ("x-ratelimit-remaining-requests", "9"),
            ("retry-after", "1"),
            ("server", "uvicorn"),
        ]);
        assert!(is_event_stream(&h));
        let mut lists = Allowlists::default();
        lists
            .add_expose(vec![HeaderName::from_static("server")])
            .unwrap();
        lists.filter_response(&mut h, true);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "content-type",
                "retry-after",
                "server",
                "x-ratelimit-remaining-requests",
                "x-upstream-request-id"
            ]
        );
        assert_eq!(h["x-upstream-request-id"], "upstream-id");
        let mut plain = map(&[
            ("content-length", "10"),
            ("content-type", "application/json"),
        ]);
        assert!(!is_event_stream(&plain));
        Allowlists::default().filter_response(&mut plain, false);
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
