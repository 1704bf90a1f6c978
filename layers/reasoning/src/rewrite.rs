//! The chat-completions rewrites of rule CC-7 and CC-8, on a [`Payload`].

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tower_openai_core::{ErrorResponse, Payload, PayloadError};

/// CC-8: `logit_bias` as OpenAI's object (unchanged) or Open WebUI's string
/// `"token:bias,token:bias"` (converted to an object, each bias clamped to −100..100).
pub(crate) fn logit_bias(payload: &mut Payload) -> Result<(), ErrorResponse> {
    let Some(value) = payload
        .get::<Value>("logit_bias")
        .map_err(|e| e.to_response())?
    else {
        return Ok(());
    };
    let text = match value {
        Value::Object(_) | Value::Null => return Ok(()),
        Value::String(s) if s.trim().is_empty() => return Ok(()),
        Value::String(s) => s,
        _ => return Err(bad_bias("it is neither an object nor a string")),
    };
    let mut map = Map::new();
    for pair in text.split(',') {
        let (token, bias) = pair
            .split_once(':')
            .filter(|(_, b)| !b.contains(':'))
            .ok_or_else(|| bad_bias(&format!("{pair:?} is not token:bias")))?;
        let bias: i64 = bias
            .trim()
            .parse()
            .map_err(|_| bad_bias(&format!("{:?} is not a whole number", bias.trim())))?;
        map.insert(token.trim().to_owned(), Value::from(bias.clamp(-100, 100)));
    }
    payload.set("logit_bias", &map).map_err(|e| e.to_response())
}

/// Open WebUI 0.7+: `stream_options` is removed unless `stream` is `true` (upstreams refuse
/// it on an unstreamed request).
pub(crate) fn stream_options(payload: &mut Payload) -> Result<(), PayloadError> {
    if payload.contains_key("stream_options")?
        && !matches!(payload.get::<Value>("stream")?, Some(Value::Bool(true)))
    {
        payload.remove("stream_options")?;
    }
    Ok(())
}

/// Open WebUI 0.7+: a `tool` message whose content is a list of parts is sent as the parts'
/// text joined (many chat servers take only a string there). Only a conversation whose raw
/// text names the `tool` role is parsed.
pub(crate) fn tool_messages(payload: &mut Payload) -> Result<(), PayloadError> {
    let Some(raw) = payload.get_raw("messages")? else {
        return Ok(());
    };
    if !raw.contains("\"tool\"") {
        return Ok(());
    }
    let Ok(Value::Array(mut messages)) = serde_json::from_str::<Value>(raw) else {
        return Ok(());
    };
    let mut changed = false;
    for message in &mut messages {
        let Some(object) = message.as_object_mut() else {
            continue;
        };
        if object.get("role").and_then(Value::as_str) != Some("tool") {
            continue;
        }
        if let Some(Value::Array(parts)) = object.get("content") {
            let text: String = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            object.insert("content".into(), Value::String(text));
            changed = true;
        }
    }
    if changed {
        payload.set("messages", &messages)?;
    }
    Ok(())
}

fn bad_bias(why: &str) -> ErrorResponse {
    ErrorResponse::bad_request(format!(
        "Invalid logit_bias: {why}; give an object or a string like \"50256:-100,1234:5\""
    ))
    .with_code("invalid_value")
}

/// CC-7: the rewrite for a reasoning model (`system_role`: what its first `system` message
/// becomes, see [`system_role_for`]) or another model (`None`).
pub(crate) fn tokens_and_roles(
    payload: &mut Payload,
    system_role: Option<&str>,
    upstream_is_openai: bool,
) -> Result<(), PayloadError> {
    if let Some(role) = system_role {
        payload.rename("max_tokens", "max_completion_tokens")?;
        first_system_role(payload, role)?;
    } else if !upstream_is_openai {
        // Older OpenAI-compatible servers know only `max_tokens`.
        payload.rename("max_completion_tokens", "max_tokens")?;
    }
    if payload.contains_key("max_tokens")? && payload.contains_key("max_completion_tokens")? {
        payload.remove("max_tokens")?;
    }
    Ok(())
}

