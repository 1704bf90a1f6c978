use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::Value;
use tower_openai_core::{ErrorResponse, ListFilter, ResponseBody};
use tower_openai_settings::{Settings, SettingsSnapshot};
use tower_service::Service;

use crate::catalog::{Catalog, Lookup, read_body};
use crate::future::ResponseFuture;
use crate::layer::ModelsLayer;
use crate::snapshot::Snapshot;
use crate::transform::excluded_on_openai;

/// Answers model-list requests from a [`Catalog`]. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct Models<S> {
    inner: S,
    catalog: Catalog,
}

impl<S> Models<S> {
    /// Wrap `inner`, serving the lists of `catalog`.
    pub fn new(inner: S, catalog: Catalog) -> Self {
        Self { inner, catalog }
    }

    /// A layer serving the lists of `catalog`.
    pub fn layer(catalog: Catalog) -> ModelsLayer {
        ModelsLayer::new(catalog)
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    tower_openai_util::define_inner_service_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for Models<S>
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.method() != Method::GET {
            return ResponseFuture::inner(self.inner.call(req));
        }
        let path = req.uri().path();
        let which = if path == "/models" {
            Which::List
        } else if let Some(rest) = path.strip_prefix("/models/").filter(|r| !r.is_empty()) {
            match rest.parse::<usize>() {
                Ok(index) => Which::Connection(index),
                Err(_) => Which::Model(percent_decode(rest)),
            }
        } else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        let Some(SettingsSnapshot(settings)) = req.extensions().get::<SettingsSnapshot>().cloned()
        else {
            return ResponseFuture::ready(
                ErrorResponse::internal("The models layer needs LoadSettingsLayer above it")
                    .into_response(),
            );
        };
        if !settings.enable() {
            // Open WebUI 0.7+: every model route, the lists included, says so.
            return ResponseFuture::ready(api_disabled());
        }
        let filter = req.extensions().get::<ListFilter>().cloned();
        match which {
            Which::List => match self.catalog.lookup(&settings) {
                Lookup::Ready(s) => ResponseFuture::ready(list(&s, filter.as_ref())),
                Lookup::Pending(f) => {
                    ResponseFuture::boxed(async move { list(&*f.await, filter.as_ref()) })
                }
            },
            Which::Model(id) => match self.catalog.lookup(&settings) {
                Lookup::Ready(s) => ResponseFuture::ready(one(&s, &id, filter.as_ref())),
                Lookup::Pending(f) => {
                    ResponseFuture::boxed(async move { one(&*f.await, &id, filter.as_ref()) })
                }
            },
            Which::Connection(index) => {
                let catalog = self.catalog.clone();
                ResponseFuture::boxed(async move {
                    connection_list(&catalog, &settings, index, filter.as_ref()).await
                })
            }
        }
    }
}

/// 503 `openai_api_disabled` (`ENABLE_OPENAI_API=false`).
fn api_disabled() -> Response<Full<Bytes>> {
    ErrorResponse::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "The OpenAI API is disabled",
    )
    .with_code("openai_api_disabled")
    .into_response()
}

