//! A Chat Completions answer as a Messages answer.

use serde_json::{Map, Value, json};

/// Anthropic's `stop_reason` for a Chat Completions `finish_reason`: `length` →
/// `max_tokens`, `tool_calls` (or the old `function_call`) → `tool_use`, anything else →
/// `end_turn`.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        _ => "end_turn",
    }
}

/// A message id for an upstream answer id: kept when it is already a `msg_` id, else
/// prefixed with `msg_`.
pub(crate) fn message_id(upstream: Option<&str>) -> String {
    match upstream {
        Some(id) if id.starts_with("msg_") => id.to_owned(),
        Some(id) if !id.is_empty() => format!("msg_{id}"),
        _ => format!("msg_{}", random_hex()),
    }
}

/// 24 hexadecimal digits that differ from one call to the next (ids the upstream did not
/// give; not secrets).
pub(crate) fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let high = hasher.finish();
    hasher.write_u64(high);
    format!("{:016x}{:08x}", high, hasher.finish() as u32)
}

/// A Messages `usage` for a Chat Completions `usage`: `input_tokens` the prompt tokens not
/// read from the cache, `cache_read_input_tokens` those read from it (when any),
/// `output_tokens` the completion tokens.
pub(crate) fn usage_of(usage: Option<&Value>, input_estimate: u64) -> Value {
    let count = |key: &str| usage.and_then(|u| u.get(key)).and_then(Value::as_u64);
    let Some(prompt) = count("prompt_tokens").or_else(|| count("input_tokens")) else {
        return json!({"input_tokens": input_estimate, "output_tokens": count("completion_tokens").unwrap_or(0)});
    };
    let cached = usage
        .and_then(|u| u.pointer("/prompt_tokens_details/cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(prompt);
    let output = count("completion_tokens")
        .or_else(|| count("output_tokens"))
        .unwrap_or(0);
    let mut out = json!({"input_tokens": prompt - cached, "output_tokens": output});
    if cached > 0 {
        out["cache_read_input_tokens"] = json!(cached);
    }
    out
}

/// The reasoning text of a Chat Completions message or delta (`reasoning_content`, or
/// `reasoning` as some servers name it).
pub(crate) fn reasoning_of(message: &Value) -> Option<&str> {
    message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .or_else(|| message.get("reasoning").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

/// The `input` of a tool call's JSON `arguments`: the object they hold, `{}` for none. Text
/// that is not a JSON object is kept under `arguments` rather than lost.
pub(crate) fn input_of(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => json!({"arguments": arguments}),
    }
}

/// The Messages answer for a Chat Completions answer `chat`: `id` (`msg_…`), `model`, content
/// in order — a `thinking` block from `reasoning_content`, a `text` block, then a
/// `tool_use` block per tool call (its id kept, `input` parsed from the arguments) —
/// `stop_reason` from the `finish_reason`, `stop_sequence: null`, and the usage
/// (`input_estimate` stands for the input tokens when the upstream reported none).
pub fn chat_to_message(chat: &Value, input_estimate: u64) -> Value {
    let choice = chat.pointer("/choices/0");
    let message = choice.and_then(|c| c.get("message"));
    let mut content = Vec::new();
    if let Some(thinking) = message.and_then(reasoning_of) {
        content.push(json!({"type": "thinking", "thinking": thinking, "signature": ""}));
    }
    let text = match message.and_then(|m| m.get("content")) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => message
            .and_then(|m| m.get("refusal"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    };
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    let calls = message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(|| format!("toolu_{}", random_hex()), str::to_owned);
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let input = match call.pointer("/function/arguments") {
            Some(Value::String(s)) => input_of(s),
            Some(Value::Object(map)) => Value::Object(map.clone()),
            _ => json!({}),
        };
        content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str);
    let mut answer = Map::new();
    answer.insert(
        "id".into(),
        json!(message_id(chat.get("id").and_then(Value::as_str))),
    );
    answer.insert("type".into(), json!("message"));
    answer.insert("role".into(), json!("assistant"));
    answer.insert(
        "model".into(),
        chat.get("model").cloned().unwrap_or_else(|| json!("")),
    );
    answer.insert("content".into(), Value::Array(content));
    answer.insert("stop_reason".into(), json!(stop_reason(finish)));
    answer.insert("stop_sequence".into(), Value::Null);
    answer.insert("usage".into(), usage_of(chat.get("usage"), input_estimate));
    Value::Object(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_with_reasoning_text_and_two_tool_calls() {
        let chat = json!({
            "id": "chatcmpl-1", "model": "m-1",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Checking.", "reasoning_content": "think",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}}]}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 8}}
        });
        assert_eq!(
            chat_to_message(&chat, 99),
            json!({
                "id": "msg_chatcmpl-1", "type": "message", "role": "assistant", "model": "m-1",
                "content": [
                    {"type": "thinking", "thinking": "think", "signature": ""},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_a", "name": "f", "input": {"x": 1}},
                    {"type": "tool_use", "id": "call_b", "name": "g", "input": {}}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 7, "cache_read_input_tokens": 8}
            })
        );
    }

    #[test]
    fn stop_reasons_usage_estimates_and_odd_arguments() {
        assert_eq!(stop_reason(Some("stop")), "end_turn");
        assert_eq!(stop_reason(Some("length")), "max_tokens");
        assert_eq!(stop_reason(Some("content_filter")), "end_turn");
        assert_eq!(stop_reason(None), "end_turn");
        let chat = json!({"choices": [{"finish_reason": "length", "message": {"content": "a"}}]});
        let m = chat_to_message(&chat, 5);
        assert_eq!(m["usage"], json!({"input_tokens": 5, "output_tokens": 0}));
        assert!(m["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(input_of("[1]"), json!({"arguments": "[1]"}));
        assert_ne!(random_hex(), random_hex());
        assert_eq!(random_hex().len(), 24);
    }
}
