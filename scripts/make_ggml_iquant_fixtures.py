"""Writes kernels/tests/fixtures/ggml_iquant/: llama.cpp's own dot products of the i-quant,
ternary and MXFP4 weight formats with 8-bit activations, plain (`ggml_vec_dot_<fmt>_q8_<0|K>`) and,
for IQ4_NL and MXFP4, repacked (`ggml_gemm/gemv_<fmt>_8x8_q8_0`), for a kernels/tests test that
checks that the CPU matmul (`gguf_kernels::cpu::qmatmul_with_isa`) gives them bit for bit.

    python3 scripts/make_ggml_iquant_fixtures.py

Where the numbers come from: llama-cpp-python's `libggml-cpu` (the x86 build of this machine,
AVX2 / AVX-512 F/BW/DQ/VL/VNNI), called through ctypes, with `ggml_cpu_init()` first (it fills
the f16 -> f32 and the E8M0 -> f32 tables the kernels read the scales through). Every vec_dot
below is the `#if defined __AVX2__` branch of ggml-cpu/arch/x86/quants.c (none of these formats
has an AVX-512 one); the gemm / gemv are the AVX-512 + AVX2 templates of arch/x86/repack.cpp.

Plain dot products (`vec_dot`):
- IQ4_NL and MXFP4 (blocks of 32), `LENGTHS`: ggml's `quantize_row_q8_0` quantizes each
  activation row (`make_ggml_vec_dot_fixtures.activations`, its `M` = 4 rows: normal with
  outliers, with zero blocks, large, small with f16-subnormal block scales) and
  `ggml_vec_dot_<fmt>_q8_0(n, &s, 0, weight_row, 0, act, 0, 1)` gives `y[i, r]`. The AVX2 loop
  takes blocks in pairs, block 2b into one f32x8 accumulator and 2b + 1 into another, lane k
  `acc = fma(wd * ad, (float)(sum of the int8 products of elements 4k..4k+3), acc)` (not the
  block's whole sum, unlike the repacked kernels below), then `hsum(acc0 + acc1)` =
  ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)), then the last block of an odd count in a
  scalar tail, `sum + (wd * ad) * (float)sumi`, a multiply and an add, not fused on this build
  (hence n = 96). wd is the f16 d for IQ4_NL, 2^(e - 128) for MXFP4. The script emulates this
  exactly and asserts the same bits. (llama.cpp itself uses this vec_dot for an IQ4_NL matrix
  that is not repacked only with one activation row: with m >= 2 this build, which has
  llamafile's sgemm, runs `tinyBLAS_Q0_AVX<block_iq4_nl>` instead; MXFP4 and the Q8_K formats
  have no sgemm path.)
- IQ4_XS, IQ3_S, IQ3_XXS, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M, TQ1_0, TQ2_0 (super-blocks of
  256), `K_LENGTHS` (768: an odd super-block count): ggml's `quantize_row_q8_K` quantizes each
  activation row (`make_ggml_vec_dot_fixtures.k_activations`, its `K_M` = 7 rows: the four kinds
  above and three that probe `quantize_row_q8_K`'s rounding and sign) and
  `ggml_vec_dot_<fmt>_q8_K` gives `y[i, r]`.
Each activation row is its own `vec_dot` call (nrc = 1), so rows 0..m of a fixture are the
products of any m rows. Weights (`ROWS` rows per format and length): the first half quantized from
random normal floats (each row times 10^U(-2, 0)) by ggml itself, libggml-base's
`ggml_quantize_chunk(type, src, dst, 0, rows, n, imatrix)` after `ggml_quantize_init(type)`; the
types for which `ggml_quantize_requires_imatrix` holds (IQ2_XXS, IQ2_XS, IQ1_S) get a random
positive importance matrix (n floats, U(0.1, 2)), the others none. The second half: random valid
blocks: random bits for every quant, sign, grid index and sub-block scale (so TQ1_0 bytes >= 243
and TQ2_0's code 3, which ggml's quantizers never write, occur; the kernels decode them like any
other), and the f16 super-block scale `d` a random finite f16 of either sign, 10^U(-4, -1) with
about 10% f16 subnormals. IQ1_M has no `d` field: its f16 scale is the top nibbles of its four u16
`scales` (bits 12..15 of scales[0] are the f16's bits 0..3, ..., of scales[3] its bits 12..15);
the random blocks put a finite f16 there the same way. MXFP4's `e` is an E8M0 byte, which the
kernels read as the *half* value `GGML_E8M0_TO_FP32_HALF(e)` = 2^(e - 128) (f32 subnormal for
e = 0, 1; finite for every byte, 2^127 at 255; `kvalues_mxfp4` are the E2M1 values doubled):
random blocks use e in 110..135 and, for about 10% of blocks, an extreme: 0, 1 (the subnormal
halves), 2 (FLT_MIN) or 200 (2^72; 254 and 255 would overflow the product with the activation
scale to inf, ggml does nothing about that); the k-th of the first four random rows has block
k % (n / 32) set to the k-th of these, so every case holds all four.

Repacked IQ4_NL and MXFP4 (`repack/`): on x86 with AVX2 llama.cpp moves an IQ4_NL or MXFP4 matrix
whose row count is a multiple of 8 into its repacked buffer at load (repack.cpp
`ggml_repack_get_optimal_repack_type`: `iq4_nl_8x8_q8_0`, `mxfp4_8x8_q8_0`) and multiplies it in
`forward_mul_mat`, as for Q4_0 / Q4_K: with m activation rows (per 2-D plane), the first
`m - m % 4` (when m > 3) go through `ggml_gemm_<fmt>_8x8_q8_0` in groups of four, quantized by
`ggml_quantize_mat_t<8, GGML_TYPE_Q8_0>` (`ggml_quantize_mat_q8_0_4x8`: four rows into
`block_q8_0x4`s, f16 d[4] then the 4 x 32 quants interleaved 8 bytes at a time), the other
`m % 4` (all of them when m <= 3) through `ggml_gemv_<fmt>_8x8_q8_0`, quantized by
`quantize_row_q8_0`. The script records both for every activation row: `<fmt>-<n>.gemm.f32`
(every row through the gemm, four at a time) and `<fmt>-<n>.gemv.f32` (every row through the
gemv); the test picks, for each m, gemm for row i < m - m % 4 when m > 3, gemv otherwise.
The weights are repacked here as repack.cpp's `make_block_iq4_nlx8` / `make_block_mxfp4x8`
(interleave 8) do: per group of 8 rows and block index, the 8 blocks' scales (`d[8]`, 16 bytes
of f16 for IQ4_NL: `block_iq4_nlx8`, 144 bytes; `e[8]`, 8 E8M0 bytes for MXFP4:
`block_mxfp4x8`, 136 bytes) then `qs[128]`, where bytes 8i..8i+7 are bytes 8(i / 8)..+7 of
row i % 8's `qs`. Unlike Q4_0's `make_block_q4_0x8` there is no XOR with 0x88: the nibbles
stay the table indices, and the kernels turn them into int8 with a byte shuffle through
`kvalues_iq4nl` / `kvalues_mxfp4` (Q4_0's table is the identity on the XORed, signed nibbles).
Both kernels are the same templates as Q4_0's (`gemv_q4_b32_8x8_q8_0_lut_avx`,
`gemm_q4_b32_8x8_q8_0_lut_avx`), with the same order: per output (activation row, weight row)
one f32 accumulator starting at +0, and per block b of 32, in order,
`acc = fma((float)sumi_b, ws_b * as_b, acc)`, where sumi_b is the exact int32 dot product of the
block's 32 int8 pairs, as_b the activation block's f16 d as f32 and ws_b the weight block's
scale as f32: the f16 d for IQ4_NL, `GGML_E8M0_TO_FP32_HALF(e)` = 2^(e - 128) for MXFP4 (the
product ws_b * as_b is one f32 multiply, rounded, before the fma). So gemm and gemv differ only in
the activation quantizer; `ggml_quantize_mat_q8_0_4x8` and `quantize_row_q8_0` do the same math
on this build (d = amax / 127, id = 127 / amax, round half to even), so the two files are equal
bit for bit here (checked, and reported as `gemm_gemv_differ` in the manifest; both differ from
`vec_dot`'s: `gemv_vec_dot_differ`). As a check of this reading the script emulates that fma
sequence exactly (rational arithmetic, rounded to f32) on the de-interleaved q8 blocks and
asserts the same bits as both kernels, asserts that the gemm's q8 blocks are
`quantize_row_q8_0`'s, and runs the gemm on each group of four rows alone, on each 8 weight rows
alone (the AVX2 4 x 8 path; with all `REPACK_ROWS` = 24 rows the first 16 take the AVX-512 4 x 16
path and the last 8 the AVX2 one), on 16 rows at once (the AVX-512 16 x 16 tile and the AVX2
16 x 8 tail), and the gemv on each 8 weight rows alone, and asserts the same bits. (A 3-D
MUL_MAT_ID, e.g. MoE experts, sends every row through the gemv.) Weights: `REPACK_ROWS` rows, the first
half from `ggml_quantize_chunk`, the second half random blocks as above. Activations
(`REPACK_M` rows per length, shared by the two formats): `activations`' four kinds, rounding ties
(k + 0.5 with the block maximum 127 * 2^e), blocks of very different magnitudes, sparse +-1, and a
multiple of row 0 with noise.

Every vec_dot, gemm and gemv result is also compared (not bit for bit) with ggml's scalar
`_generic` kernels and with a float64 dot product of gguf-py's dequantized weights and
activations (`gguf.quants.dequantize`), to catch a wrong layout or an int16 saturation.

Files (little-endian, no headers): `x-<n>.f32` [M, n] f32 and `xk-<n>.f32` [K_M, n] f32, the
activations; `<fmt>-<n>.w` the `ROWS` rows of GGUF blocks (the file's layout); `<fmt>-<n>.y.f32`
[M or K_M, ROWS] f32. `cases.txt` lists `format n rows m` for the Q8_0 formats, `cases_k.txt` for
the Q8_K ones (one case per line, what the test reads). `repack/`: `x-<n>.f32` [REPACK_M, n] f32,
`<fmt>-<n>.w` (`REPACK_ROWS` rows, the GGUF layout, not the repacked one),
`<fmt>-<n>.gemm.f32` and `<fmt>-<n>.gemv.f32` [REPACK_M, REPACK_ROWS] f32, `cases.txt`.
`bad/`: non-finite scales, every format with an f16 `d` field: `<fmt>.w` three rows of two random
blocks whose first block's `d` is NaN (row 0), second block's +inf (row 1), first block's -inf
(row 2); `x.f32` / `xk.f32` three activation rows; `<fmt>.y.f32` [3, 3] ggml's vec_dot results
(all NaN or infinite); `cases.txt`. manifest.json records the cases with the tools' versions.
"""

