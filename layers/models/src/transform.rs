//! Open WebUI's model-list rules as pure functions (rule M-2, M-4 … M-8).

use serde_json::{Map, Value, json};
use tower_openai_settings::Connection;

/// M-6: substrings that exclude a model from an `api.openai.com` connection's list.
const OPENAI_EXCLUDED: [&str; 6] = [
    "babbage",
    "dall-e",
    "davinci",
    "embedding",
    "tts",
    "whisper",
];

/// M-4: the model list in an upstream's `/models` body: the body itself when it is an array,
/// else its `data` member when that is an array, else nothing.
pub(crate) fn models_of(body: Value) -> Vec<Value> {
    match body {
        Value::Array(list) => list,
        Value::Object(mut obj) => match obj.remove("data") {
            Some(Value::Array(list)) => list,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// M-2.3: the synthetic entries of a connection with `model_ids` (no network call).
pub(crate) fn static_models(connection: &Connection) -> Vec<Value> {
    let i = connection.index();
    connection
        .config()
        .model_ids
        .iter()
        .map(|id| json!({"id": id, "name": id, "owned_by": "openai", "openai": {"id": id}, "urlIdx": i}))
        .collect()
}

/// M-6: whether a model id is dropped from an `api.openai.com` connection.
pub(crate) fn excluded_on_openai(id: &str) -> bool {
    OPENAI_EXCLUDED.iter().any(|s| id.contains(s))
}

/// A model of the merged list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Enriched {
    /// Its key (id, falling back to name): what callers name and routing looks up.
    pub(crate) key: String,
    /// The merged object (M-8).
    pub(crate) model: Map<String, Value>,
}

/// M-5 then M-6 then M-8 for one raw model of `connection`; `None` when it is dropped (not an
/// object, excluded, or with neither id nor name).
pub(crate) fn enrich(raw: Value, connection: &Connection) -> Option<Enriched> {
    let Value::Object(mut m) = raw else {
        return None;
    };
    let config = connection.config();
    // M-5.1: a null name is removed.
    if m.get("name").is_some_and(Value::is_null) {
        m.remove("name");
    }
    // M-5.2: the prefix goes on the id (from the id, else the name, else ""). Open WebUI
    // leaves the name alone, so a listed name and the id to call disagree (its issue
    // #28929); we prefix the name too, where there is one.
    if let Some(prefix) = &config.prefix_id {
        let base = m
            .get("id")
            .and_then(Value::as_str)
            .or_else(|| m.get("name").and_then(Value::as_str))
            .unwrap_or("")
            .to_owned();
        m.insert("id".to_owned(), Value::String(format!("{prefix}.{base}")));
        if let Some(name) = m.get("name").and_then(Value::as_str).map(str::to_owned) {
            m.insert("name".to_owned(), Value::String(format!("{prefix}.{name}")));
        }
    }
    // M-5.3, M-5.4.
    if !config.tags.is_empty() {
        m.insert("tags".to_owned(), Value::Array(config.tags.clone()));
    }
    m.insert(
        "connection_type".to_owned(),
        Value::String(config.connection_type.clone()),
    );
    // Open WebUI 0.7+.
    if let Some(provider) = &config.provider {
        m.insert("provider".to_owned(), Value::String(provider.clone()));
    }

    // M-7: the key is the id, falling back to the name.
    let key = m
        .get("id")
        .and_then(Value::as_str)
        .or_else(|| m.get("name").and_then(Value::as_str))?
        .to_owned();
    // M-6, on the (possibly prefixed) id.
    if connection.is_openai() {
        let id = m.get("id").and_then(Value::as_str).unwrap_or("");
        if excluded_on_openai(id) {
            return None;
        }
    }

    // M-8: every upstream field, with these set.
    let raw = Value::Object(m.clone());
    let name = m
        .get("name")
        .cloned()
        .unwrap_or_else(|| Value::String(key.clone()));
    m.insert("id".to_owned(), Value::String(key.clone()));
    m.insert("name".to_owned(), name);
    m.insert("owned_by".to_owned(), Value::String("openai".to_owned()));
    m.insert("openai".to_owned(), raw);
    m.insert("urlIdx".to_owned(), json!(connection.index()));
    Some(Enriched { key, model: m })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tower_openai_settings::{Settings, SettingsSource};

    fn connection(url: &str, config: Value) -> Arc<Connection> {
        let settings = SettingsSource {
            base_urls: Some(vec![url.to_owned()]),
            configs: json!({"0": config}).as_object().cloned(),
            ..Default::default()
        }
        .build()
        .unwrap();
        settings.connection(0).unwrap().clone()
    }

    fn plain() -> Arc<Connection> {
        connection("http://local/v1", json!({}))
    }

    #[test]
    fn m4_list_is_the_array_or_the_data_member() {
        assert_eq!(models_of(json!([{"id": "a"}])).len(), 1);
        assert_eq!(
            models_of(json!({"data": [{"id": "a"}, {"id": "b"}]})).len(),
            2
        );
        assert!(models_of(json!({"data": "nope"})).is_empty());
        assert!(models_of(json!({"object": "list"})).is_empty());
        assert!(models_of(json!("text")).is_empty());
    }

    #[test]
    fn m8_shape_of_a_merged_model() {
        let e = enrich(
            json!({"id": "llama3", "owned_by": "meta", "created": 5, "name": null}),
            &plain(),
        )
        .unwrap();
        assert_eq!(e.key, "llama3");
        let m = Value::Object(e.model);
        assert_eq!(m["id"], "llama3");
        assert_eq!(m["name"], "llama3"); // no name: the key
        assert_eq!(m["owned_by"], "openai"); // always overwritten
        assert_eq!(m["created"], 5); // upstream fields kept
        assert_eq!(m["urlIdx"], 0);
        assert_eq!(m["connection_type"], "external");
        assert!(m.get("tags").is_none()); // only when configured
        assert_eq!(
            m["openai"],
            json!({"id": "llama3", "owned_by": "meta", "created": 5, "connection_type": "external"})
        );
    }

    #[test]
    fn m5_prefix_goes_on_id_and_name_and_tags_and_type_are_copied() {
        let c = connection(
            "http://local/v1",
            json!({"prefix_id": "loc", "tags": [{"name": "t"}], "connection_type": "local"}),
        );
        let e = enrich(json!({"id": "llama3", "name": "Llama 3"}), &c).unwrap();
        assert_eq!(e.key, "loc.llama3");
        let m = Value::Object(e.model);
        assert_eq!(m["name"], "loc.Llama 3");
        assert_eq!(m["tags"], json!([{"name": "t"}]));
        assert_eq!(m["connection_type"], "local");
        assert!(m.get("provider").is_none());
        assert_eq!(m["openai"]["id"], "loc.llama3");
        let p = connection("http://local/v1", json!({"provider": "vllm"}));
        let e = enrich(json!({"id": "llama3"}), &p).unwrap();
        assert_eq!(Value::Object(e.model)["provider"], "vllm");
        // No id: the prefixed name becomes the id.
        let e = enrich(json!({"name": "only-name"}), &c).unwrap();
        assert_eq!(e.key, "loc.only-name");
        // Neither: "prefix." (M-5.2 uses "").
        assert_eq!(enrich(json!({"x": 1}), &c).unwrap().key, "loc.");
    }

    #[test]
    fn m7_entries_with_neither_id_nor_name_are_skipped() {
        assert!(enrich(json!({"object": "model"}), &plain()).is_none());
        assert!(enrich(json!("gpt-4o"), &plain()).is_none());
        assert_eq!(enrich(json!({"name": "n"}), &plain()).unwrap().key, "n");
    }

    #[test]
    fn m6_exclusion_applies_only_to_api_openai_com() {
        let openai = connection("https://api.openai.com/v1", json!({}));
        for dropped in [
            "text-embedding-3-small",
            "tts-1-hd",
            "gpt-4o-mini-tts",
            "whisper-1",
            "dall-e-3",
            "davinci-002",
            "babbage-002",
        ] {
            assert!(
                enrich(json!({"id": dropped}), &openai).is_none(),
                "{dropped}"
            );
        }
        for kept in [
            "gpt-4o-transcribe",
            "gpt-image-1",
            "omni-moderation-latest",
            "gpt-4o",
            "TTS-upper",
        ] {
            assert!(enrich(json!({"id": kept}), &openai).is_some(), "{kept}");
        }
        assert!(enrich(json!({"id": "whisper-1"}), &plain()).is_some());
        // Matched on the prefixed id, anywhere in it.
        let prefixed = connection("https://api.openai.com/v1", json!({"prefix_id": "tts"}));
        assert!(enrich(json!({"id": "gpt-4o"}), &prefixed).is_none());
    }

    #[test]
    fn m2_static_model_ids() {
        let c = connection(
            "https://x.openai.azure.com",
            json!({"model_ids": ["dep-a", "dep-b"], "prefix_id": "az"}),
        );
        let list = static_models(&c);
        assert_eq!(
            list[0],
            json!({"id": "dep-a", "name": "dep-a", "owned_by": "openai", "openai": {"id": "dep-a"}, "urlIdx": 0})
        );
        let e = enrich(list[1].clone(), &c).unwrap();
        assert_eq!(e.key, "az.dep-b");
        assert_eq!(Value::Object(e.model)["name"], "az.dep-b");
        let _ = Settings::for_urls(["http://a"]);
    }
}
