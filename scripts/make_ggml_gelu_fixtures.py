"""Writes kernels/tests/fixtures/ggml_gelu/: llama.cpp's own GELU table and `vec_geglu_f32`
results, for kernels/tests/ggml_gelu.rs, which checks `gguf_kernels::cpu::ggml_ops::geglu` (the
Gemma feed-forward gate on the CPU devices) against them bit for bit.

    python3 scripts/make_ggml_gelu_fixtures.py

Where the numbers come from: llama-cpp-python's `libggml-cpu` (this machine's x86 build). With
`GGML_GELU_FP16` (set in ggml-cpu's vec.h), ggml's GELU of an f32 `x` is 0 for `x <= -10`, `x`
for `x >= 10`, and otherwise `ggml_table_gelu_f16[fp16(x)]`: a table of 65536 f16 values that
`ggml_cpu_init` fills. The table is read from the library's exported symbol after
`ggml_cpu_init()`.

Files (little-endian, no headers): `table.f16` the 65536 entries (bit patterns, u16).
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

OUT = fc.REPO / "kernels" / "tests" / "fixtures" / "ggml_gelu"


def main() -> int:
    lib = libggml_cpu()  # runs ggml_cpu_init, which fills the table
    table = (ctypes.c_uint16 * 65536).in_dll(lib, "ggml_table_gelu_f16")
    values = np.frombuffer(bytes(table), dtype="<u2")
    if not values.any():
        raise SystemExit("ggml_table_gelu_f16 is empty: ggml_cpu_init did not run")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "table.f16").write_bytes(values.tobytes())
    print(f"wrote {OUT / 'table.f16'} ({values.size} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
