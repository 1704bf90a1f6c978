//! A Chat Completions event stream as a Messages event stream.

use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::{Value, json};
use tower_openai_util::body::{ConvertEvents, Reframe, SseEvents, sse_data};

use crate::answer::{message_id, random_hex, reasoning_of, stop_reason, usage_of};

/// The longest chat event held while it is incomplete; a longer one ends the stream with an
/// error event.
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// The most tool calls one answer may hold (a stream with more ends with an error event).
pub const MAX_TOOL_CALLS: usize = 1_024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
    Tool(usize),
}

#[derive(Debug)]
struct Tool {
    /// Its index among the chunk's `tool_calls`.
    chat_index: u64,
    id: String,
    name: String,
    /// Its content block, once started (its name known).
    block: Option<usize>,
    /// Arguments that came before the name.
    pending: String,
}

/// Turns the chunks of a Chat Completions stream into a Messages stream as they come:
/// `message_start` at the first chunk; per content block `content_block_start`, deltas
/// (`thinking_delta` from `reasoning_content`, `text_delta`, `input_json_delta` for a tool
/// call's arguments) and `content_block_stop`; a new block whenever the kind changes (text
/// after a tool call is kept, in a block of its own; each parallel tool call is its own
/// block); then `message_delta` (`stop_reason`, the usage) and `message_stop` at
/// `data: [DONE]`. An error chunk, or a stream that ends before its answer is complete,
/// ends with `event: error` (`api_error`).
#[derive(Debug)]
pub struct MessagesStream {
    events: SseEvents,
    input_estimate: u64,
    started: bool,
    blocks: usize,
    open: Option<Open>,
    tools: Vec<Tool>,
    finish: Option<String>,
    usage: Option<Value>,
    finished: bool,
}

impl MessagesStream {
    /// A converter; `input_estimate` is the `input_tokens` of `message_start` (the upstream
    /// reports the real count at the end, in `message_delta`).
    pub fn new(input_estimate: u64) -> Self {
        Self {
            events: SseEvents::new(MAX_EVENT_BYTES),
            input_estimate,
            started: false,
            blocks: 0,
            open: None,
            tools: Vec::new(),
            finish: None,
            usage: None,
            finished: false,
        }
    }

