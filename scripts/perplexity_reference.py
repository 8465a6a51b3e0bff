"""Perplexity as llama.cpp's `perplexity` tool computes it, through llama-cpp-python.

Writes tests/fixtures/perplexity/reference.json: one entry per (model, text, n_ctx),
with the per-window running perplexity, the final estimate and its standard error.

What llama.cpp's tools/perplexity/perplexity.cpp (function `perplexity()`, with the
default `--ppl-stride 0`, no `--kl-divergence`) does, and this script repeats:

- the text is tokenized once by llama.cpp itself, with the special tokens the file
  adds (BOS per `tokenizer.ggml.add_bos_token`) and special-token text not parsed
  (`common_tokenize(ctx, text, add_special=true)`);
- it needs at least 2 * n_ctx tokens; it is cut into `n_tokens // n_ctx`
  non-overlapping windows of n_ctx tokens (`--chunks N` keeps the first N), the tail
  is dropped;
- each window is evaluated from an empty KV cache, its first token replaced by BOS
  when the model adds BOS;
- only the second half is scored: with first = n_ctx // 2, the logits of positions
  first .. n_ctx - 2 predict tokens first + 1 .. n_ctx - 1 (n_ctx - 1 - first tokens
  per window);
- per token, -log softmax(logits)[next] with the max logit subtracted in f32, the sum
  of exp() accumulated in double; nll and nll^2 accumulated in double;
- after each window it prints exp(nll / count) (the running perplexity); at the end
  ppl = exp(nll / count) and its standard error
  ppl * sqrt((mean(nll^2) - mean(nll)^2) / (count - 1)).

llama.cpp is opened as the other fixture scripts do (fixture_common.open_llama: CPU,
2 threads, logits of every position, flash attention off, F32 KV cache), with
n_ctx = n_batch = the window size, so each window is one llama_decode as in the tool
with its default batch (n_batch >= n_ctx). The tool's own default KV cache is F16: its
result is recorded beside (`ppl_f16_kv_cache`), not used as the reference.

    python3 scripts/perplexity_reference.py                     # the committed cases
    python3 scripts/perplexity_reference.py --only stories260k
    python3 scripts/perplexity_reference.py --model M.gguf --text T.txt --ctx 128 [--chunks N]    # print only
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402

PPL_DIR = fc.FIXTURES / "perplexity"
TEXT = PPL_DIR / "grimm-three-tales.txt"
OUT = PPL_DIR / "reference.json"

# The committed cases: (name, model, n_ctx, chunks). SmolLM2 is limited to its first 8
# windows (llama.cpp's --chunks 8) so that the Rust test stays short.
CASES = [
    ("stories260k", fc.STORIES_MODEL, 128, None),
    ("smollm2", fc.SMOLLM2_MODEL, 256, 8),
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fnv1a64(tokens) -> str:
    """FNV-1a (64-bit) of the token ids as little-endian u32 bytes, in hex (16 digits)."""
    h = 0xCBF29CE484222325
    for byte in np.asarray(tokens, dtype="<u4").tobytes():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log softmax(row)[target] per row, as perplexity.cpp's log_softmax: max logit and
    differences in f32, exp in f32 (expf), their sum in double.

    logits: [n, n_vocab] float32; targets: [n] token ids. Returns [n] float64.
    """
    logits = np.asarray(logits, dtype=np.float32)
    mx = logits.max(axis=1, keepdims=True)  # [n, 1] f32
    diff = logits - mx  # [n, n_vocab] f32
    sum_exp = np.exp(diff).astype(np.float64).sum(axis=1)  # [n] f64
    picked = diff[np.arange(len(targets)), targets].astype(np.float64)  # [n]
    return -(picked - np.log(sum_exp))


