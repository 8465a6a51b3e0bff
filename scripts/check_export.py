"""Checks that llama.cpp loads and runs our GGUF exports (`Llama::save_gguf`).

For each type (F32, F16, Q8_0 by default) runs

    cargo run --release --example export_gguf -- --model M --out OUT --type T

then:

1. loads OUT with llama.cpp (llama-cpp-python: CPU, 2 threads, F32 KV cache, flash
   attention off, as scripts/make_llama_fixtures.py does), evaluates a prompt and compares
   its logits at every prompt position with llama.cpp's logits on the source file M
   (max |diff|, and whether the argmax agrees at every position);
2. quantizes M with llama.cpp itself (llama_model_quantize, `pure = True`, to the same
   file type) and compares every tensor of OUT with llama.cpp's: same names, ggml types,
   shapes and bytes (F32 export: the source's tensors).

Writes the result to tests/fixtures/export/llama_cpp_check.json (per model and type: max
|diff|, tensor comparison; versions, the commands run), and for tests/export.rs the logits
[n_prompt, n_vocab] as float32 .npy in tests/fixtures/export/{model stem}/:

    logits-source.npy          llama.cpp on the source file
    logits-{TYPE}.npy          llama.cpp on the export of TYPE
    logits-{TYPE}-f32deq.npy   llama.cpp on the export dequantized to F32 (f32 math on the
                               export's weights; fixture_common.write_dequantized_f32)

It also writes the references tests/export.rs compares our exported tensor bytes with
(`tensors_are_llama_cpps_own_quantization`), under tests/fixtures/export/llama-cpp/: for each
(source, type) of REFERENCE_CASES, llama.cpp's own `llama_model_quantize` output (the
settings above; the manifest's `same_without_pure` records whether llama.cpp's default
`pure = False` gives the same tensors), kept as

    whole     the file llama.cpp wrote, as it wrote it ({source stem}-{TYPE}.gguf);
    subset    only some of its tensors, bytes, types and shapes as llama.cpp wrote them,
              copied by gguf-py into a small GGUF ({source stem}-{TYPE}.subset.gguf);
    existing  nothing new: every tensor of llama.cpp's output (name, type, shape, bytes) was
              checked to equal a file already in the repository, which is the reference
              (an F32 source's F32 output is the source itself; the synthetic models'
              synth-{F16,Q8_0}.gguf are llama.cpp's quantizations of synth-F32.gguf).

and tests/fixtures/export/llama-cpp/manifest.json, which lists them with the llama.cpp
version and sha256 sums. `--references-only` writes just these (no cargo, no logits).

Exit status 1 if llama.cpp fails to load an export, or a tensor differs from llama.cpp's
own quantization.

Cargo builds into $CARGO_TARGET_DIR, by default $HOME/.cache/gguf-llama/target.

With --lora, instead: fine-tunes LoRA adapters on stories260K with our finetune example
(`cargo run --release --example finetune -- --steps 100 --out-dir TMP --export-types
f32,f16,q8_0`), and for each merged export loads it with llama.cpp and compares llama.cpp's logits
of the prompt with ours: our merged model's (our `activations` example on the F32 export, whose
tensors are the merged weights bit for bit, tests/lora.rs) and our model on that same export file
(`--weights quantized`). The result goes under "lora" in the same JSON (the rest is kept).

Usage (needs llama-cpp-python, gguf, numpy, cargo):
    python3 scripts/check_export.py   # stories260K and the synthetic Q4_K model, F32/F16/Q8_0
    python3 scripts/check_export.py --models models/stories260k-f32.gguf --types f16
    python3 scripts/check_export.py --lora
    python3 scripts/check_export.py --references-only   # tests/fixtures/export/llama-cpp/
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402

PROMPT = "Once upon a time there was a little"
N_CTX = 64
EXPORT_DIR = fc.FIXTURES / "export"
OUT_JSON = EXPORT_DIR / "llama_cpp_check.json"
MODELS = [fc.STORIES_MODEL, fc.synth_path("Q4_K")]
FTYPES = {"f32": "LLAMA_FTYPE_ALL_F32", "f16": "LLAMA_FTYPE_MOSTLY_F16", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0"}

REFERENCE_DIR = EXPORT_DIR / "llama-cpp"
REFERENCE_MANIFEST = REFERENCE_DIR / "manifest.json"
# The tensors kept of a requantized synthetic model (a quantized source: llama.cpp dequantizes it
# with ggml's dequantizer, then quantizes): two whole matrices, not the 0.9-3.4 MB files.
SUBSET_TENSORS = ["blk.0.attn_k.weight", "blk.0.attn_v.weight"]
# (source, type, how): what tests/export.rs compares our export of `source` as `type` with.
# how: "whole", "subset", or the repository path of an existing file equal to llama.cpp's output.
REFERENCE_CASES: list[tuple[Path, str, str]] = [
    (fc.STORIES_MODEL, "f32", fc.rel(fc.STORIES_MODEL)),
    (fc.STORIES_MODEL, "f16", "whole"),
    (fc.STORIES_MODEL, "q8_0", "whole"),
    (fc.synth_path("F32"), "f32", fc.rel(fc.synth_path("F32"))),
    (fc.synth_path("F32"), "f16", fc.rel(fc.synth_path("F16"))),
    (fc.synth_path("F32"), "q8_0", fc.rel(fc.synth_path("Q8_0"))),
    (fc.synth_path("Q4_K"), "f32", "subset"),
    (fc.synth_path("Q4_K"), "f16", "subset"),
    (fc.synth_path("Q4_K"), "q8_0", "subset"),
]


def cargo_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("CARGO_TARGET_DIR"):
        env["CARGO_TARGET_DIR"] = str(Path.home() / ".cache" / "gguf-llama" / "target")
    return env


def export(model: Path, out: Path, ty: str) -> list[str]:
    cmd = [
        "cargo", "run", "--release", "--quiet", "--example", "export_gguf", "--",
        "--model", str(model), "--out", str(out), "--type", ty,
    ]
    subprocess.run(cmd, cwd=fc.REPO, env=cargo_env(), check=True)
    return cmd


def llama_logits(path: Path, text: str) -> tuple[list[int], np.ndarray]:
    """Prompt tokens and llama.cpp's logits of every prompt position [n_prompt, n_vocab]."""
    llm = fc.open_llama(path, N_CTX)
    tokens = llm.tokenize(text.encode(), add_bos=True, special=True)
    llm.eval(tokens)
    logits = np.array(llm.scores[: llm.n_tokens], dtype=np.float32)
    llm.close()
    return tokens, logits


