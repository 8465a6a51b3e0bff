"""Writes kernels/tests/fixtures/ggml_bf16/: llama.cpp's own `ggml_vec_dot_bf16` of BF16 weight
rows with activations rounded to BF16, for kernels/tests/ggml_bf16.rs, which checks that the CPU
matmul of BF16 weights (`gguf_kernels::cpu::qmatmul_with_isa`, every instruction set) gives them
bit for bit where llama.cpp takes that dot product (one activation row; several when tinyBLAS
declines the product, here with weight rows not in fours).

    python3 scripts/make_ggml_bf16_fixtures.py

Where the numbers come from: llama-cpp-python's `libggml-cpu` (the x86 build of this machine,
AVX-512 BF16: `vdpbf16ps`), called through ctypes: `ggml_cpu_fp32_to_bf16` rounds each
activation row as ggml's matmul does (its `vec_dot_type` for BF16 weights), and
`ggml_vec_dot_bf16(n, &s, 0, weight_row, 0, activation_row, 0, 1)` gives `y[i, r]`. Lengths with
and without a tail past the last whole 64 elements (the tail is summed one product at a time in
double).

Weights: random normal floats rounded to BF16 (numpy, round to nearest even), `ROWS` rows per
length, scaled per row. Activations (`M` rows): normal; normal with outliers; large (x 1e3);
small (x 1e-5).

Files (little-endian, no headers): `x-<n>.f32` [M, n] f32 (before rounding); `w-<n>.bf16` the
`ROWS` weight rows; `y-<n>.f32` [M, ROWS]. `cases.txt` lists `n rows m`, one case per line.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True
import fixture_common as fc  # noqa: E402
from make_ggml_vec_dot_fixtures import libggml_cpu  # noqa: E402

OUT = fc.REPO / "kernels" / "tests" / "fixtures" / "ggml_bf16"
ROWS = 6  # not a multiple of 4: tinyBLAS declines, several activation rows take vec_dot too
M = 4
LENGTHS = [32, 64, 80, 100, 576, 1000, 1536, 2048]


def to_bf16(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even f32 -> bf16 bits (finite inputs), as GGML_FP32_TO_BF16."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def main() -> int:
    lib = libggml_cpu()
    lib.ggml_vec_dot_bf16.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
    ]
    lib.ggml_cpu_fp32_to_bf16.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    rng = np.random.default_rng(20261207)
    OUT.mkdir(parents=True, exist_ok=True)
    cases = []
    for n in LENGTHS:
        w = rng.standard_normal((ROWS, n)).astype(np.float32)
        w *= (10.0 ** rng.uniform(-2.0, 0.0, size=(ROWS, 1))).astype(np.float32)
        wb = np.ascontiguousarray(to_bf16(w))
        x = rng.standard_normal((M, n)).astype(np.float32)
        x[1, rng.integers(0, n, size=max(1, n // 16))] *= 30.0
        x[2] *= np.float32(1e3)
        x[3] *= np.float32(1e-5)
        y = np.zeros((M, ROWS), dtype=np.float32)
        for i in range(M):
            xi = np.ascontiguousarray(x[i])
            xb = np.zeros(n, dtype=np.uint16)
            lib.ggml_cpu_fp32_to_bf16(xi.ctypes.data, xb.ctypes.data, n)
            assert np.array_equal(xb, to_bf16(xi)), "ggml rounds to bf16 differently"
            for r in range(ROWS):
                s = ctypes.c_float()
                lib.ggml_vec_dot_bf16(n, ctypes.addressof(s), 0, wb[r].ctypes.data, 0, xb.ctypes.data, 0, 1)
                y[i, r] = s.value
        x.tofile(OUT / f"x-{n}.f32")
        wb.tofile(OUT / f"w-{n}.bf16")
        y.tofile(OUT / f"y-{n}.f32")
        cases.append(f"{n} {ROWS} {M}")
    (OUT / "cases.txt").write_text("# n rows m\n" + "\n".join(cases) + "\n")
    fc.write_json(OUT / "manifest.json", {"generator": "scripts/make_ggml_bf16_fixtures.py", "versions": fc.versions()})
    print(f"wrote {len(cases)} cases to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
