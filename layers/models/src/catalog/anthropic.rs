//! Anthropic's model list: `GET /models?limit=1000`, paged with `after_id` while `has_more`.

use std::sync::Arc;

use serde_json::{Value, json};
use tower_openai_settings::{Connection, Settings};

use super::Inner;

/// The most pages read from one connection (a million models): an upstream that always says
/// `has_more` cannot hold the refresh forever.
const MAX_PAGES: usize = 1_000;

/// Every model of an Anthropic connection, each as
/// `{id, object: "model", created: 0, owned_by: "anthropic", name: display_name or id}`.
pub(super) async fn models(
    inner: &Inner,
    settings: &Arc<Settings>,
    connection: &Arc<Connection>,
) -> Result<Vec<Value>, String> {
    let mut models = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let uri = match &after {
            None => http::Uri::from_static("/models?limit=1000"),
            Some(id) => format!("/models?limit=1000&after_id={}", encode(id))
                .parse()
                .map_err(|_| "the upstream named a page it cannot be asked for".to_owned())?,
        };
        let page = inner.fetch_json(settings, connection, uri).await?;
        let Some(data) = page.get("data").and_then(Value::as_array) else {
            return Err("the list has no `data` array".to_owned());
        };
        for model in data {
            let Some(id) = model.get("id").and_then(Value::as_str) else {
                continue;
            };
            let name = model
                .get("display_name")
                .and_then(Value::as_str)
                .unwrap_or(id);
            models.push(json!({"id": id, "object": "model", "created": 0,
                "owned_by": "anthropic", "name": name}));
        }
        let last = page.get("last_id").and_then(Value::as_str).or_else(|| {
            data.last()
                .and_then(|m| m.get("id"))
                .and_then(Value::as_str)
        });
        match (page.get("has_more").and_then(Value::as_bool), last) {
            (Some(true), Some(last)) if after.as_deref() != Some(last) => {
                after = Some(last.to_owned());
            }
            _ => return Ok(models),
        }
    }
    Ok(models)
}

/// A query value: unreserved characters as they are, the rest as `%XX`.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
