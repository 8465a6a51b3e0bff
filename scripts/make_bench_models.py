"""Writes the benchmark models of issue 4 (not fixtures: nothing here is committed).

Into --out (default ~/.cache/gguf-llama/models/bench):

- tinyllama-shape-F32.gguf: a `llama` model of TinyLlama-1.1B's shape (hidden 2048,
  22 layers, 32 heads / 4 KV heads of 64, FFN 5632, vocabulary 32000, context 2048,
  rope base 10000, RMS eps 1e-5, its own `output.weight`) with random weights, written
  with gguf-py's GGUFWriter one tensor at a time (the file is 4.4 GB; memory stays at
  one tensor). Weights are drawn from numpy's PCG64 with a fixed seed: every matrix
  normal with std 0.02, every norm 1.0, so activations stay finite through 22 layers.
  The tokenizer is the real 32000-token llama SPM vocabulary, every `tokenizer.*` key
  copied from /work/shared/data/vocab/ggml-vocab-llama-spm.gguf (tokens, scores, token
  types, BOS 1 / EOS 2 / UNK 0, add_bos true). Random weights generate gibberish, but
  the throughput of a model depends only on its shapes and tensor types.
- tinyllama-shape-{Q4_K_M,Q4_0,Q8_0,IQ4_XS,IQ3_S}.gguf: that file quantized by llama.cpp
  (llama_cpp.llama_model_quantize, default parameters, i.e. not `pure`: the mixes a
  user's file has, e.g. Q4_K_M puts Q6_K on output.weight and some attn_v/ffn_down;
  2 threads).
- SmolLM2-135M-Instruct.Q8_0.gguf: llama.cpp's Q8_0 of
  ~/.cache/gguf-llama/models/SmolLM2-135M-Instruct.Q4_1-dequant-f32.gguf. That f32 file
  (made by make_llama_fixtures.py) is gguf-py's dequantization of the published Q4_1
  file, the only f32 source of SmolLM2 we have: its weights carry Q4_1's rounding, which
  does not matter for throughput (the tensor types and shapes are those of a Q8_0
  SmolLM2 file).

Files that exist are skipped unless --force; each file is written under a `.partial`
name and renamed when complete. The F32 file is deleted at the end unless --keep-f32
(it is rebuilt when a quantized file is missing). Every file's size and tensor-type
counts are printed (gguf.GGUFReader); --check also loads each with llama.cpp and
decodes a few tokens greedily.

    python3 scripts/make_bench_models.py [--out DIR] [--force] [--keep-f32] [--check]

Needs llama-cpp-python, gguf, numpy, ~5 GB of free disk while the F32 file exists.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402
from make_synthetic_models import copy_tokenizer_metadata  # noqa: E402

SEED = 0x7111_1A4A
DEFAULT_OUT = Path.home() / ".cache" / "gguf-llama" / "models" / "bench"
VOCAB = Path("/work/shared/data/vocab/ggml-vocab-llama-spm.gguf")
SMOLLM2_F32 = fc.SMOLLM2_MODEL.parent / "SmolLM2-135M-Instruct.Q4_1-dequant-f32.gguf"

N_EMBD = 2048
N_LAYER = 22
N_HEAD = 32
N_HEAD_KV = 4
HEAD_DIM = N_EMBD // N_HEAD  # 64
N_FF = 5632
N_CTX = 2048
ROPE_BASE = 10000.0
RMS_EPS = 1e-5
WEIGHT_STD = 0.02

TINY_F32 = "tinyllama-shape-F32.gguf"
# output file name -> llama.cpp file type constant, source
TINY_QUANTS = {
    "tinyllama-shape-Q4_K_M.gguf": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "tinyllama-shape-Q4_0.gguf": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "tinyllama-shape-Q8_0.gguf": "LLAMA_FTYPE_MOSTLY_Q8_0",
    # issue 19: the i-quants (no importance matrix needed)
    "tinyllama-shape-IQ4_XS.gguf": "LLAMA_FTYPE_MOSTLY_IQ4_XS",
    "tinyllama-shape-IQ3_S.gguf": "LLAMA_FTYPE_MOSTLY_IQ3_S",
}
SMOLLM2_Q8 = "SmolLM2-135M-Instruct.Q8_0.gguf"

# The four files the benchmark suite of issue 4 runs on (scripts/bench_llama_cpp.py --suite issue4).
SUITE = [*TINY_QUANTS, SMOLLM2_Q8]


def tensor_plan(n_vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, row-major shape) in file order; gguf-py reverses the shape to ggml's ne."""
    plan: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (n_vocab, N_EMBD))]
    for i in range(N_LAYER):
        p = f"blk.{i}."
        plan += [
            (p + "attn_norm.weight", (N_EMBD,)),
            (p + "attn_q.weight", (N_HEAD * HEAD_DIM, N_EMBD)),  # [n_head*head_dim, n_embd]
            (p + "attn_k.weight", (N_HEAD_KV * HEAD_DIM, N_EMBD)),  # [n_kv*head_dim, n_embd]
            (p + "attn_v.weight", (N_HEAD_KV * HEAD_DIM, N_EMBD)),  # [n_kv*head_dim, n_embd]
            (p + "attn_output.weight", (N_EMBD, N_HEAD * HEAD_DIM)),  # [n_embd, n_head*head_dim]
            (p + "ffn_norm.weight", (N_EMBD,)),
            (p + "ffn_gate.weight", (N_FF, N_EMBD)),  # [n_ff, n_embd]
            (p + "ffn_up.weight", (N_FF, N_EMBD)),  # [n_ff, n_embd]
            (p + "ffn_down.weight", (N_EMBD, N_FF)),  # [n_embd, n_ff]
        ]
    plan += [("output_norm.weight", (N_EMBD,)), ("output.weight", (n_vocab, N_EMBD))]
    return plan