from __future__ import annotations

import ctypes
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402
import make_ggml_vec_dot_fixtures as vd  # noqa: E402

OUT = fc.REPO / "kernels" / "tests" / "fixtures" / "ggml_iquant"
REPACK_OUT = OUT / "repack"
BAD_OUT = OUT / "bad"
ROWS = 8
QK = 32
QK_K = 256
LENGTHS = [32, 96, 576, 1536]
K_LENGTHS = [256, 768, 1536, 2048]
Q8_0_BYTES = 34  # block_q8_0: f16 d, i8 qs[32]
Q8_0X4_BYTES = 4 * Q8_0_BYTES  # block_q8_0x4: f16 d[4], i8 qs[128] (interleaved 8 at a time)
Q8_K_BYTES = vd.Q8K_BYTES  # block_q8_K: f32 d, i8 qs[256], i16 bsums[16]

# Blocks of 32, Q8_0 activations. name: (ggml type id, block bytes, byte offset of the f16 d,
# or None: MXFP4's scale is the E8M0 byte e at offset 0)
FORMATS = {
    "IQ4_NL": (20, 18, 0),  # f16 d, qs[16]
    "MXFP4": (39, 17, None),  # u8 e (E8M0), qs[16]
}
# Super-blocks of 256, Q8_K activations. Same columns; IQ1_M has no d (see the module doc).
K_FORMATS = {
    "IQ4_XS": (23, 136, 0),  # f16 d, u16 scales_h, u8 scales_l[4], qs[128]
    "IQ3_S": (21, 110, 0),  # f16 d, qs[64], qh[8], signs[32], scales[4]
    "IQ3_XXS": (18, 98, 0),  # f16 d, qs[96] (64 grid indices, then 8 u32 of signs + scale)
    "IQ2_XXS": (16, 66, 0),  # f16 d, u16 qs[32]
    "IQ2_XS": (17, 74, 0),  # f16 d, u16 qs[32], scales[8]
    "IQ2_S": (22, 82, 0),  # f16 d, qs[64], qh[8], scales[8]
    "IQ1_S": (19, 50, 0),  # f16 d, qs[32], u16 qh[8]
    "IQ1_M": (29, 56, None),  # qs[32], qh[16], u16 scales[4] (f16 scale in their top nibbles)
    "TQ1_0": (34, 54, 52),  # qs[48], qh[4], f16 d
    "TQ2_0": (35, 66, 64),  # qs[64], f16 d
}
IQ1M_SCALES = 48  # byte offset of block_iq1_m.scales
# MXFP4 E8M0 bytes besides 110..135: halves 2^-128 and 2^-127 (f32 subnormal), 2^-126, 2^72
MXFP4_EXTREMES = [0, 1, 2, 200]

