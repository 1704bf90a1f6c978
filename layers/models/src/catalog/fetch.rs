//! Sending `GET /models` to one connection, and reading its answer.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, header};
use serde_json::Value;
use tower::ServiceExt;
use tower_openai_core::{Body, BoxBody, BoxError, RequestTimeout, SelectedConnection};
use tower_openai_settings::{Connection, Settings, SettingsSnapshot};
use tower_openai_util::body::ReadError;

use super::health::describe;
use super::{Inner, anthropic};
use crate::transform::models_of;

impl Inner {
    pub(super) async fn fetch_models(
        &self,
        settings: &Arc<Settings>,
        connection: &Arc<Connection>,
    ) -> Result<Response<BoxBody>, BoxError> {
        self.fetch_uri(settings, connection, http::Uri::from_static("/models"))
            .await
    }

    /// Send `GET {uri}` to one connection (a path below its base URL).
    async fn fetch_uri(
        &self,
        settings: &Arc<Settings>,
        connection: &Arc<Connection>,
        uri: http::Uri,
    ) -> Result<Response<BoxBody>, BoxError> {
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = uri;
        let ext = req.extensions_mut();
        ext.insert(SettingsSnapshot(settings.clone()));
        ext.insert(SelectedConnection(connection.clone()));
        ext.insert(RequestTimeout(connection.timeout_model_list()));
        self.fetch.clone().oneshot(req).await
    }

    /// M-3: a usable list, or why not (Anthropic's connections: every page of theirs).
    pub(super) async fn fetch_list(
        &self,
        settings: &Arc<Settings>,
        connection: &Arc<Connection>,
    ) -> Result<Vec<Value>, String> {
        if connection.is_anthropic() {
            return anthropic::models(self, settings, connection).await;
        }
        let uri = http::Uri::from_static("/models");
        Ok(models_of(self.fetch_json(settings, connection, uri).await?))
    }

    /// `GET {uri}` of one connection as JSON, or why not.
    pub(super) async fn fetch_json(
        &self,
        settings: &Arc<Settings>,
        connection: &Arc<Connection>,
        uri: http::Uri,
    ) -> Result<Value, String> {
        let res = self
            .fetch_uri(settings, connection, uri)
            .await
            .map_err(|e| describe(&*e))?;
        let status = res.status();
        if !status.is_success() {
            // The upstream's own reason (a wrong key says so), not just its status.
            let body = read_body(res.into_body(), 64 * 1024)
                .await
                .unwrap_or_default();
            let reason = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .or_else(|| v.get("message"))
                        .or_else(|| v.get("detail"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .or_else(|| {
                    let text = String::from_utf8_lossy(&body).trim().to_owned();
                    (!text.is_empty()).then(|| text.chars().take(300).collect())
                });
            return Err(match reason {
                Some(reason) => format!("the upstream answered {status}: {reason}"),
                None => format!("the upstream answered {status}"),
            });
        }
        let json = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
        if !json {
            return Err("the upstream's answer is not JSON".to_owned());
        }
        let body = read_body(res.into_body(), self.max_list_bytes)
            .await
            .map_err(|e| format!("reading the list failed: {}", describe(&*e)))?;
        serde_json::from_slice(&body).map_err(|e| format!("the list is not valid JSON: {e}"))
    }
}

/// Read a whole body of at most `max` bytes.
pub(crate) async fn read_body(body: BoxBody, max: usize) -> Result<Bytes, BoxError> {
    tower_openai_util::body::read_capped(body, max)
        .await
        .map_err(|e| match e {
            ReadError::Body(e) => e,
            too_large => too_large.into(),
        })
}
