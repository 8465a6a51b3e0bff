"""Writes dequantization fixtures from the llama.cpp-quantized synthetic models.

For each of the 13 formats (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
Q4_K, Q5_K, Q6_K) reads tests/fixtures/synthetic/synth-{TYPE}.gguf (written and
quantized by llama.cpp through scripts/make_synthetic_models.py) with gguf-py's
GGUFReader and dequantizes with gguf-py's own numpy dequantizer
(`gguf.quants.dequantize`), independent of llama.cpp's C code:

    tests/fixtures/quants/{TYPE}/attn_k.npy           blk.0.attn_k.weight, float32 [128, 256]
                                                      (row-major [n_out, n_in]; ggml ne = [256, 128])
    tests/fixtures/quants/{TYPE}/token_embd_rows.npy  token_embd.weight rows 0, 1, 2, 100, 511,
                                                      float32 [5, 256]
    tests/fixtures/quants/manifest.json               per type: model file, tensor names, shapes,
                                                      ggml type, row ids, gguf-py version

Regenerate (after make_synthetic_models.py; needs gguf, numpy):
    python3 scripts/make_quant_fixtures.py
"""

from __future__ import annotations

import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402

TOKEN_ROWS = [0, 1, 2, 100, 511]
ATTN_K = "blk.0.attn_k.weight"
TOKEN_EMBD = "token_embd.weight"
ATTN_K_SHAPE = (128, 256)  # [n_kv_heads * head_dim, n_embd]
EMBD_SHAPE = (512, 256)  # [n_vocab, n_embd]


def dequantize(reader, name: str, fmt: str, shape: tuple[int, int]) -> np.ndarray:
    import gguf

    tensor = next((t for t in reader.tensors if t.name == name), None)
    if tensor is None:
        raise SystemExit(f"{fmt}: tensor {name} not found")
    if tensor.tensor_type.name != fmt:
        raise SystemExit(f"{fmt}: {name} has type {tensor.tensor_type.name}")
    ne = [int(x) for x in tensor.shape]
    if ne != list(reversed(shape)):
        raise SystemExit(f"{fmt}: {name} has ne {ne}, expected {list(reversed(shape))}")
    out = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    out = np.asarray(out)
    if out.dtype != np.float32:
        raise SystemExit(f"{fmt}: gguf-py returned {out.dtype} for {name}")
    if out.shape != shape:
        raise SystemExit(f"{fmt}: gguf-py returned shape {out.shape} for {name}, expected {shape}")
    if not np.all(np.isfinite(out)):
        raise SystemExit(f"{fmt}: non-finite values in {name}")
    return np.ascontiguousarray(out)


def main() -> int:
    import gguf

    vers = fc.versions()
    manifest: dict = {
        "generator": "scripts/make_quant_fixtures.py",
        "dequantizer": "gguf.quants.dequantize (gguf-py, numpy)",
        "quantizer": "llama.cpp llama_model_quantize, pure=True (scripts/make_synthetic_models.py)",
        "versions": vers,
        "layout": "float32 .npy, row-major [n_out, n_in] = ggml ne reversed",
        "types": {},
    }
    f32_ref: dict[str, np.ndarray] = {}
    for fmt in fc.FORMAT_NAMES:
        model = fc.synth_path(fmt)
        reader = gguf.GGUFReader(str(model))
        attn_k = dequantize(reader, ATTN_K, fmt, ATTN_K_SHAPE)
        embd = dequantize(reader, TOKEN_EMBD, fmt, EMBD_SHAPE)
        rows = np.ascontiguousarray(embd[TOKEN_ROWS])  # [5, 256]
        out_dir = fc.QUANT_DIR / fmt
        out_dir.mkdir(parents=True, exist_ok=True)
        np.save(out_dir / "attn_k.npy", attn_k)
        np.save(out_dir / "token_embd_rows.npy", rows)

        # Sanity: relative RMS error against the F32 source (F32 comes first).
        if fmt == "F32":
            f32_ref = {"attn_k": attn_k, "rows": rows}
        rel_err = float(
            np.sqrt(np.mean((attn_k - f32_ref["attn_k"]) ** 2) / np.mean(f32_ref["attn_k"] ** 2))
        )
        print(f"{fmt:5} attn_k {attn_k.shape} rows {rows.shape}  rel RMS err vs F32 {rel_err:.4f}")
        manifest["types"][fmt] = {
            "model": fc.rel(model),
            "ggml_type": fmt,
            "tensors": {
                "attn_k.npy": {"tensor": ATTN_K, "shape": list(attn_k.shape), "rows": "all"},
                "token_embd_rows.npy": {
                    "tensor": TOKEN_EMBD,
                    "shape": list(rows.shape),
                    "rows": TOKEN_ROWS,
                },
            },
            "attn_k_rel_rms_err_vs_f32": round(rel_err, 6),
        }
    fc.write_json(fc.QUANT_DIR / "manifest.json", manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
