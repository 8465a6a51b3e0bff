"""Drives a running `serve` example with OpenAI's own Python client (the `openai` package), as a
user's tools would. Prints one JSON object of what it got; tests/server_clients.rs checks it.

usage: python3 openai_client.py BASE_URL API_KEY
"""
import json
import sys

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
out = {}

out["models"] = [m.id for m in client.models.list().data]

messages = [{"role": "user", "content": "Tell me a story"}]
chat = client.chat.completions.create(
    model=out["models"][0], messages=messages, max_tokens=24, temperature=0,
    logprobs=True, top_logprobs=2,
)
out["chat"] = {
    "content": chat.choices[0].message.content,
    "role": chat.choices[0].message.role,
    "finish_reason": chat.choices[0].finish_reason,
    "usage": chat.usage.model_dump(),
    "logprobs": [
        {"token": t.token, "logprob": t.logprob, "top": [a.token for a in t.top_logprobs]}
        for t in chat.choices[0].logprobs.content
    ],
}

stream = client.chat.completions.create(
    model=out["models"][0], messages=messages, max_tokens=24, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
parts, finish, usage = [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage.model_dump()
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
out["chat_stream"] = {"content": "".join(parts), "finish_reason": finish, "usage": usage}

completion = client.completions.create(
    model=out["models"][0], prompt="Once upon a time", max_tokens=24, temperature=0,
)
out["completion"] = {
    "text": completion.choices[0].text,
    "finish_reason": completion.choices[0].finish_reason,
}
stream = client.completions.create(
    model=out["models"][0], prompt="Once upon a time", max_tokens=24, temperature=0, stream=True,
)
out["completion_stream"] = {"text": "".join(c.choices[0].text for c in stream if c.choices)}

schema = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12},
                   "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"], "additionalProperties": False,
}
structured = client.chat.completions.create(
    model=out["models"][0], messages=[{"role": "user", "content": "Describe a person."}],
    max_tokens=80, temperature=0,
    response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
)
out["structured"] = {"content": structured.choices[0].message.content,
                     "finish_reason": structured.choices[0].finish_reason}

errors = {}
try:
    client.completions.create(model="m", prompt="once upon a time " * 400, max_tokens=4)
except openai.BadRequestError as e:
    errors["too_long"] = {"status": e.status_code, "code": e.code, "param": e.param}
try:
    client.chat.completions.create(model="m", messages=messages, temperature="hot")
except openai.BadRequestError as e:
    errors["bad_field"] = {"status": e.status_code, "param": e.param}
try:
    openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).models.list()
except openai.AuthenticationError as e:
    errors["bad_key"] = {"status": e.status_code, "code": e.code}
out["errors"] = errors

print(json.dumps(out))
