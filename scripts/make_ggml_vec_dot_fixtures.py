"""Writes tests/fixtures/ggml_vec_dot/: llama.cpp's own dot products of Q4_1, Q5_0, Q5_1 and Q8_0
with 8-bit activations (Q4_0 is left out: llama.cpp's x86 backend repacks it and never calls
`ggml_vec_dot_q4_0_q8_0`, see kernels/src/cpu/legacy.rs), for tests/ggml_vec_dot.rs, which checks
that the CPU matmul gives them bit for bit.

    python3 scripts/make_ggml_vec_dot_fixtures.py

Weights: random normal floats quantized by gguf-py (`gguf.quants.quantize`), `ROWS` rows of `n`
elements. Activations: `M` random rows (one with a block of zeros, one of large magnitude).
Expected: for each weight row r and activation row i, ggml's `quantize_row_q8_0`/`_q8_1` of the
activation row, then `ggml_vec_dot_<fmt>_q8_<0|1>` (both called through ctypes in
llama-cpp-python's libggml-cpu, the x86 build of this machine): `y[i, r]`.

Files per format and n: `<fmt>-<n>.weights.bin` (the GGUF blocks), `<fmt>-<n>.x.npy` [M, n],
`<fmt>-<n>.y.npy` [M, ROWS]; manifest.json lists them with the tools' versions.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402

OUT = fc.FIXTURES / "ggml_vec_dot"
ROWS = 8
M = 3
LENGTHS = [32, 64, 576]
FORMATS = {  # name: (gguf type name, activation quantizer, vec_dot, activation block bytes)
    "Q4_1": ("Q4_1", "quantize_row_q8_1", "ggml_vec_dot_q4_1_q8_1", 36),
    "Q5_0": ("Q5_0", "quantize_row_q8_0", "ggml_vec_dot_q5_0_q8_0", 34),
    "Q5_1": ("Q5_1", "quantize_row_q8_1", "ggml_vec_dot_q5_1_q8_1", 36),
    "Q8_0": ("Q8_0", "quantize_row_q8_0", "ggml_vec_dot_q8_0_q8_0", 34),
}


def libggml_cpu() -> ctypes.CDLL:
    import llama_cpp

    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-cpu.so"))
    lib.ggml_cpu_init()  # fills the f16 -> f32 table the dot products read the scales through
    return lib


def main() -> int:
    import gguf

    lib = libggml_cpu()
    rng = np.random.default_rng(20261124)
    OUT.mkdir(parents=True, exist_ok=True)
    files = []
    for fmt, (qt, quant_act, dot, act_bytes) in FORMATS.items():
        ty = gguf.GGMLQuantizationType[qt]
        for n in LENGTHS:
            w = rng.standard_normal((ROWS, n)).astype(np.float32) * 0.05
            wq = np.ascontiguousarray(gguf.quants.quantize(w, ty))  # [ROWS, row bytes]
            x = rng.standard_normal((M, n)).astype(np.float32)
            x[1, :32] = 0.0  # a zero block
            x[2] *= 1e3
            y = np.zeros((M, ROWS), np.float32)
            for i in range(M):
                xi = np.ascontiguousarray(x[i])
                act = np.zeros(n // 32 * act_bytes, np.uint8)
                getattr(lib, quant_act)(
                    xi.ctypes.data_as(ctypes.c_void_p), act.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(n)
                )
                for r in range(ROWS):
                    s = ctypes.c_float()
                    row = np.ascontiguousarray(wq[r])
                    getattr(lib, dot)(
                        ctypes.c_int(n), ctypes.byref(s), ctypes.c_size_t(0),
                        row.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(0),
                        act.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(0), ctypes.c_int(1),
                    )
                    y[i, r] = s.value
            stem = f"{fmt}-{n}"
            (OUT / f"{stem}.weights.bin").write_bytes(wq.tobytes())
            np.save(OUT / f"{stem}.x.npy", x)
            np.save(OUT / f"{stem}.y.npy", y)
            files.append({"format": fmt, "n": n, "rows": ROWS, "m": M, "stem": stem})
    fc.write_json(OUT / "manifest.json", {
        "generator": "scripts/make_ggml_vec_dot_fixtures.py",
        "versions": fc.versions(),
        "cases": files,
    })
    print(f"{len(files)} cases in {fc.rel(OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
