"""The official OpenAI Python SDK as a gateway caller: a chat with tools, then the same as a
stream, against the base URL given; prints what the SDK parsed as one JSON object."""

import json
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2] if len(sys.argv) > 2 else "sk-none")
model = sys.argv[3] if len(sys.argv) > 3 else "r-model"
messages = [
    {"role": "system", "content": "You report weather."},
    {"role": "user", "content": "Weather in Paris?"},
]
tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]

out = {}
completion = client.chat.completions.create(model=model, messages=messages, tools=tools)
message = completion.choices[0].message
out["content"] = message.content
out["tool_calls"] = [
    {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
    for c in (message.tool_calls or [])
]
out["finish_reason"] = completion.choices[0].finish_reason
out["prompt_tokens"] = completion.usage.prompt_tokens if completion.usage else None

# The tool's result goes back: the round trip.
messages.append(message.model_dump(exclude_none=True))
for call in message.tool_calls or []:
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "21 C"})
client.chat.completions.create(model=model, messages=messages, tools=tools)

stream = client.chat.completions.create(
    model=sys.argv[4] if len(sys.argv) > 4 else model,
    messages=messages[:2],
    tools=tools,
    stream=True,
    stream_options={"include_usage": True},
)
content, calls, usage, finish = "", {}, None, None
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage.completion_tokens
    for choice in chunk.choices:
        content += choice.delta.content or ""
        for call in choice.delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
            if call.id:
                entry["id"] = call.id
            if call.function and call.function.name:
                entry["name"] = call.function.name
            if call.function and call.function.arguments:
                entry["arguments"] += call.function.arguments
        finish = choice.finish_reason or finish
out["stream"] = {
    "content": content,
    "tool_calls": [calls[i] for i in sorted(calls)],
    "completion_tokens": usage,
    "finish_reason": finish,
}
print(json.dumps(out))
