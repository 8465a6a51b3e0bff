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

    python3 scripts/make_default_kv_fixtures.py \
        [--only stories|smollm2|smollm2-q8_0|smollm2-f16|smollm2-q4_0|smollm2-kq8]
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
# K-quant mixes hold llama.cpp's fallbacks (Q4_0, Q5_0, Q5_1, Q8_0) beside the K-quant ffn_down.
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
]


def variant_path(ftype: str):
    """Where llama.cpp's conversion of type `ftype` lives (beside the Q8_0 file)."""
    name = ftype.removeprefix("LLAMA_FTYPE_MOSTLY_")
    return fc.SMOLLM2_MODEL.parent / "bench" / f"SmolLM2-135M-Instruct.{name}.gguf"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--only",
        choices=["stories", "smollm2", "smollm2-q8_0", "smollm2-kq8"] + [key for key, _ in LLAMA_CPP_VARIANTS],
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
    for key, ftype in LLAMA_CPP_VARIANTS:
        path = variant_path(ftype)
        if args.only not in (None, key):
            continue
        if not path.exists():
            import make_bench_models as mbm

            if not mbm.SMOLLM2_F32.exists():
                raise SystemExit(f"{mbm.SMOLLM2_F32} not found; scripts/make_bench_models.py writes it")
            mbm.quantize(mbm.SMOLLM2_F32, path, ftype)
        cases = [("raw", p) for p in SMOL_RAW] + [("chat", p) for p in SMOL_CHAT]
        run_model(key, path, cases, SMOL_N_GEN, doc)
        doc["models"][key]["tensor_data_sha256"] = tensor_data_sha256(path)
        doc["models"][key]["source"] = (
            f"llama_model_quantize({ftype}) of SmolLM2-135M-Instruct.Q4_1 dequantized to F32 by gguf-py"
        )
    fc.write_json(OUT, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
