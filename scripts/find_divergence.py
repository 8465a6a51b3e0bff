"""Divergence finder: where do this project's activations first depart from llama.cpp's?

    python3 scripts/find_divergence.py --model FILE --prompt "Once upon a time" \
        [--device flex] [--threshold 1e-3]

Runs this project's `activations` example (our tensors under llama.cpp's names, in forward order)
and captures llama.cpp's tensors of the same prompt with its eval callback
(scripts/llama_activations.py), then walks our forward order and prints, per tensor, the max
absolute difference and the difference relative to max |llama.cpp|, and the first tensor whose
relative difference exceeds --threshold. A difference in the prompt's tokens is reported first: a
tokenizer divergence explains everything after it.

Shapes: both sides are [n_tokens, dim] per tensor (llama.cpp's Qcur/Kcur/Vcur [n_tokens, n_head,
head_dim] are flattened per token). llama.cpp names several nodes alike (Qcur before and after
RoPE); its last one, the one our trace reports, is compared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_activations import capture_activations  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def read_npy_dir(out: Path) -> tuple[list[int], list[str], dict[str, np.ndarray]]:
    tokens = [int(t) for t in (out / "tokens.txt").read_text().split()]
    order = (out / "order.txt").read_text().split()
    return tokens, order, {name: np.load(out / f"{name}.npy") for name in order}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--device", default="flex")
    ap.add_argument("--weights", default="quantized", choices=["quantized", "f32"],
                    help="how our side holds the weights (llama.cpp always runs the file as it is)")
    ap.add_argument("--cache-type", default="f16", choices=["f16", "f32"],
                    help="the KV cache type of both sides (f16: llama.cpp's default)")
    ap.add_argument("--threshold", type=float, default=1e-3)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["cargo", "run", "--release", "--quiet", "--example", "activations", "--",
               "--model", args.model, "--prompt", args.prompt, "--device", args.device,
               "--weights", args.weights, "--cache-type-k", args.cache_type,
               "--cache-type-v", args.cache_type, "--out", tmp]
        # The project's shared target directory (as .ci/run), so this does not build burn again.
        env = dict(os.environ)
        env.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache/gguf-llama/target"))
        subprocess.run(cmd, cwd=REPO, check=True, env=env)
        tokens, order, ours = read_npy_dir(Path(tmp))

    # llama.cpp tokenizes the same text as its completion does (add_special: BOS per the file's
    # add_bos_token; special tokens parsed), as our example does.
    ref_tokens, ref, _ = capture_activations(
        args.model, args.prompt, ".*", add_bos=True, kv_type=args.cache_type
    )
    if ref_tokens != tokens:
        print(f"DIVERGENCE in the tokens:\n  ours      {tokens}\n  llama.cpp {ref_tokens}")
        return 1

    first = None
    print(f"{'tensor':24} {'shape':>14} {'max |diff|':>12} {'rel':>10}")
    for name in order:
        if name not in ref:
            print(f"{name:24} {'(not in llama.cpp graph)':>38}")
            continue
        a = ours[name].reshape(len(tokens), -1)
        b = ref[name].reshape(len(tokens), -1) if ref[name].size == a.size else None
        if b is None:
            print(f"{name:24} shape ours {list(a.shape)} vs llama.cpp {list(ref[name].shape)}: not comparable")
            continue
        diff = float(np.abs(a - b).max())
        rel = diff / max(float(np.abs(b).max()), 1e-30)
        flag = ""
        if first is None and rel > args.threshold:
            first = name
            flag = "  <-- first divergence"
        print(f"{name:24} {str(list(a.shape)):>14} {diff:12.3e} {rel:10.2e}{flag}")
    if first is None:
        print(f"no tensor differs by more than {args.threshold:g} relative")
        return 0
    row = np.abs(ours[first].reshape(len(tokens), -1) - ref[first].reshape(len(tokens), -1)).max(axis=1)
    print(f"first divergence: {first}; per token max |diff|: {np.array2string(row, precision=3)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
