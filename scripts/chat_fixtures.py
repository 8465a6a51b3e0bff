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
  `strftime_now`: the parts of HF's environment that minijinja needs help with;
- the real templates of the supported families, copied byte for byte (same file names) from
  llama.cpp's `models/templates/` at commit 0c1e57098bba43ac29e6e3b677cdceebdd22334f (the commit
  llama-cpp-python 0.3.36 vendors; a checkout in /tmp/llama.cpp), where llama.cpp's
  `scripts/get_chat_template.py <repo>` took each from the model's Hugging Face tokenizer config
  (models/templates/README.md). sha256 of each file:
  - Qwen-Qwen2.5-7B-Instruct.jinja (Qwen/Qwen2.5-7B-Instruct)
    cd8e9439f0570856fd70470bf8889ebd8b5d1107207f67a5efb46e342330527f
  - Qwen-Qwen3-0.6B.jinja (Qwen/Qwen3-0.6B)
    87a2728cb8dc9fe424d624542f6060ec05a1d285ebbec578bb078900e33396b5
  - microsoft-Phi-3.5-mini-instruct.jinja (microsoft/Phi-3.5-mini-instruct)
    78d976a442bcde2f0be15aafbb8e3050e1104f86732266f68403251b89982a90
  - google-gemma-2-2b-it.jinja (google/gemma-2-2b-it; Gemma's turn format. Gemma 3's own template
    is not in that directory, and the Gemma 3 270M GGUF on this machine has no
    `tokenizer.chat_template` key, so there is no Gemma 3 fixture)
    ecd6ae513fe103f0eb62e8ab5bfa8d0fe45c1074fa398b089c93a7e70c15cfd6
  - meta-llama-Llama-3.1-8B-Instruct.jinja (meta-llama/Llama-3.1-8B-Instruct)
    e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65
  - mistralai-Mistral-Nemo-Instruct-2407.jinja (mistralai/Mistral-Nemo-Instruct-2407)
    e4676cb56dffea7782fd3e2b577cfaf1e123537e6ef49b3ec7caa6c095c62272
  Their BOS/EOS texts (`SPECIAL_TOKENS`) are the models' own (`bos_token` / `eos_token` of their
  tokenizer configs; `""` where the model has no BOS, as for Qwen). The script checks the sha256s.

Some templates refuse some conversations with `raise_exception` (Gemma 2: no system role; Mistral
Nemo: roles must alternate after the system message): `RAISES` lists those pairs with the message,
and the case records `error` instead of `expected`. Every other pair must render.

Regenerate (from the repository root):
    python3 -m pip install jinja2 gguf
    python3 scripts/chat_fixtures.py
"""

from __future__ import annotations

import hashlib
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
    # Neither Qwen template uses bos_token or eos_token; the models have no BOS (bos_token null).
    "Qwen-Qwen2.5-7B-Instruct": ("", "<|im_end|>"),
    "Qwen-Qwen3-0.6B": ("", "<|im_end|>"),
    # The template ends with eos_token when no generation prompt is asked for.
    "microsoft-Phi-3.5-mini-instruct": ("<s>", "<|endoftext|>"),
    # The template begins with bos_token.
    "google-gemma-2-2b-it": ("<bos>", "<eos>"),
    # The template begins with bos_token; it does not use eos_token.
    "meta-llama-Llama-3.1-8B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    # bos_token first, eos_token after each assistant turn.
    "mistralai-Mistral-Nemo-Instruct-2407": ("<s>", "</s>"),
}

# The real templates (see the docstring) and the sha256 of each file.
FAMILY_TEMPLATES = {
    "Qwen-Qwen2.5-7B-Instruct": "cd8e9439f0570856fd70470bf8889ebd8b5d1107207f67a5efb46e342330527f",
    "Qwen-Qwen3-0.6B": "87a2728cb8dc9fe424d624542f6060ec05a1d285ebbec578bb078900e33396b5",
    "microsoft-Phi-3.5-mini-instruct": "78d976a442bcde2f0be15aafbb8e3050e1104f86732266f68403251b89982a90",
    "google-gemma-2-2b-it": "ecd6ae513fe103f0eb62e8ab5bfa8d0fe45c1074fa398b089c93a7e70c15cfd6",
    "meta-llama-Llama-3.1-8B-Instruct": "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65",
    "mistralai-Mistral-Nemo-Instruct-2407": "e4676cb56dffea7782fd3e2b577cfaf1e123537e6ef49b3ec7caa6c095c62272",
}

TEMPLATES = ["smollm2", "llama3", "chatml", "features", *FAMILY_TEMPLATES]

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
    # No system message, roles alternating: what Gemma 2 accepts beyond a single user turn.
    "user_assistant_user": [
        {"role": "user", "content": "Hi there."},
        {"role": "assistant", "content": "  Hello! How can I help?\n"},
        {"role": "user", "content": "Tell me a joke."},
    ],
    # Ends with an assistant turn, and the assistant turns carry reasoning: Qwen3 drops it from the
    # turn before the last user message and keeps it in the one after.
    "reasoning_history": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "<think>\nThe user asks about France.\n</think>\n\nParis."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "<think>\n\nItaly, then.\n\n</think>\n\n\nRome."},
    ],
}

# (template, conversation) pairs of CONVERSATIONS that raise, with the message.
_GEMMA_NO_SYSTEM = "System role not supported"
_MISTRAL_ALTERNATE = (
    "After the optional system message, conversation roles must alternate user/assistant/user/assistant/..."
)
RAISES = {
    ("google-gemma-2-2b-it", "system_user_assistant_user"): _GEMMA_NO_SYSTEM,
    ("google-gemma-2-2b-it", "multiline_unicode"): _GEMMA_NO_SYSTEM,
    ("google-gemma-2-2b-it", "reasoning_history"): _GEMMA_NO_SYSTEM,
    ("mistralai-Mistral-Nemo-Instruct-2407", "multiline_unicode"): _MISTRAL_ALTERNATE,
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
    for name, sha256 in FAMILY_TEMPLATES.items():
        got = hashlib.sha256((CHAT_DIR / f"{name}.jinja").read_bytes()).hexdigest()
        assert got == sha256, f"{name}.jinja: sha256 {got}, not llama.cpp's {sha256}"
    env = hf_environment()
    cases = []
    for name in TEMPLATES:
        for conv_name, messages in CONVERSATIONS.items():
            for agp in (False, True):
                case = render(env, name, messages, agp)
                raises = RAISES.get((name, conv_name))
                if raises is None:
                    assert "expected" in case, f"{name}/{conv_name} raised {case.get('error')!r}"
                else:
                    assert case.get("error") == raises, f"{name}/{conv_name}: {case.get('error')!r}, not {raises!r}"
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