    fn event(&mut self, event: &[u8], out: &mut String) {
        let data = sse_data(event);
        if data.trim_ascii() == b"[DONE]" {
            self.done(out);
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(&data) else {
            return;
        };
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| error.as_str())
                .unwrap_or("The upstream failed")
                .to_owned();
            self.fail(&message, out);
            return;
        }
        self.start(&chunk, out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(thinking) = reasoning_of(delta) {
                self.open_block(Open::Thinking, out);
                let idx = self.blocks - 1;
                emit(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": idx,
                    "delta": {"type": "thinking_delta", "thinking": thinking}}),
                );
            }
            if let Some(text) = delta
                .get("content")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                self.open_block(Open::Text, out);
                let idx = self.blocks - 1;
                emit(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": idx,
                    "delta": {"type": "text_delta", "text": text}}),
                );
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    self.tool_delta(call, position as u64, out);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(reason.to_owned());
        }
    }

    fn start(&mut self, chunk: &Value, out: &mut String) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": message_id(chunk.get("id").and_then(Value::as_str)),
            "type": "message", "role": "assistant",
            "model": chunk.get("model").cloned().unwrap_or_else(|| json!("")),
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": self.input_estimate, "output_tokens": 0},
        });
        emit(
            out,
            "message_start",
            &json!({"type": "message_start", "message": message}),
        );
    }

    /// Make `kind` the open block (closing the one open before).
    fn open_block(&mut self, kind: Open, out: &mut String) {
        if self.open == Some(kind) {
            return;
        }
        self.close_block(out);
        let block = match kind {
            Open::Thinking => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Open::Text => json!({"type": "text", "text": ""}),
            Open::Tool(t) => {
                let tool = &self.tools[t];
                json!({"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}})
            }
        };
        let index = self.blocks;
        self.blocks += 1;
        if let Open::Tool(t) = kind {
            self.tools[t].block = Some(index);
        }
        emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        self.open = Some(kind);
    }

    fn close_block(&mut self, out: &mut String) {
        if self.open.take().is_some() {
            let index = self.blocks - 1;
            emit(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn tool_delta(&mut self, call: &Value, position: u64, out: &mut String) {
        let chat_index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let arguments = match call.pointer("/function/arguments") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(map)) => Value::Object(map.clone()).to_string(),
            _ => String::new(),
        };
        // The call this delta continues: the last with its chat index, unless it names a new
        // id (parallel calls that share an index).
        let found = self.tools.iter().rposition(|t| t.chat_index == chat_index);
        let t = match found {
            Some(t) if id.is_none_or(|id| self.tools[t].id == id) => t,
            _ if self.tools.len() >= MAX_TOOL_CALLS => {
                self.fail("The upstream's answer holds too many tool calls", out);
                return;
            }
            _ => {
                self.tools.push(Tool {
                    chat_index,
                    id: id.map_or_else(|| format!("toolu_{}", random_hex()), str::to_owned),
                    name: String::new(),
                    block: None,
                    pending: String::new(),
                });
                self.tools.len() - 1
            }
        };
        if let Some(name) = name
            && self.tools[t].block.is_none()
        {
            self.tools[t].name = name.to_owned();
        }
        if self.tools[t].block.is_none() {
            if self.tools[t].name.is_empty() {
                if self.tools[t].pending.len() + arguments.len() > MAX_EVENT_BYTES {
                    self.fail(
                        "The upstream sent a tool call's arguments without its name",
                        out,
                    );
                    return;
                }
                self.tools[t].pending.push_str(&arguments);
                return;
            }
            self.open_block(Open::Tool(t), out);
            let pending = std::mem::take(&mut self.tools[t].pending);
            self.arguments(t, &pending, out);
        }
        self.arguments(t, &arguments, out);
    }

    fn arguments(&mut self, t: usize, arguments: &str, out: &mut String) {
        let Some(index) = self.tools[t].block.filter(|_| !arguments.is_empty()) else {
            return;
        };
        emit(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": arguments}}),
        );
    }

    fn done(&mut self, out: &mut String) {
        if self.finished {
            return;
        }
        self.start(&Value::Null, out);
        self.close_block(out);
        // Calls whose name never came: sent with what they have.
        for t in 0..self.tools.len() {
            if self.tools[t].block.is_none() {
                self.open_block(Open::Tool(t), out);
                let pending = std::mem::take(&mut self.tools[t].pending);
                self.arguments(t, &pending, out);
                self.close_block(out);
            }
        }
        let mut usage = usage_of(self.usage.as_ref(), self.input_estimate);
        if self.usage.is_none() {
            // Unknown: the estimate went out in `message_start`.
            usage.as_object_mut().map(|u| u.remove("input_tokens"));
        }
        emit(
            out,
            "message_delta",
            &json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
            "usage": usage}),
        );
        emit(out, "message_stop", &json!({"type": "message_stop"}));
        self.finished = true;
    }

    fn fail(&mut self, message: &str, out: &mut String) {
        emit(
            out,
            "error",
            &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
        );
        self.finished = true;
    }
}

impl ConvertEvents for MessagesStream {
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
        self.fail("The upstream sent an event too large to read", out);
    }
}

impl Reframe for MessagesStream {
    /// Add bytes of the chat stream; the Messages events they complete.
    fn push(&mut self, data: &[u8]) -> Bytes {
        self.feed(data)
    }

    /// The chat stream ended: what is still owed. A stream that gave its `finish_reason` is
    /// closed as if `[DONE]` had come; one that did not ends with an error event.
    fn finish(&mut self) -> Bytes {
        let mut out = String::new();
        self.feed_rest(&mut out);
        if !self.finished {
            if self.finish.is_some() {
                self.done(&mut out);
            } else {
                self.fail(
                    "The upstream's stream ended before the answer was complete",
                    &mut out,
                );
            }
        }
        Bytes::from(out)
    }

    /// Whether the stream has ended (`message_stop` or an error event went out).
    fn is_finished(&self) -> bool {
        self.finished
    }
}

