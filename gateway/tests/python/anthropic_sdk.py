"""The official Anthropic Python SDK as a gateway caller (base URL = the gateway): a message
with a tool-use round trip and a stream through a translated (OpenAI-compatible) connection,
count_tokens both ways, a message to a native Anthropic connection, and each error type as
the SDK's exception; prints what the SDK parsed as one JSON object."""

import json
import sys

import anthropic

base = sys.argv[1]
bob = anthropic.Anthropic(base_url=base, api_key="sk-bob", max_retries=0)
root = anthropic.Anthropic(base_url=base, api_key="sk-root", max_retries=0)
# Claude Code's way: a bearer token instead of an API key.
bearer = anthropic.Anthropic(base_url=base, auth_token="sk-bob", max_retries=0)
tools = [{"name": "weather", "description": "Weather now",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
messages = [{"role": "user", "content": "Weather in Paris?"}]
out = {}


def summary(message):
    text = "".join(b.text for b in message.content if b.type == "text")
    uses = [{"id": b.id, "name": b.name, "input": b.input} for b in message.content if b.type == "tool_use"]
    return {"text": text, "tool_use": uses[0] if uses else None, "stop_reason": message.stop_reason,
            "usage": [message.usage.input_tokens, message.usage.output_tokens]}


first = bearer.messages.create(model="gpt-x", max_tokens=100, system="You report weather.",
                               tools=tools, messages=messages)
out["tool"] = summary(first)
# The round trip: the SDK's assistant content and the tool's result go back.
messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
messages.append({"role": "user", "content": [
    {"type": "tool_result", "tool_use_id": b.id, "content": "21 C"} for b in first.content if b.type == "tool_use"]})
bob.messages.create(model="gpt-x", max_tokens=100, tools=tools, messages=messages)

with bob.messages.stream(model="gpt-s", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
out["stream"] = {"text": text, "stop_reason": final.stop_reason, "output_tokens": final.usage.output_tokens}

out["count_openai"] = bob.messages.count_tokens(model="gpt-x", messages=messages, tools=tools).input_tokens
out["count_anthropic"] = bob.messages.count_tokens(model="a.claude-x", messages=messages).input_tokens
# The native connection: a tool-use round trip, a stream, an error of Anthropic's own.
native = bob.messages.create(model="a.claude-x", max_tokens=100, tools=tools, messages=messages[:1])
out["native"] = summary(native)
bob.messages.create(model="a.claude-x", max_tokens=100, tools=tools, messages=[
    messages[0],
    {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in native.content]},
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": b.id, "content": "3 C"} for b in native.content if b.type == "tool_use"]},
])
with bob.messages.stream(model="b.claude-x", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
out["native_stream"] = {"text": text, "stop_reason": final.stop_reason, "output_tokens": final.usage.output_tokens}


def failure(client, model, **extra):
    try:
        client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "x"}], **extra)
    except anthropic.APIStatusError as e:
        return [type(e).__name__, e.status_code, e.body["error"]["type"]]
    return None


errors = {
    "authentication": failure(anthropic.Anthropic(base_url=base, api_key="sk-wrong", max_retries=0), "gpt-x"),
    "permission": failure(bob, "secret"),
    "not_found": failure(root, "no-such-model"),
    "invalid_request": failure(bob, "gpt-x", tools=[{"type": "web_search_20250305", "name": "web_search"}]),
    "native_overloaded": failure(bob, "c.claude-x"),
}
# Bob may make 12 requests a minute; he has made 11 (count_tokens counts too).
for _ in range(3):
    limited = failure(bob, "gpt-x")
    if limited:
        break
errors["rate_limit"] = limited
out["errors"] = errors
print(json.dumps(out))
