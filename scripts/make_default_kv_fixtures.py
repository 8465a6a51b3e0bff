"""Writes the reference of llama.cpp as its users run it: tests/fixtures/llama/default-kv.json.

llama.cpp (llama-cpp-python's `Llama`) is opened with its defaults: F16 KV cache (`type_k`,
`type_v` left unset), flash attention off (llama-cpp-python's default; llama-cli's "auto" turns
it on for the CPU, which is not reproduced here), logits of the last position only
(`logits_all=False`, so the last layer's tail and the output matmul run on one row, as in
llama-cli), n_batch = n_ubatch = 512. Only n_ctx, n_threads (2) and the seed are set. The
settings that llama.cpp resolved are read back from the context and recorded.

Greedy decoding is the argmax of the last position's logits (`llama_get_logits`) after each
`llm.eval`, one token at a time; llama.cpp's sampler is not used. For every prompt the file
records the prompt tokens, the greedy tokens and text, the top-1/top-2 gap of every step, and
the last prompt position's logits (`default-kv-{model}-p{i}.npy`, float32 [n_vocab]).

Models: models/stories260k-f32.gguf (committed), SmolLM2-135M-Instruct Q4_1 (the file
.ci/run fetches; see scripts/README.md), and SmolLM2-135M-Instruct Q8_0: llama.cpp's Q8_0 of the
Q4_1 file's weights dequantized to F32 by gguf-py (scripts/make_bench_models.py writes it). The
tests write the same file with this project's exporter (`ExportType::Q8_0`, byte for byte
llama.cpp's quantizer) and check it against the sha256 of the tensor data recorded here. Chat prompts are rendered with the file's Jinja
template as llama-cpp-python's chat completion renders it (make_llama_fixtures.render_chat).

SmolLM2-135M-Instruct F16 and Q4_0 are llama.cpp's conversions of the same F32 weights
(`llama_model_quantize`, `LLAMA_FTYPE_MOSTLY_F16` / `_Q4_0`), written next to the Q8_0 file when
missing; the tests write them with `ExportType::F16` / `ExportType::Q4_0` and check them the same
way. `smollm2-q4_1-kq8`: the Q4_1
file with llama.cpp's `--cache-type-k q8_0` (values f16, flash attention off, as its default).
The other `LLAMA_CPP_VARIANTS` (bf16, q5_0, q5_1, the K-quant mixes, iq4_nl, iq4_xs, iq3_s, tq1_0,
tq2_0) are made the same way; for SmolLM2's 576-wide rows llama.cpp falls back to IQ4_NL (IQ
types) or Q4_0 (TQ types) on every matrix but the 1536-wide ffn_down. Every variant records the
sha256 of its tensors and its `source`; the IQ/TQ/MXFP4 ones (and any variant written since they
were added) also `tensor_types` (ggml type name -> number of tensors, as gguf-py reads the file).

Two variants that no file type gives (`GGML_VARIANTS`), both quantized by ggml itself:
`smollm2-iq3_xxs` is llama_model_quantize(IQ3_XXS), which without an importance matrix makes
ffn_down Q4_K/Q3_K (and refuses an IQ3_XXS override), with ffn_down then re-quantized to IQ3_XXS
from the F32 weights by libggml-base's `ggml_quantize_chunk` (imatrix NULL) and the file rewritten
by gguf-py's GGUFWriter (other tensors and metadata copied); `smollm2-mxfp4` is
llama_model_quantize(Q8_0) with llama.cpp's per-tensor type overrides (`tt_overrides`, as
llama-quantize's --tensor-type) putting MXFP4 on every attn_q/k/v/output and ffn_gate/up/down
matrix (MXFP4_MOE would only touch MoE experts): the tied token embedding stays Q8_0, the norms F32.
scripts/make_iquant_models.py rebuilds these IQ/TQ/MXFP4 files and checks them against this JSON.

    python3 scripts/make_default_kv_fixtures.py \
        [--only stories|smollm2|smollm2-q8_0|smollm2-kq8|smollm2-<variant>]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402
from make_llama_fixtures import is_eog, render_chat, text_of  # noqa: E402

OUT = fc.LLAMA_DIR / "default-kv.json"
N_CTX = 512

STORIES_PROMPTS = ["Once upon a time", "Lily and Tom", "The little dog", "One day, a", ""]
STORIES_N_GEN = 64

# The raw and chat prompts of smollm2.json, then new ones (code, lists, numbers, several
# languages, a system-less multi-sentence chat question).
SMOL_RAW = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time",
    "The three primary colors are",
    "import numpy as np\n\ndef mean(xs):",
    "Water boils at a temperature of",
    "La capitale de l'Italie est",
    "1, 2, 3, 5, 8, 13,",
    "The best way to learn a new language is",
]
SMOL_CHAT = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a black hole is in two sentences.",
    "Give me three tips for sleeping better.",
    "Translate 'good morning' into Spanish and German.",
    "What is 17 times 23?",
]
SMOL_N_GEN = 48


def open_default(model, type_k: int | None = None) -> "object":
    """llama.cpp with its defaults; only the context size, threads and seed are set (and the key
    cache's type when `type_k` is given, as `--cache-type-k`)."""
    import llama_cpp

    extra = {} if type_k is None else {"type_k": type_k}
    return llama_cpp.Llama(
        model_path=str(model),
        n_ctx=N_CTX,
        n_threads=fc.N_THREADS,
        n_threads_batch=fc.N_THREADS,
        n_gpu_layers=0,
        seed=0,
        verbose=False,
        **extra,
    )


def resolved_settings(llm) -> dict:
    """What llama.cpp's context runs with, read back from it."""
    import llama_cpp

    cp = llm.context_params
    names = {llama_cpp.GGML_TYPE_F32: "F32", llama_cpp.GGML_TYPE_F16: "F16", llama_cpp.GGML_TYPE_Q8_0: "Q8_0"}
    fa = {
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED: "disabled",
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED: "enabled",
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO: "auto",
    }
    return {
        "type_k": names.get(cp.type_k, str(cp.type_k)),
        "type_v": names.get(cp.type_v, str(cp.type_v)),
        "flash_attn_type": fa.get(cp.flash_attn_type, str(cp.flash_attn_type)),
        "n_ctx": llama_cpp.llama_n_ctx(llm._ctx.ctx),
        "n_batch": cp.n_batch,
        "n_ubatch": cp.n_ubatch,
        "logits_all": False,
        "n_threads": fc.N_THREADS,
    }


def last_logits(llm) -> np.ndarray:
    """The logits of the last evaluated position (the only output of the last batch)."""
    ptr = llm._ctx.get_logits()
    return np.array(np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)), dtype=np.float32)


