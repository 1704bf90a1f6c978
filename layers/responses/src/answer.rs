//! A Responses answer as a Chat Completions answer.

use serde_json::{Map, Value, json};

/// The chat `usage` for a Responses `usage`.
pub(crate) fn usage(usage: &Value) -> Value {
    let n = |p: &str| usage.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (n("/input_tokens"), n("/output_tokens"));
    let mut out = json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": usage.get("total_tokens").and_then(Value::as_u64).unwrap_or(input + output),
    });
    if let Some(cached) = usage.pointer("/input_tokens_details/cached_tokens") {
        out["prompt_tokens_details"] = json!({ "cached_tokens": cached });
    }
    if let Some(reasoning) = usage.pointer("/output_tokens_details/reasoning_tokens") {
        out["completion_tokens_details"] = json!({ "reasoning_tokens": reasoning });
    }
    out
}

/// `finish_reason` for a response: `tool_calls` when it called a function, `length` when it
/// stopped at the token limit, `content_filter` when filtered, else `stop`.
pub(crate) fn finish_reason(response: &Value, called: bool) -> &'static str {
    if called {
        return "tool_calls";
    }
    match response
        .pointer("/incomplete_details/reason")
        .and_then(Value::as_str)
    {
        Some("max_output_tokens") => "length",
        Some("content_filter") => "content_filter",
        _ => "stop",
    }
}

/// The `chat.completion` for a Responses `response` object: its text as `content`, its
/// `function_call` items as `tool_calls` (call ids, names and arguments kept), its reasoning
/// summaries as `reasoning_content`, the finish reason and the usage mapped.
pub fn responses_to_chat(response: &Value) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in response
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match part.get("type").and_then(Value::as_str) {
                        Some("output_text") => {
                            text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                        }
                        Some("refusal") => {
                            text.push_str(
                                part.get("refusal").and_then(Value::as_str).unwrap_or(""),
                            );
                        }
                        _ => {}
                    }
                }
            }
            Some("function_call") => {
                let s = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("");
                calls.push(json!({
                    "id": s("call_id"),
                    "type": "function",
                    "function": {"name": s("name"), "arguments": s("arguments")},
                }));
            }
            Some("reasoning") => {
                for part in item
                    .get("summary")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = part.get("text").and_then(Value::as_str) {
                        if !reasoning.is_empty() {
                            reasoning.push_str("\n\n");
                        }
                        reasoning.push_str(t);
                    }
                }
            }
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            text.into()
        },
    );
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), reasoning.into());
    }
    let called = !calls.is_empty();
    if called {
        message.insert("tool_calls".into(), calls.into());
    }
    let mut out = json!({
        "id": response.get("id").cloned().unwrap_or_else(|| "".into()),
        "object": "chat.completion",
        "created": response.get("created_at").cloned().unwrap_or_else(|| 0.into()),
        "model": response.get("model").cloned().unwrap_or_else(|| "".into()),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(response, called),
        }],
    });
    if let Some(u) = response.get("usage").filter(|u| u.is_object()) {
        out["usage"] = usage(u);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::responses_to_chat;

    #[test]
    fn text_tool_calls_reasoning_and_usage_come_back_as_chat() {
        let response = json!({
            "id": "resp_1", "object": "response", "created_at": 1700000000, "model": "gpt-x",
            "status": "completed",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Think."}]},
                {"type": "message", "id": "msg_1", "role": "assistant", "content": [
                    {"type": "output_text", "text": "Let me look.", "annotations": []}
                ]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "look", "arguments": "{\"x\":1}"},
                {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "see", "arguments": "{}"}
            ],
            "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4},
                      "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 17}
        });
        assert_eq!(
            responses_to_chat(&response),
            json!({
                "id": "resp_1", "object": "chat.completion", "created": 1700000000, "model": "gpt-x",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": "Let me look.", "reasoning_content": "Think.",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}},
                        {"id": "call_2", "type": "function", "function": {"name": "see", "arguments": "{}"}}
                    ]
                }}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17,
                          "prompt_tokens_details": {"cached_tokens": 4},
                          "completion_tokens_details": {"reasoning_tokens": 3}}
            })
        );
        let cut = json!({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
                         "output": [{"type": "message", "content": [{"type": "output_text", "text": "Half"}]}]});
        let chat = responses_to_chat(&cut);
        assert_eq!(chat["choices"][0]["finish_reason"], "length");
        assert_eq!(chat["choices"][0]["message"]["content"], "Half");
    }
}