enum Which {
    List,
    Connection(usize),
    Model(String),
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `GET /models`: the merged list, filtered for the caller.
fn list(snapshot: &Snapshot, filter: Option<&ListFilter>) -> Response<Full<Bytes>> {
    json(StatusCode::OK, snapshot.to_json(filter))
}

fn model_not_found(status: StatusCode, id: &str) -> Response<Full<Bytes>> {
    ErrorResponse::new(
        status,
        format!("The model `{id}` does not exist or you do not have access to it."),
    )
    .with_code("model_not_found")
    .into_response()
}

/// `GET /models/{id}`: OpenAI's "retrieve model", from the merged list.
///
/// A caller whose list is filtered gets the same 403 for a model they may not see as for
/// one that does not exist, as on the model routes: the answer does not tell which. An
/// unfiltered caller (an admin) gets 404 for an unknown model.
fn one(snapshot: &Snapshot, id: &str, filter: Option<&ListFilter>) -> Response<Full<Bytes>> {
    match (snapshot.model_json(id), filter) {
        (Some(model), None) => json(StatusCode::OK, model.clone()),
        (Some(model), Some(f)) if f.allows(id) => json(StatusCode::OK, model.clone()),
        (_, Some(_)) => model_not_found(StatusCode::FORBIDDEN, id),
        (None, None) => model_not_found(StatusCode::NOT_FOUND, id),
    }
}

/// `GET /models/{url_idx}` (rule M-11): one connection's own list, undecorated.
async fn connection_list(
    catalog: &Catalog,
    settings: &Arc<Settings>,
    index: usize,
    filter: Option<&ListFilter>,
) -> Response<Full<Bytes>> {
    let Some(connection) = settings.connection(index) else {
        return ErrorResponse::not_found(format!(
            "There is no connection {index}; there are {}",
            settings.connections().len()
        ))
        .with_code("connection_not_found")
        .into_response();
    };
    let prefixed = |id: &str| match &connection.config().prefix_id {
        Some(p) => format!("{p}.{id}"),
        None => id.to_owned(),
    };
    let visible = |id: &str| filter.is_none_or(|f| f.allows(&prefixed(id)));
    if connection.config().azure {
        // Azure lists its deployments from `model_ids`, with no network call: bare strings.
        let data: Vec<&String> = connection
            .config()
            .model_ids
            .iter()
            .filter(|id| visible(id))
            .collect();
        return json(
            StatusCode::OK,
            serde_json::json!({"data": data, "object": "list"}).to_string(),
        );
    }
    let fetched = match connection.timeout_model_list() {
        Some(limit) => {
            match tokio::time::timeout(limit, fetch(catalog, settings, connection)).await {
                Ok(r) => r,
                Err(_) => Err(ErrorResponse::gateway_timeout(format!(
                    "Upstream connection {index} did not answer within {} s",
                    limit.as_secs_f64()
                ))
                .with_code("upstream_timeout")),
            }
        }
        None => fetch(catalog, settings, connection).await,
    };
    let (status, content_type, body) = match fetched {
        Ok(answer) => answer,
        Err(e) => return e.into_response(),
    };
    if !status.is_success() {
        // Upstream errors pass through with their own status and body.
        let mut res = Response::new(Full::new(body));
        *res.status_mut() = status;
        if let Some(ct) = content_type {
            res.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        return res;
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&body) else {
        return ErrorResponse::bad_gateway(format!(
            "Upstream connection {index} sent a model list that is not JSON"
        ))
        .with_code("upstream_error")
        .into_response();
    };
    let openai = connection.is_openai();
    let keep = |m: &Value| {
        let id = m.get("id").and_then(Value::as_str).unwrap_or("");
        !(openai && excluded_on_openai(id)) && visible(id)
    };
    match &mut value {
        Value::Array(list) => list.retain(keep),
        Value::Object(obj) => {
            if let Some(Value::Array(list)) = obj.get_mut("data") {
                list.retain(keep);
            }
        }
        _ => {}
    }
    json(StatusCode::OK, value.to_string())
}

async fn fetch(
    catalog: &Catalog,
    settings: &Arc<Settings>,
    connection: &Arc<tower_openai_settings::Connection>,
) -> Result<(StatusCode, Option<HeaderValue>, Bytes), ErrorResponse> {
    let res = catalog
        .fetch_models(settings, connection)
        .await
        .map_err(|e| ErrorResponse::from_error(&*e))?;
    let status = res.status();
    let content_type = res.headers().get(header::CONTENT_TYPE).cloned();
    let body = read_body(res.into_body(), catalog.max_list_bytes())
        .await
        .map_err(|e| ErrorResponse::from_error(&*e))?;
    Ok((status, content_type, body))
}

/// Decode `%XX` escapes (a model id like `org%2Fmodel`); invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_escapes_in_model_ids_are_decoded() {
        assert_eq!(percent_decode("org%2Fmodel"), "org/model");
        assert_eq!(percent_decode("a%20b%"), "a b%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
