"""Writes kernels/tests/fixtures/ggml_repack/: llama.cpp's repacked K-quant products (Q4_K and
Q2_K, weights of 8 rows interleaved, `block_q4_Kx8` / `block_q2_Kx8`) with 8-bit activations,
for kernels/tests/ggml_repack.rs, which checks that the CPU matmul
(`gguf_kernels::cpu::qmatmul_with_isa`, every instruction set) gives them bit for bit.

    python3 scripts/make_ggml_repack_fixtures.py

Where the numbers come from: llama-cpp-python's `libggml-cpu` (the x86 build of this machine,
AVX-512 F/BW/DQ/VL/VNNI), called through ctypes. On x86 llama.cpp moves a Q4_K matrix whose row
count is a multiple of 8 (AVX2), and a Q2_K one (AVX-512), into its repacked buffer at load and
multiplies it in ggml-cpu/repack.cpp's `forward_mul_mat`: with m activation rows, the first
`m - m % 4` (when m > 3) go through `ggml_gemm_<fmt>_8x8_q8_K` in groups of four, quantized by
`ggml_quantize_mat_t<8, GGML_TYPE_Q8_K>` (`ggml_quantize_mat_q8_K_4x8`, four rows at a time; the
8 is the kernels' interleave), the other `m % 4` (all of them when m <= 3) through
`ggml_gemv_<fmt>_8x8_q8_K`, quantized by `quantize_row_q8_K`. The two kernels sum in different
orders, so this script records both results for every activation row: `<fmt>-<n>.gemm.f32`
(every row through the gemm, four at a time) and `<fmt>-<n>.gemv.f32` (every row through the
gemv, one at a time); the test picks, for each m, which one row i gets (gemm for
i < m - m % 4). The weights are repacked here as `make_block_q4_Kx8` / `make_block_q2_Kx8` do
(`repack.cpp`, interleave 8). As a check of that reading, the script also runs the gemm on each
group of four rows alone and on each 8 weight rows alone (other code paths of the kernels: the
AVX-512 16 x 16 tiles, the AVX2 tail) and the gemv on each 8 weight rows alone, and asserts the
same bits.

Weights (`ROWS` rows per format and length): the first half quantized from random normal floats
by ggml's own `quantize_row_q4_K_ref` / `quantize_row_q2_K_ref` (libggml-base), the second half
random valid blocks (random quant and scale bits, random finite f16 d and dmin of either sign,
some subnormal). Activations (`M` rows per length, shared by the formats): normal with a few
outliers; with zero super-blocks; large (x 1e3); small (x 1e-5); ties between the largest
positive and negative values (the sign ggml's quantizers pick differs there); cycled.

Files (little-endian, no headers): `x-<n>.f32` [M, n] f32; `<fmt>-<n>.w` the `ROWS` rows of
GGUF blocks (the file's layout, not the repacked one); `<fmt>-<n>.gemm.f32` and
`<fmt>-<n>.gemv.f32` [M, ROWS] f32. `cases.txt` lists `format n rows m`, one case per line (what
the test reads); manifest.json records the same with the tools' versions.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402

OUT = fc.REPO / "kernels" / "tests" / "fixtures" / "ggml_repack"
ROWS = 24
M = 16
QK_K = 256
LENGTHS = [256, 1536, 2048]
Q8_K_BYTES = 4 + QK_K + 2 * QK_K // 16  # block_q8_K: f32 d, i8 qs[256], i16 bsums[16]
Q8_KX4_BYTES = 4 * Q8_K_BYTES  # block_q8_Kx4: f32 d[4], i8 qs[1024], i16 bsums[64]
# name: (GGUF block bytes, byte offsets of d and dmin, repacked block bytes, gemv, gemm,
#        reference quantizer in libggml-base)
FORMATS = {
    "Q4_K": (144, (0, 2), 32 + 96 + 1024, "ggml_gemv_q4_K_8x8_q8_K", "ggml_gemm_q4_K_8x8_q8_K",
             "quantize_row_q4_K_ref"),
    "Q2_K": (84, (80, 82), 32 + 128 + 512, "ggml_gemv_q2_K_8x8_q8_K", "ggml_gemm_q2_K_8x8_q8_K",
             "quantize_row_q2_K_ref"),
}
# ggml_quantize_mat_t<8, GGML_TYPE_Q8_K>: INTER_SIZE 8 for the 8x8 kernels, so
# ggml_quantize_mat_q8_K_4x8 (<4, ...> is the 4x4 layout of the 8x4 kernels)
QUANTIZE_MAT_4 = "_Z19ggml_quantize_mat_tILl8EL9ggml_type15EEvPKfPvll"


def libs() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    import llama_cpp

    d = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    base = ctypes.CDLL(os.path.join(d, "libggml-base.so"))
    cpu = ctypes.CDLL(os.path.join(d, "libggml-cpu.so"))
    cpu.ggml_cpu_init()  # fills the f16 -> f32 table
    assert cpu.ggml_cpu_has_avx512(), "the fixtures record the AVX-512 build's kernels"
    for name in ("ggml_gemv_q4_K_8x8_q8_K", "ggml_gemm_q4_K_8x8_q8_K",
                 "ggml_gemv_q2_K_8x8_q8_K", "ggml_gemm_q2_K_8x8_q8_K"):
        getattr(cpu, name).argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                                       ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        getattr(cpu, name).restype = None
    getattr(cpu, QUANTIZE_MAT_4).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                             ctypes.c_int64]
    cpu.quantize_row_q8_K.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    for name in ("quantize_row_q4_K_ref", "quantize_row_q2_K_ref"):
        getattr(base, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    return base, cpu


def ptr(a: np.ndarray) -> ctypes.c_void_p:
    assert a.flags["C_CONTIGUOUS"]
    return ctypes.c_void_p(a.ctypes.data)


def activations(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((M, n)).astype(np.float32)
    spikes = rng.integers(0, n, size=max(1, n // 64))
    x[0, spikes] *= 20.0
    x[1, :QK_K] = 0.0  # a zero super-block
    x[2] *= np.float32(1e3)
    x[3] *= np.float32(1e-5)
    # the largest magnitude twice, with both signs, in either order
    x[4, 5], x[4, 9] = 7.0, -7.0
    x[5, 5], x[5, 9] = -7.0, 7.0
    x[6] = np.where(np.abs(x[6]) > 1.0, np.float32(1.0), np.float32(0.0)) * np.sign(x[6])
    x[7] *= np.float32(30.0)
    for i in range(8, M):
        x[i] = x[i - 8] * np.float32(1.0 + 0.25 * (i - 7)) + rng.standard_normal(n).astype(
            np.float32) * np.float32(0.01)
    return x


def random_blocks(rng: np.random.Generator, fmt: str, n: int) -> np.ndarray:
    """One row of random valid super-blocks: random bits, finite f16 d and dmin."""
    block_bytes, offsets = FORMATS[fmt][:2]
    nb = n // QK_K
    blocks = rng.integers(0, 256, size=(nb, block_bytes), dtype=np.uint8)
    count = nb * 2
    mag = 10.0 ** rng.uniform(-4.0, -1.0, size=count)
    mag[rng.random(count) < 0.1] = 3e-6  # f16 subnormals
    vals = (mag * rng.choice([-1.0, 1.0], size=count)).astype(np.float16)
    f16 = vals.view(np.uint8).reshape(nb, 2, 2)
    for k, off in enumerate(offsets):
        blocks[:, off:off + 2] = f16[:, k]
    return blocks.reshape(-1)


def weights(base: ctypes.CDLL, rng: np.random.Generator, fmt: str, n: int) -> np.ndarray:
    block_bytes, quantizer = FORMATS[fmt][0], FORMATS[fmt][5]
    row_bytes = n // QK_K * block_bytes
    half = ROWS // 2
    rows = []
    for _ in range(half):
        w = rng.standard_normal(n).astype(np.float32)
        w *= np.float32(10.0 ** rng.uniform(-2.0, 0.0))
        q = np.zeros(row_bytes, np.uint8)
        getattr(base, quantizer)(ptr(w), ptr(q), n)
        rows.append(q)
    rows += [random_blocks(rng, fmt, n) for _ in range(ROWS - half)]
    return np.ascontiguousarray(np.stack(rows))


def repack_q4_K(blocks: list[np.ndarray]) -> bytes:
    """`make_block_q4_Kx8(in, 8)` of eight block_q4_K (144 bytes each: d, dmin, scales[12],
    qs[128])."""
    d = b"".join(bytes(b[0:2]) for b in blocks)
    dmin = b"".join(bytes(b[2:4]) for b in blocks)
    scales = [b[4:16].astype(np.int64) for b in blocks]
    qs = [b[16:144] for b in blocks]
    out_qs = np.zeros(1024, np.uint8)
    for i in range(QK_K * 4 // 8):
        src_id, src_off = i % 8, (i // 8) * 8
        out_qs[i * 8:i * 8 + 8] = qs[src_id][src_off:src_off + 8]
    out_sc = np.zeros(96, np.int64)
    for half in range(2):
        for i in range(4):
            if half == 0:
                s = [scales[j][i] & 63 for j in range(8)]
                m = [scales[j][i + 4] & 63 for j in range(8)]
            else:
                s = [((scales[j][i] & 192) >> 2) | (scales[j][i + 8] & 15) for j in range(8)]
                m = [((scales[j][i + 4] & 192) >> 2) | ((scales[j][i + 8] & 240) >> 4)
                     for j in range(8)]
            o = 48 * half + 12 * i
            for k in range(4):
                out_sc[o + k] = (s[k] & 63) + ((s[k + 4] & 48) << 2)
                out_sc[o + 4 + k] = (m[k] & 63) + ((m[k + 4] & 48) << 2)
                out_sc[o + 8 + k] = (s[k + 4] & 15) + ((m[k + 4] & 15) << 4)
    assert (out_sc < 256).all()
    return d + dmin + out_sc.astype(np.uint8).tobytes() + out_qs.tobytes()


def repack_q2_K(blocks: list[np.ndarray]) -> bytes:
    """`make_block_q2_Kx8(in, 8)` of eight block_q2_K (84 bytes each: scales[16], qs[64], d,
    dmin)."""
    d = b"".join(bytes(b[80:82]) for b in blocks)
    dmin = b"".join(bytes(b[82:84]) for b in blocks)
    qs = [b[16:80] for b in blocks]
    out_qs = np.zeros(512, np.uint8)
    for i in range(QK_K * 2 // 8):
        src_id, src_off = i % 8, (i // 8) * 8
        out_qs[i * 8:i * 8 + 8] = qs[src_id][src_off:src_off + 8]
    out_sc = np.zeros(128, np.uint8)
    for i in range(128):
        out_sc[i] = blocks[(i % 16) // 2][0:16][((i // 16) * 2) + (i % 2)]  # scales[src2]
    return d + dmin + out_sc.tobytes() + out_qs.tobytes()


def repack(fmt: str, wq: np.ndarray, n: int) -> np.ndarray:
    """The rows of `wq` (a multiple of 8) as ggml's repacked buffer: per group of 8 rows, per
    super-block, one interleaved block (`repack_<fmt>_to_<fmt>_8_bl`)."""
    block_bytes, repacked_bytes = FORMATS[fmt][0], FORMATS[fmt][2]
    nb = n // QK_K
    make = repack_q4_K if fmt == "Q4_K" else repack_q2_K
    out = []
    for g in range(wq.shape[0] // 8):
        for x in range(nb):
            blocks = [wq[8 * g + i, x * block_bytes:(x + 1) * block_bytes] for i in range(8)]
            packed = make(blocks)
            assert len(packed) == repacked_bytes
            out.append(packed)
    return np.frombuffer(b"".join(out), np.uint8).copy()


def quantize_gemm(cpu: ctypes.CDLL, x: np.ndarray) -> np.ndarray:
    """Rows of x (a multiple of 4) as forward_mul_mat quantizes them for the gemm."""
    rows, n = x.shape
    out = np.zeros(rows // 4 * (n // QK_K) * Q8_KX4_BYTES, np.uint8)
    for g in range(rows // 4):
        xg = np.ascontiguousarray(x[4 * g:4 * g + 4])
        dst = out[g * (n // QK_K) * Q8_KX4_BYTES:]
        getattr(cpu, QUANTIZE_MAT_4)(ptr(xg), ctypes.c_void_p(dst.ctypes.data), 4, n)
    return out


def quantize_gemv(cpu: ctypes.CDLL, x: np.ndarray) -> np.ndarray:
    """One row of x as forward_mul_mat quantizes it for the gemv (`from_float`)."""
    n = x.shape[0]
    out = np.zeros(n // QK_K * Q8_K_BYTES, np.uint8)
    cpu.quantize_row_q8_K(ptr(np.ascontiguousarray(x)), ptr(out), n)
    return out


def ggml_products(cpu: ctypes.CDLL, fmt: str, wq: np.ndarray, x: np.ndarray):
    n = x.shape[1]
    nb = n // QK_K
    gemv, gemm = getattr(cpu, FORMATS[fmt][3]), getattr(cpu, FORMATS[fmt][4])
    packed = repack(fmt, wq, n)
    group_bytes = nb * FORMATS[fmt][2]  # one group of 8 weight rows

    y_gemm = np.full((M, ROWS), np.nan, np.float32)
    acts = quantize_gemm(cpu, x)
    gemm(n, ptr(y_gemm), ROWS, ptr(packed), ptr(acts), M, ROWS)
    # the same per group of 4 activation rows and per 8 weight rows (the kernels' other paths)
    for g in range(M // 4):
        a = np.ascontiguousarray(acts[g * nb * Q8_KX4_BYTES:(g + 1) * nb * Q8_KX4_BYTES])
        for c in range(ROWS // 8):
            y = np.full((4, 8), np.nan, np.float32)
            w = np.ascontiguousarray(packed[c * group_bytes:(c + 1) * group_bytes])
            gemm(n, ptr(y), 8, ptr(w), ptr(a), 4, 8)
            assert (y.view(np.uint32) == y_gemm[4 * g:4 * g + 4, 8 * c:8 * c + 8].view(
                np.uint32)).all(), f"{fmt}-{n}: gemm paths disagree"

    y_gemv = np.full((M, ROWS), np.nan, np.float32)
    for i in range(M):
        a = quantize_gemv(cpu, x[i])
        gemv(n, ptr(y_gemv[i]), ROWS, ptr(packed), ptr(a), 1, ROWS)
        for c in range(ROWS // 8):
            y = np.full(8, np.nan, np.float32)
            w = np.ascontiguousarray(packed[c * group_bytes:(c + 1) * group_bytes])
            gemv(n, ptr(y), 8, ptr(w), ptr(a), 1, 8)
            assert (y.view(np.uint32) == y_gemv[i, 8 * c:8 * c + 8].view(np.uint32)).all(), \
                f"{fmt}-{n}: gemv paths disagree"
    return y_gemm, y_gemv


def main() -> int:
    base, cpu = libs()
    rng = np.random.default_rng(20261207)
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
            wq = weights(base, rng, fmt, n)
            y_gemm, y_gemv = ggml_products(cpu, fmt, wq, xs[n])
            for y in (y_gemm, y_gemv):
                assert np.isfinite(y).all(), f"{fmt}-{n}: non-finite result"
            differ = int((y_gemm.view(np.uint32) != y_gemv.view(np.uint32)).sum())
            print(f"{fmt}-{n}: gemm and gemv differ in {differ} of {y_gemm.size} results")
            (OUT / f"{fmt}-{n}.w").write_bytes(wq.tobytes())
            (OUT / f"{fmt}-{n}.gemm.f32").write_bytes(y_gemm.astype("<f4").tobytes())
            (OUT / f"{fmt}-{n}.gemv.f32").write_bytes(y_gemv.astype("<f4").tobytes())
            cases.append({"format": fmt, "n": n, "rows": ROWS, "m": M,
                          "gemm_gemv_differ": differ})
    (OUT / "cases.txt").write_text(
        "# format n rows m (written by scripts/make_ggml_repack_fixtures.py)\n"
        + "".join(f"{c['format']} {c['n']} {c['rows']} {c['m']}\n" for c in cases)
    )
    fc.write_json(OUT / "manifest.json", {
        "generator": "scripts/make_ggml_repack_fixtures.py",
        "source": "ggml's ggml_quantize_mat_t<8, GGML_TYPE_Q8_K>, quantize_row_q8_K and "
                  "ggml_gemm/gemv_<fmt>_8x8_q8_K on make_block_<fmt>x8-repacked weights, in "
                  "llama-cpp-python's libggml-cpu (x86 AVX-512 build), through ctypes; weights "
                  "from quantize_row_<fmt>_ref (libggml-base) and random valid blocks",
        "versions": fc.versions(),
        "cases": cases,
    })
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(cases)} cases in {fc.rel(OUT)} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
