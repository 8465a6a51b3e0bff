#!/usr/bin/env python3
"""Writes tests/fixtures/vocab/special-cases.json: what llama.cpp's tokenizer does on the
vocabulary fixtures beyond llama.cpp's own suites (which cover add_special = parse_special =
false only):

- "encode": ids of texts with special tokens, for every (add_special, parse_special);
- "decode": llama_detokenize of the ids of every suite text (BOS added), with
  (remove_special, unparse_special) = (false, true), (false, false), (true, false);
- "pieces": llama_token_to_piece of a selection of ids, special = true and false;
- "vocab": BOS/EOS/EOT ids, add_bos, and every end-of-generation id (llama_vocab_is_eog);
- "patched_pre": the gpt-2 vocabulary with tokenizer.ggml.pre rewritten to "default" and to
  "smollm" (pre-tokenizers no fixture vocabulary uses), tokenizing every gpt-2 suite text and
  decoding the result.

Everything comes from llama.cpp through llama-cpp-python's C bindings (vocab_only loads).

Regenerate (from the repository root):
    python3 -m pip install llama-cpp-python==0.3.36
    python3 scripts/tokenizer_fixtures.py
"""

import ctypes
import json
import os
import random
import struct
import sys
import tempfile

import llama_cpp as L

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB_DIR = os.path.join(ROOT, "tests", "fixtures", "vocab")
OUT = os.path.join(VOCAB_DIR, "special-cases.json")
SEP = "\n__ggml_vocab_test__\n"

ENCODE_TEXTS = {
    "llama-bpe": [
        "<|begin_of_text|>Hello world<|eot_id|>",
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "Hi<|eot_id|> there <|reserved_special_token_5|>!",
        "<|eot_id|><|eot_id|>",
        "not special: <|eot_id",
        "",
    ],
    "llama-spm": [
        "<s>Hello</s> world",
        "Hello <s> world",
        "</s>",
        "<unk>x",
        " leading space",
        "",
    ],
    "gpt-2": [
        "<|endoftext|>Hello<|endoftext|> world",
        "a<|endoftext|>",
        "",
    ],
}


def load(path):
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(path.encode(), params)
    if not model:
        sys.exit(f"llama.cpp could not load {path}")
    return model, L.llama_model_get_vocab(model)


def tokenize(vocab, text, add_special, parse_special):
    data = text.encode()
    cap = len(data) + 16
    ids = (L.llama_token * cap)()
    n = L.llama_tokenize(vocab, data, len(data), ids, cap, add_special, parse_special)
    if n < 0:
        sys.exit(f"tokenize {text!r}: buffer too small ({-n})")
    return list(ids[:n])


def detokenize(vocab, ids, remove_special, unparse_special):
    arr = (L.llama_token * max(1, len(ids)))(*ids)
    cap = 64 + 64 * len(ids)
    buf = ctypes.create_string_buffer(cap)
    n = L.llama_detokenize(vocab, arr, len(ids), buf, cap, remove_special, unparse_special)
    if n < 0:
        sys.exit(f"detokenize {ids}: buffer too small ({-n})")
    return buf.raw[:n]


def piece(vocab, token, special):
    buf = ctypes.create_string_buffer(256)
    n = L.llama_token_to_piece(vocab, token, buf, 256, 0, special)
    if n < 0:
        sys.exit(f"piece {token}: buffer too small ({-n})")
    return buf.raw[:n]


def suite_texts(name):
    with open(os.path.join(VOCAB_DIR, f"ggml-vocab-{name}.gguf.inp"), encoding="utf-8") as f:
        raw = f.read()
    texts, pos = [], 0
    while pos < len(raw):
        nxt = raw.find(SEP, pos)
        if nxt < 0:
            texts.append(raw[pos:])
            break
        texts.append(raw[pos:nxt])
        pos = nxt + len(SEP)
    return texts