fn emit(out: &mut String, event: &str, data: &Value) {
    let _ = write!(out, "event: {event}\ndata: {data}\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events of a converted stream, as (name, data).
    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(bytes).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                (
                    name.strip_prefix("event: ").unwrap().to_owned(),
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
                )
            })
            .collect()
    }

    fn chunk(delta: Value, finish: Option<&str>) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-9", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    }

    #[test]
    fn thinking_text_parallel_tools_and_text_after_a_tool_each_get_a_block() {
        let mut s = MessagesStream::new(11);
        let mut out = Vec::new();
        for part in [
            chunk(
                json!({"role": "assistant", "reasoning_content": "hm"}),
                None,
            ),
            chunk(json!({"content": "Hi"}), None),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{\"a\""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "g", "arguments": "{}"}}]}),
                None,
            ),
            chunk(json!({"content": "after"}), Some("tool_calls")),
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":9}}\n\n"
                .to_owned(),
            "data: [DONE]\n\n".to_owned(),
        ] {
            // Cut each chunk in two: framing must not matter.
            let (a, b) = part.as_bytes().split_at(part.len() / 2);
            out.extend_from_slice(&s.push(a));
            out.extend_from_slice(&s.push(b));
        }
        assert!(s.is_finished());
        let got = events(&out);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(got[0].1["message"]["id"], "msg_chatcmpl-9");
        assert_eq!(got[0].1["message"]["usage"]["input_tokens"], 11);
        assert_eq!(got[1].1["content_block"]["type"], "thinking");
        assert_eq!(
            got[7].1["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {}})
        );
        assert_eq!(got[8].1["delta"]["partial_json"], "{\"a\"");
        assert_eq!(got[9].1["delta"]["partial_json"], ":1}");
        assert_eq!(got[11].1["content_block"]["id"], "call_2");
        assert_eq!(got[11].1["index"], 3);
        assert_eq!(
            got[15].1["delta"],
            json!({"type": "text_delta", "text": "after"})
        );
        assert_eq!(got[15].1["index"], 4);
        assert_eq!(
            got[17].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"input_tokens": 30, "output_tokens": 9}})
        );
    }

    #[test]
    fn too_many_tool_calls_end_the_stream_with_an_error() {
        let mut s = MessagesStream::new(1);
        let mut out = Vec::new();
        for i in 0..=MAX_TOOL_CALLS {
            let call = json!({"index": i, "id": format!("c{i}"), "function": {"name": "f", "arguments": "{}"}});
            out.extend_from_slice(&s.push(chunk(json!({"tool_calls": [call]}), None).as_bytes()));
        }
        assert!(s.is_finished());
        assert_eq!(events(&out).last().unwrap().0, "error");
        assert!(s.tools.len() <= MAX_TOOL_CALLS);
    }

    #[test]
    fn an_error_chunk_or_a_cut_stream_ends_with_an_error_event() {
        let mut s = MessagesStream::new(1);
        let mut out = s
            .push(chunk(json!({"content": "a"}), None).as_bytes())
            .to_vec();
        out.extend_from_slice(
            &s.push(b"data: {\"error\":{\"message\":\"upstream broke\",\"type\":\"x\"}}\n\n"),
        );
        assert!(s.is_finished());
        let got = events(&out);
        assert_eq!(
            got.last().unwrap(),
            &(
                "error".to_owned(),
                json!({"type": "error", "error": {"type": "api_error", "message": "upstream broke"}})
            )
        );
        let mut s = MessagesStream::new(1);
        s.push(chunk(json!({"content": "a"}), None).as_bytes());
        let end = events(&s.finish());
        assert_eq!(end.last().unwrap().0, "error");
        // A finish reason without [DONE] ends normally.
        let mut s = MessagesStream::new(1);
        s.push(chunk(json!({"content": "a"}), Some("length")).as_bytes());
        let end = events(&s.finish());
        assert_eq!(end.last().unwrap().0, "message_stop");
        assert_eq!(end[end.len() - 2].1["delta"]["stop_reason"], "max_tokens");
    }
}
