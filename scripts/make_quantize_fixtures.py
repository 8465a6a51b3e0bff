"""Writes quantization fixtures: random f32 rows and their F16, BF16, Q8_0 and Q4_0 bytes as gguf-py's
numpy quantizer (`gguf.quants.quantize`, independent of llama.cpp's C code) writes them.

    tests/fixtures/quants/quantize/input.npy   float32 [16, 256]: rows of normal values at
                                               several scales, plus the edge cases below
    tests/fixtures/quants/quantize/{TYPE}.bin  gguf.quants.quantize(input, TYPE).tobytes()
                                               for TYPE in F16, BF16, Q8_0, Q4_0 (the tensor's bytes
                                               in the file's block layout)
    tests/fixtures/quants/quantize/manifest.json  shapes, byte counts, seed, versions

Edge cases (row 15): an all-zero block (Q8_0 d = 0); a block whose max |x| is 127, so that
d = 1 and x·(1/d) has exact .5 ties (Q8_0 rounds them away from zero); values halfway
between two halves (F16 ties to even); an f16 subnormal; a value beyond the half range
(F16 inf).

Regenerate (needs gguf, numpy):
    python3 scripts/make_quantize_fixtures.py
"""

from __future__ import annotations

import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402

SEED = 20261123
ROWS, COLS = 16, 256
TYPES = ["F16", "BF16", "Q8_0", "Q4_0"]
OUT_DIR = fc.QUANT_DIR / "quantize"


def make_input() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((ROWS, COLS), dtype=np.float32)
    scales = np.float32(10.0) ** rng.uniform(-4, 2, size=(ROWS, 1)).astype(np.float32)
    x = (x * scales).astype(np.float32)
    edge = np.zeros(COLS, dtype=np.float32)
    # 0..32: all zero. 32..64: max |x| = 127 with .5 ties.
    ties = np.array([127, -127, 2.5, -2.5, 3.5, -3.5, 0.5, -0.5, 126.5, -126.5], dtype=np.float32)
    edge[32 : 32 + len(ties)] = ties
    edge[32 + len(ties) : 64] = np.arange(64 - 32 - len(ties), dtype=np.float32) - 10.5
    # 64..96: f16 ties (1 + 2^-11 lies halfway between 1 and 1 + 2^-10), a subnormal, overflow.
    f16_cases = np.array(
        [1 + 2.0**-11, 1 + 3 * 2.0**-11, -(1 + 2.0**-11), 3e-6, -7e-8, 65520.0, -1e5, 65504.0],
        dtype=np.float32,
    )
    edge[64 : 64 + len(f16_cases)] = f16_cases
    # bf16 ties: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
    edge[96:100] = np.array([1 + 2.0**-8, 1 + 3 * 2.0**-8, -(1 + 2.0**-8), 1e-40], dtype=np.float32)
    x[ROWS - 1] = edge
    return np.ascontiguousarray(x)


def main() -> int:
    import gguf

    x = make_input()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    np.save(OUT_DIR / "input.npy", x)
    manifest: dict = {
        "generator": "scripts/make_quantize_fixtures.py",
        "quantizer": "gguf.quants.quantize (gguf-py, numpy)",
        "versions": fc.versions(),
        "seed": SEED,
        "input": {"file": "input.npy", "dtype": "float32", "shape": [ROWS, COLS]},
        "types": {},
    }
    with np.errstate(over="ignore"):  # 65520 and -1e5 overflow F16 on purpose
        for name in TYPES:
            qtype = gguf.GGMLQuantizationType[name]
            q = np.asarray(gguf.quants.quantize(x, qtype))
            data = q.tobytes()
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            expected = ROWS * COLS // block * size
            if len(data) != expected:
                raise SystemExit(f"{name}: {len(data)} bytes, expected {expected}")
            (OUT_DIR / f"{name}.bin").write_bytes(data)
            manifest["types"][name] = {"file": f"{name}.bin", "bytes": len(data)}
            print(f"{name:5} {len(data)} bytes")
    fc.write_json(OUT_DIR / "manifest.json", manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