def decode_cases(vocab, texts):
    cases = []
    for text in texts:
        ids = tokenize(vocab, text, True, False)
        cases.append({
            "text": text,
            "ids": ids,
            "keep_render_hex": detokenize(vocab, ids, False, True).hex(),
            "keep_hide_hex": detokenize(vocab, ids, False, False).hex(),
            "remove_hide_hex": detokenize(vocab, ids, True, False).hex(),
        })
    return cases


def patch_pre(src, old, new, dst):
    """Rewrites the string value of tokenizer.ggml.pre (the vocab files have no tensors, so
    nothing after the metadata moves)."""
    key = b"tokenizer.ggml.pre"

    def kv(value):
        return struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(value)) + value

    with open(src, "rb") as f:
        data = f.read()
    assert data.count(kv(old)) == 1, "tokenizer.ggml.pre not found as expected"
    with open(dst, "wb") as f:
        f.write(data.replace(kv(old), kv(new)))


def to_json_lines(value, depth=0):
    """JSON with one list element or one small object per line (readable diffs)."""
    pad = " " * depth
    if isinstance(value, dict) and depth < 2:
        items = [f'{pad} {json.dumps(k)}: {to_json_lines(v, depth + 1).lstrip()}' for k, v in value.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}" + ("\n" if depth == 0 else "")
    if isinstance(value, list) and value and isinstance(value[0], dict):
        items = [pad + " " + json.dumps(v, ensure_ascii=False) for v in value]
        return pad + "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return pad + json.dumps(value, ensure_ascii=False)


def main():
    out = {
        "generator": "scripts/tokenizer_fixtures.py",
        "llama_cpp_python": L.__version__,
        "encode": [],
        "decode": {},
        "pieces": {},
        "vocab": {},
        "patched_pre": {},
    }
    for name, texts in ENCODE_TEXTS.items():
        model, vocab = load(os.path.join(VOCAB_DIR, f"ggml-vocab-{name}.gguf"))
        for text in texts:
            for add_special in (False, True):
                for parse_special in (False, True):
                    out["encode"].append({
                        "vocab": name,
                        "text": text,
                        "add_special": add_special,
                        "parse_special": parse_special,
                        "ids": tokenize(vocab, text, add_special, parse_special),
                    })
        out["decode"][name] = decode_cases(vocab, suite_texts(name) + texts)

        n = L.llama_vocab_n_tokens(vocab)
        rng = random.Random(0)
        ids = sorted(set(list(range(min(n, 300))) + list(range(n - 300, n)) + rng.sample(range(n), 300)))
        out["pieces"][name] = [
            {"id": i, "special_hex": piece(vocab, i, True).hex(), "plain_hex": piece(vocab, i, False).hex()}
            for i in ids
        ]
        out["vocab"][name] = {
            "n_tokens": n,
            "bos": L.llama_vocab_bos(vocab),
            "eos": L.llama_vocab_eos(vocab),
            "eot": L.llama_vocab_eot(vocab),
            "add_bos": bool(L.llama_vocab_get_add_bos(vocab)),
            "eog": [i for i in range(n) if L.llama_vocab_is_eog(vocab, i)],
        }
        L.llama_model_free(model)

    with tempfile.TemporaryDirectory() as tmp:
        for pre in ("default", "smollm"):
            path = os.path.join(tmp, f"gpt-2-{pre}.gguf")
            patch_pre(os.path.join(VOCAB_DIR, "ggml-vocab-gpt-2.gguf"), b"gpt-2", pre.encode(), path)
            model, vocab = load(path)
            cases = []
            for text in suite_texts("gpt-2"):
                ids = tokenize(vocab, text, False, False)
                cases.append({"text": text, "ids": ids, "decoded_hex": detokenize(vocab, ids, False, True).hex()})
            out["patched_pre"][pre] = cases
            L.llama_model_free(model)

    with open(OUT, "w", encoding="utf-8") as f:
        f.write(to_json_lines(out))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
