//! A Chat Completions request as a Responses request.

use serde_json::{Map, Value, json};

pub use tower_openai_util::body::ConvertError;

/// Members a Responses request takes as they are.
const KEPT: &[&str] = &[
    "model",
    "stream",
    "temperature",
    "top_p",
    "user",
    "metadata",
    "store",
    "parallel_tool_calls",
    "service_tier",
    "truncation",
    "previous_response_id",
    "top_logprobs",
];

/// The Responses request for a Chat Completions request `chat` (an object):
///
/// - `system` messages → `instructions` (joined by a blank line); other messages → `input`
///   items: text and image parts as `input_text`/`input_image` (`output_text` for the
///   assistant), an assistant's `tool_calls` → `function_call` items (after its text), a
///   `tool` message → a `function_call_output` item;
/// - `max_tokens`/`max_completion_tokens` → `max_output_tokens`; `reasoning_effort` →
///   `reasoning.effort`; `response_format` → `text.format`; tools flattened to
///   `{type, name, description, parameters, strict}`; `tool_choice` naming a function
///   flattened the same way;
/// - `stream_options`, `logit_bias`, `frequency_penalty`, `presence_penalty`, `stop`, `n`
///   (1 only), `seed`, `logprobs` and anything else Responses does not take are dropped.
pub fn chat_to_responses(chat: &Map<String, Value>) -> Result<Map<String, Value>, ConvertError> {
    let mut out = Map::new();
    for key in KEPT {
        if let Some(v) = chat.get(*key) {
            out.insert((*key).to_owned(), v.clone());
        }
    }
    if let Some(n) = chat.get("n")
        && !(n.is_null() || n == &json!(1))
    {
        return Err(ConvertError::new(
            "n",
            "must be 1 on this model's connection",
        ));
    }
    let messages = match chat.get("messages") {
        Some(Value::Array(m)) => m,
        _ => return Err(ConvertError::new("messages", "must be an array")),
    };
    let mut instructions = Vec::new();
    let mut input = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let at = |what: &str| format!("messages[{i}]{what}");
        let Some(message) = message.as_object() else {
            return Err(ConvertError::new(at(""), "must be an object"));
        };
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        match role {
            "system" => instructions.push(text_of(message.get("content"), &at(".content"))?),
            "user" | "developer" => input.push(json!({
                "role": role,
                "content": content(message.get("content"), "input_text", &at(".content"))?,
            })),
            "assistant" => {
                let has_text = message
                    .get("content")
                    .is_some_and(|c| !c.is_null() && c != &json!("") && c != &json!([]));
                if has_text {
                    input.push(json!({
                        "role": "assistant",
                        "content": content(message.get("content"), "output_text", &at(".content"))?,
                    }));
                }
                if let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) {
                    let Some(calls) = calls.as_array() else {
                        return Err(ConvertError::new(at(".tool_calls"), "must be an array"));
                    };
                    for (j, call) in calls.iter().enumerate() {
                        let field = |name: &str| {
                            call.pointer(name).and_then(Value::as_str).ok_or_else(|| {
                                ConvertError::new(
                                    at(&format!(".tool_calls[{j}]{}", name.replace('/', "."))),
                                    "must be a string",
                                )
                            })
                        };
                        input.push(json!({
                            "type": "function_call",
                            "call_id": field("/id")?,
                            "name": field("/function/name")?,
                            "arguments": field("/function/arguments")?,
                        }));
                    }
                }
            }
            "tool" => {
                let call_id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ConvertError::new(at(".tool_call_id"), "must be a string"))?;
                input.push(json!({
                    "type": "function_call_output",
                    "call_id": call_id,
                    "output": text_of(message.get("content"), &at(".content"))?,
                }));
            }
            _ => {
                return Err(ConvertError::new(
                    at(".role"),
                    "must be system, developer, user, assistant or tool",
                ));
            }
        }
    }
    if !instructions.is_empty() {
        out.insert("instructions".into(), instructions.join("\n\n").into());
    }
    out.insert("input".into(), input.into());
    if let Some(max) = chat
        .get("max_completion_tokens")
        .or_else(|| chat.get("max_tokens"))
        .filter(|v| !v.is_null())
    {
        out.insert("max_output_tokens".into(), max.clone());
    }
    if let Some(effort) = chat.get("reasoning_effort").filter(|v| !v.is_null()) {
        out.insert("reasoning".into(), json!({ "effort": effort }));
    }
    if let Some(format) = chat.get("response_format").filter(|v| !v.is_null()) {
        out.insert("text".into(), json!({ "format": text_format(format)? }));
    }
    if let Some(tools) = chat.get("tools").filter(|v| !v.is_null()) {
        let Some(tools) = tools.as_array() else {
            return Err(ConvertError::new("tools", "must be an array"));
        };
        let flat: Result<Vec<Value>, ConvertError> = tools
            .iter()
            .enumerate()
            .map(|(i, t)| flat_tool(t, &format!("tools[{i}]")))
            .collect();
        out.insert("tools".into(), flat?.into());
    }
    if let Some(choice) = chat.get("tool_choice").filter(|v| !v.is_null()) {
        let choice = match choice.pointer("/function/name") {
            Some(name) => json!({ "type": "function", "name": name }),
            None => choice.clone(),
        };
        out.insert("tool_choice".into(), choice);
    }
    Ok(out)
}

