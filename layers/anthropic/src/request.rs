//! A Messages request as a Chat Completions request.

use serde_json::{Map, Value, json};

pub use tower_openai_util::body::ConvertError;

/// Members copied as they are.
const KEPT: &[&str] = &["model", "max_tokens", "temperature", "top_p", "stream"];

/// The Chat Completions request for a Messages request `messages` (an object):
///
/// - `system` (a string or text blocks) → a first `system` message;
/// - each message in order: `text` → text parts (one text alone: a string), `image`
///   (`base64` or `url` source) → an `image_url` part, a `text` `document` → a text part;
///   an assistant's `tool_use` blocks → its `tool_calls` (`input` as JSON text), its
///   `thinking` and `redacted_thinking` blocks left out; a user's `tool_result` blocks →
///   `tool` messages before the rest of that turn (`is_error` prefixes `Error: `; images in
///   a result follow in a user message);
/// - `max_tokens`, `temperature`, `top_p`, `stream` copied; a stream asks for usage
///   (`stream_options.include_usage`); `stop_sequences` → `stop`; `metadata.user_id` →
///   `user`; `tools` → functions with `input_schema` as `parameters`; `tool_choice`
///   `auto`/`any`/`tool`/`none` → `auto`/`required`/the function/`none`, and its
///   `disable_parallel_tool_use` → `parallel_tool_calls: false`; `reasoning_effort` (else
///   `output_config.effort`) → `reasoning_effort`; `output_config.format` (`json_schema` or
///   `json_object`) → `response_format`;
/// - anything else (`top_k`, `thinking`, `service_tier`, …) is dropped.
///
/// A block or tool that has no Chat Completions form (server tools, `search_result`,
/// citations sources other than text) is refused, naming where it is.
pub fn messages_to_chat(messages: &Map<String, Value>) -> Result<Map<String, Value>, ConvertError> {
    let mut out = Map::new();
    for key in KEPT {
        if let Some(v) = messages.get(*key) {
            out.insert((*key).to_owned(), v.clone());
        }
    }
    let mut chat = Vec::new();
    match messages.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => chat.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                let at = || format!("system[{i}]");
                match block_type(block, &at)? {
                    "text" => texts.push(text_of(block, &at)?),
                    other => {
                        return Err(ConvertError::new(
                            at(),
                            format!("is a `{other}` block; a system prompt takes text blocks"),
                        ));
                    }
                }
            }
            if !texts.is_empty() {
                chat.push(json!({"role": "system", "content": texts.join("\n\n")}));
            }
        }
        Some(_) => {
            return Err(ConvertError::new(
                "system",
                "must be a string or a list of text blocks",
            ));
        }
    }
    let Some(list) = messages.get("messages").and_then(Value::as_array) else {
        return Err(ConvertError::new("messages", "must be a list of messages"));
    };
    for (i, message) in list.iter().enumerate() {
        convert_message(message, i, &mut chat)?;
    }
    out.insert("messages".into(), Value::Array(chat));
    if out.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    match messages.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {
            if !stops.is_empty() {
                out.insert("stop".into(), Value::Array(stops.clone()));
            }
        }
        Some(_) => {
            return Err(ConvertError::new(
                "stop_sequences",
                "must be a list of strings",
            ));
        }
    }
    if let Some(user) = messages
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), Value::String(user.to_owned()));
    }
    if let Some(tools) = messages.get("tools").filter(|t| !t.is_null()) {
        let Some(tools) = tools.as_array() else {
            return Err(ConvertError::new("tools", "must be a list of tools"));
        };
        let converted = tools
            .iter()
            .enumerate()
            .map(|(i, tool)| convert_tool(tool, i))
            .collect::<Result<Vec<_>, _>>()?;
        if !converted.is_empty() {
            out.insert("tools".into(), Value::Array(converted));
        }
    }
    if let Some(choice) = messages.get("tool_choice").filter(|t| !t.is_null()) {
        let kind = choice.get("type").and_then(Value::as_str);
        let converted = match kind {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                let Some(name) = choice.get("name").and_then(Value::as_str) else {
                    return Err(ConvertError::new("tool_choice.name", "must be a string"));
                };
                json!({"type": "function", "function": {"name": name}})
            }
            _ => {
                return Err(ConvertError::new(
                    "tool_choice.type",
                    "must be one of auto, any, tool, none",
                ));
            }
        };
        out.insert("tool_choice".into(), converted);
        if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true))
            && kind != Some("none")
        {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    crate::output::output_config(messages, &mut out)?;
    Ok(out)
}

fn block_type<'a>(block: &'a Value, at: &dyn Fn() -> String) -> Result<&'a str, ConvertError> {
    block
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ConvertError::new(at(), "must be a content block with a `type`"))
}

fn text_of(block: &Value, at: &dyn Fn() -> String) -> Result<String, ConvertError> {
    block
        .get("text")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ConvertError::new(format!("{}.text", at()), "must be a string"))
}