def export_logits(path: Path, what: str) -> tuple[np.ndarray | None, dict | None]:
    """llama.cpp's logits of PROMPT on an export, or (None, the entry saying why) if it refuses it."""
    try:
        return llama_logits(path, PROMPT)[1], None
    except Exception as e:  # llama.cpp refused the file
        print(f"{what}: llama.cpp failed to load the export: {e}")
        return None, {"loaded": False, "error": str(e)}


def llama_quantize(src: Path, dst: Path, ty: str, pure: bool = True) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = fc.N_THREADS
    params.ftype = getattr(llama_cpp, FTYPES[ty])
    params.allow_requantize = True  # a quantized source is dequantized to f32 first
    params.quantize_output_tensor = True
    params.pure = pure
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize({FTYPES[ty]}) failed with {rc}")


def tensors(path: Path) -> dict[str, tuple[str, list[int], bytes]]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {
        t.name: (t.tensor_type.name, [int(x) for x in t.shape], bytes(np.asarray(t.data).tobytes()))
        for t in reader.tensors
    }


def compare_tensors(ours: Path, theirs: Path) -> dict:
    a, b = tensors(ours), tensors(theirs)
    differ = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            differ.append(f"{name}: only in {'ours' if name in a else 'llama.cpp'}")
        elif a[name][:2] != b[name][:2]:
            differ.append(f"{name}: ours {a[name][:2]}, llama.cpp {b[name][:2]}")
        elif a[name][2] != b[name][2]:
            differ.append(f"{name}: bytes differ")
    types: dict[str, int] = {}
    for ty, _, _ in a.values():
        types[ty] = types.get(ty, 0) + 1
    return {"n_tensors": len(a), "types": types, "identical": not differ, "differences": differ}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_subset(src: Path, dst: Path, names: list[str]) -> None:
    """Writes `dst`: the tensors `names` of `src` (llama.cpp's output), their bytes, ggml types and
    shapes unchanged, with general.architecture and a description of where they came from."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    by_name = {t.name: t for t in reader.tensors}
    writer = gguf.GGUFWriter(str(dst), reader.fields["general.architecture"].contents())
    writer.add_description(
        f"tensors {', '.join(names)} of llama.cpp's llama_model_quantize output "
        f"(scripts/check_export.py, see manifest.json)"
    )
    for name in names:
        t = by_name[name]
        # Quantized data comes as uint8 [rows, bytes per row], which gguf-py turns back into the
        # element shape; F16/F32 data as its own dtype.
        writer.add_tensor(name, np.asarray(t.data), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_references(tmp: Path) -> None:
    """llama.cpp's own quantizations for tests/export.rs (see the module docs) and their manifest."""
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    entries = []
    for source, ty, how in REFERENCE_CASES:
        name = ty.upper()
        out = tmp / f"{source.stem}-llama-cpp-{ty}.gguf"
        llama_quantize(source, out, ty)
        impure = tmp / f"{source.stem}-llama-cpp-{ty}-not-pure.gguf"
        llama_quantize(source, impure, ty, pure=False)
        theirs = tensors(out)
        types: dict[str, int] = {}
        for t, _, _ in theirs.values():
            types[t] = types.get(t, 0) + 1
        entry = {
            "source": fc.rel(source),
            "type": ty,
            "llama_cpp_output_sha256": sha256(out),
            "llama_cpp_output_types": types,
            "same_without_pure": tensors(impure) == theirs,
        }
        if how == "whole":
            reference = REFERENCE_DIR / f"{source.stem}-{name}.gguf"
            shutil.copyfile(out, reference)
            entry.update(kept="whole", tensors="all")
        elif how == "subset":
            reference = REFERENCE_DIR / f"{source.stem}-{name}.subset.gguf"
            write_subset(out, reference, SUBSET_TENSORS)
            entry.update(kept="subset", tensors=SUBSET_TENSORS)
        else:
            reference = fc.REPO / how
            entry.update(kept="existing", tensors="all")
        kept = tensors(reference)
        wanted = theirs if entry["tensors"] == "all" else {n: theirs[n] for n in SUBSET_TENSORS}
        if kept != wanted:
            raise SystemExit(f"{fc.rel(reference)}: not llama.cpp's quantization of {fc.rel(source)} as {ty}")
        entry.update(reference=fc.rel(reference), reference_sha256=sha256(reference))
        entries.append(entry)
        print(f"{fc.rel(source)} {ty:5} -> {entry['reference']} ({entry['kept']}; llama.cpp's types {types})")
    fc.write_json(
        REFERENCE_MANIFEST,
        {
            "generator": "scripts/check_export.py --references-only",
            "versions": fc.versions(),
            "quantize_params": {
                "call": "llama_cpp.llama_model_quantize(source, out, params)",
                "nthread": fc.N_THREADS,
                "allow_requantize": True,
                "quantize_output_tensor": True,
                "pure": True,
                "ftype": {ty: FTYPES[ty] for ty in FTYPES},
            },
            "references": entries,
        },
    )
    print(f"wrote {fc.rel(REFERENCE_MANIFEST)}")


