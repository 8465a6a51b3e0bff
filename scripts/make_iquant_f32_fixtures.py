"""Writes llama.cpp's f32 reference for SmolLM2 in IQ4_NL, IQ4_XS, IQ3_S and MXFP4:
tests/fixtures/llama/iquant-f32.json (records `smollm2-iq4_nl-f32`, `smollm2-iq4_xs-f32`,
`smollm2-iq3_s-f32`, `smollm2-mxfp4-f32`).

What: the reference for a forward pass that keeps activations in f32 (our wgpu device) on these
files' weights. llama.cpp's CPU backend rounds activations to 8 bits per block before a quantized
matmul, so its run on the quantized file (the `smollm2-<type>` records of
tests/fixtures/llama/default-kv.json) is not that reference. Instead llama.cpp runs on the file's
F32 twin: every tensor dequantized to F32 by gguf-py (`gguf.quants.dequantize`, through
fixture_common.write_dequantized_f32: all metadata copied, general.file_type ALL_F32), i.e. f32
math on exactly the quantized weights. The numbers come from llama.cpp (llama-cpp-python 0.3.36,
llama.cpp 0c1e57098) and gguf-py's numpy dequantizer, never from this project's code.

How: the same record as make_family_fixtures.py's `{key}-f32` ones, made by its own function
(`run_f32_twin`, imported, not copied): llama.cpp opened as llama-cpp-python's defaults but with an
F32 KV cache (type_k/type_v F32) and flash attention off, the quantized record's n_ctx (512),
2 threads, logits of the last position only; greedy decoding by argmax after each `llm.eval`
(make_default_kv_fixtures.greedy); the quantized record's first 3 raw prompts ("The capital of
France is", "def fibonacci(n):", "Once upon a time"; the prompt tokens are asserted equal to its
own) with 16 greedy tokens each, and the top-1/top-2 logit gap of every step. The source files are
make_default_kv_fixtures.py's variants in ~/.cache/gguf-llama/models/bench/
(SmolLM2-135M-Instruct.{IQ4_NL,IQ4_XS,IQ3_S,MXFP4}.gguf; scripts/make_iquant_models.py makes them),
and each must have the tensor_data_sha256 its default-kv.json record has. The twins are written
beside them as `SmolLM2-135M-Instruct.{TYPE}-dequant-f32.gguf` (about 540 MB each, never committed;
rewritten on every run).

Fields per record (as families.json's `-f32` records, so tests/common/greedy.rs
`record("llama/iquant-f32.json", KEY, CacheTypes::F32)` reads it): `settings` (what llama.cpp
resolved: type_k/type_v "F32", flash_attn_type "disabled", n_ctx ...), `n_gen` (16), `n_ctx`,
`prompts` (`kind`, `prompt`, `prompt_tokens`, `greedy_tokens`, `generated_text`, `top2_gaps`; no
.npy), `quantized_record` (the default-kv.json key), `quantized_record_json`, `file` (the source
file's name), `tensor_data_sha256` (make_default_kv_fixtures.tensor_data_sha256 of the source file,
so that a test can check it has the same file), `twin_file`, `twin_tensor_data_sha256`, `source`.

    python3 scripts/make_iquant_f32_fixtures.py [--only smollm2-iq4_nl-f32|smollm2-iq4_xs-f32|
                                                 smollm2-iq3_s-f32|smollm2-mxfp4-f32]

(`--only KEY` rewrites that record; every other record is read back and written unchanged.) Needs
llama-cpp-python 0.3.36, gguf, numpy and the four files; about 40 s per record on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402
import make_default_kv_fixtures as dkv  # noqa: E402
from make_family_fixtures import run_f32_twin  # noqa: E402

OUT = fc.LLAMA_DIR / "iquant-f32.json"
# The default-kv.json records (and their files) that get an `-f32` record.
QUANTIZED_KEYS = ["smollm2-iq4_nl", "smollm2-iq4_xs", "smollm2-iq3_s", "smollm2-mxfp4"]
KEYS = [f"{key}-f32" for key in QUANTIZED_KEYS]


def run(key: str, default_kv: dict, doc: dict) -> None:
    """The `{key}-f32` record of `doc`, from default-kv.json's record `key` and its file."""
    base = default_kv["models"].get(key)
    if base is None:
        raise SystemExit(f"no `{key}` record in {fc.rel(dkv.OUT)}")
    src = dkv.variant_file(key)
    if not src.exists():
        raise SystemExit(f"{src} not found; scripts/make_iquant_models.py writes it")
    got = dkv.tensor_data_sha256(src)
    if got != base["tensor_data_sha256"]:
        raise SystemExit(
            f"{src}: tensor_data_sha256 {got}, {fc.rel(dkv.OUT)} `{key}` has {base['tensor_data_sha256']}"
        )
    # run_f32_twin reads the quantized record (its prompts, n_ctx and tensor digest) from the doc
    # it writes into; hand it default-kv.json's record, with the n_ctx llama.cpp resolved for it.
    scratch = {"models": {key: {**base, "n_ctx": base["settings"]["n_ctx"]}}}
    entry = run_f32_twin(key, src, scratch)
    entry["quantized_record_json"] = fc.rel(dkv.OUT)
    entry["file"] = src.name
    entry["tensor_data_sha256"] = got
    entry["source"] += f"; the `{key}` record is in {fc.rel(dkv.OUT)} ({dkv.variant_source(key)})"
    doc["models"][f"{key}-f32"] = entry


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=KEYS)
    args = ap.parse_args()
    fc.quiet_llama()
    start = time.time()
    default_kv = fc.read_json(dkv.OUT)
    doc = fc.read_json(OUT) if OUT.exists() else {}
    doc.update(
        {
            "generator": "scripts/make_iquant_f32_fixtures.py",
            "versions": fc.versions(),
            "decoding": "argmax of llama_get_logits after each llm.eval (one token per eval)",
            "tokenize": "llm.tokenize(text.encode(), add_bos=True, special=True)",
            "dequantizer": "gguf.quants.dequantize (fixture_common.write_dequantized_f32)",
        }
    )
    doc.setdefault("models", {})
    for key in QUANTIZED_KEYS:
        if args.only in (None, f"{key}-f32"):
            run(key, default_kv, doc)
    doc["models"] = {k: doc["models"][k] for k in KEYS if k in doc["models"]}
    fc.write_json(OUT, doc)
    print(f"wrote {fc.rel(OUT)} in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
