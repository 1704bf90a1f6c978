use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};
use tower_openai_core::extensions::{HeaderStep, ReasoningModel, UpstreamHeaders};
use tower_openai_core::payload::Form;
use tower_openai_core::{ApiRoute, ErrorResponse, Payload, ResponseBody, SelectedConnection};
use tower_service::Service;

use crate::AzureOptions;
use crate::layer::AzureLayer;
use crate::rewrite::{api_version, chat_payload, deployment_segment};

/// Rewrites requests for Azure OpenAI connections. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct Azure<S> {
    inner: S,
}

impl<S> Azure<S> {
    /// Wrap `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A layer.
    pub fn layer() -> AzureLayer {
        AzureLayer::new()
    }

    tower_openai_util::define_inner_service_accessors!();
}

/// Whether a connection URL is Azure's v1 API (it contains `/openai/v1`; Open WebUI 0.7+).
pub fn is_azure_v1(url: &str) -> bool {
    url.contains("/openai/v1")
}

/// `query` without any `api-version`, then `api-version=version`.
fn with_version(query: Option<&str>, version: &str) -> String {
    let mut out: Vec<String> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("api-version="))
        .map(str::to_owned)
        .collect();
    let mut pair = String::from("api-version=");
    for b in version.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                pair.push(b as char)
            }
            _ => pair.push_str(&format!("%{b:02X}")),
        }
    }
    out.push(pair);
    out.join("&")
}

pub(crate) fn rewrite<B>(req: &mut Request<B>) -> Result<(), ErrorResponse> {
    let Some(SelectedConnection(connection)) =
        req.extensions().get::<SelectedConnection>().cloned()
    else {
        return Ok(());
    };
    let config = connection.config();
    if !config.azure || is_azure_v1(connection.url()) {
        // Azure's v1 API (`…/openai/v1`) is OpenAI's own shape: `{url}/chat/completions`,
        // the model in the payload, no `api-version`, nothing filtered.
        return Ok(());
    }
    let options: &AzureOptions = connection.options().map_err(|e| {
        ErrorResponse::internal(format!(
            "Upstream connection {} has a config the gateway cannot use: {e}",
            connection.index()
        ))
    })?;
    let version = api_version(options.api_version.as_deref()).to_owned();
    let path = req.uri().path().to_owned();
    let is_chat = ApiRoute::of(req) == Some(ApiRoute::ChatCompletions);
    // The deployment comes from the model the layers above checked: the JSON `model`, or
    // a multipart form's `model` field.
    let model = match req.extensions().get::<Payload>() {
        Some(p) => p.model().ok().flatten().map(str::to_owned),
        None => req.extensions().get::<Form>().map(|f| f.model().to_owned()),
    };
    let new_path = if path.starts_with("/openai/") {
        // Already Azure-shaped (the connection check's `/openai/models`).
        path.clone()
    } else {
        match &model {
            Some(m) => format!("/openai/deployments/{}{path}", deployment_segment(m)?),
            None => format!("/openai{path}"),
        }
    };
    let pq = format!("{new_path}?{}", with_version(req.uri().query(), &version));
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(pq)
            .map_err(|_| ErrorResponse::bad_request("The request path cannot be sent to Azure"))?,
    );
    *req.uri_mut() = Uri::from_parts(parts)
        .map_err(|_| ErrorResponse::bad_request("The request path cannot be sent to Azure"))?;

    if is_chat {
        // The reasoning layer above decides (with its replaceable rule); without it, no
        // deployment is treated as a reasoning model.
        let reasoning = req
            .extensions()
            .get::<ReasoningModel>()
            .is_some_and(|r| r.0);
        if let Some(payload) = req.extensions_mut().get_mut::<Payload>()
            && payload.check().is_ok()
        {
            chat_payload(payload, reasoning, &version).map_err(|e| e.to_response())?;
        }
    }
    // chat and the proxy also send the version as a header.
    if let Ok(v) = HeaderValue::from_str(&version) {
        req.extensions_mut()
            .get_or_insert_default::<UpstreamHeaders>()
            .insert(HeaderStep::Azure, "api-version", v);
    }
    Ok(())
}

impl<S, B, ResBody> Service<Request<B>> for Azure<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match rewrite(&mut req) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(e) => ResponseFuture::rejected(e),
        }
    }
}

tower_openai_util::check_response_future!(
    /// Response future of [`Azure`]: the inner service's, or the layer's own refusal.
);

#[cfg(test)]
mod tests {
    use super::with_version;

    #[test]
    fn the_connections_version_replaces_the_callers() {
        assert_eq!(with_version(None, "2024-10-21"), "api-version=2024-10-21");
        assert_eq!(
            with_version(Some("a=1&api-version=old&b=2"), "v"),
            "a=1&b=2&api-version=v"
        );
        assert_eq!(with_version(Some(""), "x y"), "api-version=x%20y");
    }
}
