"""Generates the lookup tables of the i-quant and MXFP4 dequantizers from gguf-py.

The grids, sign tables and codebooks that ggml keeps in ggml-common.h are read from
gguf-py's `gguf/quants.py` (the reference this project's dequantizers are checked
against), never typed in:

    IQ2XXS_GRID, IQ2XS_GRID, IQ2S_GRID   IQ2_XXS/IQ2_XS/IQ2_S `grid_hex` + `grid_map`,
                                         decoded by gguf-py's own `init_grid()`
    IQ3XXS_GRID, IQ3S_GRID               IQ3_XXS/IQ3_S, likewise
    IQ1S_GRID                            IQ1_S (IQ1_M shares it; asserted)
    KSIGNS_IQ2XS                         IQ2_XXS.ksigns (the 7-bit sign index -> 8 sign bits)
    KMASK_IQ2XS                          the bit of element j, 1 << j (gguf-py unpacks the
                                         sign byte with `>> j & 1`, j in 0..8)
    KVALUES_IQ4NL                        IQ4_NL.kvalues (IQ4_XS uses them too)
    KVALUES_MXFP4                        MXFP4.kvalues (e2m1 values, doubled)
    IQ1S_DELTA, IQ1M_DELTA               IQ1_S.delta, IQ1_M.delta

and written as `pub const` arrays in the layout of ggml-common.h: a grid row is one
little-endian integer whose byte j is element j (u64 for rows of 8, u32 for rows of
4; IQ1S_GRID's bytes are i8 -1, 0, 1). Outputs:

    importer/src/quants/iquant_tables.rs      the generated Rust source (do not edit)
    importer/tests/fixtures/iquants/tables.json
        per table: element type, length and the sha256 of its elements' little-endian
        bytes (the small tables' values too), checked by importer/tests/iquant_tables.rs

Before writing, the script asserts a few entries against values copied from
ggml-common.h, and, when a llama.cpp checkout is at hand (--ggml-common PATH, default
/tmp/llama.cpp/ggml/src/ggml-common.h if it exists), every entry of every table.

Regenerate (needs gguf, numpy; the output is deterministic):
    python3 scripts/make_iquant_tables.py [--ggml-common PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import struct
import textwrap
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402

RUST_OUT = fc.REPO / "importer" / "src" / "quants" / "iquant_tables.rs"
JSON_OUT = fc.REPO / "importer" / "tests" / "fixtures" / "iquants" / "tables.json"
DEFAULT_GGML_COMMON = Path("/tmp/llama.cpp/ggml/src/ggml-common.h")

# A few entries of ggml-common.h, copied from its tables (index -> value), to catch a
# misread of gguf-py's packing even without a llama.cpp checkout.
GGML_SPOT_CHECKS: dict[str, dict[int, int]] = {
    "iq2xxs_grid": {0: 0x0808080808080808, 1: 0x080808080808082B, 131: 0x082B2B2B19081908,
                    255: 0x2B2B2B1908081908},
    "iq2xs_grid": {0: 0x0808080808080808, 259: 0x190808080819082B, 511: 0x2B2B2B2B2B2B2B2B},
    "iq2s_grid": {1: 0x080808080808082B, 515: 0x190808191908192B, 1023: 0x2B2B2B2B2B2B2B2B},
    "iq3xxs_grid": {0: 0x04040404, 1: 0x04040414, 131: 0x14242C1C, 255: 0x3E341C04},
    "iq3s_grid": {0: 0x01010101, 1: 0x01010103, 259: 0x05090903, 511: 0x0F0F0101},
    "iq1s_grid": {0: 0xFFFFFFFFFFFFFFFF, 1: 0xFFFFFFFFFFFFFF01, 1027: 0x000000000000FF01,
                  2047: 0x0101010101010101},
    "ksigns_iq2xs": {0: 0, 1: 129, 2: 130, 3: 3, 127: 255},
    "kmask_iq2xs": {0: 1, 7: 128},
    "kvalues_iq4nl": {0: -127, 7: -10, 8: 1, 15: 113},
    "kvalues_mxfp4": {0: 0, 7: 12, 8: 0, 15: -12},
}

# Rust name, ggml-common.h name, Rust element type, numpy dtype of the little-endian bytes.
U64, U32, U8, I8 = ("u64", "<u8"), ("u32", "<u4"), ("u8", "u1"), ("i8", "i1")


def grid_rows(cls) -> np.ndarray:
    """The grid of `cls` as gguf-py decodes it (its `init_grid`), as integers [rows, elems]."""
    cls.init_grid()
    grid = np.asarray(cls.grid, dtype=np.float32).reshape(cls.grid_shape)
    ints = grid.astype(np.int64)
    assert np.array_equal(ints.astype(np.float32), grid), f"{cls.__name__}: non-integer grid"
    allowed = set(int(v) for v in cls.grid_map)
    assert set(np.unique(ints).tolist()) <= allowed, f"{cls.__name__}: value outside grid_map"
    return ints


def pack_rows(rows: np.ndarray, width: int) -> list[int]:
    """Rows of `width` byte-sized values as little-endian integers (byte j = element j)."""
    assert rows.shape[1] == width
    as_bytes = (rows & 0xFF).astype(np.uint8)
    return [int.from_bytes(r.tobytes(), "little") for r in as_bytes]


def read_tables():
    import gguf.quants as q

    assert q.IQ1_M.grid_hex == q.IQ1_S.grid_hex and q.IQ1_M.grid_map == q.IQ1_S.grid_map
    tables: list[tuple[str, str, tuple[str, str], list[int], str]] = []

    def grid(rust: str, ggml: str, cls, width: int, ty):
        rows = grid_rows(cls)
        doc = (f"`{ggml}`: {rows.shape[0]} rows of {width} values in {{"
               + ", ".join(f"{int(v)}" for v in sorted(set(int(x) for x in cls.grid_map)))
               + f"}}, byte j of a row (little-endian) is element j (gguf-py `{cls.__name__}`).")
        tables.append((rust, ggml, ty, pack_rows(rows, width), doc))

    grid("IQ2XXS_GRID", "iq2xxs_grid", q.IQ2_XXS, 8, U64)
    grid("IQ2XS_GRID", "iq2xs_grid", q.IQ2_XS, 8, U64)
    grid("IQ2S_GRID", "iq2s_grid", q.IQ2_S, 8, U64)
    grid("IQ3XXS_GRID", "iq3xxs_grid", q.IQ3_XXS, 4, U32)
    grid("IQ3S_GRID", "iq3s_grid", q.IQ3_S, 4, U32)
    grid("IQ1S_GRID", "iq1s_grid", q.IQ1_S, 8, U64)
    # IQ1S_GRID's bytes are i8: -1 is 0xff.
    ksigns = list(np.frombuffer(q.IQ2_XXS.ksigns, dtype=np.uint8).tolist())
    tables.append(("KSIGNS_IQ2XS", "ksigns_iq2xs", U8, ksigns,
                   "`ksigns_iq2xs`: a 7-bit sign index to 8 sign bits (bit j set: element j is "
                   "negative; the eighth bit makes the count of set bits even) "
                   "(gguf-py `IQ2_XXS.ksigns`)."))
    tables.append(("KMASK_IQ2XS", "kmask_iq2xs", U8, [1 << j for j in range(8)],
                   "`kmask_iq2xs`: the sign bit of element j, `1 << j` (gguf-py unpacks sign "
                   "bytes with `>> j & 1`, j in 0..8)."))
    tables.append(("KVALUES_IQ4NL", "kvalues_iq4nl", I8, [int(v) for v in q.IQ4_NL.kvalues],
                   "`kvalues_iq4nl`: the 16-value non-linear codebook of IQ4_NL and IQ4_XS "
                   "(gguf-py `IQ4_NL.kvalues`)."))
    tables.append(("KVALUES_MXFP4", "kvalues_mxfp4", I8, [int(v) for v in q.MXFP4.kvalues],
                   "`kvalues_mxfp4`: the e2m1 values doubled, indexed by the 4-bit code "
                   "(sign bit 3) (gguf-py `MXFP4.kvalues`); the scale is halved to match "
                   "(`ggml_e8m0_to_fp32_half`)."))
    deltas = [("IQ1S_DELTA", "IQ1S_DELTA", np.float32(q.IQ1_S.delta), "IQ1_S.delta"),
              ("IQ1M_DELTA", "IQ1M_DELTA", np.float32(q.IQ1_M.delta), "IQ1_M.delta")]
    return tables, deltas


def check_sizes(tables) -> None:
    sizes = {"iq2xxs_grid": 256, "iq2xs_grid": 512, "iq2s_grid": 1024, "iq3xxs_grid": 256,
             "iq3s_grid": 512, "iq1s_grid": 2048, "ksigns_iq2xs": 128, "kmask_iq2xs": 8,
             "kvalues_iq4nl": 16, "kvalues_mxfp4": 16}
    for _, ggml, _, values, _ in tables:
        # Every index the dequantizers form has exactly this many bits' worth of values.
        assert len(values) == sizes[ggml], (ggml, len(values))


def check_spots(tables, deltas) -> None:
    by_name = {ggml: values for _, ggml, _, values, _ in tables}
    for name, entries in GGML_SPOT_CHECKS.items():
        for i, want in entries.items():
            got = by_name[name][i]
            assert got == want, f"{name}[{i}] = {got:#x}, ggml-common.h has {want:#x}"
    for _, ggml, value, _ in deltas:
        assert value == np.float32(0.125), (ggml, value)
    # ksigns: bit 7 is the parity of bits 0..7.
    for i, s in enumerate(by_name["ksigns_iq2xs"]):
        assert s & 0x7F == i and bin(s).count("1") % 2 == 0, (i, s)


def parse_ggml_common(path: Path) -> dict[str, list[int]]:
    src = path.read_text(encoding="utf-8")
    out: dict[str, list[int]] = {}
    for m in re.finditer(r"GGML_TABLE_BEGIN\(\s*(\w+)\s*,\s*(\w+)\s*,\s*\w+\s*\)(.*?)GGML_TABLE_END",
                         src, re.S):
        ctype, name, body = m.groups()
        if name in out:  # the first definition (the C/C++ one) only
            continue
        body = re.sub(r"//.*", "", body)
        out[name] = [int(tok, 0) for tok in re.findall(r"-?(?:0x[0-9a-fA-F]+|\d+)", body)]
    # Aliases (`#define kvalues_mxfp4 kvalues_fp4` in newer headers).
    for alias, target in re.findall(r"#define\s+(\w+)\s+(\w+)\s*$", src, re.M):
        if target in out and alias not in out:
            out[alias] = out[target]
    return out


def check_ggml_common(tables, deltas, path: Path) -> bool:
    if not path.exists():
        print(f"{path} not found: checked the spot entries only")
        return False
    ggml = parse_ggml_common(path)
    for _, name, _, values, _ in tables:
        want = ggml[name]
        assert want == values, f"{name} differs from {path}"
    src = path.read_text(encoding="utf-8")
    for _, name, value, _ in deltas:
        m = re.search(rf"#define\s+{name}\s+([0-9.]+)f", src)
        assert m and np.float32(float(m.group(1))) == value, name
    print(f"every entry of the {len(tables)} tables and both deltas equal {path}")
    return True


def le_bytes(values: list[int], ty: tuple[str, str]) -> bytes:
    return np.array(values, dtype=np.dtype(ty[1])).tobytes()


def rust_literal(v: int, ty: tuple[str, str]) -> str:
    if ty[0] == "u64":
        return f"0x{v:016x}"
    if ty[0] == "u32":
        return f"0x{v:08x}"
    return str(v)


def render_rust(tables, deltas, version: str, quants_sha: str) -> str:
    lines = [
        "//! Lookup tables of the i-quants and MXFP4, generated by scripts/make_iquant_tables.py",
        f"//! from gguf-py {version}'s gguf/quants.py (sha256 {quants_sha[:16]}...). Do not edit:",
        "//! regenerate with `python3 scripts/make_iquant_tables.py`.",
        "//!",
        "//! The names and layouts are ggml-common.h's: a grid row is one little-endian integer whose",
        "//! byte j is element j. importer/tests/iquant_tables.rs checks every table against",
        "//! importer/tests/fixtures/iquants/tables.json, written by the same script. The arrays are",
        "//! `rustfmt::skip`: rustfmt would put each long literal on a line of its own.",
        "",
    ]
    for rust, ggml, ty, values, doc in tables:
        per_line = {"u64": 4, "u32": 8}.get(ty[0], 16)
        lines.extend("/// " + part for part in textwrap.wrap(doc, 95))
        lines.append("#[rustfmt::skip]")
        lines.append(f"pub const {rust}: [{ty[0]}; {len(values)}] = [")
        for i in range(0, len(values), per_line):
            chunk = values[i:i + per_line]
            lines.append("    " + " ".join(rust_literal(v, ty) + "," for v in chunk))
        lines.append("];")
        lines.append("")
    for rust, ggml, value, src in deltas:
        lines.append(f"/// `{ggml}`: the shift of IQ1 grid values (gguf-py `{src}`).")
        lines.append(f"pub const {rust}: f32 = {float(value)!r};")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    import gguf.quants as q

    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--ggml-common", type=Path, default=DEFAULT_GGML_COMMON,
                    help="ggml-common.h of a llama.cpp checkout, for a full cross-check")
    args = ap.parse_args()

    version = metadata.version("gguf")
    quants_path = Path(q.__file__)
    quants_sha = hashlib.sha256(quants_path.read_bytes()).hexdigest()
    tables, deltas = read_tables()
    check_sizes(tables)
    check_spots(tables, deltas)
    check_ggml_common(tables, deltas, args.ggml_common)

    RUST_OUT.write_text(render_rust(tables, deltas, version, quants_sha), encoding="utf-8")
    manifest: dict = {
        "generator": "scripts/make_iquant_tables.py",
        "source": f"gguf-py {version} gguf/quants.py",
        "quants_py_sha256": quants_sha,
        "hash": "sha256 of the table's elements as little-endian bytes of its Rust type",
        "tables": {},
    }
    for rust, ggml, ty, values, _ in tables:
        entry = {"ggml": ggml, "type": ty[0], "len": len(values),
                 "sha256": hashlib.sha256(le_bytes(values, ty)).hexdigest()}
        if len(values) <= 128:
            entry["values"] = values
        manifest["tables"][rust] = entry
    for rust, ggml, value, _ in deltas:
        manifest["tables"][rust] = {"ggml": ggml, "type": "f32", "len": 1,
                                    "sha256": hashlib.sha256(struct.pack("<f", value)).hexdigest(),
                                    "values": [float(value)]}
    fc.write_json(JSON_OUT, manifest)
    print(f"wrote {fc.rel(RUST_OUT)} and {fc.rel(JSON_OUT)} from gguf-py {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