/// A message's content as text: a string, or its text parts joined.
fn text_of(content: Option<&Value>, at: &str) -> Result<String, ConvertError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("")),
        Some(_) => Err(ConvertError::new(
            at,
            "must be a string or an array of parts",
        )),
    }
}

/// A message's content as Responses content: a string stays a string; parts become
/// `{text_type}` and `input_image` parts.
fn content(content: Option<&Value>, text_type: &str, at: &str) -> Result<Value, ConvertError> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(Value::String(String::new())),
        Some(Value::String(s)) => return Ok(Value::String(s.clone())),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(ConvertError::new(
                at,
                "must be a string or an array of parts",
            ));
        }
    };
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let at = format!("{at}[{i}]");
            match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({
                    "type": text_type,
                    "text": part.get("text").and_then(Value::as_str).unwrap_or(""),
                })),
                Some("image_url") => {
                    let (url, detail) = match part.get("image_url") {
                        Some(Value::String(url)) => (url.as_str(), None),
                        Some(image) => (
                            image.get("url").and_then(Value::as_str).unwrap_or(""),
                            image.get("detail"),
                        ),
                        None => ("", None),
                    };
                    let mut out = json!({ "type": "input_image", "image_url": url });
                    if let Some(detail) = detail {
                        out["detail"] = detail.clone();
                    }
                    Ok(out)
                }
                _ => Err(ConvertError::new(
                    at,
                    "is a part this model's connection does not take (text and image_url only)",
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// A chat tool (`{type: "function", function: {name, description, parameters, strict}}`) as a
/// Responses tool (`{type, name, description, parameters, strict}`).
fn flat_tool(tool: &Value, at: &str) -> Result<Value, ConvertError> {
    let Some(function) = tool.get("function") else {
        // Not a function tool: Responses' own tools (`web_search`, …) pass as they are.
        return Ok(tool.clone());
    };
    let mut out = Map::new();
    out.insert("type".into(), "function".into());
    match function.get("name") {
        Some(Value::String(name)) => {
            out.insert("name".into(), name.clone().into());
        }
        _ => {
            return Err(ConvertError::new(
                format!("{at}.function.name"),
                "must be a string",
            ));
        }
    }
    for key in ["description", "parameters", "strict"] {
        if let Some(v) = function.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

/// `response_format` as `text.format`: `json_schema`'s members come up one level.
fn text_format(format: &Value) -> Result<Value, ConvertError> {
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => {
            let mut out = Map::new();
            out.insert("type".into(), "json_schema".into());
            if let Some(Value::Object(schema)) = format.get("json_schema") {
                for (k, v) in schema {
                    out.insert(k.clone(), v.clone());
                }
            }
            Ok(Value::Object(out))
        }
        Some(kind @ ("text" | "json_object")) => Ok(json!({ "type": kind })),
        _ => Err(ConvertError::new(
            "response_format.type",
            "must be text, json_object or json_schema",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::chat_to_responses;

    #[test]
    fn a_conversation_with_tools_becomes_instructions_and_input_items() {
        let chat = json!({
            "model": "gpt-x",
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 100,
            "temperature": 0.2,
            "logit_bias": {"1": 2},
            "frequency_penalty": 0.1,
            "presence_penalty": 0.1,
            "stop": ["x"],
            "seed": 7,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
                {"role": "assistant", "content": "A cat."}
            ],
            "tools": [{"type": "function", "function": {"name": "look", "description": "d", "parameters": {"type": "object"}, "strict": true}}],
            "tool_choice": {"type": "function", "function": {"name": "look"}}
        });
        let out = chat_to_responses(chat.as_object().unwrap()).unwrap();
        assert_eq!(
            serde_json::Value::Object(out),
            json!({
                "model": "gpt-x",
                "stream": true,
                "temperature": 0.2,
                "instructions": "Be brief.",
                "input": [
                    {"role": "user", "content": [
                        {"type": "input_text", "text": "What is in"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"}
                    ]},
                    {"type": "function_call", "call_id": "call_1", "name": "look", "arguments": "{\"x\":1}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
                    {"role": "assistant", "content": "A cat."}
                ],
                "max_output_tokens": 100,
                "tools": [{"type": "function", "name": "look", "description": "d", "parameters": {"type": "object"}, "strict": true}],
                "tool_choice": {"type": "function", "name": "look"}
            })
        );
    }

    #[test]
    fn bad_members_are_named() {
        let bad = |v: serde_json::Value| {
            chat_to_responses(v.as_object().unwrap())
                .unwrap_err()
                .member
        };
        assert_eq!(bad(json!({"messages": "hi"})), "messages");
        assert_eq!(
            bad(json!({"messages": [{"role": "wizard"}]})),
            "messages[0].role"
        );
        assert_eq!(
            bad(json!({"messages": [{"role": "tool", "content": "x"}]})),
            "messages[0].tool_call_id"
        );
        assert_eq!(bad(json!({"messages": [], "n": 2})), "n");
        assert_eq!(
            bad(json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})),
            "messages[0].content[0]"
        );
        assert_eq!(
            bad(json!({"messages": [], "response_format": {"type": "yaml"}})),
            "response_format.type"
        );
    }
}
