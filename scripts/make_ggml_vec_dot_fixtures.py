"""Writes kernels/tests/fixtures/ggml_vec_dot/: llama.cpp's own dot products of the five 32-element
formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and the five K-quants (Q2_K .. Q6_K) with 8-bit
activations, for kernels/tests/ggml_vec_dot.rs, which checks that the CPU matmul
(`gguf_kernels::cpu::qmatmul_with_isa`, every instruction set) gives them bit for bit, and ggml's
Q8_K activation blocks, which src/cpu/quantize_act.rs's tests check its K quantizer against byte
for byte.

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

The K-quants (`K_LENGTHS`, `K_M` activation rows, `ROWS` weight rows): ggml's
`quantize_row_q8_K` (on x86 `quantize_row_q8_K_ref`, in libggml-base) quantizes each activation
row, `ggml_vec_dot_<fmt>_q8_K` gives `y[i, r]`. Weights: the first half quantized from random
normal floats by ggml's own `quantize_row_<fmt>_ref` (gguf-py does not quantize K-quants), the
second half random valid super-blocks (random bits, Q6_K's scale -128 included, random finite f16
`d`/`dmin` of either sign, some subnormal). Activations: the four kinds above, then three that
probe `quantize_row_q8_K`: exact rounding ties (`k + 0.5` with the block maximum 127 · 2^e), the
largest magnitude twice with both signs (the first one's sign is the scale's), and blocks whose
maximum is below 127 / FLT_MAX (the inverse scale overflows to infinity). Each activation row is
its own `vec_dot` call, so rows 0..m of the fixture are the products of any `m` rows.

Files (little-endian, no headers): `x-<n>.f32` [M, n] f32; `<fmt>-<n>.w` the `ROWS` rows of GGUF
blocks; `<fmt>-<n>.y.f32` [M, ROWS] f32. `cases.txt` lists `format n rows m`, one case per
line (what the test reads); manifest.json records the same with the tools' versions. The
K-quants: `xk-<n>.f32` [K_M, n] f32; `q8k-<n>.bin` ggml's `block_q8_K`s of those rows
([K_M, n / 256] blocks of 292 bytes: f32 `d`, 256 `i8` `qs`, 16 `i16` `bsums`); `<fmt>-<n>.w`,
`<fmt>-<n>.y.f32` as above; `cases_k.txt` in the same format.
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

K_M = 7
K_LENGTHS = [256, 512, 1536, 2048, 5632]
Q8K_BYTES = 292  # block_q8_K: f32 d, i8 qs[256], i16 bsums[16]
# name: (super-block bytes, byte offsets of the f16 fields d (and dmin))
K_FORMATS = {
    "Q2_K": (84, [80, 82]),
    "Q3_K": (110, [108]),
    "Q4_K": (144, [0, 2]),
    "Q5_K": (176, [0, 2]),
    "Q6_K": (210, [208]),
}


def lib_dir() -> str:
    import llama_cpp

    return os.path.join(os.path.dirname(llama_cpp.__file__), "lib")


def libggml_cpu() -> ctypes.CDLL:
    lib = ctypes.CDLL(os.path.join(lib_dir(), "libggml-cpu.so"))
    lib.ggml_cpu_init()  # fills the f16 -> f32 table the dot products read the scales through
    return lib


def libggml_base() -> ctypes.CDLL:
    """ggml's reference quantizers (`quantize_row_<fmt>_ref`)."""
    return ctypes.CDLL(os.path.join(lib_dir(), "libggml-base.so"))


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