def rel_or_abs(path: Path) -> str:
    path = path.resolve()
    return fc.rel(path) if path.is_relative_to(fc.REPO) else str(path)


def check_model(model: Path, types: list[str], tmp: Path) -> tuple[dict, bool]:
    """Exports `model` to each type and compares with llama.cpp; saves the logits fixtures."""
    fixtures = EXPORT_DIR / model.stem
    fixtures.mkdir(parents=True, exist_ok=True)
    tokens, source_logits = llama_logits(model, PROMPT)
    np.save(fixtures / "logits-source.npy", source_logits)
    entry: dict = {
        "prompt_tokens": tokens,
        "logits_source": fc.rel(fixtures / "logits-source.npy"),
        "max_abs_source_logit": float(np.abs(source_logits).max()),
        "exports": {},
    }
    ok = True
    for ty in types:
        out = tmp / f"{model.stem}-{ty}.gguf"
        cmd = export(model, out, ty)
        logits, failed = export_logits(out, f"{model.stem} {ty}")
        if failed:
            ok = False
            entry["exports"][ty] = failed
            continue
        deq = tmp / f"{model.stem}-{ty}-f32deq.gguf"
        fc.write_dequantized_f32(out, deq)
        _, deq_logits = llama_logits(deq, PROMPT)
        name = ty.upper()
        np.save(fixtures / f"logits-{name}.npy", logits)
        np.save(fixtures / f"logits-{name}-f32deq.npy", deq_logits)
        diff = np.abs(logits - source_logits)
        deq_diff = np.abs(deq_logits - source_logits)
        same_argmax = bool(np.all(logits.argmax(-1) == source_logits.argmax(-1)))
        reference = tmp / f"{model.stem}-llama-cpp-{ty}.gguf"
        llama_quantize(model, reference, ty)
        vs_llama_cpp = compare_tensors(out, reference)
        ok &= vs_llama_cpp["identical"]
        entry["exports"][ty] = {
            "command": " ".join(cmd[:6] + ["--", "--model", rel_or_abs(model), "--out", out.name, "--type", ty]),
            "loaded": True,
            "file_bytes": out.stat().st_size,
            "logits_shape": list(logits.shape),
            "max_abs_diff_vs_source": float(diff.max()),
            "mean_abs_diff_vs_source": float(diff.mean()),
            "f32deq_max_abs_diff_vs_source": float(deq_diff.max()),
            "argmax_agrees_at_every_position": same_argmax,
            "tensors_vs_llama_cpp_quantize": vs_llama_cpp,
        }
        print(
            f"{model.stem} {ty:5} loaded by llama.cpp; max |logit diff| vs source {diff.max():.3g} "
            f"(f32-dequantized export: {deq_diff.max():.3g}), argmax agrees: {same_argmax}; "
            f"tensors identical to llama.cpp's quantization: {vs_llama_cpp['identical']} "
            f"{vs_llama_cpp['types']}"
        )
        for d in vs_llama_cpp["differences"][:10]:
            print(f"    {d}")
    return entry, ok


