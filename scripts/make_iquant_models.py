"""(Re)creates SmolLM2's IQ/TQ/MXFP4 test models and checks them against default-kv.json.

The seven files of make_default_kv_fixtures.IQUANT_KEYS (smollm2-iq4_nl, -iq4_xs, -iq3_s,
-iq3_xxs, -tq1_0, -tq2_0, -mxfp4), in ~/.cache/gguf-llama/models/bench/ beside the Q8_0 file
(never committed), are written from the F32 twin SmolLM2-135M-Instruct.Q4_1-dequant-f32.gguf when
missing (or with --force), by the same function the fixture script uses
(make_default_kv_fixtures.make_variant: llama.cpp's llama_model_quantize, with per-tensor type
overrides for MXFP4 and ggml_quantize_chunk for IQ3_XXS's ffn_down; see that script). A missing F32
twin is written first from the Q4_1 file (fixture_common.write_dequantized_f32, as
make_llama_fixtures.py does). Then every file's tensor_data_sha256 is checked against the one that
tests/fixtures/llama/default-kv.json records; any difference exits with status 1. No fixture is
written.

    python3 scripts/make_iquant_models.py [--force]

Needs llama-cpp-python (0.3.36: the fixtures' llama.cpp), gguf and numpy, and the F32 twin or the
Q4_1 file (scripts/README.md says where it comes from). About three minutes on 2 cores when the
F32 twin and all seven files are missing (IQ3_S's quantizer takes most of it); seconds when they
exist.
"""

from __future__ import annotations

import argparse
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402
import make_default_kv_fixtures as dkv  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="rewrite the files that exist")
    args = ap.parse_args()
    fc.quiet_llama()
    if not dkv.OUT.exists():
        raise SystemExit(f"{dkv.OUT} not found")
    doc = fc.read_json(dkv.OUT)
    models, recorded = doc["models"], doc.get("versions")
    bad = []
    for key in dkv.IQUANT_KEYS:
        if key not in models or "tensor_data_sha256" not in models[key]:
            raise SystemExit(f"{fc.rel(dkv.OUT)} has no tensor_data_sha256 for {key}")
        existed = dkv.variant_file(key).exists() and not args.force
        path = dkv.make_variant(key, force=args.force)
        got = dkv.tensor_data_sha256(path)
        want = models[key]["tensor_data_sha256"]
        state = "exists" if existed else "written"
        if got == want:
            print(f"{key}: {path} ({state}) tensor data sha256 {got}: ok", flush=True)
        else:
            bad.append(key)
            print(
                f"{key}: {path} ({state}) tensor data sha256 {got}, but {fc.rel(dkv.OUT)} records {want}"
                f" (source: {models[key].get('source', '?')}); tensor types {dkv.tensor_types(path)},"
                f" recorded {models[key].get('tensor_types', '?')}",
                file=sys.stderr,
                flush=True,
            )
    if bad:
        print(
            f"error: {len(bad)} of {len(dkv.IQUANT_KEYS)} files differ from the fixtures: {', '.join(bad)}. "
            f"A stale file is rebuilt with --force; if a rebuilt one still differs, the quantizers here "
            f"({fc.versions()}) do not reproduce those that wrote the fixtures ({recorded}).",
            file=sys.stderr,
        )
        return 1
    print(f"all {len(dkv.IQUANT_KEYS)} files match {fc.rel(dkv.OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