def greedy(llm, prompt: list[int], n_gen: int, stop_at_eog: bool):
    """Greedy argmax decoding; returns (tokens, gaps, last prompt logits)."""
    llm.reset()
    llm.eval(prompt)
    first = last_logits(llm)
    row = first
    tokens: list[int] = []
    gaps: list[float] = []
    for _ in range(n_gen):
        tok = int(np.argmax(row))
        top2 = np.partition(row, -2)[-2:]
        gaps.append(float(top2[1] - top2[0]))
        tokens.append(tok)
        if stop_at_eog and is_eog(llm, tok):
            break
        llm.eval([tok])
        row = last_logits(llm)
    return tokens, gaps, first


def run_model(
    key: str, model, cases: list[tuple[str, str]], n_gen: int, doc: dict, type_k: int | None = None
) -> None:
    llm = open_default(model, type_k)
    entry = {"settings": resolved_settings(llm), "n_gen": n_gen, "prompts": []}
    want_k = "F16" if type_k is None else "Q8_0"
    settings = entry["settings"]
    if settings["type_k"] != want_k or settings["type_v"] != "F16" or settings["flash_attn_type"] != "disabled":
        raise SystemExit(f"llama-cpp-python's defaults changed: {entry['settings']}")
    for i, (kind, text) in enumerate(cases):
        rendered = text
        rec: dict = {"kind": kind, "prompt": text}
        if kind == "chat":
            rendered = render_chat(llm, text)["jinja"]
            rec["rendered_prompt"] = rendered
        prompt = llm.tokenize(rendered.encode(), add_bos=True, special=True)
        # Chat answers stop at the end of generation, as a chat does.
        tokens, gaps, first = greedy(llm, prompt, n_gen, stop_at_eog=kind == "chat")
        np.save(fc.LLAMA_DIR / f"default-kv-{key}-p{i}.npy", first)
        stopped = bool(tokens) and is_eog(llm, tokens[-1])
        rec.update(
            {
                "prompt_tokens": prompt,
                "greedy_tokens": tokens,
                # The text printed: without the end-of-generation token that stopped it.
                "generated_text": text_of(llm, tokens[:-1] if stopped else tokens),
                "stopped_at_eog": stopped,
                "top2_gaps": [round(g, 6) for g in gaps],
                "last_prompt_logits": f"default-kv-{key}-p{i}.npy",
            }
        )
        entry["prompts"].append(rec)
        print(f"{key} {kind} {text!r}: {len(prompt)} -> {rec['generated_text'][:60]!r} (min gap {min(gaps):.4f})")
    doc["models"][key] = entry