def write_tiny_f32(path: Path) -> None:
    """Writes the F32 TinyLlama-shaped model, one tensor in memory at a time."""
    import gguf

    tmp = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name("tinyllama-shape-random")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(ROPE_BASE)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    n_vocab = copy_tokenizer_metadata(writer, VOCAB)
    writer.add_vocab_size(n_vocab)
    plan = tensor_plan(n_vocab)
    for name, shape in plan:
        writer.add_tensor_info(name, shape, np.dtype(np.float32), 4 * int(np.prod(shape)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(SEED)
    for name, shape in plan:
        if len(shape) == 1:
            data = np.ones(shape, dtype=np.float32)  # norms
        else:
            data = rng.standard_normal(shape, dtype=np.float32)
            data *= WEIGHT_STD
        writer.write_tensor_data(data)
    writer.close()
    tmp.rename(path)


def quantize(src: Path, dst: Path, ftype_name: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = fc.N_THREADS
    params.ftype = getattr(llama_cpp, ftype_name)
    tmp = dst.with_name(dst.name + ".partial")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise SystemExit(f"llama_model_quantize({src.name} -> {ftype_name}) failed with {rc}")
    tmp.rename(dst)


def describe(path: Path) -> str:
    """Size, bytes of tensor data and tensor-type counts, as gguf-py reads the file."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    counts = collections.Counter(t.tensor_type.name for t in reader.tensors)
    tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    types = ", ".join(f"{n} {ty}" for ty, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return (
        f"{path.name}: {path.stat().st_size / 1e6:.1f} MB ({tensor_bytes / 1e6:.1f} MB of tensors), "
        f"{len(reader.tensors)} tensors: {types}"
    )


def check_llama_cpp(path: Path, n_gen: int = 4) -> str:
    """Loads `path` with llama.cpp and decodes `n_gen` greedy tokens after a short prompt."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=64, n_threads=fc.N_THREADS, n_threads_batch=fc.N_THREADS,
        n_gpu_layers=0, verbose=False,
    )
    n_vocab = llm.n_vocab()
    tokens = llm.tokenize(b"Once upon a time", add_bos=True)
    llm.eval(tokens)
    out = []
    for _ in range(n_gen):
        # the last position's logits straight from llama.cpp (llm.scores is only filled with logits_all)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        if not np.all(np.isfinite(logits)):
            raise SystemExit(f"{path.name}: llama.cpp produced non-finite logits")
        tok = int(np.argmax(logits))
        out.append(tok)
        llm.eval([tok])
    text = llm.detokenize(out).decode("utf-8", errors="replace")
    llm.close()
    return f"{path.name}: llama.cpp prompt {tokens} -> greedy {out} {text!r}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--force", action="store_true", help="rewrite files that exist")
    ap.add_argument("--keep-f32", action="store_true", help="keep tinyllama-shape-F32.gguf at the end")
    ap.add_argument("--check", action="store_true", help="load each file with llama.cpp and decode 4 tokens")
    args = ap.parse_args()

    fc.quiet_llama()
    args.out.mkdir(parents=True, exist_ok=True)
    f32 = args.out / TINY_F32
    missing = [name for name in TINY_QUANTS if args.force or not (args.out / name).exists()]
    if missing:
        if args.force or not f32.exists():
            free = shutil.disk_usage(args.out).free
            if free < 6e9:
                raise SystemExit(f"{args.out}: {free / 1e9:.1f} GB free, the F32 file needs 4.4 GB")
            t = time.perf_counter()
            write_tiny_f32(f32)
            print(f"wrote {f32.name} in {time.perf_counter() - t:.0f} s", flush=True)
        print(describe(f32), flush=True)
    for name in missing:
        t = time.perf_counter()
        quantize(f32, args.out / name, TINY_QUANTS[name])
        print(f"quantized {name} in {time.perf_counter() - t:.0f} s", flush=True)

    smol = args.out / SMOLLM2_Q8
    if args.force or not smol.exists():
        if not SMOLLM2_F32.exists():
            raise SystemExit(
                f"{SMOLLM2_F32} is missing: run scripts/make_llama_fixtures.py --only smollm2 first"
            )
        t = time.perf_counter()
        quantize(SMOLLM2_F32, smol, "LLAMA_FTYPE_MOSTLY_Q8_0")
        print(f"quantized {smol.name} in {time.perf_counter() - t:.0f} s", flush=True)

    for name in SUITE:
        print(describe(args.out / name), flush=True)
    if args.check:
        for name in SUITE:
            print(check_llama_cpp(args.out / name), flush=True)
    if f32.exists() and not args.keep_f32:
        f32.unlink()
        print(f"deleted {f32.name} (--keep-f32 keeps it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
