"""Writes dequantization fixtures: gguf-py's dequantization of the synthetic models and of
random blocks.

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

Second part (`--only blocks`, independent of the models): random and edge-case blocks of
the 12 formats the synthetic models do not hold (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S,
IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4), each dequantized by gguf-py:

    importer/tests/fixtures/iquants/blocks.gguf   one tensor per format, named by it, one block
                                                  per row (written by gguf-py's GGUFWriter)
    importer/tests/fixtures/iquants/{TYPE}.npy    gguf-py's dequantization, float32
                                                  [n_blocks, block_size]
    importer/tests/fixtures/iquants/manifest.json which rows are random and which are edge
                                                  cases, numpy's seed, versions

Random blocks are random bytes (numpy PCG64, fixed seed) with the scale made a random
finite f16 (any bit pattern but exponent 31; the E8M0 byte of MXFP4 is any byte, all
of which ggml decodes as finite). Every bit pattern of every other field is a valid
block: each index a block holds has exactly as many bits as its table has rows, so
no random block can index out of range (in ggml, in gguf-py or in the importer). The
edge-case rows put +inf, NaN and -0.0 in the f16 scale (E8M0 0, 1, 254 and 255 for
MXFP4), and one block has every other byte 0xFF (the last row of every grid, every
sign set) with a scale of 1.0.

Regenerate (after make_synthetic_models.py; needs gguf, numpy):
    python3 scripts/make_quant_fixtures.py                 # both parts
    python3 scripts/make_quant_fixtures.py --only blocks   # the i-quant/TQ/MXFP4 blocks only
"""

from __future__ import annotations

import argparse
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


def model_fixtures() -> None:
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


# ---------------------------------------------------------------------------------------
# Random and edge-case blocks of the formats the synthetic models do not hold.

BLOCKS_DIR = fc.REPO / "importer" / "tests" / "fixtures" / "iquants"
BLOCKS_SEED = 20240611
# Format -> where its scale is: ("f16", byte offset), ("iq1m", offset of the 4 scale
# words whose top nibbles hold the f16), ("e8m0", byte offset).
BLOCK_FORMATS: dict[str, tuple[str, int]] = {
    "IQ1_S": ("f16", 0),
    "IQ1_M": ("iq1m", 48),
    "IQ2_XXS": ("f16", 0),
    "IQ2_XS": ("f16", 0),
    "IQ2_S": ("f16", 0),
    "IQ3_XXS": ("f16", 0),
    "IQ3_S": ("f16", 0),
    "IQ4_NL": ("f16", 0),
    "IQ4_XS": ("f16", 0),
    "TQ1_0": ("f16", 52),
    "TQ2_0": ("f16", 64),
    "MXFP4": ("e8m0", 0),
}
# Random blocks per format: 3 super-blocks of 256, 24 blocks of 32 (about 3 KB of floats).
RANDOM_ELEMENTS = 768
F16_EDGES = [("+inf", 0x7C00), ("NaN", 0x7E00), ("-0.0", 0x8000)]
E8M0_EDGES = [("e=0 (2^-128)", 0), ("e=1 (2^-127)", 1), ("e=254 (2^126)", 254),
              ("e=255 (2^127, not NaN)", 255)]
ONE_F16, ONE_E8M0 = 0x3C00, 128  # 1.0 (E8M0 128 is 2^1, halved: 1.0)


def set_scale(block: np.ndarray, kind: str, offset: int, value: int) -> None:
    """Writes the f16 bits (or E8M0 byte) `value` into the scale of `block` (uint8)."""
    if kind == "f16":
        block[offset:offset + 2] = np.frombuffer(np.uint16(value).tobytes(), np.uint8)
    elif kind == "iq1m":
        words = block[offset:offset + 8].view("<u2").copy()
        for k in range(4):
            nibble = (value >> (4 * k)) & 0xF
            words[k] = (int(words[k]) & 0x0FFF) | (nibble << 12)
        block[offset:offset + 8] = words.view(np.uint8)
    else:
        block[offset] = value


def random_finite_f16(rng: np.random.Generator) -> int:
    while True:
        bits = int(rng.integers(0, 1 << 16))
        if (bits >> 10) & 0x1F != 0x1F:
            return bits


