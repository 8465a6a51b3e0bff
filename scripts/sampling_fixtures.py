#!/usr/bin/env python3
"""Writes tests/fixtures/sampling/llama_cpp_chains.json: the candidate sets llama.cpp's own
samplers leave, the reference for src/sampling.rs.

For each case, llama.cpp's sampler chain is built as `common_sampler_init` builds it for the
samplers this crate has (common/sampling.cpp, default order): penalties (`llama_sampler_init_penalties`
with frequency and presence penalties 0), top-k, top-p, min-p (min_keep 0, llama.cpp's default),
temperature (`llama_sampler_init_temp_ext` with no dynamic range). The history tokens are fed with
`llama_sampler_accept`, the chain is applied with `llama_sampler_apply` to the logits row (token
ids in order, unsorted, as llama.cpp starts), and the tokens left are recorded with their final
logits (after the temperature). The final draw (`llama_sampler_init_dist`) is not run: its random
stream (mt19937) is not one this crate reproduces. `probs` is the softmax of the final logits
(float64), which is what the draw samples from.

The logits rows come from numpy's PCG64 with fixed seeds and are stored in the file (float32
values written exactly as float64; -inf as null).

Regenerate (from the repository root):
    python3 -m pip install llama-cpp-python==0.3.36 numpy
    python3 scripts/sampling_fixtures.py
"""

from __future__ import annotations

import ctypes
import json
from importlib import metadata
from pathlib import Path

import llama_cpp as L
import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "sampling" / "llama_cpp_chains.json"


def rows() -> dict[str, list[float]]:
    rng = np.random.default_rng(20240601)
    # A peaked row (std 3) over 3000 tokens: top-p past llama.cpp's first 256-token sort.
    peaked = (rng.standard_normal(3000) * 3.0).astype(np.float32)
    # A flatter row over 1500 tokens, with a few -inf entries (masked tokens).
    flat = (rng.standard_normal(1500) * 0.7).astype(np.float32)
    flat[[5, 77, 900]] = -np.inf
    return {"peaked": [float(x) for x in peaked], "flat": [float(x) for x in flat]}


def json_row(row: list[float]) -> list[float | None]:
    """JSON has no infinities: -inf is written as null."""
    return [None if x == -np.inf else x for x in row]


def history(row: list[float], n: int, seed: int) -> list[int]:
    """`n` tokens, half of them among the row's 20 best (so the penalty changes the sets)."""
    rng = np.random.default_rng(seed)
    best = np.argsort(-np.asarray(row, dtype=np.float64), kind="stable")[:20]
    out = []
    for i in range(n):
        out.append(int(rng.choice(best)) if i % 2 == 0 else int(rng.integers(0, len(row))))
    return out


CASES = [
    # name, row, temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, history length
    ("defaults", "peaked", 0.8, 40, 0.95, 0.05, 1.0, 64, 0),
    ("top_p_only_large_set", "peaked", 1.0, 0, 0.9, 0.0, 1.0, 64, 0),
    ("min_p_only", "peaked", 1.5, 0, 1.0, 0.1, 1.0, 64, 0),
    ("penalty_top_k_top_p_min_p", "peaked", 0.7, 100, 0.5, 0.02, 1.3, 16, 40),
    ("boosting_penalty_flat_row", "flat", 2.0, 0, 0.99, 0.0, 0.8, 64, 30),
    ("flat_row_defaults_with_penalty", "flat", 0.8, 40, 0.95, 0.05, 1.1, 64, 100),
]


def run_chain(row, temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, hist):
    params = L.llama_sampler_chain_default_params()
    chain = L.llama_sampler_chain_init(params)
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_penalties(len(row), repeat_last_n, repeat_penalty, 0.0, 0.0))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(top_k))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(top_p, 0))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_min_p(min_p, 0))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp_ext(temperature, 0.0, 1.0))
    for t in hist:
        L.llama_sampler_accept(chain, t)
    data = (L.llama_token_data * len(row))()
    for i, logit in enumerate(row):
        data[i].id = i
        data[i].logit = logit
        data[i].p = 0.0
    arr = L.llama_token_data_array(data=data, size=len(row), selected=-1, sorted=False)
    L.llama_sampler_apply(chain, ctypes.byref(arr))
    kept = [(arr.data[i].id, arr.data[i].logit) for i in range(arr.size)]
    L.llama_sampler_free(chain)
    return kept


def main() -> None:
    all_rows = rows()
    cases = []
    for k, (name, row_name, temperature, top_k, top_p, min_p, rp, last_n, n_hist) in enumerate(CASES):
        row = all_rows[row_name]
        hist = history(row, n_hist, 1000 + k)
        kept = run_chain(row, temperature, top_k, top_p, min_p, rp, last_n, hist)
        ids = [i for i, _ in kept]
        logits = np.asarray([l for _, l in kept], dtype=np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        cases.append(
            {
                "name": name,
                "row": row_name,
                "temperature": temperature,
                "top_k": top_k,
                "top_p": top_p,
                "min_p": min_p,
                "repeat_penalty": rp,
                "repeat_last_n": last_n,
                "history": hist,
                "ids": ids,
                "logits": [float(x) for x in logits],
                "probs": [float(x) for x in probs],
            }
        )
        print(f"{name}: {len(ids)} tokens kept")
    out = {
        "generator": "scripts/sampling_fixtures.py",
        "llama_cpp_python": metadata.version("llama_cpp_python"),
        "rows": {name: json_row(row) for name, row in all_rows.items()},
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