def tensor_data_sha256(path) -> str:
    """sha256 of every tensor's name, type, shape (ggml order) and bytes, in name order (the
    files' tensor orders differ: llama.cpp keeps its source's, our exporter its own)."""
    import hashlib

    import gguf

    h = hashlib.sha256()
    for t in sorted(gguf.GGUFReader(str(path)).tensors, key=lambda t: t.name):
        h.update(t.name.encode())
        h.update(int(t.tensor_type).to_bytes(4, "little"))
        for d in t.shape:
            h.update(int(d).to_bytes(8, "little"))
        h.update(np.asarray(t.data).tobytes())
    return h.hexdigest()


SMOL_Q8_0 = fc.SMOLLM2_MODEL.parent / "bench" / "SmolLM2-135M-Instruct.Q8_0.gguf"
# llama.cpp's own conversions of the F32 weights (`llama_model_quantize` with this file type, no
# importance matrix), by fixture key. SmolLM2's 576-wide rows are not whole 256-blocks, so the
# K-quant mixes hold llama.cpp's fallbacks (Q4_0, Q5_0, Q5_1, Q8_0) beside the K-quant ffn_down;
# the IQ mixes fall back to IQ4_NL (IQ4_NL/IQ4_XS also put Q5_K on the first 3 ffn_down) and the
# TQ ones to Q4_0, keeping the named type on the 1536-wide ffn_down. The tied token embedding is
# Q8_0 in all of them.
LLAMA_CPP_VARIANTS = [
    ("smollm2-f16", "LLAMA_FTYPE_MOSTLY_F16"),
    ("smollm2-bf16", "LLAMA_FTYPE_MOSTLY_BF16"),
    ("smollm2-q4_0", "LLAMA_FTYPE_MOSTLY_Q4_0"),
    ("smollm2-q5_0", "LLAMA_FTYPE_MOSTLY_Q5_0"),
    ("smollm2-q5_1", "LLAMA_FTYPE_MOSTLY_Q5_1"),
    ("smollm2-q2_k", "LLAMA_FTYPE_MOSTLY_Q2_K"),
    ("smollm2-q3_k_m", "LLAMA_FTYPE_MOSTLY_Q3_K_M"),
    ("smollm2-q4_k_s", "LLAMA_FTYPE_MOSTLY_Q4_K_S"),
    ("smollm2-q4_k_m", "LLAMA_FTYPE_MOSTLY_Q4_K_M"),
    ("smollm2-q5_k_m", "LLAMA_FTYPE_MOSTLY_Q5_K_M"),
    ("smollm2-q6_k", "LLAMA_FTYPE_MOSTLY_Q6_K"),
    ("smollm2-iq4_nl", "LLAMA_FTYPE_MOSTLY_IQ4_NL"),
    ("smollm2-iq4_xs", "LLAMA_FTYPE_MOSTLY_IQ4_XS"),
    ("smollm2-iq3_s", "LLAMA_FTYPE_MOSTLY_IQ3_S"),
    ("smollm2-tq1_0", "LLAMA_FTYPE_MOSTLY_TQ1_0"),
    ("smollm2-tq2_0", "LLAMA_FTYPE_MOSTLY_TQ2_0"),
]

