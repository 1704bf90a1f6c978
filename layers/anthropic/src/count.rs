//! The local token count of `count_tokens` for connections that are not Anthropic's.

use serde_json::{Map, Value};

/// Tokens counted for an image (Anthropic bills about 1 600 for a picture near its 1.15
/// megapixel limit; the gateway does not decode images).
const IMAGE_TOKENS: u64 = 1_600;

/// Tokens counted for each message's framing.
const PER_MESSAGE: u64 = 3;

/// An estimate of the input tokens of the Messages request `request`: its text (the
/// system prompt, text blocks, tool inputs and results, tool definitions) at one token per
/// four ASCII characters and one per other character (a CJK character is about a token), 3
/// per message, and 1 600 per image. Never 0 when there is any text. It is not a
/// tokenizer's count: callers that need Anthropic's exact count route the model to an
/// Anthropic connection, which counts it itself.
pub fn estimate_input_tokens(request: &Map<String, Value>) -> u64 {
    let mut count = Count::default();
    if let Some(system) = request.get("system") {
        count.value(system);
    }
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        for message in messages {
            count.tokens += PER_MESSAGE;
            if let Some(content) = message.get("content") {
                count.value(content);
            }
        }
    }
    if let Some(tools) = request.get("tools") {
        count.text(&tools.to_string());
    }
    let text = count.ascii.div_ceil(4) + count.other;
    let total = count.tokens + text;
    if total == 0 && count.ascii + count.other > 0 {
        1
    } else {
        total
    }
}

#[derive(Default)]
struct Count {
    tokens: u64,
    ascii: u64,
    other: u64,
}

impl Count {
    fn text(&mut self, s: &str) {
        for c in s.chars() {
            if c.is_ascii() {
                self.ascii += 1;
            } else {
                self.other += 1;
            }
        }
    }

    /// The text of a content value: a string, or blocks.
    fn value(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.text(s),
            Value::Array(blocks) => {
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("image") => self.tokens += IMAGE_TOKENS,
                        Some("tool_use") => {
                            if let Some(name) = block.get("name").and_then(Value::as_str) {
                                self.text(name);
                            }
                            if let Some(input) = block.get("input") {
                                self.text(&input.to_string());
                            }
                        }
                        Some("tool_result") => {
                            if let Some(content) = block.get("content") {
                                self.value(content);
                            }
                        }
                        _ => {
                            for key in ["text", "thinking"] {
                                if let Some(t) = block.get(key).and_then(Value::as_str) {
                                    self.text(t);
                                }
                            }
                            if let Some(data) =
                                block.pointer("/source/data").and_then(Value::as_str)
                                && block.pointer("/source/type").and_then(Value::as_str)
                                    == Some("text")
                            {
                                self.text(data);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn count(v: Value) -> u64 {
        estimate_input_tokens(v.as_object().unwrap())
    }

    #[test]
    fn text_images_tools_and_the_floor() {
        // 12 ASCII characters: 3 tokens, and 3 for the message.
        assert_eq!(
            count(json!({"messages": [{"role": "user", "content": "Hello world!"}]})),
            6
        );
        // A CJK character is about a token.
        assert_eq!(
            count(json!({"messages": [{"role": "user", "content": "你好"}]})),
            5
        );
        assert_eq!(
            count(
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]})
            ),
            1_603
        );
        let with_tools = count(
            json!({"system": "S", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}),
        );
        assert!(
            with_tools
                > count(json!({"system": "S", "messages": [{"role": "user", "content": "hi"}]}))
        );
        assert_eq!(count(json!({"system": "x"})), 1);
        assert_eq!(count(json!({})), 0);
    }
}
