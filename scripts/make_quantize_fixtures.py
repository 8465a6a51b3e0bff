"""Writes quantization fixtures: f32 rows and their bytes in each type our quantizer writes, from
two independent references.

1. gguf-py's numpy quantizer (`gguf.quants.quantize`, independent of llama.cpp's C code):

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

2. llama.cpp's own quantizer: `ggml_quantize_chunk` of the libggml-base.so that llama-cpp-python
   ships (called through ctypes, without an importance matrix), the function through which
   `llama_model_quantize` writes every tensor; for the K-quants and Q5_0/Q5_1 it runs ggml's
   `quantize_row_*_ref`:

    tests/fixtures/quants/quantize/llama_cpp/input.npy   float32 [ROWS, 256], rows described in
                                                         `llama_cpp_rows` (random rows at several
                                                         scales, zeros, constants, tiny, subnormal
                                                         and huge values, ties, outliers)
    tests/fixtures/quants/quantize/llama_cpp/{TYPE}.bin  ggml_quantize_chunk(TYPE, input) for TYPE
                                                         in LLAMA_CPP_TYPES
    tests/fixtures/quants/quantize/llama_cpp/manifest.json  row descriptions, byte counts,
                                                            seed, versions, library path

Regenerate (needs gguf, numpy, llama-cpp-python):
    python3 scripts/make_quantize_fixtures.py
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402

SEED = 20261123
ROWS, COLS = 16, 256
TYPES = ["F16", "BF16", "Q8_0", "Q4_0"]
OUT_DIR = fc.QUANT_DIR / "quantize"

LLAMA_CPP_SEED = 20261207
LLAMA_CPP_DIR = OUT_DIR / "llama_cpp"
LLAMA_CPP_TYPES = [
    "F16", "BF16", "Q4_0", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
]


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


def llama_cpp_rows() -> tuple[np.ndarray, list[str]]:
    """Rows of 256 (one K-quant super-block, eight 32-blocks) and what each one tests."""
    rng = np.random.default_rng(LLAMA_CPP_SEED)
    rows: list[np.ndarray] = []
    notes: list[str] = []

    def add(note: str, row) -> None:
        row = np.asarray(row, dtype=np.float32)
        assert row.shape == (COLS,), note
        rows.append(row)
        notes.append(note)

    for scale in (1e-3, 0.02, 0.1, 1.0, 7.0):
        add(f"normal, sigma {scale}", rng.standard_normal(COLS) * scale)
    for k in range(16):  # more of the common case: many sub-blocks through the scale searches
        add(f"normal, sigma 0.05 (#{k})", rng.standard_normal(COLS) * 0.05)
    add("student-t (3 dof), 0.05: heavy tails", rng.standard_t(3, COLS) * 0.05)
    add("uniform [-1, 1)", rng.uniform(-1, 1, COLS))
    add("all positive: uniform [0.1, 2)", rng.uniform(0.1, 2.0, COLS))
    add("all negative: uniform [-3, -0.5)", rng.uniform(-3.0, -0.5, COLS))
    add("all zero", np.zeros(COLS))
    add("constant 0.37", np.full(COLS, 0.37))
    add("constant -2.5", np.full(COLS, -2.5))
    x = rng.standard_normal(COLS) * 0.3
    x[0:16] = 0  # a zero 16-sub-block
    x[64:96] = 0  # a zero 32-block
    x[128:144] = 0
    x[131] = 0.8  # one non-zero value in a 16-sub-block
    x[200:216] = 0.25  # a constant sub-block
    add("zero and constant sub-blocks among normal values (0.3)", x)
    add("tiny: normal, sigma 1e-20 (below ggml's GROUP_MAX_EPS 1e-15)", rng.standard_normal(COLS) * 1e-20)
    add("small: normal, sigma 1e-13 (just above GROUP_MAX_EPS)", rng.standard_normal(COLS) * 1e-13)
    add("subnormal: normal, sigma 1e-40 (1/d overflows in Q4_0, Q5_0, Q5_1, Q8_0)", rng.standard_normal(COLS) * 1e-40)
    add("large: normal, sigma 3e3 (Q8_0/Q4_0 d still within f16)", rng.standard_normal(COLS) * 3e3)
    add("huge: normal, sigma 1e5 (Q4_0/Q5_0 d beyond f16: inf)", rng.standard_normal(COLS) * 1e5)
    add("huge: normal, sigma 1e15 (x^3 overflows f32 in the x^2-weighted sums)", rng.standard_normal(COLS) * 1e15)
    add("integers -8..7 (exact ties at many scales)", np.tile(np.arange(-8, 8), COLS // 16))
    add("halves -4..3.5 (ties)", np.tile(np.arange(-8, 8) * 0.5, COLS // 16)[rng.permutation(COLS)])
    x = rng.standard_normal(COLS) * 0.01
    x[[5, 77, 160, 250]] = [3.0, -4.0, 2.5, -1.0]
    add("outliers among small normal values", x)
    x = rng.standard_normal(COLS) * 0.1
    for b in range(0, COLS, 16):
        x[b + 3], x[b + 9] = -0.5, 0.5  # equal magnitudes, opposite signs: the first one wins
    add("largest magnitude twice per 16 with opposite signs", x)
    add("levels of a coarse grid with noise: round(x*4)/4 + 1e-4 noise",
        np.round(rng.standard_normal(COLS) * 4) / 4 + rng.standard_normal(COLS) * 1e-4)
    return np.ascontiguousarray(np.stack(rows).astype(np.float32)), notes


def ggml_quantize_chunk():
    """llama.cpp's `ggml_quantize_chunk` from the libggml-base.so llama-cpp-python loads."""
    import llama_cpp

    lib_path = Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"
    lib = ctypes.CDLL(str(lib_path))
    fn = lib.ggml_quantize_chunk
    fn.restype = ctypes.c_size_t
    fn.argtypes = [
        ctypes.c_int,  # enum ggml_type
        ctypes.c_void_p,  # const float * src
        ctypes.c_void_p,  # void * dst
        ctypes.c_int64,  # start
        ctypes.c_int64,  # nrows
        ctypes.c_int64,  # n_per_row
        ctypes.c_void_p,  # const float * imatrix (NULL: none)
    ]
    return fn, lib_path