def make_blocks(fmt: str, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Random blocks, then the edge cases; with a description of each row."""
    import gguf

    qtype = gguf.GGMLQuantizationType[fmt]
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    kind, offset = BLOCK_FORMATS[fmt]
    rows: list[np.ndarray] = []
    notes: list[str] = []
    for _ in range(RANDOM_ELEMENTS // block_size):
        block = rng.integers(0, 256, size=type_size, dtype=np.uint8)
        scale = int(rng.integers(0, 256)) if kind == "e8m0" else random_finite_f16(rng)
        set_scale(block, kind, offset, scale)
        rows.append(block)
        notes.append("random")
    for name, value in (E8M0_EDGES if kind == "e8m0" else F16_EDGES):
        block = rng.integers(0, 256, size=type_size, dtype=np.uint8)
        if fmt == "IQ4_XS" and name == "+inf":
            # Group 0's 6-bit scale 32: its factor ls - 32 is 0, and inf * 0 is NaN.
            block[2] = (block[2] & 0xFC) | 0x02  # scales_h bits 0..2 = 2
            block[4] &= 0xF0  # scales_l[0] low nibble = 0
            name += ", group 0 scale factor 0"
        set_scale(block, kind, offset, value)
        rows.append(block)
        notes.append(f"scale {name}")
    block = np.full(type_size, 0xFF, dtype=np.uint8)
    set_scale(block, kind, offset, ONE_E8M0 if kind == "e8m0" else ONE_F16)
    rows.append(block)
    notes.append("every byte 0xFF but the scale, 1.0")
    return np.stack(rows), notes


def block_fixtures() -> None:
    import gguf

    rng = np.random.Generator(np.random.PCG64(BLOCKS_SEED))
    BLOCKS_DIR.mkdir(parents=True, exist_ok=True)
    gguf_path = BLOCKS_DIR / "blocks.gguf"
    writer = gguf.GGUFWriter(str(gguf_path), arch="iquant-fixtures")
    manifest: dict = {
        "generator": "scripts/make_quant_fixtures.py --only blocks",
        "dequantizer": "gguf.quants.dequantize (gguf-py, numpy)",
        "versions": {k: v for k, v in fc.versions().items() if k in ("gguf", "numpy")},
        "seed": f"numpy PCG64({BLOCKS_SEED})",
        "file": fc.rel(gguf_path),
        "layout": "tensor {TYPE}: one block per row; {TYPE}.npy float32 [n_blocks, block_size]",
        "types": {},
    }
    for fmt in BLOCK_FORMATS:
        qtype = gguf.GGMLQuantizationType[fmt]
        blocks, notes = make_blocks(fmt, rng)
        with np.errstate(all="ignore"):  # inf * 0 and NaN scales are part of the fixture
            out = np.asarray(gguf.quants.dequantize(blocks, qtype))
        block_size = gguf.GGML_QUANT_SIZES[qtype][0]
        assert out.dtype == np.float32 and out.shape == (len(blocks), block_size), out.shape
        random_rows = [i for i, n in enumerate(notes) if n == "random"]
        assert np.all(np.isfinite(out[random_rows])) or fmt == "MXFP4", fmt
        np.save(BLOCKS_DIR / f"{fmt}.npy", np.ascontiguousarray(out))
        writer.add_tensor(fmt, blocks, raw_dtype=qtype)
        manifest["types"][fmt] = {
            "ggml_type": fmt,
            "n_blocks": len(blocks),
            "block_size": block_size,
            "rows": notes,
            "non_finite_outputs": int(np.sum(~np.isfinite(out))),
        }
        print(f"{fmt:8} {len(blocks):3} blocks, {int(np.sum(np.isnan(out))):4} NaN, "
              f"{int(np.sum(np.isinf(out))):4} inf in gguf-py's output")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    # The file reads back as written.
    reader = gguf.GGUFReader(str(gguf_path))
    for t in reader.tensors:
        with np.errstate(all="ignore"):
            again = gguf.quants.dequantize(t.data, t.tensor_type)
        want = np.load(BLOCKS_DIR / f"{t.name}.npy")
        assert np.array_equal(again.view(np.uint32), want.view(np.uint32)), t.name
    fc.write_json(BLOCKS_DIR / "manifest.json", manifest)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--only", choices=["models", "blocks"], help="write one part only")
    args = ap.parse_args()
    if args.only in (None, "models"):
        model_fixtures()
    if args.only in (None, "blocks"):
        block_fixtures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
