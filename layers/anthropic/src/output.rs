//! A Messages request's `reasoning_effort` and `output_config` as Chat Completions members.

use serde_json::{Map, Value, json};

use crate::request::ConvertError;

/// `reasoning_effort` (or `output_config.effort`) → `reasoning_effort`;
/// `output_config.format` → `response_format` (Open WebUI 0.11's mapping).
pub(crate) fn output_config(
    messages: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    let config = messages.get("output_config").filter(|c| !c.is_null());
    if let Some(config) = config
        && !config.is_object()
    {
        return Err(ConvertError::new("output_config", "must be an object"));
    }
    let effort = match messages.get("reasoning_effort").filter(|e| !e.is_null()) {
        Some(effort) => Some(("reasoning_effort", effort)),
        None => config
            .and_then(|c| c.get("effort"))
            .filter(|e| !e.is_null())
            .map(|e| ("output_config.effort", e)),
    };
    if let Some((member, effort)) = effort {
        if !effort.is_string() {
            return Err(ConvertError::new(member, "must be a string"));
        }
        out.insert("reasoning_effort".into(), effort.clone());
    }
    let Some(format) = config
        .and_then(|c| c.get("format"))
        .filter(|f| !f.is_null())
    else {
        return Ok(());
    };
    let response_format = match format.get("type").and_then(Value::as_str) {
        Some("json_object") => json!({"type": "json_object"}),
        Some("json_schema") => {
            let Some(schema) = format.get("schema").filter(|s| s.is_object()) else {
                return Err(ConvertError::new(
                    "output_config.format.schema",
                    "must be an object",
                ));
            };
            let mut json_schema = json!({
                "name": format.get("name").and_then(Value::as_str).unwrap_or("response_schema"),
                "schema": schema,
            });
            for key in ["description", "strict"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    json_schema[key] = v.clone();
                }
            }
            json!({"type": "json_schema", "json_schema": json_schema})
        }
        _ => {
            return Err(ConvertError::new(
                "output_config.format.type",
                "must be json_schema or json_object",
            ));
        }
    };
    out.insert("response_format".into(), response_format);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages_to_chat;

    fn convert(v: Value) -> Result<Value, ConvertError> {
        messages_to_chat(v.as_object().unwrap()).map(Value::Object)
    }

    #[test]
    fn effort_and_output_format_become_reasoning_effort_and_response_format() {
        let base = |extra: Value| {
            let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            convert(v)
        };
        let chat = base(json!({"output_config": {"effort": "low", "format": {
            "type": "json_schema", "schema": {"type": "object"}, "strict": true}}}))
        .unwrap();
        assert_eq!(chat["reasoning_effort"], "low");
        assert_eq!(
            chat["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "response_schema", "schema": {"type": "object"}, "strict": true}})
        );
        // A top-level reasoning_effort wins over output_config.effort.
        let chat = base(
            json!({"reasoning_effort": "high", "output_config": {"effort": "low",
            "format": {"type": "json_object"}}}),
        )
        .unwrap();
        assert_eq!(chat["reasoning_effort"], "high");
        assert_eq!(chat["response_format"], json!({"type": "json_object"}));
        let member = |extra: Value| base(extra).unwrap_err().member;
        assert_eq!(member(json!({"output_config": 3})), "output_config");
        assert_eq!(
            member(json!({"output_config": {"effort": 1}})),
            "output_config.effort"
        );
        assert_eq!(
            member(json!({"output_config": {"format": {"type": "xml"}}})),
            "output_config.format.type"
        );
        assert_eq!(
            member(json!({"output_config": {"format": {"type": "json_schema"}}})),
            "output_config.format.schema"
        );
        assert!(base(json!({})).unwrap().get("response_format").is_none());
    }
}