REPACK_ROWS = 24
REPACK_M = 8
# name: (GGUF block bytes, scale bytes at the start of a block, repacked block bytes, gemv, gemm)
#  IQ4_NL: block_iq4_nlx8 = f16 d[8] + qs[128]. Per block: ws = f16 d -> f32;
#          acc = fma((float)sumi, ws * as, acc), int8 weights kvalues_iq4nl[nibble].
#  MXFP4:  block_mxfp4x8 = u8 e[8] + qs[128]. Per block: ws = GGML_E8M0_TO_FP32_HALF(e) =
#          2^(e - 128); acc = fma((float)sumi, ws * as, acc), int8 weights kvalues_mxfp4[nibble]
#          (doubled E2M1). Both: the same templates and order as Q4_0 8x8 (no XOR at repack).
REPACK_FORMATS = {
    "IQ4_NL": (18, 2, 16 + 128, "ggml_gemv_iq4_nl_8x8_q8_0", "ggml_gemm_iq4_nl_8x8_q8_0"),
    "MXFP4": (17, 1, 8 + 128, "ggml_gemv_mxfp4_8x8_q8_0", "ggml_gemm_mxfp4_8x8_q8_0"),
}
# ggml_quantize_mat_t<8, GGML_TYPE_Q8_0> (GGML_TYPE_Q8_0 = 8): ggml_quantize_mat_q8_0_4x8
QUANTIZE_MAT_Q8_0 = "_Z19ggml_quantize_mat_tILl8EL9ggml_type8EEvPKfPvll"

KVALUES = {
    "IQ4_NL": np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                       np.int64),
    "MXFP4": np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.int64),
}

VEC_DOT_ARGS = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
GEMX_ARGS = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p,
             ctypes.c_int, ctypes.c_int]


def ptr(a: np.ndarray) -> ctypes.c_void_p:
    assert a.flags["C_CONTIGUOUS"]
    return ctypes.c_void_p(a.ctypes.data)


def libs() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    base = vd.libggml_base()
    cpu = vd.libggml_cpu()  # calls ggml_cpu_init()
    assert cpu.ggml_cpu_has_avx2(), "the fixtures record the x86 AVX2 kernels"
    base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                         ctypes.c_void_p]
    base.ggml_quantize_chunk.restype = ctypes.c_size_t
    base.ggml_quantize_init.argtypes = [ctypes.c_int]
    base.ggml_quantize_init.restype = None
    base.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    base.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    for name in ("ggml_type_size", "ggml_blck_size"):
        getattr(base, name).argtypes = [ctypes.c_int]
    base.ggml_type_size.restype = ctypes.c_size_t
    base.ggml_blck_size.restype = ctypes.c_int64
    for name in ("quantize_row_q8_0", "quantize_row_q8_K"):
        getattr(cpu, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        getattr(cpu, name).restype = None
    for fmt in list(FORMATS) + list(K_FORMATS):
        act = "q8_0" if fmt in FORMATS else "q8_K"
        for suffix in ("", "_generic"):
            f = getattr(cpu, f"ggml_vec_dot_{fmt.lower()}_{act}{suffix}")
            f.argtypes, f.restype = VEC_DOT_ARGS, None
    for fmt, (*_, gemv, gemm) in REPACK_FORMATS.items():
        for name in (gemv, gemm, gemv + "_generic", gemm + "_generic"):
            getattr(cpu, name).argtypes, getattr(cpu, name).restype = GEMX_ARGS, None
    getattr(cpu, QUANTIZE_MAT_Q8_0).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                ctypes.c_int64]
    getattr(cpu, QUANTIZE_MAT_Q8_0).restype = None
    return base, cpu


def check_types(base: ctypes.CDLL) -> None:
    """The type ids and block sizes above against gguf-py and ggml itself."""
    import gguf

    table = {name: (tid, QK, bb) for name, (tid, bb, _) in FORMATS.items()}
    table |= {name: (tid, QK_K, bb) for name, (tid, bb, _) in K_FORMATS.items()}
    table["Q8_0"] = (8, QK, Q8_0_BYTES)
    table["Q8_K"] = (15, QK_K, Q8_K_BYTES)
    for name, (tid, blck, bb) in table.items():
        t = gguf.GGMLQuantizationType[name]
        assert int(t) == tid, f"{name}: gguf type id {int(t)} != {tid}"
        assert gguf.GGML_QUANT_SIZES[t] == (blck, bb), f"{name}: {gguf.GGML_QUANT_SIZES[t]}"
        assert base.ggml_type_size(tid) == bb and base.ggml_blck_size(tid) == blck, name
    for name, (bb, scale_bytes, packed, *_) in REPACK_FORMATS.items():
        assert FORMATS[name][1] == bb and packed == 8 * scale_bytes + 8 * (bb - scale_bytes)


