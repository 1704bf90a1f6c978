//! A Responses event stream as a Chat Completions event stream.

use bytes::Bytes;
use serde_json::{Value, json};

use tower_openai_util::body::{ConvertEvents, Reframe, SseEvents, sse_data};

use crate::answer::{finish_reason, usage};

/// The longest Responses event held while it is incomplete; a longer one ends the stream
/// with an error event (real events are a few kilobytes; `response.completed` repeats the
/// whole output, so the bound is generous).
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// Turns the events of a Responses stream into `chat.completion.chunk` events as they come:
/// text deltas → `delta.content`, function calls → `delta.tool_calls` (an index per call, the
/// call id and name first, then the arguments as they stream), reasoning summary deltas →
/// `delta.reasoning_content`; `response.completed`/`response.incomplete` → the chunk with the
/// `finish_reason`, the usage chunk when the caller asked for it, and `data: [DONE]`;
/// `response.failed` or an `error` event → the terminal error event
/// `data: {"error": {…}}`. Events it does not need are left out.
#[derive(Debug)]
pub struct ChatStream {
    events: SseEvents,
    include_usage: bool,
    id: Value,
    created: Value,
    model: Value,
    started: bool,
    /// The item ids of the function calls, in the order they came (their chat index).
    calls: Vec<String>,
    finished: bool,
}

impl ChatStream {
    /// A converter; `include_usage`: the caller asked for the usage chunk
    /// (`stream_options.include_usage`).
    pub fn new(include_usage: bool) -> Self {
        Self {
            events: SseEvents::new(MAX_EVENT_BYTES),
            include_usage,
            id: Value::String(String::new()),
            created: Value::from(0),
            model: Value::String(String::new()),
            started: false,
            calls: Vec::new(),
            finished: false,
        }
    }

    fn event(&mut self, event: &[u8], out: &mut String) {
        let Ok(value) = serde_json::from_slice::<Value>(&sse_data(event)) else {
            return;
        };
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "response.created" | "response.in_progress" => {
                if let Some(response) = value.get("response") {
                    self.remember(response);
                }
                self.start(out);
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                self.start(out);
                let delta = value.get("delta").cloned().unwrap_or_default();
                self.chunk(json!({ "content": delta }), None, out);
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                self.start(out);
                let delta = value.get("delta").cloned().unwrap_or_default();
                self.chunk(json!({ "reasoning_content": delta }), None, out);
            }
            "response.output_item.added" => {
                let Some(item) = value.get("item") else {
                    return;
                };
                if item.get("type").and_then(Value::as_str) != Some("function_call") {
                    return;
                }
                self.start(out);
                let s = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("");
                let index = self.calls.len();
                self.calls.push(s("id").to_owned());
                self.chunk(
                    json!({"tool_calls": [{
                        "index": index,
                        "id": s("call_id"),
                        "type": "function",
                        "function": {"name": s("name"), "arguments": s("arguments")},
                    }]}),
                    None,
                    out,
                );
            }
            "response.function_call_arguments.delta" => {
                let item = value.get("item_id").and_then(Value::as_str).unwrap_or("");
                let Some(index) = self.calls.iter().position(|id| id == item) else {
                    return;
                };
                let delta = value.get("delta").cloned().unwrap_or_default();
                self.chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": delta}}]}),
                    None,
                    out,
                );
            }
            "response.completed" | "response.incomplete" => {
                let response = value.get("response").cloned().unwrap_or_default();
                self.remember(&response);
                self.start(out);
                let reason = finish_reason(&response, !self.calls.is_empty());
                self.chunk(json!({}), Some(reason), out);
                if self.include_usage
                    && let Some(u) = response.get("usage").filter(|u| u.is_object())
                {
                    let chunk = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": usage(u),
                    });
                    out.push_str(&format!("data: {chunk}\n\n"));
                }
                out.push_str("data: [DONE]\n\n");
                self.finished = true;
            }
            "response.failed" => {
                let error = value
                    .pointer("/response/error")
                    .cloned()
                    .unwrap_or_default();
                self.fail_with(&error, out);
            }
            "error" => {
                let error = value.get("error").cloned().unwrap_or(value);
                self.fail_with(&error, out);
            }
            _ => {}
        }
    }

    fn remember(&mut self, response: &Value) {
        for (key, into) in [
            ("id", &mut self.id),
            ("created_at", &mut self.created),
            ("model", &mut self.model),
        ] {
            if let Some(v) = response.get(key).filter(|v| !v.is_null()) {
                *into = v.clone();
            }
        }
    }

    /// The first chunk: the assistant's role.
    fn start(&mut self, out: &mut String) {
        if !self.started {
            self.started = true;
            self.chunk(json!({"role": "assistant", "content": ""}), None, out);
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut String) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        out.push_str(&format!("data: {chunk}\n\n"));
    }

    fn fail_with(&mut self, error: &Value, out: &mut String) {
        let text = |k: &str| error.get(k).and_then(Value::as_str).map(str::to_owned);
        let message = text("message").unwrap_or_else(|| "The upstream's response failed".into());
        let code = text("code").unwrap_or_else(|| "upstream_error".into());
        self.fail(&code, &message, out);
    }

    fn fail(&mut self, code: &str, message: &str, out: &mut String) {
        let error = json!({"error": {"message": message, "type": "upstream_error", "code": code}});
        out.push_str(&format!("data: {error}\n\n"));
        self.finished = true;
    }
}