def k_activations(rng: np.random.Generator, n: int) -> np.ndarray:
    """`K_M` rows: `activations`' four kinds (its blocks of 32 scaled the same way), then the
    three that probe `quantize_row_q8_K`'s rounding and sign (see the module doc)."""
    nb = n // 256
    x = np.zeros((K_M, n), np.float32)
    x[:4] = rng.standard_normal((4, n)).astype(np.float32)
    x[0, rng.integers(0, n, size=max(1, n // 64))] *= 20.0
    x[1, :256] = 0.0  # a zero super-block
    if nb >= 3:
        x[1, (nb // 2) * 256 :][:256] = 0.0
    x[2] *= np.float32(1e3)
    x[3] *= np.repeat(10.0 ** rng.uniform(-1.0, 1.0, size=n // 32), 32).astype(np.float32) * np.float32(1e-5)
    # 4: ties. k + 0.5 (|.| <= 126.5) and one element of +-127 per super-block, all times 2^e:
    # the scale -127 / max is -+2^-e exactly, so every other element lands on a half
    ties = rng.integers(-127, 127, size=(nb, 256)).astype(np.float32) + np.float32(0.5)
    ties[np.arange(nb), rng.integers(0, 256, size=nb)] = 127.0 * rng.choice([-1.0, 1.0], size=nb)
    x[4] = (ties * 2.0 ** rng.integers(-3, 4, size=(nb, 1))).reshape(-1)
    # 5: the largest magnitude twice per super-block, with both signs in random order; one
    # super-block (the last) all one magnitude with random signs
    x[5] = rng.standard_normal(n).astype(np.float32)
    for b in range(nb):
        i, j = sorted(rng.choice(256, size=2, replace=False))
        sign = rng.choice([-1.0, 1.0])
        x[5, 256 * b + i], x[5, 256 * b + j] = 5.0 * sign, -5.0 * sign
    x[5, (nb - 1) * 256 :] = rng.choice([-0.75, 0.75], size=256)
    # 6: normal, every other super-block (from the first) below 127 / FLT_MAX (~3.7e-37): -127 / max
    # overflows to -+inf, so ggml's q are 0 and d is -+0 (some of these elements are subnormal)
    x[6] = rng.standard_normal(n).astype(np.float32)
    for b in range(0, nb, 2):
        x[6, 256 * b :][:256] *= np.float32(1e-38)
    return x


def random_k_blocks(rng: np.random.Generator, n: int, block_bytes: int, scales: list[int]) -> np.ndarray:
    """One row of random valid super-blocks: random bits, finite f16 `d` (and `dmin`)."""
    nb = n // 256
    blocks = rng.integers(0, 256, size=(nb, block_bytes), dtype=np.uint8)
    count = nb * len(scales)
    mag = 10.0 ** rng.uniform(-4.0, -1.0, size=count)
    mag[rng.random(count) < 0.1] = 3e-6  # f16 subnormals
    vals = (mag * rng.choice([-1.0, 1.0], size=count)).astype(np.float16)
    f16 = vals.view(np.uint8).reshape(nb, len(scales), 2)
    for k, off in enumerate(scales):
        blocks[:, off : off + 2] = f16[:, k]
    return blocks.reshape(-1)


def k_weights(base: ctypes.CDLL, rng: np.random.Generator, fmt: str, n: int) -> np.ndarray:
    block_bytes, scales = K_FORMATS[fmt]
    half = ROWS // 2
    rows = []
    for _ in range(half):
        w = rng.standard_normal(n).astype(np.float32)
        w *= np.float32(10.0 ** rng.uniform(-2.0, 0.0))
        q = np.zeros(n // 256 * block_bytes, np.uint8)
        getattr(base, f"quantize_row_{fmt[:2].lower()}_K_ref")(
            w.ctypes.data_as(ctypes.c_void_p), q.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(n)
        )
        rows.append(q)
    rows += [random_k_blocks(rng, n, block_bytes, scales) for _ in range(ROWS - half)]
    out = np.ascontiguousarray(np.stack(rows))
    assert out.shape == (ROWS, n // 256 * block_bytes)
    return out


def q8_k(lib: ctypes.CDLL, x: np.ndarray) -> np.ndarray:
    """ggml's `quantize_row_q8_K` of each row of x: [rows, n / 256 · 292] bytes. The buffer starts
    zeroed: ggml leaves the `bsums` of an all-zero super-block unwritten."""
    n = x.shape[1]
    out = np.zeros((x.shape[0], n // 256 * Q8K_BYTES), np.uint8)
    for i in range(x.shape[0]):
        xi = np.ascontiguousarray(x[i])
        lib.quantize_row_q8_K(
            xi.ctypes.data_as(ctypes.c_void_p), out[i].ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(n)
        )
    return out


def k_dots(lib: ctypes.CDLL, fmt: str, wq: np.ndarray, act: np.ndarray, n: int) -> np.ndarray:
    dot = getattr(lib, f"ggml_vec_dot_{fmt[:2].lower()}_K_q8_K")
    y = np.zeros((act.shape[0], ROWS), np.float32)
    for i in range(act.shape[0]):
        a = np.ascontiguousarray(act[i])
        for r in range(ROWS):
            s = ctypes.c_float()
            row = np.ascontiguousarray(wq[r])
            dot(
                ctypes.c_int(n), ctypes.byref(s), ctypes.c_size_t(0),
                row.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(0),
                a.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(0), ctypes.c_int(1),
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
    # The K-quants, from a generator of their own (the files above stay as they were).
    base = libggml_base()
    rng = np.random.default_rng(20261207)
    k_cases = []
    acts = {}
    for n in K_LENGTHS:
        x = k_activations(rng, n)
        acts[n] = q8_k(lib, x)
        (OUT / f"xk-{n}.f32").write_bytes(x.astype("<f4").tobytes())
        (OUT / f"q8k-{n}.bin").write_bytes(acts[n].tobytes())
    for fmt in K_FORMATS:
        for n in K_LENGTHS:
            wq = k_weights(base, rng, fmt, n)
            y = k_dots(lib, fmt, wq, acts[n], n)
            assert np.isfinite(y).all(), f"{fmt}-{n}: non-finite result"
            (OUT / f"{fmt}-{n}.w").write_bytes(wq.tobytes())
            (OUT / f"{fmt}-{n}.y.f32").write_bytes(y.astype("<f4").tobytes())
            k_cases.append({"format": fmt, "n": n, "rows": ROWS, "m": K_M})
    (OUT / "cases_k.txt").write_text(
        "# format n rows m (written by scripts/make_ggml_vec_dot_fixtures.py; activations xk-<n>.f32)\n"
        + "".join(f"{c['format']} {c['n']} {c['rows']} {c['m']}\n" for c in k_cases)
    )
    fc.write_json(OUT / "manifest.json", {
        "generator": "scripts/make_ggml_vec_dot_fixtures.py",
        "source": "ggml's quantize_row_q8_0/q8_1/q8_K and ggml_vec_dot_<fmt>_q8_<0|1|K> in "
                  "llama-cpp-python's libggml-cpu (x86 build), through ctypes; K-quant weights half "
                  "from libggml-base's quantize_row_<fmt>_ref",
        "versions": fc.versions(),
        "cases": cases,
        "k_cases": k_cases,
    })
    cases = cases + k_cases
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(cases)} cases in {fc.rel(OUT)} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