LORA_STEPS = 100


def our_logits(model: Path, weights: str, out: Path) -> np.ndarray:
    """Our logits of every prompt position (the activations example's result_output)."""
    cmd = [
        "cargo", "run", "--release", "--quiet", "--example", "activations", "--",
        "--model", str(model), "--prompt", PROMPT, "--weights", weights, "--out", str(out),
    ]
    subprocess.run(cmd, cwd=fc.REPO, env=cargo_env(), check=True, stdout=subprocess.DEVNULL)
    return np.load(out / "result_output.npy").astype(np.float32)


def check_lora(types: list[str], tmp: Path) -> tuple[dict, bool]:
    """Fine-tunes stories260K, exports the merged model, loads each export with llama.cpp."""
    out_dir = tmp / "lora"
    # F32 is always exported: its tensors are our merged model's weights bit for bit
    # (tests/lora.rs), so our logits on it are the merged model's.
    exported = [t for t in FTYPES if t in types or t == "f32"]
    cmd = [
        "cargo", "run", "--release", "--quiet", "--example", "finetune", "--",
        "--steps", str(LORA_STEPS), "--out-dir", str(out_dir), "--export-types", ",".join(exported),
    ]
    subprocess.run(cmd, cwd=fc.REPO, env=cargo_env(), check=True, stdout=subprocess.DEVNULL)
    files = {ty: out_dir / f"merged-{ty.upper()}.gguf" for ty in types}
    ours_merged = our_logits(out_dir / "merged-F32.gguf", "f32", tmp / "ours-merged")
    base_tokens, base_logits = llama_logits(fc.STORIES_MODEL, PROMPT)
    entry: dict = {
        "command": " ".join(cmd[:6] + ["--", "--steps", str(LORA_STEPS), "--out-dir", "OUT",
                                       "--export-types", ",".join(exported)]),
        "prompt_tokens": base_tokens,
        "max_abs_logit_change_by_training": float(np.abs(ours_merged - base_logits).max()),
        "exports": {},
    }
    ok = True
    for ty, path in files.items():
        logits, failed = export_logits(path, f"LoRA merged {ty}")
        if failed:
            ok = False
            entry["exports"][ty] = failed
            continue
        same_file = our_logits(path, "quantized", tmp / f"ours-{ty}")
        d_merged = np.abs(logits - ours_merged)
        d_same = np.abs(logits - same_file)
        entry["exports"][ty] = {
            "loaded": True,
            "file_bytes": path.stat().st_size,
            "max_abs_diff_vs_our_merged_model": float(d_merged.max()),
            "max_abs_diff_vs_ours_on_this_file": float(d_same.max()),
            "argmax_agrees_with_our_merged_model": bool(
                np.all(logits.argmax(-1) == ours_merged.argmax(-1))
            ),
        }
        print(
            f"LoRA merged {ty:5} loaded by llama.cpp; max |logit diff| vs our merged model "
            f"{d_merged.max():.3g}, vs ours on the same file {d_same.max():.3g} "
            f"(training moved the logits by up to {entry['max_abs_logit_change_by_training']:.3g})"
        )
    return entry, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=Path, nargs="+", default=MODELS)
    ap.add_argument("--types", nargs="+", default=["f32", "f16", "q8_0"], choices=sorted(FTYPES))
    ap.add_argument("--json", type=Path, default=OUT_JSON)
    ap.add_argument("--lora", action="store_true", help="check merged LoRA exports instead")
    ap.add_argument(
        "--references-only",
        action="store_true",
        help="only write llama.cpp's quantizations for tests/export.rs (tests/fixtures/export/llama-cpp)",
    )
    args = ap.parse_args()
    fc.quiet_llama()
    if args.references_only:
        with tempfile.TemporaryDirectory() as tmp:
            write_references(Path(tmp))
        return 0
    if args.lora:
        import json

        result = json.loads(args.json.read_text()) if args.json.exists() else {}
        with tempfile.TemporaryDirectory() as tmp:
            entry, ok = check_lora(args.types, Path(tmp))
        result["lora"] = entry
        fc.write_json(args.json, result)
        print(f"wrote {rel_or_abs(args.json)}")
        return 0 if ok else 1
    result: dict = {
        "generator": "scripts/check_export.py",
        "versions": fc.versions(),
        "settings": {
            "n_threads": fc.N_THREADS,
            "kv_cache": "F32",
            "flash_attn": False,
            "compared": "llama.cpp logits of every prompt position: export vs source file",
            "reference_quantization": "llama_model_quantize, pure=True, same file type",
        },
        "prompt": PROMPT,
        "models": {},
    }
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        write_references(Path(tmp))
        for model in args.models:
            entry, model_ok = check_model(model.resolve(), args.types, Path(tmp))
            result["models"][rel_or_abs(model)] = entry
            ok &= model_ok
    if args.json.exists():
        # The --lora section is written by its own run: keep it.
        import json

        lora = json.loads(args.json.read_text()).get("lora")
        if lora is not None:
            result["lora"] = lora
    fc.write_json(args.json, result)
    print(f"wrote {rel_or_abs(args.json)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
