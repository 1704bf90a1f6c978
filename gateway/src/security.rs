//! Who may reach what: the passthrough switch, the header allowlists, CORS, and the `Host`
//! and `Origin` checks of single-user mode (docs/security.md).

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use tower_openai_core::ErrorResponse;
use tower_openai_settings::ConfigError;

/// The security settings, from the environment.
#[derive(Clone, Debug)]
pub struct SecurityConfig {
    /// `ENABLE_OPENAI_API_PASSTHROUGH`: forward paths that are not model routes to
    /// connection 0. Off by default.
    pub passthrough: bool,
    /// `GATEWAY_FORWARD_HEADERS`: caller headers forwarded besides the default allowlist.
    pub forward_headers: Vec<HeaderName>,
    /// `GATEWAY_EXPOSE_HEADERS`: upstream headers shown to callers besides the default
    /// allowlist.
    pub expose_headers: Vec<HeaderName>,
    /// `GATEWAY_CORS_ORIGINS`: the browser origins allowed to call the API.
    pub cors_origins: CorsOrigins,
    /// `GATEWAY_ALLOWED_HOSTS`: names besides loopback a single-user gateway answers to.
    pub allowed_hosts: Vec<String>,
    /// `CUSTOM_API_KEY_HEADER`: the header a caller may send its key in when it sends no
    /// `Authorization` (default `x-api-key`). Marked sensitive, never forwarded.
    pub api_key_header: HeaderName,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            passthrough: false,
            forward_headers: Vec::new(),
            expose_headers: Vec::new(),
            cors_origins: CorsOrigins::None,
            allowed_hosts: Vec::new(),
            api_key_header: tower_openai_identity::DEFAULT_KEY_HEADER,
        }
    }
}

/// The origins of `GATEWAY_CORS_ORIGINS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Unset: no CORS headers, and no `Origin` is allowed where one is checked.
    #[default]
    None,
    /// `*`: every origin.
    Any,
    /// These origins (`https://app.example.com`), compared exactly.
    List(Vec<HeaderValue>),
}

impl CorsOrigins {
    /// Whether a request with this `Origin` value is allowed.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            CorsOrigins::None => false,
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => list.iter().any(|o| o == origin),
        }
    }
}