def perplexity(model: Path, text: str, n_ctx: int, chunks: int | None, kv_f32: bool = True) -> dict:
    import llama_cpp

    llm = fc.open_llama(model, n_ctx, kv_f32=kv_f32)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    if llama_cpp.llama_vocab_get_add_eos(vocab):
        raise SystemExit(f"{model}: the vocabulary adds EOS; perplexity.cpp refuses such models")
    bos = llama_cpp.llama_vocab_bos(vocab)

    # add_bos=True here is llama_tokenize's add_special: BOS only if the file says so.
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    if len(tokens) < 2 * n_ctx:
        raise SystemExit(f"need at least {2 * n_ctx} tokens for n_ctx {n_ctx}, the text has {len(tokens)}")
    n_windows = len(tokens) // n_ctx
    if chunks is not None:
        n_windows = min(n_windows, chunks)
    first = n_ctx // 2

    nll = 0.0
    nll2 = 0.0
    count = 0
    running = []
    t0 = time.perf_counter()
    for w in range(n_windows):
        window = list(tokens[w * n_ctx : (w + 1) * n_ctx])
        if add_bos:
            window[0] = bos
        llm.reset()  # the next eval starts from an empty KV cache
        llm.eval(window)
        scores = np.asarray(llm.scores[first : n_ctx - 1], dtype=np.float32)  # [n_ctx-1-first, n_vocab]
        targets = np.asarray(tokens[w * n_ctx + first + 1 : (w + 1) * n_ctx], dtype=np.int64)
        v = token_nll(scores, targets)
        nll += float(v.sum())
        nll2 += float((v * v).sum())
        count += len(v)
        running.append(math.exp(nll / count))
    seconds = time.perf_counter() - t0

    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = math.exp(mean)
    stderr = ppl * math.sqrt(var / (count - 1)) if var > 0 else None
    return {
        "add_bos": add_bos,
        "bos_id": int(bos),
        "n_tokens": len(tokens),
        "n_windows": n_windows,
        "scored_per_window": n_ctx - 1 - first,
        "scored_tokens": count,
        "running_ppl": running,
        "ppl": ppl,
        "ppl_stderr": stderr,
        "mean_nll": mean,
        "tokens_head": [int(t) for t in tokens[:16]],
        # To tell a tokenizer difference from a model difference without storing every id.
        "tokens_fnv1a64": fnv1a64(tokens),
        "eval_seconds": seconds,
    }


def case(name: str, model: Path, text_path: Path, n_ctx: int, chunks: int | None) -> dict:
    text = text_path.read_text(encoding="utf-8")
    r = perplexity(model, text, n_ctx, chunks)
    f16 = perplexity(model, text, n_ctx, chunks, kv_f32=False)
    print(
        f"{name}: n_ctx {n_ctx}, {r['n_tokens']} tokens, {r['n_windows']} windows, "
        f"ppl {r['ppl']:.6f} +/- {r['ppl_stderr']:.5f} (F16 KV cache: {f16['ppl']:.6f}), "
        f"{r['eval_seconds']:.1f} s"
    )
    print("  " + ",".join(f"[{i + 1}]{p:.4f}" for i, p in enumerate(r["running_ppl"])))
    try:
        model_rel = fc.rel(model)
    except ValueError:
        model_rel = model.name
    return {
        "model": model_rel,
        "model_sha256": sha256(model),
        "text": fc.rel(text_path),
        "text_sha256": sha256(text_path),
        "n_ctx": n_ctx,
        "chunks": chunks,
        **r,
        "ppl_f16_kv_cache": f16["ppl"],
        "llama_settings": "CPU, n_threads 2, n_batch = n_ctx, flash attention off, F32 KV cache",
    }


def f32_dequantized(model: Path, n_ctx: int, chunks: int | None) -> dict:
    """The same case on a copy of `model` whose tensors gguf-py dequantized to F32 (cached beside
    it, as scripts/make_llama_fixtures.py does): llama.cpp's f32 arithmetic on exactly the
    quantized weights, without the 8-bit rounding of activations its quantized matmuls do. The
    reference for a forward pass that dequantizes the weights to f32."""
    twin = model.with_name(model.stem + "-dequant-f32.gguf")
    if not twin.exists():
        print(f"writing {twin} (gguf-py dequantization, once)")
        fc.write_dequantized_f32(model, twin)
    r = perplexity(twin, TEXT.read_text(encoding="utf-8"), n_ctx, chunks)
    print(f"  f32-dequantized twin: ppl {r['ppl']:.6f} +/- {r['ppl_stderr']:.5f}")
    return {
        "model": twin.name,
        "model_sha256": sha256(twin),
        "ppl": r["ppl"],
        "ppl_stderr": r["ppl_stderr"],
        "running_ppl": r["running_ppl"],
        "n_windows": r["n_windows"],
        "scored_tokens": r["scored_tokens"],
        "tokens_fnv1a64": r["tokens_fnv1a64"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=[c[0] for c in CASES])
    ap.add_argument("--model", type=Path, help="one model (with --text and --ctx): print, write nothing")
    ap.add_argument("--text", type=Path, default=TEXT)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--chunks", type=int)
    args = ap.parse_args()
    fc.quiet_llama()

    if args.model:
        case(args.model.stem, args.model, args.text, args.ctx, args.chunks)
        return

    out = {"versions": fc.versions(), "cases": {}}
    if OUT.exists() and args.only:
        import json

        out["cases"] = json.loads(OUT.read_text())["cases"]
    for name, model, n_ctx, chunks in CASES:
        if args.only and name != args.only:
            continue
        if not model.exists():
            print(f"{name}: {model} not found, skipped (see scripts/README.md)")
            continue
        out["cases"][name] = case(name, model, TEXT, n_ctx, chunks)
        if name == "smollm2":
            out["cases"][name]["f32_dequantized"] = f32_dequantized(model, n_ctx, chunks)
    fc.write_json(OUT, out)
    print(f"wrote {fc.rel(OUT)}")


if __name__ == "__main__":
    main()
