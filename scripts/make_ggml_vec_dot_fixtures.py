"""Writes kernels/tests/fixtures/ggml_vec_dot/: llama.cpp's own dot products of the five 32-element
formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with 8-bit activations, for kernels/tests/ggml_vec_dot.rs,
which checks that the CPU matmul (`gguf_kernels::cpu::qmatmul_with_isa`, every instruction set)
gives them bit for bit.

    python3 scripts/make_ggml_vec_dot_fixtures.py

Where the numbers come from: llama-cpp-python's `libggml-cpu` (the x86 build of this machine,
AVX2 / AVX-512 VNNI), called through ctypes. For each activation row, ggml's own
`quantize_row_q8_0` (Q4_0, Q5_0, Q8_0) or `quantize_row_q8_1` (Q4_1, Q5_1) quantizes it, and
`ggml_vec_dot_<fmt>_q8_<0|1>(n, &s, 0, weight_row, 0, act, 0, 1)` gives `y[i, r]`.

Weights (`ROWS` rows per format and length): the first half quantized from random normal floats
by gguf-py (`gguf.quants.quantize`, one scale per row), the second half random valid blocks
(random quant bits, Q8_0's -128 included, and random finite f16 scales and mins of either sign,
some subnormal). Activations (`M` rows per length, shared by the formats): normal with a few
outliers; normal with zero blocks; large (x 1e3); small (x 1e-5, block scales that are f16
subnormals).

Files (little-endian, no headers): `x-<n>.f32` [M, n] f32; `<fmt>-<n>.w` the `ROWS` rows of GGUF
blocks; `<fmt>-<n>.y.f32` [M, ROWS] f32. `cases.txt` lists `format n rows m`, one case per
line (what the test reads); manifest.json records the same with the tools' versions.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402

OUT = fc.REPO / "kernels" / "tests" / "fixtures" / "ggml_vec_dot"
ROWS = 8
M = 4
LENGTHS = [32, 64, 576, 1536, 2048]
# name: (activation quantizer, dot product, activation block bytes, weight block bytes,
#        byte offsets of the f16 fields in a weight block)
FORMATS = {
    "Q4_0": ("quantize_row_q8_0", "ggml_vec_dot_q4_0_q8_0", 34, 18, [0]),
    "Q4_1": ("quantize_row_q8_1", "ggml_vec_dot_q4_1_q8_1", 36, 20, [0, 2]),
    "Q5_0": ("quantize_row_q8_0", "ggml_vec_dot_q5_0_q8_0", 34, 22, [0]),
    "Q5_1": ("quantize_row_q8_1", "ggml_vec_dot_q5_1_q8_1", 36, 24, [0, 2]),
    "Q8_0": ("quantize_row_q8_0", "ggml_vec_dot_q8_0_q8_0", 34, 34, [0]),
}


def libggml_cpu() -> ctypes.CDLL:
    import llama_cpp

    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-cpu.so"))
    lib.ggml_cpu_init()  # fills the f16 -> f32 table the dot products read the scales through
    return lib


def activations(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((M, n)).astype(np.float32)
    spikes = rng.integers(0, n, size=max(1, n // 64))
    x[0, spikes] *= 20.0
    x[1, :32] = 0.0  # a zero block
    if n >= 128:
        x[1, n // 2 - n // 2 % 32 :][:32] = 0.0
    block_scale = 10.0 ** rng.uniform(-1.0, 1.0, size=n // 32).astype(np.float32)
    x[2] *= np.float32(1e3)
    x[3] *= np.repeat(block_scale, 32) * np.float32(1e-5)
    return x


def random_blocks(rng: np.random.Generator, n: int, block_bytes: int, scales: list[int]) -> np.ndarray:
    """One row of random valid blocks: random bits, finite f16 scale fields."""
    blocks = rng.integers(0, 256, size=(n // 32, block_bytes), dtype=np.uint8)
    count = n // 32 * len(scales)
    mag = 10.0 ** rng.uniform(-4.0, -1.0, size=count)
    mag[rng.random(count) < 0.1] = 3e-6  # f16 subnormals
    vals = (mag * rng.choice([-1.0, 1.0], size=count)).astype(np.float16)
    f16 = vals.view(np.uint8).reshape(n // 32, len(scales), 2)
    for k, off in enumerate(scales):
        blocks[:, off : off + 2] = f16[:, k]
    return blocks.reshape(-1)


def weights(rng: np.random.Generator, fmt: str, n: int) -> np.ndarray:
    import gguf

    block_bytes, scales = FORMATS[fmt][3], FORMATS[fmt][4]
    half = ROWS // 2
    w = rng.standard_normal((half, n)).astype(np.float32)
    w *= (10.0 ** rng.uniform(-2.0, 0.0, size=(half, 1))).astype(np.float32)
    quantized = np.asarray(gguf.quants.quantize(w, gguf.GGMLQuantizationType[fmt]), dtype=np.uint8)
    rows = [quantized[r].reshape(-1) for r in range(half)]
    rows += [random_blocks(rng, n, block_bytes, scales) for _ in range(ROWS - half)]
    out = np.ascontiguousarray(np.stack(rows))
    assert out.shape == (ROWS, n // 32 * block_bytes)
    return out


def ggml_dots(lib: ctypes.CDLL, fmt: str, wq: np.ndarray, x: np.ndarray) -> np.ndarray:
    quant_act, dot, act_bytes = FORMATS[fmt][:3]
    n = x.shape[1]
    y = np.zeros((x.shape[0], ROWS), np.float32)
    for i in range(x.shape[0]):
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
    return y


def main() -> int:
    lib = libggml_cpu()
    rng = np.random.default_rng(20261125)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    cases = []
    xs = {}
    for n in LENGTHS:
        xs[n] = activations(rng, n)
        (OUT / f"x-{n}.f32").write_bytes(xs[n].astype("<f4").tobytes())
    for fmt in FORMATS:
        for n in LENGTHS:
            wq = weights(rng, fmt, n)
            y = ggml_dots(lib, fmt, wq, xs[n])
            assert np.isfinite(y).all(), f"{fmt}-{n}: non-finite result"
            (OUT / f"{fmt}-{n}.w").write_bytes(wq.tobytes())
            (OUT / f"{fmt}-{n}.y.f32").write_bytes(y.astype("<f4").tobytes())
            cases.append({"format": fmt, "n": n, "rows": ROWS, "m": M})
    (OUT / "cases.txt").write_text(
        "# format n rows m (written by scripts/make_ggml_vec_dot_fixtures.py)\n"
        + "".join(f"{c['format']} {c['n']} {c['rows']} {c['m']}\n" for c in cases)
    )
    fc.write_json(OUT / "manifest.json", {
        "generator": "scripts/make_ggml_vec_dot_fixtures.py",
        "source": "ggml's quantize_row_q8_0/q8_1 and ggml_vec_dot_<fmt>_q8_<0|1> in llama-cpp-python's "
                  "libggml-cpu (x86 build), through ctypes",
        "versions": fc.versions(),
        "cases": cases,
    })
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(cases)} cases in {fc.rel(OUT)} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
