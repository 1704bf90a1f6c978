//! Property tests: any Messages conversation of text, images and tool_use/tool_result pairs
//! reaches a Chat Completions upstream with its ids, arguments and order; any chat answer of
//! text, reasoning and parallel tool calls comes back as the same Messages answer, as JSON
//! and as a stream cut anywhere.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tower_openai_anthropic::{MessagesStream, Reframe, chat_to_message, messages_to_chat};

fn text() -> impl Strategy<Value = String> {
    // Any text, quotes, escapes and non-ASCII included.
    "[a-zA-Z0-9 \"\\\\{}é😀\n]{1,20}"
}

fn id() -> impl Strategy<Value = String> {
    "toolu_[a-zA-Z0-9]{1,12}"
}

/// A tool input: any small JSON object.
fn input() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        "[a-z]{1,6}",
        prop_oneof![
            text().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ],
        0..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

#[derive(Clone, Debug)]
enum Block {
    Text(String),
    Image(String),
}

#[derive(Clone, Debug)]
enum Turn {
    /// A user turn: text and images.
    User(Vec<Block>),
    /// An assistant turn: text, then tool calls; the next turn returns each call's result
    /// (in order), then adds text.
    Tools(
        Option<String>,
        Vec<(String, String, Value)>,
        Vec<String>,
        Option<String>,
    ),
    /// A plain assistant answer.
    Assistant(String),
}

fn turn() -> impl Strategy<Value = Turn> {
    prop_oneof![
        prop::collection::vec(
            prop_oneof![
                text().prop_map(Block::Text),
                "[A-Za-z0-9+/]{4,16}".prop_map(Block::Image),
            ],
            1..4
        )
        .prop_map(Turn::User),
        (
            prop::option::of(text()),
            prop::collection::vec((id(), "[a-z_]{1,10}", input()), 1..4),
            prop::collection::vec(text(), 4),
            prop::option::of(text()),
        )
            .prop_map(|(t, calls, results, after)| Turn::Tools(t, calls, results, after)),
        text().prop_map(Turn::Assistant),
    ]
}

fn messages_of(turns: &[Turn]) -> (Vec<Value>, Vec<Value>) {
    let (mut anthropic, mut chat) = (Vec::new(), Vec::new());
    for turn in turns {
        match turn {
            Turn::User(blocks) => {
                let content: Vec<Value> = blocks.iter().map(|b| match b {
                    Block::Text(t) => json!({"type": "text", "text": t}),
                    Block::Image(d) => json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": d}}),
                }).collect();
                anthropic.push(json!({"role": "user", "content": content}));
                let parts: Vec<Value> = blocks.iter().map(|b| match b {
                    Block::Text(t) => json!({"type": "text", "text": t}),
                    Block::Image(d) => json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{d}")}}),
                }).collect();
                match parts.as_slice() {
                    [only] if only["type"] == "text" => {
                        chat.push(json!({"role": "user", "content": only["text"]}))
                    }
                    _ => chat.push(json!({"role": "user", "content": parts})),
                }
            }
            Turn::Tools(before, calls, results, after) => {
                let mut content = Vec::new();
                if let Some(t) = before {
                    content.push(json!({"type": "text", "text": t}));
                }
                for (id, name, input) in calls {
                    content
                        .push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
                }
                anthropic.push(json!({"role": "assistant", "content": content}));
                let mut user = Vec::new();
                for ((id, _, _), result) in calls.iter().zip(results) {
                    user.push(json!({"type": "tool_result", "tool_use_id": id, "content": result}));
                }
                if let Some(t) = after {
                    user.push(json!({"type": "text", "text": t}));
                }
                anthropic.push(json!({"role": "user", "content": user}));
                chat.push(json!({"role": "assistant", "content": before.clone().map_or(Value::Null, Value::from),
                    "tool_calls": calls.iter().map(|(id, name, input)| json!({"id": id, "type": "function",
                        "function": {"name": name, "arguments": input.to_string()}})).collect::<Vec<_>>()}));
                for ((id, _, _), result) in calls.iter().zip(results) {
                    chat.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
                }
                if let Some(t) = after {
                    chat.push(json!({"role": "user", "content": t}));
                }
            }
            Turn::Assistant(t) => {
                anthropic
                    .push(json!({"role": "assistant", "content": [{"type": "text", "text": t}]}));
                chat.push(json!({"role": "assistant", "content": t}));
            }
        }
    }
    (anthropic, chat)
}

/// A tool call: id, name, input.
type Call = (String, String, Value);

/// A chat answer's parts: reasoning, text, tool calls.
fn answer() -> impl Strategy<Value = (Option<String>, Option<String>, Vec<Call>)> {
    (
        prop::option::of(text()),
        prop::option::of(text()),
        prop::collection::vec(("call_[a-zA-Z0-9]{1,8}", "[a-z_]{1,10}", input()), 0..4),
    )
}