/// One message's Chat Completions messages, appended to `chat`.
fn convert_message(message: &Value, i: usize, chat: &mut Vec<Value>) -> Result<(), ConvertError> {
    let at = format!("messages[{i}]");
    let role = message.get("role").and_then(Value::as_str);
    let blocks: Vec<Value> = match message.get("content") {
        Some(Value::String(s)) => {
            let role = match role {
                Some(r @ ("user" | "assistant")) => r,
                _ => {
                    return Err(ConvertError::new(
                        format!("{at}.role"),
                        "must be user or assistant",
                    ));
                }
            };
            chat.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks.clone(),
        _ => {
            return Err(ConvertError::new(
                format!("{at}.content"),
                "must be a string or a list of content blocks",
            ));
        }
    };
    match role {
        Some("user") => convert_user(&blocks, &at, chat),
        Some("assistant") => convert_assistant(&blocks, &at, chat),
        _ => Err(ConvertError::new(
            format!("{at}.role"),
            "must be user or assistant",
        )),
    }
}

fn convert_user(blocks: &[Value], at: &str, chat: &mut Vec<Value>) -> Result<(), ConvertError> {
    let mut parts = Vec::new();
    // Images of tool results: Chat Completions tool messages carry text only.
    let mut result_images = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = || format!("{at}.content[{j}]");
        match block_type(block, &at)? {
            "tool_result" => {
                let Some(id) = block.get("tool_use_id").and_then(Value::as_str) else {
                    return Err(ConvertError::new(
                        format!("{}.tool_use_id", at()),
                        "must be a string",
                    ));
                };
                let mut text = String::new();
                match block.get("content") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => text.push_str(s),
                    Some(Value::Array(inner)) => {
                        for (k, part) in inner.iter().enumerate() {
                            let at = || format!("{}.content[{k}]", at());
                            match part_of(part, &at)? {
                                Part::Text(t) => {
                                    if !text.is_empty() {
                                        text.push('\n');
                                    }
                                    text.push_str(&t);
                                }
                                Part::Image(image) => result_images.push(image),
                            }
                        }
                    }
                    Some(_) => {
                        return Err(ConvertError::new(
                            format!("{}.content", at()),
                            "must be a string or a list of content blocks",
                        ));
                    }
                }
                if block.get("is_error") == Some(&Value::Bool(true)) {
                    text.insert_str(0, "Error: ");
                }
                chat.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            _ => parts.push(match part_of(block, &at)? {
                Part::Text(t) => json!({"type": "text", "text": t}),
                Part::Image(image) => image,
            }),
        }
    }
    parts.extend(result_images);
    match parts.as_slice() {
        [] => {}
        [only] if only["type"] == "text" => {
            chat.push(json!({"role": "user", "content": only["text"]}));
        }
        _ => chat.push(json!({"role": "user", "content": parts})),
    }
    Ok(())
}

fn convert_assistant(
    blocks: &[Value],
    at: &str,
    chat: &mut Vec<Value>,
) -> Result<(), ConvertError> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = || format!("{at}.content[{j}]");
        match block_type(block, &at)? {
            "text" => texts.push(text_of(block, &at)?),
            // The upstream's own reasoning is not sent back to it.
            "thinking" | "redacted_thinking" => {}
            "tool_use" => {
                let (Some(id), Some(name)) = (
                    block.get("id").and_then(Value::as_str),
                    block.get("name").and_then(Value::as_str),
                ) else {
                    return Err(ConvertError::new(
                        at(),
                        "must have a string `id` and `name`",
                    ));
                };
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": input.to_string()},
                }));
            }
            other => {
                return Err(ConvertError::new(
                    at(),
                    format!(
                        "is a `{other}` block, which an assistant turn cannot carry to a Chat Completions upstream"
                    ),
                ));
            }
        }
    }
    let content = if texts.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(texts.join("\n\n"))
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    chat.push(message);
    Ok(())
}

enum Part {
    Text(String),
    Image(Value),
}