impl ConvertEvents for ChatStream {
    fn events(&mut self) -> &mut SseEvents {
        &mut self.events
    }

    fn is_done(&self) -> bool {
        self.finished
    }

    fn on_event(&mut self, event: &[u8], out: &mut String) {
        self.event(event, out);
    }

    fn too_large(&mut self, out: &mut String) {
        self.fail(
            "upstream_error",
            "The upstream sent an event too large to read",
            out,
        );
    }
}

impl Reframe for ChatStream {
    /// Add bytes of the Responses stream; the chat events they complete.
    fn push(&mut self, data: &[u8]) -> Bytes {
        self.feed(data)
    }

    /// The upstream's stream ended: what is still owed (an error event when it ended before
    /// its final event).
    fn finish(&mut self) -> Bytes {
        let mut out = String::new();
        self.feed_rest(&mut out);
        if !self.finished {
            self.fail(
                "upstream_error",
                "The upstream's stream ended before the response was complete",
                &mut out,
            );
        }
        Bytes::from(out)
    }

    /// Whether the stream has ended (a final event, an error, or too long an event).
    fn is_finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{ChatStream, Reframe};

    fn sse(events: &[Value]) -> String {
        events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect()
    }

    /// The `data:` payloads of a chat stream.
    fn chunks(text: &str) -> Vec<Value> {
        text.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.into())))
            .collect()
    }

    #[test]
    fn text_tool_calls_and_usage_stream_as_chat_chunks_whatever_the_framing() {
        let events = sse(&[
            json!({"type": "response.created", "response": {"id": "resp_1", "created_at": 7, "model": "gpt-x"}}),
            json!({"type": "response.reasoning_summary_text.delta", "delta": "Hm."}),
            json!({"type": "response.output_text.delta", "delta": "Hel"}),
            json!({"type": "response.output_text.delta", "delta": "lo"}),
            json!({"type": "response.output_item.added", "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "look", "arguments": ""}}),
            json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "{\"x\":"}),
            json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "1}"}),
            json!({"type": "response.output_text.delta", "delta": " after"}),
            json!({"type": "response.completed", "response": {"status": "completed", "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}}}),
        ]);
        // Byte by byte, and all at once: the same chunks.
        for step in [1, events.len()] {
            let mut s = ChatStream::new(true);
            let mut out = String::new();
            for piece in events.as_bytes().chunks(step) {
                out.push_str(std::str::from_utf8(&s.push(piece)).unwrap());
            }
            out.push_str(std::str::from_utf8(&s.finish()).unwrap());
            let got = chunks(&out);
            let delta = |i: usize| got[i]["choices"][0]["delta"].clone();
            assert_eq!(delta(0), json!({"role": "assistant", "content": ""}));
            assert_eq!(delta(1), json!({"reasoning_content": "Hm."}));
            assert_eq!(delta(2), json!({"content": "Hel"}));
            assert_eq!(
                delta(4),
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "look", "arguments": ""}}]})
            );
            assert_eq!(delta(6)["tool_calls"][0]["function"]["arguments"], "1}");
            // Text after a tool call is kept.
            assert_eq!(delta(7), json!({"content": " after"}));
            assert_eq!(got[8]["choices"][0]["finish_reason"], "tool_calls");
            assert_eq!(
                got[9]["usage"],
                json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
            );
            assert_eq!(got[10], Value::String("[DONE]".into()));
            assert_eq!(got.len(), 11);
            assert!(
                got[..10]
                    .iter()
                    .all(|c| c["id"] == "resp_1" && c["model"] == "gpt-x")
            );
        }
    }

    #[test]
    fn a_failed_response_or_a_cut_stream_ends_with_the_terminal_error_event() {
        let mut s = ChatStream::new(false);
        let out = s.push(sse(&[json!({"type": "response.failed", "response": {"error": {"code": "server_error", "message": "boom"}}})]).as_bytes());
        let got = chunks(std::str::from_utf8(&out).unwrap());
        assert_eq!(
            got,
            [
                json!({"error": {"message": "boom", "type": "upstream_error", "code": "server_error"}})
            ]
        );
        assert!(s.is_finished());
        let mut s = ChatStream::new(false);
        let _ =
            s.push(sse(&[json!({"type": "response.output_text.delta", "delta": "a"})]).as_bytes());
        let end = s.finish();
        assert!(
            std::str::from_utf8(&end)
                .unwrap()
                .contains("\"code\":\"upstream_error\"")
        );
        // No usage chunk unless asked; the incomplete reason is the finish reason.
        let mut s = ChatStream::new(false);
        let out = s.push(sse(&[json!({"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "usage": {"input_tokens": 1}}})]).as_bytes());
        let got = chunks(std::str::from_utf8(&out).unwrap());
        assert_eq!(got[1]["choices"][0]["finish_reason"], "length");
        assert_eq!(got.len(), 3);
    }
}