# Every matrix llama.cpp quantizes in a block (std::regex, searched in the tensor name); not
# token_embd, not the norms.
BLOCK_MATRICES = r"attn_(q|k|v|output)\.weight$|ffn_(gate|up|down)\.weight$"

# Variants that no file type gives by itself, by fixture key: (file name part, llama.cpp file
# type, tensor type overrides handed to llama_model_quantize as its `tt_overrides` (llama-quantize's
# --tensor-type), tensors re-quantized afterwards from the F32 weights by ggml_quantize_chunk).
# - smollm2-iq3_xxs: llama_model_quantize(IQ3_XXS) without an importance matrix makes ffn_down
#   Q4_K/Q3_K (its `!has_imatrix` branch) and refuses an IQ3_XXS override ("requires an imatrix"),
#   so the file would hold no IQ3_XXS at all; ffn_down is therefore re-quantized to IQ3_XXS by
#   ggml_quantize_chunk (imatrix NULL, which ggml allows for IQ3_XXS). The tensor types are then
#   those llama.cpp's IQ3_XXS mix gives SmolLM2 with an importance matrix.
# - smollm2-mxfp4: LLAMA_FTYPE_MOSTLY_MXFP4_MOE only makes MoE experts MXFP4 (a dense model gets
#   Q8_0 everywhere), so: llama_model_quantize(Q8_0) with every block matrix overridden to MXFP4.
GGML_VARIANTS: dict[str, tuple[str, str, list[tuple[str, str]], list[tuple[str, str]]]] = {
    "smollm2-iq3_xxs": ("IQ3_XXS", "LLAMA_FTYPE_MOSTLY_IQ3_XXS", [], [(r"ffn_down\.weight$", "IQ3_XXS")]),
    "smollm2-mxfp4": ("MXFP4", "LLAMA_FTYPE_MOSTLY_Q8_0", [(BLOCK_MATRICES, "MXFP4")], []),
}

# The IQ/TQ/MXFP4 files (scripts/make_iquant_models.py rebuilds and checks these).
IQUANT_KEYS = [
    "smollm2-iq4_nl",
    "smollm2-iq4_xs",
    "smollm2-iq3_s",
    "smollm2-iq3_xxs",
    "smollm2-tq1_0",
    "smollm2-tq2_0",
    "smollm2-mxfp4",
]
VARIANT_KEYS = [key for key, _ in LLAMA_CPP_VARIANTS] + list(GGML_VARIANTS)


def variant_path(ftype: str):
    """Where llama.cpp's conversion of type `ftype` lives (beside the Q8_0 file)."""
    name = ftype.removeprefix("LLAMA_FTYPE_MOSTLY_")
    return fc.SMOLLM2_MODEL.parent / "bench" / f"SmolLM2-135M-Instruct.{name}.gguf"


def variant_file(key: str):
    """The model file of variant `key` (of LLAMA_CPP_VARIANTS or GGML_VARIANTS)."""
    if key in GGML_VARIANTS:
        return variant_path(GGML_VARIANTS[key][0])
    return variant_path(dict(LLAMA_CPP_VARIANTS)[key])


def variant_source(key: str) -> str:
    """How variant `key`'s file is made (the fixture's `source`)."""
    of = "of SmolLM2-135M-Instruct.Q4_1 dequantized to F32 by gguf-py"
    if key not in GGML_VARIANTS:
        return f"llama_model_quantize({dict(LLAMA_CPP_VARIANTS)[key]}) {of}"
    _, ftype, overrides, requant = GGML_VARIANTS[key]
    out = f"llama_model_quantize({ftype}"
    if overrides:
        out += ", tt_overrides " + ", ".join(f"/{pat}/ -> {ty}" for pat, ty in overrides)
    out += f") {of}"
    if requant:
        out += "; then " + ", ".join(f"/{pat}/" for pat, _ in requant) + " re-quantized from those F32 weights to "
        out += ", ".join(sorted({ty for _, ty in requant}))
        out += " by ggml_quantize_chunk (libggml-base, imatrix NULL), written with gguf-py's GGUFWriter"
        out += " (every other tensor and all metadata copied from llama.cpp's file)"
    return out