# ---------------------------------------------------------------------------------------------
# Weights


def random_f16(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` random finite f16 of either sign, 10^U(-4, -1), about 10% subnormal (as the
    `random_blocks` of make_ggml_vec_dot_fixtures.py)."""
    mag = 10.0 ** rng.uniform(-4.0, -1.0, size=count)
    mag[rng.random(count) < 0.1] = 3e-6  # f16 subnormals
    return (mag * rng.choice([-1.0, 1.0], size=count)).astype(np.float16)


def random_mxfp4_blocks(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """One row (the k-th random one) of random MXFP4 blocks: random nibbles, e in 110..135,
    about 10% extremes, and for k < 4 block k % nb the k-th extreme."""
    nb = n // QK
    blocks = rng.integers(0, 256, size=(nb, 17), dtype=np.uint8)
    e = rng.integers(110, 136, size=nb)
    extreme = rng.random(nb) < 0.1
    e[extreme] = rng.choice(MXFP4_EXTREMES, size=int(extreme.sum()))
    if k < len(MXFP4_EXTREMES):
        e[k % nb] = MXFP4_EXTREMES[k]
    blocks[:, 0] = e.astype(np.uint8)
    return blocks.reshape(-1)


def random_iq1_m_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    """One row of random IQ1_M super-blocks: random bits, a finite f16 scale in the top nibbles
    of the four u16 `scales`."""
    nb = n // QK_K
    blocks = rng.integers(0, 256, size=(nb, 56), dtype=np.uint8)
    f16 = random_f16(rng, nb).view(np.uint16).astype(np.uint32)
    sc = blocks[:, IQ1M_SCALES:IQ1M_SCALES + 8].copy().view("<u2").astype(np.uint32)  # [nb, 4]
    for k in range(4):
        sc[:, k] = (sc[:, k] & 0x0FFF) | (((f16 >> (4 * k)) & 0xF) << 12)
    blocks[:, IQ1M_SCALES:IQ1M_SCALES + 8] = sc.astype("<u2").view(np.uint8).reshape(nb, 8)
    back = sc[:, 0] >> 12 | (sc[:, 1] >> 8) & 0xF0 | (sc[:, 2] >> 4) & 0xF00 | sc[:, 3] & 0xF000
    assert (back == f16).all()
    return blocks.reshape(-1)


def random_row(rng: np.random.Generator, fmt: str, n: int, k: int) -> np.ndarray:
    if fmt == "MXFP4":
        return random_mxfp4_blocks(rng, n, k)
    if fmt == "IQ1_M":
        return random_iq1_m_blocks(rng, n)
    if fmt in FORMATS:
        _, bb, off = FORMATS[fmt]
        return vd.random_blocks(rng, n, bb, [off])
    _, bb, off = K_FORMATS[fmt]
    return vd.random_k_blocks(rng, n, bb, [off])


def ggml_quantized(base: ctypes.CDLL, rng: np.random.Generator, fmt: str, n: int,
                   rows: int) -> np.ndarray:
    """`rows` rows quantized by ggml_quantize_chunk from random normal floats."""
    tid, bb, _ = FORMATS.get(fmt) or K_FORMATS[fmt]
    row_bytes = n // (QK if fmt in FORMATS else QK_K) * bb
    w = rng.standard_normal((rows, n)).astype(np.float32)
    w *= (10.0 ** rng.uniform(-2.0, 0.0, size=(rows, 1))).astype(np.float32)
    imatrix = None
    if base.ggml_quantize_requires_imatrix(tid):
        imatrix = rng.uniform(0.1, 2.0, size=n).astype(np.float32)
    out = np.zeros((rows, row_bytes), np.uint8)
    base.ggml_quantize_init(tid)
    size = base.ggml_quantize_chunk(tid, ptr(w), ptr(out), 0, rows, n,
                                    None if imatrix is None else ptr(imatrix))
    assert size == rows * row_bytes, f"{fmt}-{n}: ggml_quantize_chunk wrote {size} bytes"
    return out


def weights(base: ctypes.CDLL, rng: np.random.Generator, fmt: str, n: int,
            rows: int) -> np.ndarray:
    half = rows // 2
    quantized = ggml_quantized(base, rng, fmt, n, half)
    out = np.stack([quantized[r] for r in range(half)]
                   + [random_row(rng, fmt, n, k) for k in range(rows - half)])
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------------------------------
# Activations and references


def q8_0(cpu: ctypes.CDLL, x: np.ndarray) -> np.ndarray:
    """ggml's `quantize_row_q8_0` of each row of x: [rows, n / 32 * 34] bytes."""
    n = x.shape[1]
    out = np.zeros((x.shape[0], n // QK * Q8_0_BYTES), np.uint8)
    for i in range(x.shape[0]):
        xi = np.ascontiguousarray(x[i])  # kept alive across the call
        cpu.quantize_row_q8_0(ptr(xi), ptr(out[i]), n)
    return out


def dequant_acts(act: np.ndarray, n: int, k: bool) -> np.ndarray:
    """Q8_0 / Q8_K activation rows as float64 [rows, n]."""
    import gguf

    if not k:
        return np.asarray(gguf.quants.dequantize(act, gguf.GGMLQuantizationType.Q8_0),
                          np.float64).reshape(act.shape[0], n)
    blocks = act.reshape(act.shape[0], n // QK_K, Q8_K_BYTES)
    d = blocks[:, :, :4].copy().view("<f4").astype(np.float64)  # [rows, nb, 1]
    qs = blocks[:, :, 4:4 + QK_K].view(np.int8).astype(np.float64)
    return (d * qs).reshape(act.shape[0], n)


def dequant_weights(fmt: str, wq: np.ndarray, n: int) -> np.ndarray:
    import gguf

    w = gguf.quants.dequantize(wq, gguf.GGMLQuantizationType[fmt])
    return np.asarray(w, np.float64).reshape(wq.shape[0], n)


def check_close(fmt: str, n: int, what: str, y: np.ndarray, ref: np.ndarray,
                bound: np.ndarray, rtol: float) -> float:
    """Asserts |y - ref| <= rtol * bound (+ a little for underflow); returns the worst
    |y - ref| / bound among the results whose bound is not tiny (f32 subnormal results, from
    MXFP4's e = 0, 1, have few significant bits)."""
    err = np.abs(y.astype(np.float64) - ref)
    assert np.isfinite(y).all(), f"{fmt}-{n}: non-finite result"
    ok = err <= rtol * bound + 1e-37
    assert ok.all(), (f"{fmt}-{n}: {what} off by {err[~ok].max():.3g} "
                      f"(bound {bound[~ok].max():.3g})")
    big = bound > 1e-30
    return float((err[big] / bound[big]).max()) if big.any() else 0.0


def references(fmt: str, wq: np.ndarray, act: np.ndarray, n: int, k: bool):
    """float64 sum of products of gguf-py's dequantized weights and activations, and the sum of
    their absolute values (the scale of f32 rounding errors)."""
    w = dequant_weights(fmt, wq, n)
    a = dequant_acts(act, n, k)
    return a @ w.T, np.abs(a) @ np.abs(w).T


def vec_dots(cpu: ctypes.CDLL, name: str, wq: np.ndarray, act: np.ndarray, n: int) -> np.ndarray:
    dot = getattr(cpu, name)
    y = np.full((act.shape[0], wq.shape[0]), np.nan, np.float32)
    s = ctypes.c_float()
    for i in range(act.shape[0]):
        a = np.ascontiguousarray(act[i])
        for r in range(wq.shape[0]):
            row = np.ascontiguousarray(wq[r])
            dot(n, ctypes.byref(s), 0, ptr(row), 0, ptr(a), 0, 1)
            y[i, r] = s.value
    return y


def plain_case(cpu: ctypes.CDLL, fmt: str, wq: np.ndarray, act: np.ndarray, n: int, k: bool):
    name = f"ggml_vec_dot_{fmt.lower()}_{'q8_K' if k else 'q8_0'}"
    y = vec_dots(cpu, name, wq, act, n)
    y_generic = vec_dots(cpu, name + "_generic", wq, act, n)
    ref, bound = references(fmt, wq, act, n, k)
    worst = check_close(fmt, n, "vec_dot vs float64", y, ref, bound, 1e-5)
    check_close(fmt, n, "vec_dot vs _generic", y, y_generic.astype(np.float64), bound, 1e-5)
    differ = int((y.view(np.uint32) != y_generic.view(np.uint32)).sum())
    if fmt in FORMATS:
        assert same_bits(emulate_vec_dot(fmt, wq, act, n), y), f"{fmt}-{n}: vec_dot != emulation"
    return y, worst, differ


# ---------------------------------------------------------------------------------------------
# Repacked IQ4_NL / MXFP4


def repack_activations(rng: np.random.Generator, n: int) -> np.ndarray:
    """`REPACK_M` rows: `activations`' four kinds, then ties, mixed magnitudes, sparse, cycled."""
    nb = n // QK
    x = np.zeros((REPACK_M, n), np.float32)
    x[:vd.M] = vd.activations(rng, n)
    # 4: k + 0.5 and one +-127 per block, times 2^e: d = 2^e and id = 2^-e exactly, so every
    # other element is a rounding tie (ggml's q8_0 quantizers round half to even)
    ties = rng.integers(-127, 127, size=(nb, QK)).astype(np.float32) + np.float32(0.5)
    ties[np.arange(nb), rng.integers(0, QK, size=nb)] = 127.0 * rng.choice([-1.0, 1.0], size=nb)
    x[4] = (ties * 2.0 ** rng.integers(-3, 4, size=(nb, 1))).reshape(-1)
    # 5: blocks of very different magnitudes
    x[5] = rng.standard_normal(n).astype(np.float32) * np.repeat(
        10.0 ** rng.uniform(-3.0, 3.0, size=nb), QK).astype(np.float32)
    # 6: sparse +-1
    r = rng.standard_normal(n).astype(np.float32)
    x[6] = np.where(np.abs(r) > 1.5, np.sign(r), np.float32(0.0))
    # 7: a multiple of row 0 plus noise
    x[7] = x[0] * np.float32(1.75) + rng.standard_normal(n).astype(np.float32) * np.float32(0.01)
    return x


def repack(fmt: str, wq: np.ndarray, n: int) -> np.ndarray:
    """The rows of `wq` (a multiple of 8) as ggml's repacked buffer: per group of 8 rows, per
    block, one `make_block_<fmt>x8(in, 8)`: the 8 scales, then qs[128] with bytes 8i..8i+7 =
    bytes 8(i / 8)..+7 of block i % 8's qs (no XOR, unlike Q4_0)."""
    bb, sb, packed_bytes = REPACK_FORMATS[fmt][:3]
    nb = n // QK
    out = []
    for g in range(wq.shape[0] // 8):
        for x in range(nb):
            blocks = [wq[8 * g + i, x * bb:(x + 1) * bb] for i in range(8)]
            qs = np.zeros(QK * 4, np.uint8)
            for i in range(QK * 4 // 8):
                src_id, src_off = i % 8, (i // 8) * 8
                qs[i * 8:i * 8 + 8] = blocks[src_id][sb + src_off:sb + src_off + 8]
            packed = b"".join(bytes(b[:sb]) for b in blocks) + qs.tobytes()
            assert len(packed) == packed_bytes
            out.append(packed)
    return np.frombuffer(b"".join(out), np.uint8).copy()


def quantize_gemm(cpu: ctypes.CDLL, x: np.ndarray) -> np.ndarray:
    """Rows of x (a multiple of 4) as forward_mul_mat quantizes them for the gemm."""
    rows, n = x.shape
    group = n // QK * Q8_0X4_BYTES
    out = np.zeros(rows // 4 * group, np.uint8)
    for g in range(rows // 4):
        xg = np.ascontiguousarray(x[4 * g:4 * g + 4])
        getattr(cpu, QUANTIZE_MAT_Q8_0)(ptr(xg), ctypes.c_void_p(out.ctypes.data + g * group), 4, n)
    return out


def deinterleave_q8_0x4(acts: np.ndarray, rows: int, n: int) -> np.ndarray:
    """block_q8_0x4 groups back to block_q8_0 rows: [rows, n / 32 * 34]."""
    nb = n // QK
    b = acts.reshape(rows // 4, nb, Q8_0X4_BYTES)
    d = b[:, :, :8].reshape(rows // 4, nb, 4, 2)
    qs = b[:, :, 8:].reshape(rows // 4, nb, 4, 4, 8)  # [g, block, j, row, 8]: element 8j + t
    out = np.zeros((rows // 4, 4, nb, Q8_0_BYTES), np.uint8)
    for r in range(4):
        out[:, r, :, :2] = d[:, :, r]
        out[:, r, :, 2:] = qs[:, :, :, r, :].reshape(rows // 4, nb, QK)
    return out.reshape(rows, nb * Q8_0_BYTES)


def round_f32(q: Fraction) -> np.float32:
    """The f32 nearest to q, ties to even (q is well inside the f32 range)."""
    r = np.float32(float(q))
    best = r
    for c in (np.nextafter(r, np.float32(-np.inf)), np.nextafter(r, np.float32(np.inf))):
        dc, db = abs(Fraction(float(c)) - q), abs(Fraction(float(best)) - q)
        if dc < db or (dc == db and int(np.array(c).view(np.uint32)) % 2 == 0):
            best = c
    return np.float32(best)


def fma(a: np.float32, b: np.float32, c: np.float32) -> np.float32:
    """a * b + c rounded once to f32 (vfmadd)."""
    return round_f32(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))


def decode_32(fmt: str, wq: np.ndarray, act: np.ndarray, n: int):
    """IQ4_NL / MXFP4 weight rows and Q8_0 activation rows as the kernels see them: int8 weight
    values [rows, nb, 32] (element j < 16 the low nibble of qs[j], j >= 16 the high nibble of
    qs[j - 16]) and f32 scales [rows, nb] (f16 d; 2^(e - 128) for MXFP4), int8 activations
    [m, nb, 32] and their f32 scales [m, nb]."""
    nb = n // QK
    bb, sb = REPACK_FORMATS[fmt][:2]
    w = wq.reshape(wq.shape[0], nb, bb)
    nib = np.concatenate([w[:, :, sb:] & 15, w[:, :, sb:] >> 4], axis=2)
    wv = KVALUES[fmt][nib]
    if fmt == "IQ4_NL":
        ws = w[:, :, :2].copy().view("<f2")[:, :, 0].astype(np.float32)
    else:
        ws = np.ldexp(np.float32(1.0), w[:, :, 0].astype(np.int32) - 128).astype(np.float32)
    a = act.reshape(act.shape[0], nb, Q8_0_BYTES)
    av = a[:, :, 2:].view(np.int8).astype(np.int64)
    ad = a[:, :, :2].copy().view("<f2")[:, :, 0].astype(np.float32)
    return wv, ws, av, ad


def emulate_gemx(fmt: str, wq: np.ndarray, act: np.ndarray, n: int) -> np.ndarray:
    """The repacked gemm / gemv as read: per output, acc = fma((float)sumi, ws * as, acc) over
    the blocks in order, from +0 (sumi: the block's whole int32 dot product)."""
    wv, ws, av, ad = decode_32(fmt, wq, act, n)
    sumi = np.einsum("ibk,rbk->irb", av, wv)  # [m, rows, nb]
    assert np.abs(sumi).max() < 2 ** 24
    y = np.zeros((act.shape[0], wq.shape[0]), np.float32)
    for i in range(act.shape[0]):
        for r in range(wq.shape[0]):
            acc = np.float32(0.0)
            for b in range(n // QK):
                acc = fma(np.float32(sumi[i, r, b]), np.float32(ws[r, b] * ad[i, b]), acc)
            y[i, r] = acc
    return y


def emulate_vec_dot(fmt: str, wq: np.ndarray, act: np.ndarray, n: int) -> np.ndarray:
    """`ggml_vec_dot_<fmt>_q8_0`'s AVX2 branch as read: blocks in pairs (2b, 2b + 1), each into
    its own 8-lane f32 accumulator, lane k = fma(wd * ad, (float)(sum of the products of
    elements 4k..4k+3), lane k); then hsum(acc0 + acc1) = ((l0 + l4) + (l2 + l6)) +
    ((l1 + l5) + (l3 + l7)); then the last block of an odd count, scalar, not fused:
    sum = sum + (wd * ad) * (float)sumi."""
    wv, ws, av, ad = decode_32(fmt, wq, act, n)
    nb = n // QK
    lanes = (av[:, None] * wv[None]).reshape(act.shape[0], wq.shape[0], nb, 8, 4).sum(-1)
    y = np.zeros((act.shape[0], wq.shape[0]), np.float32)
    for i in range(act.shape[0]):
        for r in range(wq.shape[0]):
            acc = [np.zeros(8, np.float32), np.zeros(8, np.float32)]
            for b in range(nb - nb % 2):
                scale = np.float32(ad[i, b] * ws[r, b])
                acc[b % 2] = np.array([fma(scale, np.float32(lanes[i, r, b, k]), acc[b % 2][k])
                                       for k in range(8)], np.float32)
            s8 = acc[0] + acc[1]
            s4 = s8[4:] + s8[:4]
            s = (s4[0] + s4[2]) + (s4[1] + s4[3])
            if nb % 2:
                b = nb - 1
                d = np.float32(ad[i, b] * ws[r, b])
                s = s + d * np.float32(wv[r, b] @ av[i, b])
            y[i, r] = s
    return y


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((a.view(np.uint32) == b.view(np.uint32)).all())


def repacked_products(cpu: ctypes.CDLL, fmt: str, wq: np.ndarray, x: np.ndarray):
    rows = wq.shape[0]
    n = x.shape[1]
    nb = n // QK
    gemv = getattr(cpu, REPACK_FORMATS[fmt][3])
    gemm = getattr(cpu, REPACK_FORMATS[fmt][4])
    packed = repack(fmt, wq, n)
    group_bytes = nb * REPACK_FORMATS[fmt][2]  # one group of 8 weight rows

    y_gemm = np.full((REPACK_M, rows), np.nan, np.float32)
    acts = quantize_gemm(cpu, x)
    gemm(n, ptr(y_gemm), rows, ptr(packed), ptr(acts), REPACK_M, rows)
    # each group of 4 activation rows with each 8 weight rows alone (the AVX2 4 x 8 path)
    for g in range(REPACK_M // 4):
        a = np.ascontiguousarray(acts[g * nb * Q8_0X4_BYTES:(g + 1) * nb * Q8_0X4_BYTES])
        for c in range(rows // 8):
            y = np.full((4, 8), np.nan, np.float32)
            w = np.ascontiguousarray(packed[c * group_bytes:(c + 1) * group_bytes])
            gemm(n, ptr(y), 8, ptr(w), ptr(a), 4, 8)
            assert same_bits(y, y_gemm[4 * g:4 * g + 4, 8 * c:8 * c + 8]), \
                f"{fmt}-{n}: gemm paths disagree"
    # 16 rows at once (the AVX-512 16 x 16 tile, the AVX2 16 x 8 tail)
    x16 = np.ascontiguousarray(np.concatenate([x, x])[:16])
    y16 = np.full((16, rows), np.nan, np.float32)
    acts16 = quantize_gemm(cpu, x16)
    gemm(n, ptr(y16), rows, ptr(packed), ptr(acts16), 16, rows)
    assert same_bits(y16, np.concatenate([y_gemm, y_gemm])[:16]), f"{fmt}-{n}: 16-row gemm"

    gemv_acts = q8_0(cpu, x)
    y_gemv = np.full((REPACK_M, rows), np.nan, np.float32)
    for i in range(REPACK_M):
        a = np.ascontiguousarray(gemv_acts[i])
        gemv(n, ptr(y_gemv[i]), rows, ptr(packed), ptr(a), 1, rows)
        for c in range(rows // 8):
            y = np.full(8, np.nan, np.float32)
            w = np.ascontiguousarray(packed[c * group_bytes:(c + 1) * group_bytes])
            gemv(n, ptr(y), 8, ptr(w), ptr(a), 1, 8)
            assert same_bits(y, y_gemv[i, 8 * c:8 * c + 8]), f"{fmt}-{n}: gemv paths disagree"

    # the reading of the kernels: the q8 blocks and the fma sequence
    gemm_blocks = deinterleave_q8_0x4(acts, REPACK_M, n)
    assert (gemm_blocks == gemv_acts).all(), f"{fmt}-{n}: the two q8_0 quantizers disagree"
    assert same_bits(emulate_gemx(fmt, wq, gemm_blocks, n), y_gemm), f"{fmt}-{n}: gemm != emulation"
    assert same_bits(emulate_gemx(fmt, wq, gemv_acts, n), y_gemv), f"{fmt}-{n}: gemv != emulation"
    # loosely: the float64 reference and ggml's scalar kernels
    ref, bound = references(fmt, wq, gemv_acts, n, False)
    for y in (y_gemm, y_gemv):
        check_close(fmt, n, "repacked vs float64", y, ref, bound, 1e-5)
    y_gen = np.full((REPACK_M, rows), np.nan, np.float32)
    getattr(cpu, REPACK_FORMATS[fmt][4] + "_generic")(n, ptr(y_gen), rows, ptr(packed), ptr(acts),
                                                      REPACK_M, rows)
    check_close(fmt, n, "gemm vs _generic", y_gemm, y_gen.astype(np.float64), bound, 1e-5)
    return y_gemm, y_gemv, gemv_acts


# ---------------------------------------------------------------------------------------------


def clear(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file():
            old.unlink()


def write_cases(path: Path, cases: list[dict], note: str) -> None:
    path.write_text(
        f"# format n rows m (written by scripts/make_ggml_iquant_fixtures.py{note})\n"
        + "".join(f"{c['format']} {c['n']} {c['rows']} {c['m']}\n" for c in cases)
    )


def main() -> int:
    base, cpu = libs()
    check_types(base)
    clear(OUT)
    clear(REPACK_OUT)

    # Blocks of 32, Q8_0 activations
    rng = np.random.default_rng(20261214)
    cases = []
    acts = {}
    for n in LENGTHS:
        x = vd.activations(rng, n)
        acts[n] = q8_0(cpu, x)
        (OUT / f"x-{n}.f32").write_bytes(x.astype("<f4").tobytes())
    for fmt in FORMATS:
        for n in LENGTHS:
            wq = weights(base, rng, fmt, n, ROWS)
            y, worst, differ = plain_case(cpu, fmt, wq, acts[n], n, False)
            print(f"{fmt}-{n}: worst |y - f64| / sum|.| {worst:.2g}, "
                  f"{differ} of {y.size} differ from _generic")
            (OUT / f"{fmt}-{n}.w").write_bytes(wq.tobytes())
            (OUT / f"{fmt}-{n}.y.f32").write_bytes(y.astype("<f4").tobytes())
            cases.append({"format": fmt, "n": n, "rows": ROWS, "m": vd.M,
                          "differ_from_generic": differ})
    write_cases(OUT / "cases.txt", cases, "; activations x-<n>.f32, quantize_row_q8_0")

    # Super-blocks of 256, Q8_K activations
    rng = np.random.default_rng(20261215)
    k_cases = []
    k_acts = {}
    for n in K_LENGTHS:
        x = vd.k_activations(rng, n)
        k_acts[n] = vd.q8_k(cpu, x)
        (OUT / f"xk-{n}.f32").write_bytes(x.astype("<f4").tobytes())
    for fmt in K_FORMATS:
        for n in K_LENGTHS:
            wq = weights(base, rng, fmt, n, ROWS)
            y, worst, differ = plain_case(cpu, fmt, wq, k_acts[n], n, True)
            print(f"{fmt}-{n}: worst |y - f64| / sum|.| {worst:.2g}, "
                  f"{differ} of {y.size} differ from _generic")
            (OUT / f"{fmt}-{n}.w").write_bytes(wq.tobytes())
            (OUT / f"{fmt}-{n}.y.f32").write_bytes(y.astype("<f4").tobytes())
            k_cases.append({"format": fmt, "n": n, "rows": ROWS, "m": vd.K_M,
                            "differ_from_generic": differ})
    write_cases(OUT / "cases_k.txt", k_cases, "; activations xk-<n>.f32, quantize_row_q8_K")

    # Repacked IQ4_NL / MXFP4
    rng = np.random.default_rng(20261216)
    repack_cases = []
    xs = {}
    for n in LENGTHS:
        xs[n] = repack_activations(rng, n)
        (REPACK_OUT / f"x-{n}.f32").write_bytes(xs[n].astype("<f4").tobytes())
    for fmt in REPACK_FORMATS:
        for n in LENGTHS:
            wq = weights(base, rng, fmt, n, REPACK_ROWS)
            y_gemm, y_gemv, gemv_acts = repacked_products(cpu, fmt, wq, xs[n])
            differ = int((y_gemm.view(np.uint32) != y_gemv.view(np.uint32)).sum())
            y_dot = vec_dots(cpu, f"ggml_vec_dot_{fmt.lower()}_q8_0", wq, gemv_acts, n)
            vs_dot = int((y_dot.view(np.uint32) != y_gemv.view(np.uint32)).sum())
            print(f"repack/{fmt}-{n}: gemm and gemv differ in {differ} of {y_gemm.size} results, "
                  f"gemv and vec_dot in {vs_dot}")
            (REPACK_OUT / f"{fmt}-{n}.w").write_bytes(wq.tobytes())
            (REPACK_OUT / f"{fmt}-{n}.gemm.f32").write_bytes(y_gemm.astype("<f4").tobytes())
            (REPACK_OUT / f"{fmt}-{n}.gemv.f32").write_bytes(y_gemv.astype("<f4").tobytes())
            repack_cases.append({"format": fmt, "n": n, "rows": REPACK_ROWS, "m": REPACK_M,
                                 "gemm_gemv_differ": differ, "gemv_vec_dot_differ": vs_dot})
    write_cases(REPACK_OUT / "cases.txt", repack_cases, "; activations x-<n>.f32")

    # Non-finite scales: rows of two random valid blocks with block 0's f16 d NaN (row 0), block
    # 1's +inf (row 1) and block 0's -inf (row 2), every format with an f16 d field; ggml's
    # vec_dot (one activation row at a time; 3 rows are not repacked) on them
    rng = np.random.default_rng(20261217)
    bad_cases = []
    clear(BAD_OUT)
    for k, table in ((False, FORMATS), (True, K_FORMATS)):
        qk = QK_K if k else QK
        n = 2 * qk
        x = (vd.k_activations if k else vd.activations)(rng, n)[:3]
        act = vd.q8_k(cpu, x) if k else q8_0(cpu, x)
        (BAD_OUT / f"{'xk' if k else 'x'}.f32").write_bytes(x.astype("<f4").tobytes())
        for fmt, (_, block_bytes, d_off) in table.items():
            if d_off is None:
                continue  # no f16 scale field (MXFP4's E8M0 exponent, IQ1_M's spread scale)
            wq = np.stack([random_row(rng, fmt, n, k) for _ in range(3)])
            for row, (blk, bits) in enumerate(((0, 0x7E00), (1, 0x7C00), (0, 0xFC00))):
                at = blk * block_bytes + d_off
                wq[row, at:at + 2] = np.frombuffer(np.uint16(bits).tobytes(), np.uint8)
            wq = np.ascontiguousarray(wq)
            name = f"ggml_vec_dot_{fmt.lower()}_{'q8_K' if k else 'q8_0'}"
            y = vec_dots(cpu, name, wq, act, n)
            assert not np.isfinite(y).any(), f"{fmt}: a finite result from a non-finite scale"
            (BAD_OUT / f"{fmt}.w").write_bytes(wq.tobytes())
            (BAD_OUT / f"{fmt}.y.f32").write_bytes(y.astype("<f4").tobytes())
            bad_cases.append({"format": fmt, "n": n, "rows": 3, "m": 3})
    write_cases(BAD_OUT / "cases.txt", bad_cases,
                "; non-finite scales; activations x.f32 (blocks of 32) or xk.f32 (of 256)")

    fc.write_json(OUT / "manifest.json", {
        "generator": "scripts/make_ggml_iquant_fixtures.py",
        "source": "ggml's quantize_row_q8_0/q8_K and ggml_vec_dot_<fmt>_q8_<0|K> (AVX2 "
                  "branches), and ggml_quantize_mat_t<8, GGML_TYPE_Q8_0> / quantize_row_q8_0 with "
                  "ggml_gemm/gemv_<fmt>_8x8_q8_0 on make_block_<fmt>x8-repacked weights, in "
                  "llama-cpp-python's libggml-cpu (x86 AVX-512 build), through ctypes; weights "
                  "half from libggml-base's ggml_quantize_chunk (random imatrix for IQ2_XXS, "
                  "IQ2_XS, IQ1_S), half random valid blocks",
        "versions": fc.versions(),
        "cases": cases,
        "k_cases": k_cases,
        "repack_cases": repack_cases,
        "bad_cases": bad_cases,
    })
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(cases) + len(k_cases) + len(repack_cases) + len(bad_cases)} cases in {fc.rel(OUT)} "
          f"({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
