//! Property tests: any conversation of text, tool calls and tool results reaches a Responses
//! upstream with its ids, arguments and order; any Responses answer of text, function calls
//! and reasoning comes back as the same Chat Completions answer, as JSON and as a stream cut
//! anywhere.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Value, json};
use tower_openai_responses::{ChatStream, Reframe, chat_to_responses, responses_to_chat};

#[derive(Clone, Debug)]
enum Step {
    User(String),
    Assistant(String),
    Calls(Vec<Call>),
    Result(String, String),
}

fn text() -> impl Strategy<Value = String> {
    // Any text, quotes, escapes and non-ASCII included.
    "[a-zA-Z0-9 \"\\\\{}é😀\n]{1,20}"
}

fn id() -> impl Strategy<Value = String> {
    "call_[a-zA-Z0-9]{1,12}"
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        text().prop_map(Step::User),
        text().prop_map(Step::Assistant),
        prop::collection::vec((id(), "[a-z_]{1,10}", text()), 1..4).prop_map(Step::Calls),
        (id(), text()).prop_map(|(i, t)| Step::Result(i, t)),
    ]
}

fn message(step: &Step) -> Value {
    match step {
        Step::User(t) => json!({"role": "user", "content": t}),
        Step::Assistant(t) => json!({"role": "assistant", "content": t}),
        Step::Calls(calls) => json!({"role": "assistant", "content": null, "tool_calls":
            calls.iter().map(|(id, name, args)| json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": args}})).collect::<Vec<_>>()}),
        Step::Result(id, t) => json!({"role": "tool", "tool_call_id": id, "content": t}),
    }
}

fn expected_items(step: &Step) -> Vec<Value> {
    match step {
        Step::User(t) => vec![json!({"role": "user", "content": t})],
        Step::Assistant(t) => vec![json!({"role": "assistant", "content": t})],
        Step::Calls(calls) => calls
            .iter()
            .map(|(id, name, args)| {
                json!({"type": "function_call", "call_id": id, "name": name, "arguments": args})
            })
            .collect(),
        Step::Result(id, t) => {
            vec![json!({"type": "function_call_output", "call_id": id, "output": t})]
        }
    }
}

#[derive(Clone, Debug)]
enum Item {
    Text(String),
    Call(String, String, String),
    Reasoning(String),
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        text().prop_map(Item::Text),
        (id(), "[a-z_]{1,10}", text()).prop_map(|(i, n, a)| Item::Call(i, n, a)),
        text().prop_map(Item::Reasoning),
    ]
}

/// The Responses events of `items`: each text and argument string in two deltas.
fn events(items: &[Item], usage: &Value) -> String {
    let mut out = vec![json!({"type": "response.created",
        "response": {"id": "resp_p", "created_at": 1, "model": "m"}})];
    let halves = |s: &str| {
        let cut = s
            .char_indices()
            .nth(s.chars().count() / 2)
            .map_or(s.len(), |(i, _)| i);
        (s[..cut].to_owned(), s[cut..].to_owned())
    };
    for (n, item) in items.iter().enumerate() {
        match item {
            Item::Text(t) => {
                let (a, b) = halves(t);
                for d in [a, b] {
                    out.push(json!({"type": "response.output_text.delta", "delta": d}));
                }
            }
            Item::Reasoning(t) => {
                out.push(json!({"type": "response.reasoning_summary_text.delta", "delta": t}))
            }
            Item::Call(call_id, name, args) => {
                let item_id = format!("fc_{n}");
                out.push(json!({"type": "response.output_item.added", "item": {
                    "type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": ""}}));
                let (a, b) = halves(args);
                for d in [a, b] {
                    out.push(json!({"type": "response.function_call_arguments.delta", "item_id": item_id, "delta": d}));
                }
            }
        }
    }
    out.push(
        json!({"type": "response.completed", "response": {"status": "completed", "usage": usage}}),
    );
    out.iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

/// A tool call: its id, name and arguments.
type Call = (String, String, String);

/// A stream's chunks folded into one answer.
struct Folded {
    content: String,
    calls: Vec<Call>,
    finish: String,
    usage: Value,
}

/// A stream's chunks folded into one answer: content, tool calls by index, the finish
/// reason, the usage.
fn fold(stream: &str) -> Folded {
    let (mut content, mut calls, mut finish, mut usage) = (
        String::new(),
        Vec::<Call>::new(),
        String::new(),
        Value::Null,
    );
    for data in stream
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
    {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(u) = chunk.get("usage") {
            usage = u.clone();
        }
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        let delta = &choice["delta"];
        content.push_str(delta["content"].as_str().unwrap_or(""));
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = call["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push((
                    call["id"].as_str().unwrap().into(),
                    call["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            calls[i]
                .2
                .push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = f.to_owned();
        }
    }
    Folded {
        content,
        calls,
        finish,
        usage,
    }
}

proptest! {
    #[test]
    fn a_conversation_keeps_its_ids_arguments_and_order(steps in prop::collection::vec(step(), 0..12)) {
        let mut messages = vec![json!({"role": "system", "content": "sys"})];
        messages.extend(steps.iter().map(message));
        let chat = json!({"model": "m", "messages": messages});
        let out = chat_to_responses(chat.as_object().unwrap()).unwrap();
        let expected: Vec<Value> = steps.iter().flat_map(expected_items).collect();
        prop_assert_eq!(&out["input"], &Value::Array(expected));
        prop_assert_eq!(&out["instructions"], &json!("sys"));
    }

    #[test]
    fn an_answer_comes_back_the_same_as_json_and_as_a_stream_cut_anywhere(
        items in prop::collection::vec(item(), 0..8),
        cut in 1usize..64,
    ) {
        let usage = json!({"input_tokens": 11, "output_tokens": 5, "total_tokens": 16});
        // The JSON answer.
        let output: Vec<Value> = items.iter().map(|i| match i {
            Item::Text(t) => json!({"type": "message", "content": [{"type": "output_text", "text": t}]}),
            Item::Call(c, n, a) => json!({"type": "function_call", "call_id": c, "name": n, "arguments": a}),
            Item::Reasoning(t) => json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": t}]}),
        }).collect();
        let json_answer = responses_to_chat(&json!({"id": "resp_p", "status": "completed", "output": output, "usage": usage}));
        let message = &json_answer["choices"][0]["message"];
        let calls: Vec<Call> = message["tool_calls"].as_array().into_iter().flatten()
            .map(|c| (c["id"].as_str().unwrap().into(), c["function"]["name"].as_str().unwrap().into(),
                      c["function"]["arguments"].as_str().unwrap().into()))
            .collect();
        let expected_calls: Vec<Call> = items.iter().filter_map(|i| match i {
            Item::Call(c, n, a) => Some((c.clone(), n.clone(), a.clone())),
            _ => None,
        }).collect();
        prop_assert_eq!(&calls, &expected_calls);
        let text: String = items.iter().filter_map(|i| match i { Item::Text(t) => Some(t.as_str()), _ => None }).collect();
        prop_assert_eq!(message["content"].as_str().unwrap_or(""), text.as_str());

        // The stream, cut into pieces of `cut` bytes.
        let events = events(&items, &usage);
        let mut stream = ChatStream::new(true);
        let mut out = Vec::new();
        for piece in events.as_bytes().chunks(cut) {
            out.extend_from_slice(&stream.push(piece));
        }
        out.extend_from_slice(&stream.finish());
        let out = String::from_utf8(out).unwrap();
        prop_assert!(out.ends_with("data: [DONE]\n\n"));
        let folded = fold(&out);
        prop_assert_eq!(folded.content, text);
        prop_assert_eq!(&folded.calls, &expected_calls);
        prop_assert_eq!(folded.finish.as_str(), json_answer["choices"][0]["finish_reason"].as_str().unwrap());
        prop_assert_eq!(&folded.usage, &json_answer["usage"]);
    }
}
