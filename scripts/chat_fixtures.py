#!/usr/bin/env python3
"""Writes tests/fixtures/chat/expected.json: chat templates rendered by Python's Jinja2 in the
environment Hugging Face's `apply_chat_template` uses, the reference for src/chat.rs.

The environment (transformers' `_compile_jinja_template`): `ImmutableSandboxedEnvironment` with
`trim_blocks=True`, `lstrip_blocks=True`, the `loopcontrols` extension; globals
`raise_exception(message)` (raises `TemplateError(message)`) and `strftime_now(format)`; a
`tojson` filter that is `json.dumps(x, ensure_ascii=False, indent=indent)`. Variables:
`messages`, `add_generation_prompt`, `bos_token`, `eos_token`.

Templates (tests/fixtures/chat/):
- smollm2.jinja: `tokenizer.chat_template` of SmolLM2-135M-Instruct, copied byte for byte from
  the GGUF by this script with gguf-py when the model is present (see scripts/README.md for
  where it comes from; `SMOLLM2_GGUF` overrides the path), with its BOS/EOS token texts;
- llama3.jinja: written by hand after Meta's Llama 3 Instruct template (headers, `| trim`, BOS
  on the first message), spread over lines so that the output depends on trim_blocks and
  lstrip_blocks, plus a `raise_exception` for unknown roles;
- chatml.jinja: the same text as `CHATML_TEMPLATE` in src/chat.rs (the fallback; the Rust test
  checks that the two are equal);
- features.jinja: Python string methods, `tojson`, `namespace`, `break`/`continue`,
  `strftime_now`: the parts of HF's environment that minijinja needs help with.

Regenerate (from the repository root):
    python3 -m pip install jinja2 gguf
    python3 scripts/chat_fixtures.py
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from importlib import metadata
from pathlib import Path

import jinja2
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO = Path(__file__).resolve().parent.parent
CHAT_DIR = REPO / "tests" / "fixtures" / "chat"
SMOLLM2_MODEL = Path(
    os.environ.get(
        "SMOLLM2_GGUF",
        Path.home() / ".cache" / "gguf-llama" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf",
    )
)

# BOS/EOS texts per template. SmolLM2's are read from the GGUF when it is present.
SPECIAL_TOKENS = {
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "features": ("<s>", "</s>"),
}

CONVERSATIONS = {
    "system_user_assistant_user": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?  "},
    ],
    "user_only": [
        {"role": "user", "content": "Hello!"},
    ],
    "multiline_unicode": [
        {"role": "system", "content": "  Be brief.\n"},
        {"role": "user", "content": "Grüße\n  done  "},
        {"role": "assistant", "content": "<b>&'ok'</b>"},
        {"role": "user", "content": "/stop now"},
        {"role": "user", "content": "unreached"},
    ],
}

# (template, conversation) pairs expected to raise, rendered with both generation-prompt values.
ERROR_CASES = [
    (
        "llama3",
        "tool_role",
        [
            {"role": "user", "content": "Weather?"},
            {"role": "tool", "content": "{\"temp\": 21}"},
        ],
    ),
]


def extract_smollm2() -> None:
    """Copies SmolLM2's template and BOS/EOS texts out of the GGUF with gguf-py."""
    if not SMOLLM2_MODEL.exists():
        print(f"{SMOLLM2_MODEL} not found: keeping {CHAT_DIR / 'smollm2.jinja'} as it is")
        return
    import gguf

    reader = gguf.GGUFReader(str(SMOLLM2_MODEL))

    def field(key: str):
        f = reader.fields[key]
        return f.parts[f.data[0]]

    def text(key: str) -> str:
        return bytes(field(key)).decode("utf-8")

    source = text("tokenizer.chat_template")
    tokens = reader.fields["tokenizer.ggml.tokens"]
    token_text = lambda i: bytes(tokens.parts[tokens.data[i]]).decode("utf-8")
    bos = token_text(int(field("tokenizer.ggml.bos_token_id")[0]))
    eos = token_text(int(field("tokenizer.ggml.eos_token_id")[0]))
    SPECIAL_TOKENS["smollm2"] = (bos, eos)
    (CHAT_DIR / "smollm2.jinja").write_bytes(source.encode("utf-8"))
    print(f"smollm2.jinja: {len(source)} bytes from {SMOLLM2_MODEL.name}, bos {bos!r}, eos {eos!r}")


def hf_environment() -> ImmutableSandboxedEnvironment:
    """The environment transformers' `_compile_jinja_template` builds."""

    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, name: str, messages, add_generation_prompt: bool) -> dict:
    source = (CHAT_DIR / f"{name}.jinja").read_text(encoding="utf-8")
    bos, eos = SPECIAL_TOKENS[name]
    case = {
        "template": name,
        "bos_token": bos,
        "eos_token": eos,
        "messages": messages,
        "add_generation_prompt": add_generation_prompt,
    }
    try:
        case["expected"] = env.from_string(source).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos
        )
    except TemplateError as e:
        case["error"] = str(e)
    return case


def main() -> None:
    extract_smollm2()
    env = hf_environment()
    cases = []
    for name in ["smollm2", "llama3", "chatml", "features"]:
        for conv_name, messages in CONVERSATIONS.items():
            for agp in (False, True):
                case = render(env, name, messages, agp)
                assert "expected" in case, f"{name}/{conv_name} raised {case.get('error')!r}"
                cases.append({"name": f"{name}/{conv_name}/{'gen' if agp else 'nogen'}", **case})
    for name, conv_name, messages in ERROR_CASES:
        for agp in (False, True):
            case = render(env, name, messages, agp)
            assert "error" in case, f"{name}/{conv_name} did not raise"
            cases.append({"name": f"{name}/{conv_name}/{'gen' if agp else 'nogen'}", **case})
    out = {
        "generator": "scripts/chat_fixtures.py",
        "jinja2": metadata.version("jinja2"),
        "environment": "ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, "
        "extensions=[loopcontrols]), HF's raise_exception / strftime_now / tojson",
        "cases": cases,
    }
    path = CHAT_DIR / "expected.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
