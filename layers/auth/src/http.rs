//! Requests to token endpoints, over the stack's own HTTP client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use tower_openai_util::body::{ReadError, read_capped};

use serde_json::Value;
use tower::ServiceExt;
use tower_openai_core::client::HttpClient;
use tower_openai_core::{Body, RequestTimeout};

use crate::token::{AccessToken, TokenError};

/// Token endpoints answer within this long, or the fetch fails.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A form-encoded body.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

/// Send `req` and read its JSON answer. `what` names the credential in errors.
pub(crate) async fn exchange(
    client: &HttpClient,
    mut req: Request<Body>,
    what: &str,
) -> Result<Value, TokenError> {
    req.extensions_mut()
        .insert(RequestTimeout(Some(TOKEN_TIMEOUT)));
    let host = req.uri().host().unwrap_or("?").to_owned();
    let res = tokio::time::timeout(TOKEN_TIMEOUT, client.clone().oneshot(req))
        .await
        .map_err(|_| {
            TokenError::new(format!(
                "{what}: {host} did not answer within {} s",
                TOKEN_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| TokenError::new(format!("{what}: cannot reach {host}: {e}")))?;
    let status = res.status();
    let bytes = match read_capped(res.into_body(), 1 << 20).await {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge(_)) => {
            return Err(TokenError::new(format!(
                "{what}: the answer of {host} is too large"
            )));
        }
        Err(ReadError::Body(e)) => {
            return Err(TokenError::new(format!(
                "{what}: reading the answer of {host} failed: {e}"
            )));
        }
    };
    let json: Value = serde_json::from_slice(&bytes).map_err(|_| {
        TokenError::new(format!(
            "{what}: {host} answered {status} with a body that is not JSON"
        ))
    })?;
    if !status.is_success() {
        // OAuth errors carry `error` and `error_description`; neither holds our secrets.
        let code = json.get("error").and_then(Value::as_str).unwrap_or("");
        let description = json
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(TokenError::new(
            format!("{what}: {host} answered {status} {code} {description}")
                .trim_end()
                .to_owned(),
        ));
    }
    Ok(json)
}

/// A POST with a form body.
pub(crate) fn post_form(uri: &str, body: String, what: &str) -> Result<Request<Body>, TokenError> {
    let mut req = Request::new(Body::from(Bytes::from(body)));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri
        .parse()
        .map_err(|_| TokenError::new(format!("{what}: {uri:?} is not a URL")))?;
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    req.headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    Ok(req)
}

fn number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The access token in a token endpoint's answer, with its lifetime from `expires_in`
/// (seconds) or `expires_on` (a Unix time), as Entra ID and managed identity send them.
pub(crate) fn token_from(json: &Value, what: &str) -> Result<AccessToken, TokenError> {
    let token = json
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::new(format!("{what}: the answer has no access_token")))?;
    let lifetime = if let Some(secs) = number(json.get("expires_in")) {
        Duration::from_secs(secs)
    } else if let Some(at) = number(json.get("expires_on")) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Duration::from_secs(at.saturating_sub(now))
    } else {
        // No expiry given: assume an hour, Entra ID's usual lifetime.
        Duration::from_secs(3600)
    };
    Ok(AccessToken::new(token, lifetime))
}