fn list(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Vec<String> {
    env(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn header_names(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Vec<HeaderName>, ConfigError> {
    list(env, name)
        .into_iter()
        .map(|v| {
            HeaderName::from_bytes(v.to_ascii_lowercase().as_bytes())
                .map_err(|_| ConfigError::new(name, format!("{v:?} is not a header name")))
        })
        .collect()
}

impl SecurityConfig {
    /// Read the variables through `env`. A value that does not parse, or an allowlist that
    /// names a credential or hop-by-hop header, is an error naming the variable.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let passthrough = match env("ENABLE_OPENAI_API_PASSTHROUGH")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    "ENABLE_OPENAI_API_PASSTHROUGH",
                    format!("{other:?} is not true or false"),
                ));
            }
        };
        let forward_headers = header_names(env, "GATEWAY_FORWARD_HEADERS")?;
        let api_key_header =
            match env("CUSTOM_API_KEY_HEADER").map(|v| v.trim().to_ascii_lowercase()) {
                None => tower_openai_identity::DEFAULT_KEY_HEADER,
                Some(v) if v.is_empty() => tower_openai_identity::DEFAULT_KEY_HEADER,
                Some(v) => {
                    let name = HeaderName::from_bytes(v.as_bytes()).map_err(|_| {
                        ConfigError::new(
                            "CUSTOM_API_KEY_HEADER",
                            format!("{v:?} is not a header name"),
                        )
                    })?;
                    // A header that means something else to HTTP or to the gateway cannot carry
                    // a key.
                    if matches!(
                        name.as_str(),
                        "authorization"
                            | "cookie"
                            | "host"
                            | "content-type"
                            | "content-length"
                            | "transfer-encoding"
                            | "connection"
                            | "origin"
                            | "x-request-id"
                    ) || name.as_str().starts_with("x-openwebui-")
                    {
                        return Err(ConfigError::new(
                            "CUSTOM_API_KEY_HEADER",
                            format!("{v:?} already means something else; name a header of its own"),
                        ));
                    }
                    name
                }
            };
        if forward_headers.contains(&api_key_header) {
            return Err(ConfigError::new(
                "GATEWAY_FORWARD_HEADERS",
                format!(
                    "{api_key_header} carries callers' keys (CUSTOM_API_KEY_HEADER) and is never forwarded"
                ),
            ));
        }
        let expose_headers = header_names(env, "GATEWAY_EXPOSE_HEADERS")?;
        // The upstream builder refuses credentials and hop-by-hop names; ask it now, so a
        // bad list stops start-up with the variable's name.
        tower_openai_upstream::Upstream::builder()
            .forward_headers(forward_headers.iter().cloned())
            .map_err(|e| ConfigError::new("GATEWAY_FORWARD_HEADERS", e.to_string()))?
            .expose_headers(expose_headers.iter().cloned())
            .map_err(|e| ConfigError::new("GATEWAY_EXPOSE_HEADERS", e.to_string()))?;
        let origins = list(env, "GATEWAY_CORS_ORIGINS");
        let cors_origins = if origins.is_empty() {
            CorsOrigins::None
        } else if origins.iter().any(|o| o == "*") {
            if origins.len() > 1 {
                return Err(ConfigError::new(
                    "GATEWAY_CORS_ORIGINS",
                    "`*` cannot be combined with other origins",
                ));
            }
            CorsOrigins::Any
        } else {
            CorsOrigins::List(
                origins
                    .iter()
                    .map(|o| {
                        let valid = (o.starts_with("http://") || o.starts_with("https://"))
                            && !o.ends_with('/')
                            && o.parse::<http::Uri>().is_ok_and(|u| {
                                u.authority().is_some()
                                    && u.path_and_query().is_none_or(|p| p == "/")
                            });
                        if !valid {
                            return Err(ConfigError::new(
                                "GATEWAY_CORS_ORIGINS",
                                format!("{o:?} is not an origin like https://app.example.com"),
                            ));
                        }
                        HeaderValue::from_str(o).map_err(|_| {
                            ConfigError::new(
                                "GATEWAY_CORS_ORIGINS",
                                format!("{o:?} is not an origin"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
        let allowed_hosts = list(env, "GATEWAY_ALLOWED_HOSTS")
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        Ok(Self {
            passthrough,
            forward_headers,
            expose_headers,
            cors_origins,
            allowed_hosts,
            api_key_header,
        })
    }

    /// Single-user mode's guard against DNS rebinding and cross-site requests: the request
    /// must name a loopback host (or an allowed one), and any `Origin` must be allowed.
    pub(crate) fn check_single_user<B>(&self, req: &Request<B>) -> Result<(), ErrorResponse> {
        let host = req
            .uri()
            .authority()
            .map(|a| a.host().to_owned())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(host_name)
            });
        let allowed = host.is_some_and(|h| {
            let h = h.to_ascii_lowercase();
            is_loopback(&h) || self.allowed_hosts.contains(&h)
        });
        if !allowed {
            return Err(ErrorResponse::forbidden(
                "This gateway has no users and answers only to loopback host names \
                 (or those in GATEWAY_ALLOWED_HOSTS)",
            )
            .with_code("host_not_allowed"));
        }
        self.check_origin(req.headers())
    }

    /// A request that carries an `Origin` must come from an allowed one.
    pub(crate) fn check_origin(&self, headers: &HeaderMap) -> Result<(), ErrorResponse> {
        match headers.get(header::ORIGIN) {
            Some(origin) if !self.cors_origins.allows(origin) => Err(ErrorResponse::forbidden(
                "Requests from this browser origin are not allowed (GATEWAY_CORS_ORIGINS)",
            )
            .with_code("origin_not_allowed")),
            _ => Ok(()),
        }
    }
}

/// The name part of a `Host` value (`[::1]:8080` → `[::1]`, `localhost:80` → `localhost`).
fn host_name(value: &str) -> String {
    let value = value.trim();
    if value.starts_with('[') {
        return value
            .split_once(']')
            .map_or(value, |(name, _)| &value[..name.len() + 1])
            .to_owned();
    }
    value.split(':').next().unwrap_or("").to_owned()
}

fn is_loopback(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    match bare {
        Some(v6) => v6.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn loopback_names() {
        for h in ["localhost", "127.0.0.1", "127.9.8.7", "[::1]"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "localhost.evil.com",
            "evil.com",
            "0.0.0.0",
            "[::]",
            "10.0.0.1",
            "::1",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("LOCALHOST:80"), "LOCALHOST");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn defaults_are_closed() {
        let c = SecurityConfig::from_env(&env(&[])).unwrap();
        assert!(!c.passthrough);
        assert_eq!(c.cors_origins, CorsOrigins::None);
        assert!(c.forward_headers.is_empty());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (pairs, var) in [
            (
                &[("ENABLE_OPENAI_API_PASSTHROUGH", "yes")][..],
                "ENABLE_OPENAI_API_PASSTHROUGH",
            ),
            (
                &[("GATEWAY_FORWARD_HEADERS", "x-ok, Authorization")][..],
                "GATEWAY_FORWARD_HEADERS",
            ),
            (
                &[("GATEWAY_FORWARD_HEADERS", "transfer-encoding")][..],
                "GATEWAY_FORWARD_HEADERS",
            ),
            (
                &[("GATEWAY_FORWARD_HEADERS", "bad name")][..],
                "GATEWAY_FORWARD_HEADERS",
            ),
            (
                &[("GATEWAY_EXPOSE_HEADERS", "set-cookie")][..],
                "GATEWAY_EXPOSE_HEADERS",
            ),
            (
                &[("GATEWAY_CORS_ORIGINS", "app.example.com")][..],
                "GATEWAY_CORS_ORIGINS",
            ),
            (
                &[("GATEWAY_CORS_ORIGINS", "*,https://a.b")][..],
                "GATEWAY_CORS_ORIGINS",
            ),
        ] {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let lookup = move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let err = SecurityConfig::from_env(&lookup).unwrap_err();
            assert_eq!(err.field(), var);
        }
    }

    #[test]
    fn lists_parse() {
        let c = SecurityConfig::from_env(&env(&[
            ("ENABLE_OPENAI_API_PASSTHROUGH", "True"),
            ("GATEWAY_FORWARD_HEADERS", "X-Custom, openai-organization"),
            (
                "GATEWAY_CORS_ORIGINS",
                "https://app.example.com, http://localhost:3000",
            ),
            ("GATEWAY_ALLOWED_HOSTS", "Gateway.Internal"),
        ]))
        .unwrap();
        assert!(c.passthrough);
        assert_eq!(c.forward_headers.len(), 2);
        assert!(
            c.cors_origins
                .allows(&HeaderValue::from_static("http://localhost:3000"))
        );
        assert!(
            !c.cors_origins
                .allows(&HeaderValue::from_static("https://evil.example"))
        );
        assert_eq!(c.allowed_hosts, ["gateway.internal"]);
    }
}
