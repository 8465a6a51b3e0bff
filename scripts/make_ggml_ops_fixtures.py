"""Writes tests/fixtures/ggml_ops/: llama.cpp's inputs and outputs of the layer operations that
this project computes in ggml's order on the CPU devices (RMS norm, RoPE, attention over the KV
cache, SwiGLU), for tests/ggml_ops.rs, which checks them bit for bit.

    python3 scripts/make_ggml_ops_fixtures.py

For each model, llama.cpp (llama-cpp-python, CPU, 2 threads, F32 KV cache, no flash attention)
decodes a prompt twice with its eval callback (scripts/llama_activations.py): once as one batch
(prefill: several query rows) and once as the prompt but its last token, then that token alone (a
decoding step: one query row over the cached positions, where ggml takes other summation orders).
The tensors of layer 0 are saved as .npy (float32) under the names of llama.cpp's graph:

    embd            [n, n_embd]          input of the norm
    attn_norm_w     [n_embd]             the norm's scale (from the GGUF file)
    attn_norm       [n, n_embd]          rms_norm(embd) · attn_norm_w
    q_pre, k_pre    [n, heads, dk]       Qcur/Kcur before RoPE
    q, k, v         [n, heads, dk]       Qcur/Kcur after RoPE, Vcur
    kqv_out         [n, n_head · dv]     the attention before its output projection
    ffn_gate, ffn_up, ffn_swiglu [r, n_ff] (the first r rows only, to keep the files small)

    kqv_out_f16     [n, n_head · dv]     the attention with llama.cpp's default F16 KV cache (the
                                         same inputs: layer 0 computes q, k, v before the cache)

`decode/` holds the same for the last token alone, plus `k_all`/`v_all` [n, heads, dk]: the keys
and values of every position the step attends to (the prefill's, whose last row the step itself
computes). manifest.json records the hyperparameters and the tools' versions. stories260K (in the
repository) has head_dim 8 and n_ff 172, which exercise ggml's scalar tails; SmolLM2-135M-Instruct
Q4_1 (see scripts/README.md for where it is unpacked) has SmolLM2's real shapes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402
from llama_activations import capture_activations  # noqa: E402

OUT = fc.FIXTURES / "ggml_ops"
FFN_ROWS = 3

MODELS = {
    "stories260k": (fc.STORIES_MODEL, "Once upon a time, there was"),
    "smollm2": (
        fc.SMOLLM2_MODEL,
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    ),
}

NAMES = "embd|attn_norm-0|Qcur-0|Kcur-0|Vcur-0|kqv_out-0|ffn_gate-0|ffn_up-0|ffn_swiglu-0"


def hparams(path: Path) -> dict:
    import gguf

    r = gguf.GGUFReader(str(path))
    arch = r.fields["general.architecture"].contents()
    get = lambda k: r.fields[f"{arch}.{k}"].contents()  # noqa: E731
    norm_w = next(t for t in r.tensors if t.name == "blk.0.attn_norm.weight")
    return {
        "arch": arch,
        "eps": float(get("attention.layer_norm_rms_epsilon")),
        "freq_base": float(get("rope.freq_base")) if f"{arch}.rope.freq_base" in r.fields else 10000.0,
        "n_head": int(get("attention.head_count")),
        "n_head_kv": int(get("attention.head_count_kv")),
        "attn_norm_w": np.asarray(norm_w.data, dtype=np.float32).reshape(-1),
    }


def save(dir_: Path, acts: dict, hp: dict, rows: slice) -> list[str]:
    dir_.mkdir(parents=True, exist_ok=True)
    n = acts["embd"].reshape(-1, acts["embd"].shape[-1]).shape[0]
    d = hp["n_head"], hp["n_head_kv"]
    arrays = {
        "embd": acts["embd"].reshape(n, -1),
        "attn_norm_w": hp["attn_norm_w"],
        "attn_norm": acts["attn_norm-0"].reshape(n, -1),
        "q_pre": acts["Qcur-0#1"].reshape(n, d[0], -1),
        "q": acts["Qcur-0"].reshape(n, d[0], -1),
        "k_pre": acts["Kcur-0#1"].reshape(n, d[1], -1),
        "k": acts["Kcur-0"].reshape(n, d[1], -1),
        "v": acts["Vcur-0"].reshape(n, d[1], -1),
        "kqv_out": acts["kqv_out-0"].reshape(n, -1),
        "ffn_gate": acts["ffn_gate-0"].reshape(n, -1)[rows],
        "ffn_up": acts["ffn_up-0"].reshape(n, -1)[rows],
        "ffn_swiglu": acts["ffn_swiglu-0"].reshape(n, -1)[rows],
    }
    for name, arr in arrays.items():
        np.save(dir_ / f"{name}.npy", np.ascontiguousarray(arr, dtype=np.float32))
    return sorted(arrays)


def main() -> int:
    fc.quiet_llama()
    manifest = {"generator": "scripts/make_ggml_ops_fixtures.py", "versions": fc.versions(), "models": {}}
    for name, (path, prompt) in MODELS.items():
        if not Path(path).exists():
            print(f"{name}: {path} is missing", file=sys.stderr)
            return 1
        hp = hparams(path)
        tokens, acts, _ = capture_activations(path, prompt, names=NAMES, n_threads=fc.N_THREADS)
        files = save(OUT / name, acts, hp, slice(0, FFN_ROWS))
        _, step, _ = capture_activations(path, prompt, names=NAMES, n_threads=fc.N_THREADS, last_alone=True)
        dec = OUT / name / "decode"
        save(dec, step, hp, slice(0, 1))
        # The same attention over llama.cpp's default F16 cache, prefill and decoding step.
        for last_alone, dir_ in ((False, OUT / name), (True, dec)):
            _, f16, _ = capture_activations(
                path, prompt, names="kqv_out-0", n_threads=fc.N_THREADS, last_alone=last_alone, kv_type="f16"
            )
            out = f16["kqv_out-0"].reshape(-1, f16["kqv_out-0"].shape[-1])
            np.save(dir_ / "kqv_out_f16.npy", np.ascontiguousarray(out, dtype=np.float32))
        n = len(tokens)
        k_all = acts["Kcur-0"].reshape(n, hp["n_head_kv"], -1).copy()
        v_all = acts["Vcur-0"].reshape(n, hp["n_head_kv"], -1).copy()
        # The step computes its own last row; the other rows are the prefix's (the same as the
        # prefill's: every operation before the attention is row by row).
        k_all[-1] = step["Kcur-0"].reshape(hp["n_head_kv"], -1)
        v_all[-1] = step["Vcur-0"].reshape(hp["n_head_kv"], -1)
        np.save(dec / "k_all.npy", k_all.astype(np.float32))
        np.save(dec / "v_all.npy", v_all.astype(np.float32))
        manifest["models"][name] = {
            "model": Path(path).name,
            "prompt": prompt,
            "tokens": tokens,
            "eps": hp["eps"],
            "freq_base": hp["freq_base"],
            "rope": "adjacent pairs (LLAMA_ROPE_TYPE_NORM)",
            "n_head": hp["n_head"],
            "n_head_kv": hp["n_head_kv"],
            "ffn_rows": FFN_ROWS,
            "files": files + ["kqv_out_f16"],
            "decode_files": files + ["kqv_out_f16", "k_all", "v_all"],
        }
        print(f"{name}: {n} tokens")
    fc.write_json(OUT / "manifest.json", manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
