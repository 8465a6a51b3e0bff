"""Side-by-side throughput: llama.cpp (through llama-cpp-python) and this project's `bench`
example, on the same GGUF file with the same thread count, in one run.

    python3 scripts/bench_llama_cpp.py --model FILE [--model FILE2 ...] --device flex \
        --threads 2 --prompt-tokens 128 --gen-tokens 64 [--runs 3] [--write BENCHMARKS.md]

For each model it measures, best of --runs:
- llama.cpp: prefill = one llm.eval over --prompt-tokens tokens from an empty cache;
  decode = --gen-tokens single-token llm.eval calls after it (n_threads = --threads,
  n_batch >= the prompt, F32 KV cache as our cache is f32, flash attention off);
- ours: `cargo run --release --example bench -- --json` with the same arguments;
- the memory read bandwidth of this machine (numpy sum over a 1 GiB array, best of 3), so decode
  speed can be stated as a fraction of it (bytes of weights read per token × tok/s / bandwidth).
It prints a Markdown table; with --write it replaces the block between the markers
`<!-- bench:begin -->` and `<!-- bench:end -->` in that file (appending it if absent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def llama_cpp_bench(model: Path, threads: int, n_prompt: int, n_gen: int, runs: int) -> dict:
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(model),
        n_ctx=n_prompt + n_gen + 8,
        n_batch=max(512, n_prompt),
        n_ubatch=max(512, n_prompt),
        n_threads=threads,
        n_threads_batch=threads,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
        flash_attn=False,
        logits_all=False,
        verbose=False,
    )
    n_vocab = llm.n_vocab()
    prompt = [(i * 7919 + 13) % n_vocab for i in range(n_prompt)]
    best_pp = best_tg = 0.0
    for _ in range(runs):
        llm.reset()  # n_tokens = 0: the next eval drops the cached positions
        t = time.perf_counter()
        llm.eval(prompt)
        best_pp = max(best_pp, n_prompt / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(n_gen):
            logits = llm.scores[llm.n_tokens - 1]
            llm.eval([int(np.argmax(logits))])
        best_tg = max(best_tg, n_gen / (time.perf_counter() - t))
    return {"pp_tok_s": best_pp, "tg_tok_s": best_tg}


def ours_bench(model: Path, device: str, threads: int, n_prompt: int, n_gen: int, runs: int, quantized: bool) -> dict:
    cmd = [
        "cargo", "run", "--release", "--quiet", "--example", "bench", "--",
        "--model", str(model), "--device", device, "--threads", str(threads),
        "--prompt-tokens", str(n_prompt), "--gen-tokens", str(n_gen), "--runs", str(runs), "--json",
    ] + (["--quantized"] if quantized else [])
    out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def read_bandwidth_gb_s() -> float:
    a = np.ones(1 << 27, dtype=np.float64)  # 1 GiB
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        a.sum()
        best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, action="append", required=True)
    ap.add_argument("--device", default="flex")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quantized", action="store_true", help="run ours with --quantized (weights in their blocks)")
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()

    import llama_cpp

    bw = read_bandwidth_gb_s()
    rows = []
    for model in args.model:
        size = model.stat().st_size
        ref = llama_cpp_bench(model, args.threads, args.prompt_tokens, args.gen_tokens, args.runs)
        ours = ours_bench(model, args.device, args.threads, args.prompt_tokens, args.gen_tokens, args.runs, args.quantized)
        rows.append(
            f"| {model.name} | {size / 1e6:.0f} MB | {args.device}{' --quantized' if args.quantized else ''} | "
            f"{ours['pp_tok_s']:.1f} | {ref['pp_tok_s']:.1f} | {ours['pp_tok_s'] / ref['pp_tok_s']:.2f}× | "
            f"{ours['tg_tok_s']:.1f} | {ref['tg_tok_s']:.1f} | {ours['tg_tok_s'] / ref['tg_tok_s']:.2f}× | "
            f"{ours['load_s']:.2f} s | {(ours['peak_rss_bytes'] or 0) / 1e6:.0f} MB | "
            f"{size * ref['tg_tok_s'] / 1e9 / bw:.0%} / {size * ours['tg_tok_s'] / 1e9 / bw:.0%} |"
        )
        print(rows[-1], flush=True)

    cmd = " ".join(
        ["python3 scripts/bench_llama_cpp.py"]
        + [f"--model {m}" for m in args.model]
        + [f"--device {args.device} --threads {args.threads} --prompt-tokens {args.prompt_tokens}"
           f" --gen-tokens {args.gen_tokens} --runs {args.runs}" + (" --quantized" if args.quantized else "")]
    )
    block = "\n".join(
        [
            "<!-- bench:begin -->",
            f"Command: `{cmd}`",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} threads; "
            f"memory read bandwidth {bw:.1f} GB/s (numpy sum over 1 GiB, best of 3); "
            f"llama-cpp-python {llama_cpp.__version__}. Best of {args.runs} runs, "
            f"{args.prompt_tokens}-token prompt, then {args.gen_tokens} decoded tokens.",
            "",
            "| model | file | device | prefill tok/s (ours) | prefill tok/s (llama.cpp) | ratio "
            "| decode tok/s (ours) | decode tok/s (llama.cpp) | ratio | load (ours) | peak RSS (ours) "
            "| decode bandwidth, file bytes per token (llama.cpp / ours) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "<!-- bench:end -->",
        ]
    )
    print(block)
    if args.write:
        text = args.write.read_text() if args.write.exists() else ""
        if "<!-- bench:begin -->" in text:
            head, rest = text.split("<!-- bench:begin -->", 1)
            tail = rest.split("<!-- bench:end -->", 1)[1]
            text = head + block + tail
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
        args.write.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