/// A user block (or a tool result's block) other than a tool result.
fn part_of(block: &Value, at: &dyn Fn() -> String) -> Result<Part, ConvertError> {
    match block_type(block, at)? {
        "text" => Ok(Part::Text(text_of(block, at)?)),
        "image" => {
            let source = block.get("source");
            let kind = source.and_then(|s| s.get("type")).and_then(Value::as_str);
            let url = match kind {
                Some("base64") => {
                    let media = source
                        .and_then(|s| s.get("media_type"))
                        .and_then(Value::as_str)
                        .unwrap_or("image/png");
                    let Some(data) = source.and_then(|s| s.get("data")).and_then(Value::as_str)
                    else {
                        return Err(ConvertError::new(
                            format!("{}.source.data", at()),
                            "must be a string",
                        ));
                    };
                    format!("data:{media};base64,{data}")
                }
                Some("url") => match source.and_then(|s| s.get("url")).and_then(Value::as_str) {
                    Some(url) => url.to_owned(),
                    None => {
                        return Err(ConvertError::new(
                            format!("{}.source.url", at()),
                            "must be a string",
                        ));
                    }
                },
                _ => {
                    return Err(ConvertError::new(
                        format!("{}.source.type", at()),
                        "must be base64 or url",
                    ));
                }
            };
            Ok(Part::Image(
                json!({"type": "image_url", "image_url": {"url": url}}),
            ))
        }
        "document" => {
            let source = block.get("source");
            match (
                source.and_then(|s| s.get("type")).and_then(Value::as_str),
                source.and_then(|s| s.get("data")).and_then(Value::as_str),
            ) {
                (Some("text"), Some(data)) => {
                    let title = block.get("title").and_then(Value::as_str);
                    Ok(Part::Text(match title {
                        Some(title) => format!("[Document: {title}]\n{data}"),
                        None => data.to_owned(),
                    }))
                }
                _ => Err(ConvertError::new(
                    format!("{}.source", at()),
                    "is not a text document; only text documents can be sent to a Chat Completions upstream",
                )),
            }
        }
        other => Err(ConvertError::new(
            at(),
            format!("is a `{other}` block, which has no Chat Completions form"),
        )),
    }
}

fn convert_tool(tool: &Value, i: usize) -> Result<Value, ConvertError> {
    let at = format!("tools[{i}]");
    if let Some(kind) = tool.get("type").and_then(Value::as_str)
        && kind != "custom"
    {
        return Err(ConvertError::new(
            format!("{at}.type"),
            format!(
                "is `{kind}`, a tool Anthropic runs itself; only custom tools can be sent to a Chat Completions upstream"
            ),
        ));
    }
    let Some(name) = tool.get("name").and_then(Value::as_str) else {
        return Err(ConvertError::new(format!("{at}.name"), "must be a string"));
    };
    let mut function = json!({
        "name": name,
        "parameters": tool.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
    });
    if let Some(description) = tool.get("description").and_then(Value::as_str) {
        function["description"] = Value::String(description.to_owned());
    }
    Ok(json!({"type": "function", "function": function}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(v: Value) -> Result<Value, ConvertError> {
        messages_to_chat(v.as_object().unwrap()).map(Value::Object)
    }

    #[test]
    fn a_conversation_with_tools_is_translated_field_by_field() {
        let chat = convert(json!({
            "model": "m", "max_tokens": 100, "temperature": 0.5, "top_k": 3, "stream": true,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
            "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}], "is_error": true},
                    {"type": "text", "text": "Thanks"}]}
            ]
        }))
        .unwrap();
        assert_eq!(
            chat,
            json!({
                "model": "m", "max_tokens": 100, "temperature": 0.5, "stream": true,
                "stream_options": {"include_usage": true},
                "stop": ["END"], "user": "u-1",
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
                "tool_choice": "required", "parallel_tool_calls": false,
                "messages": [
                    {"role": "system", "content": "Be brief.\n\nBe kind."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "Weather in Paris?"},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}}]},
                    {"role": "assistant", "content": "Let me look.", "tool_calls": [
                        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: 18C"},
                    {"role": "user", "content": "Thanks"}
                ]
            })
        );
    }

    #[test]
    fn tool_choices_and_plain_strings() {
        let base = |choice: Value| {
            convert(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": choice}))
                .unwrap()["tool_choice"]
                .clone()
        };
        assert_eq!(base(json!({"type": "auto"})), "auto");
        assert_eq!(base(json!({"type": "none"})), "none");
        assert_eq!(
            base(json!({"type": "tool", "name": "f"})),
            json!({"type": "function", "function": {"name": "f"}})
        );
        let chat = convert(
            json!({"model": "m", "system": "S", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .unwrap();
        assert_eq!(
            chat["messages"],
            json!([{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}])
        );
        assert!(chat.get("stream_options").is_none());
    }

    #[test]
    fn what_has_no_chat_form_is_refused_naming_where() {
        let err = |v: Value| convert(v).unwrap_err().member;
        assert_eq!(err(json!({"model": "m"})), "messages");
        assert_eq!(
            err(json!({"messages": [{"role": "system", "content": "x"}]})),
            "messages[0].role"
        );
        assert_eq!(
            err(json!({"messages": [{"role": "user", "content": [{"type": "search_result"}]}]})),
            "messages[0].content[0]"
        );
        assert_eq!(
            err(
                json!({"messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
            ),
            "tools[0].type"
        );
        assert_eq!(
            err(
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]})
            ),
            "messages[0].content[0].source.type"
        );
        assert_eq!(
            err(json!({"messages": [], "tool_choice": {"type": "x"}})),
            "tool_choice.type"
        );
        assert_eq!(
            err(json!({"messages": [], "stop_sequences": "x"})),
            "stop_sequences"
        );
    }
}
