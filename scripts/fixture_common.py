"""Shared helpers for the fixture scripts in this directory (not a script itself).

Holds the repository paths, the table of the 13 tensor formats the fixtures cover
(with the llama.cpp file type used to produce each one), version reporting, and a
small wrapper that opens a model with llama-cpp-python the same way in every script
(n_threads=2, every position's logits kept, F32 KV cache).
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
SYNTH_DIR = FIXTURES / "synthetic"
QUANT_DIR = FIXTURES / "quants"
LLAMA_DIR = FIXTURES / "llama"
STORIES_MODEL = REPO / "models" / "stories260k-f32.gguf"

# Where the SmolLM2 model is unpacked (never committed): see scripts/README.md.
SMOLLM2_MODEL = Path(
    os.environ.get(
        "SMOLLM2_GGUF",
        Path.home() / ".cache" / "gguf-llama" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf",
    )
)

N_THREADS = 2

# The 13 formats, in the order used everywhere. For each: the llama.cpp file type
# (name of the LLAMA_FTYPE_* constant) that produces it, or None for the F32 source.
# With `pure = True` the K-quant mixes (Q3_K_S, Q4_K_S, Q5_K_S) put their base
# type on every matrix, so the _S/_M choice does not matter.
FORMATS: list[tuple[str, str | None]] = [
    ("F32", None),
    ("F16", "LLAMA_FTYPE_MOSTLY_F16"),
    ("BF16", "LLAMA_FTYPE_MOSTLY_BF16"),
    ("Q4_0", "LLAMA_FTYPE_MOSTLY_Q4_0"),
    ("Q4_1", "LLAMA_FTYPE_MOSTLY_Q4_1"),
    ("Q5_0", "LLAMA_FTYPE_MOSTLY_Q5_0"),
    ("Q5_1", "LLAMA_FTYPE_MOSTLY_Q5_1"),
    ("Q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0"),
    ("Q2_K", "LLAMA_FTYPE_MOSTLY_Q2_K"),
    ("Q3_K", "LLAMA_FTYPE_MOSTLY_Q3_K_S"),
    ("Q4_K", "LLAMA_FTYPE_MOSTLY_Q4_K_S"),
    ("Q5_K", "LLAMA_FTYPE_MOSTLY_Q5_K_S"),
    ("Q6_K", "LLAMA_FTYPE_MOSTLY_Q6_K"),
]
FORMAT_NAMES = [name for name, _ in FORMATS]

# llama.cpp commit vendored by each llama-cpp-python release, from that package's
# CHANGELOG ("update llama.cpp to ggml-org/llama.cpp@<commit>").
LLAMA_CPP_COMMITS = {"0.3.36": "0c1e57098"}


def synth_path(fmt: str) -> Path:
    return SYNTH_DIR / f"synth-{fmt}.gguf"


def versions() -> dict[str, str]:
    """Versions of the reference tools, recorded in every manifest."""
    out: dict[str, str] = {}
    for pkg in ("llama-cpp-python", "gguf", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    out["llama.cpp"] = LLAMA_CPP_COMMITS.get(out["llama-cpp-python"], "unknown")
    return out


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def rel(path: Path) -> str:
    """Path relative to the repository root, with forward slashes."""
    return path.resolve().relative_to(REPO).as_posix()


def quiet_llama() -> None:
    """Lets only llama.cpp's error messages through (its loader logs every key otherwise)."""
    from llama_cpp import _logger

    _logger.set_verbose(False)


def open_llama(model: Path, n_ctx: int, kv_f32: bool = True):
    """Opens `model` with llama-cpp-python: CPU, 2 threads, logits of every position kept.

    Flash attention is off (llama.cpp's own default is "auto"). The KV cache is F32 unless `kv_f32` is false (llama.cpp's default is F16); an F32
    cache makes the logits the exact f32 forward pass up to llama.cpp's own matmul
    rounding (quantized weights are multiplied against activations quantized to
    Q8_0/Q8_K by ggml's CPU backend; F16/BF16 weights against F16/BF16 activations).
    """
    import llama_cpp

    kwargs: dict[str, Any] = dict(
        model_path=str(model),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        n_threads=N_THREADS,
        n_threads_batch=N_THREADS,
        logits_all=True,
        seed=0,
        n_gpu_layers=0,
        flash_attn=False,
        verbose=False,
    )
    if kv_f32:
        kwargs["type_k"] = llama_cpp.GGML_TYPE_F32
        kwargs["type_v"] = llama_cpp.GGML_TYPE_F32
    return llama_cpp.Llama(**kwargs)


def write_dequantized_f32(src: Path, dst: Path) -> None:
    """Writes `dst`: `src` with every tensor dequantized to F32 by gguf-py
    (`gguf.quants.dequantize`), all metadata copied, general.file_type = ALL_F32.

    llama.cpp run on this file computes in f32 on exactly the quantized weights,
    without quantizing activations: the reference for a dequantize-then-f32 forward pass.
    """
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(dst), arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in (
            "general.architecture",
            "general.file_type",
            "general.quantization_version",
        ):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for t in reader.tensors:
        data = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        expect = tuple(int(x) for x in reversed(t.shape))
        if data.shape != expect:
            data = data.reshape(expect)
        writer.add_tensor(t.name, np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