def ensure_f32_twin():
    """SmolLM2's F32 twin (make_bench_models.SMOLLM2_F32), written from the Q4_1 file by
    fixture_common.write_dequantized_f32 as make_llama_fixtures.py does when it is missing."""
    import make_bench_models as mbm

    if not mbm.SMOLLM2_F32.exists():
        if not fc.SMOLLM2_MODEL.exists():
            raise SystemExit(
                f"{mbm.SMOLLM2_F32} and {fc.SMOLLM2_MODEL} not found; see scripts/README.md for how to get the latter"
            )
        tmp = mbm.SMOLLM2_F32.with_name(mbm.SMOLLM2_F32.name + ".partial")
        fc.write_dequantized_f32(fc.SMOLLM2_MODEL, tmp)
        tmp.rename(mbm.SMOLLM2_F32)
    return mbm.SMOLLM2_F32


def quantize_with_overrides(src, dst, ftype: str, overrides: list[tuple[str, str]]) -> None:
    """llama_model_quantize(ftype) of `src` into `dst` (default parameters, 2 threads), with
    `overrides` (regex, ggml type name) as its per-tensor type overrides (`tt_overrides`)."""
    import ctypes

    import gguf
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = fc.N_THREADS
    params.ftype = getattr(llama_cpp, ftype)
    table = (llama_cpp.llama_model_tensor_override * (len(overrides) + 1))()  # NULL-pattern end
    for i, (pattern, ty) in enumerate(overrides):
        table[i].pattern = pattern.encode()
        table[i].type = int(gguf.GGMLQuantizationType[ty])
    params.tt_overrides = ctypes.cast(table, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    tmp = dst.with_name(dst.name + ".partial")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise SystemExit(f"llama_model_quantize({src.name} -> {ftype}, overrides {overrides}) failed with {rc}")
    tmp.rename(dst)


def libggml_base():
    """The libggml-base that llama-cpp-python loads, with ggml_quantize_chunk's signature set."""
    import ctypes
    from pathlib import Path

    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    cands = [lib_dir / n for n in ("libggml-base.so", "libggml-base.dylib") if (lib_dir / n).exists()]
    if not cands:
        raise SystemExit(f"no libggml-base in {lib_dir}")
    lib = ctypes.CDLL(str(cands[0]))
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
    ]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_validate_row_data.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    lib.ggml_validate_row_data.restype = ctypes.c_bool
    return lib