def write_llama_cpp_fixtures() -> None:
    import gguf

    x, notes = llama_cpp_rows()
    quantize_chunk, lib_path = ggml_quantize_chunk()
    LLAMA_CPP_DIR.mkdir(parents=True, exist_ok=True)
    np.save(LLAMA_CPP_DIR / "input.npy", x)
    manifest: dict = {
        "generator": "scripts/make_quantize_fixtures.py",
        "quantizer": "ggml_quantize_chunk (llama.cpp's libggml-base.so from llama-cpp-python, no imatrix)",
        "library": lib_path.name,
        "versions": fc.versions(),
        "seed": LLAMA_CPP_SEED,
        "input": {"file": "input.npy", "dtype": "float32", "shape": list(x.shape)},
        "rows": notes,
        "types": {},
    }
    rows, cols = x.shape
    for name in LLAMA_CPP_TYPES:
        qtype = gguf.GGMLQuantizationType[name]
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        expected = rows * cols // block * size
        out = np.zeros(expected, dtype=np.uint8)
        written = quantize_chunk(int(qtype), x.ctypes.data, out.ctypes.data, 0, rows, cols, None)
        if written != expected:
            raise SystemExit(f"{name}: ggml_quantize_chunk wrote {written} bytes, expected {expected}")
        (LLAMA_CPP_DIR / f"{name}.bin").write_bytes(out.tobytes())
        manifest["types"][name] = {"file": f"{name}.bin", "bytes": expected}
        print(f"llama.cpp {name:5} {expected} bytes")
    fc.write_json(LLAMA_CPP_DIR / "manifest.json", manifest)


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
    write_llama_cpp_fixtures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
