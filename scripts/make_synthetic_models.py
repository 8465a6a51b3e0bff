"""Writes the synthetic Llama GGUF models used by the quantization and forward-pass tests.

Writes tests/fixtures/synthetic/synth-F32.gguf: a random one-layer `llama` model
(hidden 256, 4 heads / 2 KV heads of 64, FFN 512, context 256, rope base 10000,
RMS eps 1e-5) whose tokenizer metadata is copied from models/stories260k-f32.gguf
(512-token llama SPM vocabulary), with its own `output.weight`. Every matrix row
length is a multiple of 256, so llama.cpp's quantizer can apply every K-quant to
every matrix. The weights are drawn from numpy's PCG64 with a fixed seed.

Then quantizes it with llama.cpp (llama_cpp.llama_model_quantize, `pure = True`, so
every matrix gets the file type's base type) into synth-{F16,BF16,Q4_0,Q4_1,Q5_0,
Q5_1,Q8_0,Q2_K,Q3_K,Q4_K,Q5_K,Q6_K}.gguf beside it, and checks with gguf-py's
GGUFReader that every 2-D tensor has the intended type (1-D norms stay F32).

Regenerate (needs llama-cpp-python, gguf, numpy):
    python3 scripts/make_synthetic_models.py
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402

SEED = 0x5EED_2026

N_EMBD = 256
N_LAYER = 1
N_HEAD = 4
N_HEAD_KV = 2
HEAD_DIM = N_EMBD // N_HEAD  # 64
N_FF = 512
N_CTX = 256
ROPE_BASE = 10000.0
RMS_EPS = 1e-5


def copy_tokenizer_metadata(writer, src_path) -> int:
    """Copies every `tokenizer.*` key of `src_path` into `writer`; returns the vocab size."""
    import gguf

    reader = gguf.GGUFReader(str(src_path))
    n_vocab = None
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        writer.add_key_value(key, value, vtype, sub_type)
        if key == "tokenizer.ggml.tokens":
            n_vocab = len(value)
    if n_vocab is None:
        raise SystemExit(f"{src_path}: no tokenizer.ggml.tokens")
    return n_vocab


def random_weights(n_vocab: int) -> dict[str, np.ndarray]:
    """Row-major weights, shape [n_out, n_in] (gguf-py reverses to ggml ne = [n_in, n_out])."""
    rng = np.random.default_rng(SEED)

    def mat(n_out: int, n_in: int, std: float) -> np.ndarray:
        return (rng.standard_normal((n_out, n_in)) * std).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w: dict[str, np.ndarray] = {}
    w["token_embd.weight"] = mat(n_vocab, N_EMBD, 0.3)  # [n_vocab, n_embd]
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = norm(N_EMBD)  # [n_embd]
        w[p + "attn_q.weight"] = mat(N_HEAD * HEAD_DIM, N_EMBD, 0.05)  # [n_head*head_dim, n_embd]
        w[p + "attn_k.weight"] = mat(N_HEAD_KV * HEAD_DIM, N_EMBD, 0.05)  # [n_kv*head_dim, n_embd]
        w[p + "attn_v.weight"] = mat(N_HEAD_KV * HEAD_DIM, N_EMBD, 0.04)  # [n_kv*head_dim, n_embd]
        w[p + "attn_output.weight"] = mat(N_EMBD, N_HEAD * HEAD_DIM, 0.04)  # [n_embd, n_head*head_dim]
        w[p + "ffn_norm.weight"] = norm(N_EMBD)  # [n_embd]
        w[p + "ffn_gate.weight"] = mat(N_FF, N_EMBD, 0.04)  # [n_ff, n_embd]
        w[p + "ffn_up.weight"] = mat(N_FF, N_EMBD, 0.04)  # [n_ff, n_embd]
        w[p + "ffn_down.weight"] = mat(N_EMBD, N_FF, 0.04)  # [n_embd, n_ff]
    w["output_norm.weight"] = norm(N_EMBD)  # [n_embd]
    w["output.weight"] = mat(n_vocab, N_EMBD, 0.05)  # [n_vocab, n_embd]
    for name, t in w.items():
        if t.ndim == 2 and t.shape[1] % 256 != 0:
            raise SystemExit(f"{name}: row length {t.shape[1]} is not a multiple of 256")
    return w


def write_f32_model(path) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("synthetic-llama-256")
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
    n_vocab = copy_tokenizer_metadata(writer, fc.STORIES_MODEL)
    writer.add_vocab_size(n_vocab)
    for name, t in random_weights(n_vocab).items():
        writer.add_tensor(name, t)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def quantize(src, dst, ftype_name: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = fc.N_THREADS
    params.ftype = getattr(llama_cpp, ftype_name)
    params.allow_requantize = False
    params.quantize_output_tensor = True
    if not hasattr(params, "pure"):
        raise SystemExit("llama_model_quantize_params has no `pure` field in this llama-cpp-python")
    params.pure = True
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize({ftype_name}) failed with {rc}")


def tensor_types(path) -> dict[str, tuple[str, list[int]]]:
    """name -> (ggml type name, ne) as gguf-py reads the file."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {t.name: (t.tensor_type.name, [int(x) for x in t.shape]) for t in reader.tensors}


def check_types(fmt: str, path) -> list[str]:
    """Problems found: 2-D tensors not of type `fmt`, 1-D tensors not F32."""
    problems = []
    for name, (ttype, ne) in tensor_types(path).items():
        want = fmt if len(ne) >= 2 else "F32"
        if ttype != want:
            problems.append(f"{path.name}: {name} ne={ne} is {ttype}, expected {want}")
    return problems


def main() -> int:
    fc.quiet_llama()
    fc.SYNTH_DIR.mkdir(parents=True, exist_ok=True)
    src = fc.synth_path("F32")
    write_f32_model(src)
    problems: list[str] = []
    total = 0
    for fmt, ftype_name in fc.FORMATS:
        path = fc.synth_path(fmt)
        if ftype_name is not None:
            quantize(src, path, ftype_name)
        types = tensor_types(path)
        found = sorted({t for t, ne in types.values() if len(ne) >= 2})
        size = path.stat().st_size
        total += size
        print(f"{path.name:18} {size:>9} bytes  2-D types: {', '.join(found)}")
        problems += check_types(fmt, path)
    print(f"total {total} bytes ({total / 1e6:.2f} MB)")
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