def requantize_with_ggml(src, f32, dst, rules: list[tuple[str, str]]) -> None:
    """Writes `dst`: `src` with every tensor whose name matches a rule (regex, ggml type name)
    quantized from `f32`'s weights by ggml_quantize_chunk(type, all rows, imatrix NULL); all
    metadata and every other tensor copied as they are (raw bytes), in `src`'s order."""
    import re

    import gguf

    lib = libggml_base()
    reader = gguf.GGUFReader(str(src))
    f32_tensors = {t.name: t for t in gguf.GGUFReader(str(f32)).tensors}
    tmp = dst.with_name(dst.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type)
    for t in reader.tensors:
        ty = next((ty for pattern, ty in rules if re.search(pattern, t.name)), None)
        if ty is None:
            writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
            continue
        qtype = gguf.GGMLQuantizationType[ty]
        w = np.ascontiguousarray(f32_tensors[t.name].data, dtype=np.float32)
        rows, n = w.shape
        out = np.zeros((rows, lib.ggml_row_size(int(qtype), n)), dtype=np.uint8)
        size = lib.ggml_quantize_chunk(int(qtype), w.ctypes.data, out.ctypes.data, 0, rows, n, None)
        if size != out.nbytes or not lib.ggml_validate_row_data(int(qtype), out.ctypes.data, out.nbytes):
            raise SystemExit(f"ggml_quantize_chunk({ty}) of {t.name} wrote {size} bytes, not {out.nbytes} valid ones")
        writer.add_tensor(t.name, out, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.rename(dst)


def make_variant(key: str, force: bool = False):
    """Variant `key`'s file, written from the F32 twin when missing (or `force`); returns its path."""
    path = variant_file(key)
    if path.exists() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    f32 = ensure_f32_twin()
    if key not in GGML_VARIANTS:
        import make_bench_models as mbm

        mbm.quantize(f32, path, dict(LLAMA_CPP_VARIANTS)[key])
        return path
    _, ftype, overrides, requant = GGML_VARIANTS[key]
    if not requant:
        quantize_with_overrides(f32, path, ftype, overrides)
        return path
    stage = path.with_name(path.name + ".llama-cpp")
    quantize_with_overrides(f32, stage, ftype, overrides)
    try:
        requantize_with_ggml(stage, f32, path, requant)
    finally:
        stage.unlink(missing_ok=True)
    return path


def tensor_types(path) -> dict[str, int]:
    """ggml type name -> number of tensors of that type in `path` (gguf-py's reading)."""
    import collections

    import gguf

    counts = collections.Counter(t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors)
    return dict(sorted(counts.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--only",
        choices=["stories", "smollm2", "smollm2-q8_0", "smollm2-kq8"] + VARIANT_KEYS,
    )
    args = ap.parse_args()
    fc.quiet_llama()
    doc = fc.read_json(OUT) if OUT.exists() else {}
    doc.update(
        {
            "generator": "scripts/make_default_kv_fixtures.py",
            "versions": fc.versions(),
            "decoding": "argmax of llama_get_logits after each llm.eval (one token per eval)",
            "tokenize": "llm.tokenize(text.encode(), add_bos=True, special=True)",
        }
    )
    doc.setdefault("models", {})
    if args.only in (None, "stories"):
        run_model("stories260k", fc.STORIES_MODEL, [("raw", p) for p in STORIES_PROMPTS], STORIES_N_GEN, doc)
    if args.only in (None, "smollm2"):
        if not fc.SMOLLM2_MODEL.exists():
            raise SystemExit(f"{fc.SMOLLM2_MODEL} not found; see scripts/README.md for how to get it")
        cases = [("raw", p) for p in SMOL_RAW] + [("chat", p) for p in SMOL_CHAT]
        run_model("smollm2-q4_1", fc.SMOLLM2_MODEL, cases, SMOL_N_GEN, doc)
        doc["models"]["smollm2-q4_1"]["model_bytes"] = fc.SMOLLM2_MODEL.stat().st_size
    if args.only in (None, "smollm2-q8_0"):
        if not SMOL_Q8_0.exists():
            raise SystemExit(f"{SMOL_Q8_0} not found; scripts/make_bench_models.py writes it")
        cases = [("raw", p) for p in SMOL_RAW] + [("chat", p) for p in SMOL_CHAT]
        run_model("smollm2-q8_0", SMOL_Q8_0, cases, SMOL_N_GEN, doc)
        doc["models"]["smollm2-q8_0"]["tensor_data_sha256"] = tensor_data_sha256(SMOL_Q8_0)
        doc["models"]["smollm2-q8_0"]["source"] = (
            "llama_model_quantize(Q8_0) of SmolLM2-135M-Instruct.Q4_1 dequantized to F32 by gguf-py"
        )
    if args.only in (None, "smollm2-kq8"):
        import llama_cpp

        cases = [("raw", p) for p in SMOL_RAW] + [("chat", p) for p in SMOL_CHAT]
        run_model("smollm2-q4_1-kq8", fc.SMOLLM2_MODEL, cases, SMOL_N_GEN, doc, llama_cpp.GGML_TYPE_Q8_0)
    for key in VARIANT_KEYS:
        if args.only not in (None, key):
            continue
        path = make_variant(key)
        cases = [("raw", p) for p in SMOL_RAW] + [("chat", p) for p in SMOL_CHAT]
        run_model(key, path, cases, SMOL_N_GEN, doc)
        doc["models"][key]["tensor_data_sha256"] = tensor_data_sha256(path)
        doc["models"][key]["source"] = variant_source(key)
        doc["models"][key]["tensor_types"] = tensor_types(path)
    fc.write_json(OUT, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