/// The role a reasoning model's first `system` message takes (`model` lower-cased): `user`
/// for `o1-mini` and `o1-preview`, which know no `developer` role, `developer` otherwise.
pub(crate) fn system_role_for(model: &str) -> &'static str {
    let id = model.rsplit_once("openai.").map_or(model, |(_, id)| id);
    if id.starts_with("o1-mini") || id.starts_with("o1-preview") {
        "user"
    } else {
        "developer"
    }
}

/// Change a first `system` message's role, touching nothing else: the other messages are
/// copied as raw JSON, not parsed.
fn first_system_role(payload: &mut Payload, role: &str) -> Result<(), PayloadError> {
    let Some(raw) = payload.get_raw("messages")? else {
        return Ok(());
    };
    let Ok(messages) = serde_json::from_str::<Vec<&RawValue>>(raw) else {
        return Ok(()); // not an array: the upstream will say so
    };
    let Some(first) = messages.first() else {
        return Ok(()); // empty: Open WebUI crashes here; we forward it untouched
    };
    let Ok(mut message) = serde_json::from_str::<Map<String, Value>>(first.get()) else {
        return Ok(());
    };
    if message.get("role").and_then(Value::as_str) != Some("system") {
        return Ok(());
    }
    message.insert("role".to_owned(), Value::String(role.to_owned()));
    let mut out = String::with_capacity(raw.len() + 8);
    out.push('[');
    out.push_str(&Value::Object(message).to_string());
    for m in &messages[1..] {
        out.push(',');
        out.push_str(m.get());
    }
    out.push(']');
    let raw = RawValue::from_string(out).map_err(|e| PayloadError::InvalidField {
        key: "messages".to_owned(),
        message: e.to_string(),
    })?;
    payload.set_raw("messages", raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    fn p(v: Value) -> Payload {
        Payload::new(Bytes::from(v.to_string()))
    }

    fn json_of(p: &Payload) -> Value {
        serde_json::from_slice(&p.to_bytes()).unwrap()
    }

    #[test]
    fn stream_options_go_unless_streaming_and_tool_parts_are_joined() {
        for (body, kept) in [
            (
                json!({"stream": true, "stream_options": {"include_usage": true}}),
                true,
            ),
            (
                json!({"stream": false, "stream_options": {"include_usage": true}}),
                false,
            ),
            (json!({"stream_options": {"include_usage": true}}), false),
            (json!({"stream": "true", "stream_options": {}}), false),
        ] {
            let mut payload = p(body.clone());
            stream_options(&mut payload).unwrap();
            assert_eq!(
                json_of(&payload).get("stream_options").is_some(),
                kept,
                "{body}"
            );
        }
        let mut payload = p(json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}]},
            {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]},
            {"role": "tool", "tool_call_id": "d", "content": "z"}
        ]}));
        tool_messages(&mut payload).unwrap();
        let out = json_of(&payload);
        assert_eq!(out["messages"][1]["content"], "xy");
        assert_eq!(out["messages"][2]["content"], "z");
        // A user's parts are left as they are.
        assert!(out["messages"][0]["content"].is_array());
        // Nothing to do: not even parsed, never changed.
        let mut plain = p(json!({"messages": [{"role": "user", "content": "hi"}]}));
        tool_messages(&mut plain).unwrap();
        assert!(!plain.is_changed());
    }

    #[test]
    fn cc8_logit_bias_string_is_converted_and_clamped() {
        let mut payload = p(json!({"logit_bias": "50256: -150, 1234:+5,tok :200"}));
        logit_bias(&mut payload).unwrap();
        assert_eq!(
            json_of(&payload)["logit_bias"],
            json!({"50256": -100, "1234": 5, "tok": 100})
        );
    }

    #[test]
    fn cc8_logit_bias_object_null_and_empty_are_left_alone() {
        for v in [json!({"1": 2}), Value::Null, json!("")] {
            let src = json!({"logit_bias": v});
            let mut payload = p(src.clone());
            logit_bias(&mut payload).unwrap();
            assert!(!payload.is_changed());
            assert_eq!(json_of(&payload), src);
        }
        let mut absent = p(json!({"model": "m"}));
        logit_bias(&mut absent).unwrap();
        assert!(!absent.is_changed());
    }

    #[test]
    fn cc8_malformed_logit_bias_is_400() {
        for bad in [
            json!("1:2:3"),
            json!("abc"),
            json!("1:x"),
            json!("1:2,"),
            json!(5),
            json!([1]),
        ] {
            let err = logit_bias(&mut p(json!({"logit_bias": bad}))).unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn cc7_reasoning_models_get_max_completion_tokens_and_a_developer_message() {
        let mut payload = p(
            json!({"model": "o3-mini", "max_tokens": 10, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
        );
        tokens_and_roles(&mut payload, Some(system_role_for("o3-mini")), true).unwrap();
        assert_eq!(
            json_of(&payload),
            json!({"model": "o3-mini", "max_completion_tokens": 10, "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn cc7_o1_mini_and_o1_preview_get_a_user_message() {
        for model in ["o1-mini", "o1-preview-2024-09-12", "us.openai.o1-mini"] {
            let mut payload = p(json!({"messages": [{"role": "system", "content": "x"}]}));
            tokens_and_roles(&mut payload, Some(system_role_for(model)), true).unwrap();
            assert_eq!(json_of(&payload)["messages"][0]["role"], "user", "{model}");
        }
    }

    #[test]
    fn cc7_only_a_first_system_message_changes_and_empty_messages_pass() {
        let src = json!({"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}]});
        let mut payload = p(src.clone());
        tokens_and_roles(&mut payload, Some(system_role_for("o3")), true).unwrap();
        assert_eq!(json_of(&payload), src);
        for messages in [json!([]), json!("text"), Value::Null] {
            let mut payload = p(json!({"messages": messages}));
            tokens_and_roles(&mut payload, Some(system_role_for("o3")), true).unwrap();
        }
        let mut none = p(json!({"model": "o3"}));
        tokens_and_roles(&mut none, Some(system_role_for("o3")), true).unwrap();
        assert!(!none.is_changed());
    }

    #[test]
    fn cc7_non_reasoning_models_off_openai_get_max_tokens_and_never_both() {
        let mut payload = p(json!({"max_completion_tokens": 7}));
        tokens_and_roles(&mut payload, None, false).unwrap();
        assert_eq!(json_of(&payload), json!({"max_tokens": 7}));
        // On api.openai.com a non-reasoning model keeps max_completion_tokens.
        let mut payload = p(json!({"max_completion_tokens": 7}));
        tokens_and_roles(&mut payload, None, true).unwrap();
        assert!(!payload.is_changed());
        // Both present: max_tokens goes.
        let mut payload = p(json!({"max_tokens": 1, "max_completion_tokens": 2}));
        tokens_and_roles(&mut payload, None, true).unwrap();
        assert_eq!(json_of(&payload), json!({"max_completion_tokens": 2}));
        let mut payload = p(json!({"max_tokens": 1, "max_completion_tokens": 2}));
        tokens_and_roles(&mut payload, Some(system_role_for("o3")), false).unwrap();
        assert_eq!(json_of(&payload), json!({"max_completion_tokens": 1}));
    }

    #[test]
    fn a_large_conversation_is_copied_not_reparsed() {
        let long = "x".repeat(200_000);
        let mut payload = p(
            json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": long}]}),
        );
        tokens_and_roles(&mut payload, Some(system_role_for("gpt-5")), true).unwrap();
        let out = json_of(&payload);
        assert_eq!(out["messages"][0]["role"], "developer");
        assert_eq!(
            out["messages"][1]["content"].as_str().unwrap().len(),
            200_000
        );
    }
}