/// The Messages events of `bytes`, folded into one message the way the SDKs do.
fn fold(bytes: &[u8]) -> Value {
    let text = std::str::from_utf8(bytes).unwrap();
    let mut message = Value::Null;
    let mut json_parts: Vec<String> = Vec::new();
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let data: Value = serde_json::from_str(event.split_once("\ndata: ").unwrap().1).unwrap();
        match data["type"].as_str().unwrap() {
            "message_start" => message = data["message"].clone(),
            "content_block_start" => {
                message["content"]
                    .as_array_mut()
                    .unwrap()
                    .push(data["content_block"].clone());
                json_parts.push(String::new());
            }
            "content_block_delta" => {
                let i = data["index"].as_u64().unwrap() as usize;
                let block = &mut message["content"][i];
                let delta = &data["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        block["text"] = json!(format!(
                            "{}{}",
                            block["text"].as_str().unwrap(),
                            delta["text"].as_str().unwrap()
                        ))
                    }
                    "thinking_delta" => {
                        block["thinking"] = json!(format!(
                            "{}{}",
                            block["thinking"].as_str().unwrap(),
                            delta["thinking"].as_str().unwrap()
                        ))
                    }
                    "input_json_delta" => {
                        json_parts[i].push_str(delta["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = data["index"].as_u64().unwrap() as usize;
                if message["content"][i]["type"] == "tool_use" {
                    message["content"][i]["input"] = if json_parts[i].is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&json_parts[i]).unwrap()
                    };
                }
            }
            "message_delta" => {
                message["stop_reason"] = data["delta"]["stop_reason"].clone();
                message["usage"]["output_tokens"] = data["usage"]["output_tokens"].clone();
                if let Some(input) = data["usage"].get("input_tokens") {
                    message["usage"]["input_tokens"] = input.clone();
                }
            }
            "message_stop" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    message
}

proptest! {
    #[test]
    fn any_conversation_reaches_chat_with_its_ids_arguments_and_order(turns in prop::collection::vec(turn(), 1..8)) {
        let (anthropic, expected) = messages_of(&turns);
        let request: Map<String, Value> = json!({"model": "m", "max_tokens": 10, "messages": anthropic}).as_object().unwrap().clone();
        let chat = messages_to_chat(&request).unwrap();
        // Arguments compared as JSON (key order and spacing are the serializer's).
        let normalize = |mut messages: Vec<Value>| {
            for m in &mut messages {
                if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    for c in calls {
                        let args: Value = serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
                        c["function"]["arguments"] = args;
                    }
                }
            }
            messages
        };
        prop_assert_eq!(normalize(chat["messages"].as_array().unwrap().clone()), normalize(expected));
    }

    #[test]
    fn any_chat_answer_comes_back_the_same_as_json_and_as_a_stream_cut_anywhere(
        (reasoning, text, calls) in answer(),
        cuts in prop::collection::vec(0usize..2000, 0..10),
        stream_ids in any::<bool>(),
    ) {
        let message = json!({
            "role": "assistant",
            "content": text.clone().map_or(Value::Null, Value::from),
            "reasoning_content": reasoning.clone().map_or(Value::Null, Value::from),
            "tool_calls": calls.iter().map(|(id, name, input)| json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": input.to_string()}})).collect::<Vec<_>>(),
        });
        let finish = if calls.is_empty() { "stop" } else { "tool_calls" };
        let usage = json!({"prompt_tokens": 17, "completion_tokens": 5});
        let chat = json!({"id": "chatcmpl-x", "model": "m", "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage});
        let answer = chat_to_message(&chat, 3);
        // The content in order: thinking, text, one tool_use per call with its id and input.
        let mut expected = Vec::new();
        if let Some(r) = &reasoning { expected.push(json!({"type": "thinking", "thinking": r, "signature": ""})); }
        if let Some(t) = &text { expected.push(json!({"type": "text", "text": t})); }
        for (id, name, input) in &calls { expected.push(json!({"type": "tool_use", "id": id, "name": name, "input": input})); }
        prop_assert_eq!(&answer["content"], &Value::Array(expected));

        // The same answer as a stream: reasoning and text in pieces, each call's arguments in
        // pieces (the id and name first, as OpenAI sends them), the usage chunk, [DONE].
        let mut sse = String::new();
        let mut chunk = |delta: Value, finish: Option<&str>| {
            sse.push_str(&format!("data: {}\n\n", json!({"id": "chatcmpl-x", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})));
        };
        if let Some(r) = &reasoning {
            for piece in r.chars().collect::<Vec<_>>().chunks(3) {
                chunk(json!({"reasoning_content": piece.iter().collect::<String>()}), None);
            }
        }
        if let Some(t) = &text {
            for piece in t.chars().collect::<Vec<_>>().chunks(3) {
                chunk(json!({"content": piece.iter().collect::<String>()}), None);
            }
        }
        for (i, (id, name, input)) in calls.iter().enumerate() {
            let args = input.to_string();
            chunk(json!({"tool_calls": [{"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}), None);
            for piece in args.chars().collect::<Vec<_>>().chunks(4) {
                // Only the first delta of a call carries the id, unless the upstream repeats it.
                let mut call = json!({"index": i, "function": {"arguments": piece.iter().collect::<String>()}});
                if stream_ids { call["id"] = json!(id); }
                chunk(json!({"tool_calls": [call]}), None);
            }
        }
        chunk(json!({}), Some(finish));
        sse.push_str(&format!("data: {}\n\n", json!({"id": "chatcmpl-x", "choices": [], "usage": usage})));
        sse.push_str("data: [DONE]\n\n");
        let bytes = sse.as_bytes();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut stream = MessagesStream::new(3);
        let mut out = Vec::new();
        let mut from = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            out.extend_from_slice(&stream.push(&bytes[from..p]));
            from = p;
        }
        out.extend_from_slice(&stream.finish());
        let folded = fold(&out);
        prop_assert_eq!(&folded["content"], &answer["content"]);
        prop_assert_eq!(&folded["stop_reason"], &answer["stop_reason"]);
        prop_assert_eq!(&folded["usage"], &answer["usage"]);
        prop_assert_eq!(&folded["id"], &answer["id"]);
    }
}
