"""Side-by-side throughput: llama.cpp (through llama-cpp-python) and this project's `bench`
example, on the same GGUF files with the same thread count, in one run.

    python3 scripts/bench_llama_cpp.py --model FILE [--model FILE2 ...] --device flex \
        --threads 2 --prompt-tokens 128 --gen-tokens 64 [--runs 3] [--weights quantized|f32] [--write BENCHMARKS.md]
    python3 scripts/bench_llama_cpp.py --models FILE1 FILE2 ... [same options]
    python3 scripts/bench_llama_cpp.py --suite issue4 [--dir DIR] [--write BENCHMARKS.md]

`--suite issue4` means the four files scripts/make_bench_models.py writes into --dir (default
~/.cache/gguf-llama/models/bench): tinyllama-shape-{Q4_K_M,Q4_0,Q8_0}.gguf and
SmolLM2-135M-Instruct.Q8_0.gguf, and the marker pair
`<!-- bench-issue4:begin -->`/`<!-- bench-issue4:end -->`. `--llama-only` / `--ours-only` run one
side (the other's columns read "-").

For each model it measures, best of --runs:
- llama.cpp: after one untimed single-token eval (warm-up), prefill = one llm.eval over
  --prompt-tokens tokens from an empty cache;
  decode = --gen-tokens single-token llm.eval calls after it, fed back greedily (n_threads =
  --threads, n_batch >= the prompt, KV cache of --cache-type: f16 by default, llama.cpp's
  default, as its users run it; flash attention off, llama-cpp-python's default);
- ours: `cargo run --release --example bench -- --json` with the same arguments, the same
  cache type (`--cache-type-k/-v`) and `--weights`
  (default quantized: the weights stay in their GGUF blocks; `--quantized` is the older
  spelling, and is what is passed to a bench example that predates `--weights`).
Before and after the runs it measures this machine's memory-read bandwidth with 2 threads
(`--bandwidth rust`, the default: `cargo run --release -p gguf-kernels --example cpu_matmul_bench
-- --bandwidth-only` run 3 times, a parallel sum over 256 MiB slices of 1 GiB arrays; `numpy`:
a single-threaded numpy sum over 1 GiB, best of 3; or a number in GB/s); the higher of the two
counts. Decode speed is then stated as weight bytes read per second and as a fraction of that
bandwidth. Weight bytes read per
token = the tensor data of the file (gguf-py's GGUFReader), less token_embd.weight when the file
has its own output.weight (then the embedding lookup reads one row per token, not the matrix);
KV-cache reads (a few MB at these lengths) are not counted.

It prints a Markdown table; with --write it replaces the block between the markers
`<!-- MARKER:begin -->` and `<!-- MARKER:end -->` in that file (appending it if absent); MARKER
is --marker, by default `bench` (`bench-issue4` with --suite issue4).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path.home() / ".cache" / "gguf-llama" / "models" / "bench"
# Suite name -> file names under --dir (the files make_bench_models.py writes).
SUITES = {
    "issue4": [
        "tinyllama-shape-Q4_K_M.gguf",
        "tinyllama-shape-Q4_0.gguf",
        "tinyllama-shape-Q8_0.gguf",
        "SmolLM2-135M-Instruct.Q8_0.gguf",
    ],
}



def cargo_env() -> dict:
    """The environment for cargo: the project's shared target directory (as .ci/run uses) unless
    CARGO_TARGET_DIR is set, so that running this script does not build Burn a second time."""
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache/gguf-llama/target"))
    return env

def llama_cpp_bench(model: Path, threads: int, n_prompt: int, n_gen: int, runs: int, cache_type: str) -> dict:
    import llama_cpp

    kv = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}[cache_type]
    t = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=str(model),
        n_ctx=n_prompt + n_gen + 8,
        n_batch=max(512, n_prompt),
        n_ubatch=max(512, n_prompt),
        n_threads=threads,
        n_threads_batch=threads,
        type_k=kv,
        type_v=kv,
        flash_attn=False,
        logits_all=False,
        n_gpu_layers=0,
        verbose=False,
    )
    load_s = time.perf_counter() - t
    n_vocab = llm.n_vocab()
    prompt = [(i * 7919 + 13) % n_vocab for i in range(n_prompt)]
    llm.eval(prompt[:1])  # untimed warm-up: touches every weight page and starts the threads
    best_pp = best_tg = 0.0
    for _ in range(runs):
        llm.reset()  # n_tokens = 0: the next eval drops the cached positions
        t = time.perf_counter()
        llm.eval(prompt)
        best_pp = max(best_pp, n_prompt / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(n_gen):
            # the last position's logits (llm.scores is only filled with logits_all, which would
            # make llama.cpp's prefill compute the output matrix for every prompt position)
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
            llm.eval([int(np.argmax(logits))])
        best_tg = max(best_tg, n_gen / (time.perf_counter() - t))
    llm.close()
    del llm
    gc.collect()
    return {"pp_tok_s": best_pp, "tg_tok_s": best_tg, "load_s": load_s}


def weights_args(weights: str) -> list[str]:
    """Our bench example's flag for the weight path: `--weights quantized|f32`, or, in versions
    before that flag, `--quantized` (f32 being their default)."""
    cmd = ["cargo", "run", "--release", "--quiet", "--example", "bench", "--", "--help"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=cargo_env())
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    if "--weights" in proc.stdout:
        return ["--weights", weights]
    if "--quantized" in proc.stdout:
        return ["--quantized"] if weights == "quantized" else []
    raise SystemExit("the bench example has neither --weights nor --quantized:\n" + proc.stdout)


def ours_bench(
    model: Path, device: str, threads: int, n_prompt: int, n_gen: int, runs: int, weights: list[str], cache_type: str
) -> dict:
    cmd = [
        "cargo", "run", "--release", "--quiet", "--example", "bench", "--",
        "--model", str(model), "--device", device, "--threads", str(threads),
        "--prompt-tokens", str(n_prompt), "--gen-tokens", str(n_gen), "--runs", str(runs), "--json",
        "--cache-type-k", cache_type, "--cache-type-v", cache_type,
        *weights,
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=cargo_env())
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"{' '.join(cmd)} printed nothing on stdout:\n{proc.stderr[-4000:]}")
    out = json.loads(lines[-1])
    for key in ("pp_tok_s", "tg_tok_s", "load_s", "peak_rss_bytes"):
        if key not in out:
            raise SystemExit(f"bench --json output has no {key!r}: {lines[-1]}")
    return out


def rust_bandwidth_gb_s(processes: int = 3) -> float:
    """Memory-read bandwidth with 2 threads, measured by the kernels' bench example: the best of
    `processes` runs (on the shared VMs a run lands in one of two modes, ~34 or ~55 GB/s)."""
    cmd = [
        "cargo", "run", "--release", "--quiet", "-p", "gguf-kernels", "--example", "cpu_matmul_bench",
        "--", "--bandwidth-only",
    ]
    best = 0.0
    for _ in range(processes):
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=cargo_env())
        m = re.search(r"^memory_read_gb_s ([0-9.]+)$", proc.stdout, re.M)
        if proc.returncode != 0 or m is None:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}")
        best = max(best, float(m.group(1)))
    return best


def numpy_bandwidth_gb_s() -> float:
    a = np.ones(1 << 27, dtype=np.float64)  # 1 GiB
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        a.sum()
        best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def measure_bandwidth(how: str, threads: int) -> tuple[float, str]:
    """(GB/s, how it was measured)."""
    if how == "rust":
        if threads != 2:
            print(f"note: the Rust bandwidth measurement uses 2 threads, not {threads}", file=sys.stderr)
        return rust_bandwidth_gb_s(), (
            "parallel sum with 2 threads over 256 MiB slices of a 1 GiB array, best of 20 slices "
            "× 3 arrays × 3 processes: "
            "`cargo run --release -p gguf-kernels --example cpu_matmul_bench -- --bandwidth-only`"
        )
    if how == "numpy":
        return numpy_bandwidth_gb_s(), "numpy sum over 1 GiB, one thread, best of 3"
    try:
        return float(how), "given on the command line"
    except ValueError:
        raise SystemExit(f"--bandwidth {how!r}: expected rust, numpy or a number of GB/s") from None


def weight_bytes_per_token(model: Path) -> tuple[int, int]:
    """(tensor bytes of the file, weight bytes a decode step reads), from gguf-py's reader."""
    import gguf

    reader = gguf.GGUFReader(str(model))
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    total = sum(sizes.values())
    read = total
    if "output.weight" in sizes and "token_embd.weight" in sizes:
        read -= sizes["token_embd.weight"]  # only one embedding row per token is read
    return total, read


def kv_cache_bytes(model: Path, positions: int, elem_bytes: int) -> int:
    """Bytes of a KV cache of `positions` positions for the file's model (what `bench`
    allocates: per layer n_head_kv x (key_length + value_length) x positions x `elem_bytes`)."""
    import gguf

    reader = gguf.GGUFReader(str(model))

    def value(key: str):
        field = reader.get_field(key)
        return None if field is None else field.contents()

    arch = value("general.architecture")
    n_layer = int(value(f"{arch}.block_count"))
    n_embd = int(value(f"{arch}.embedding_length"))
    n_head = int(value(f"{arch}.attention.head_count"))
    kv = value(f"{arch}.attention.head_count_kv")
    kv_heads = [int(x) for x in kv] if isinstance(kv, list) else [int(kv if kv is not None else n_head)] * n_layer
    dk = int(value(f"{arch}.attention.key_length") or n_embd // n_head)
    dv = int(value(f"{arch}.attention.value_length") or n_embd // n_head)
    return sum(h * (dk + dv) * positions * elem_bytes for h in kv_heads)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}×"


def table_row(
    model: Path, label: str, ref: dict | None, ours: dict | None, bw: float, positions: int, cache_type: str
) -> str:
    size = model.stat().st_size
    # Issue 4's memory bound: file + KV cache + 15%.
    bound = (size + kv_cache_bytes(model, positions, {"f16": 2, "f32": 4}[cache_type])) * 1.15
    _, read = weight_bytes_per_token(model)
    r = ref or {}
    o = ours or {}
    gbs_ref = read * r["tg_tok_s"] / 1e9 if ref else None
    gbs_ours = read * o["tg_tok_s"] / 1e9 if ours else None
    rss = o.get("peak_rss_bytes")
    return (
        f"| {model.name} | {size / 1e6:.0f} MB | {read / 1e6:.0f} MB | {label} | "
        f"{fmt(o.get('pp_tok_s'), '.1f')} | {fmt(r.get('pp_tok_s'), '.1f')} | "
        f"{ratio(o.get('pp_tok_s'), r.get('pp_tok_s'))} | "
        f"{fmt(o.get('tg_tok_s'), '.1f')} | {fmt(r.get('tg_tok_s'), '.1f')} | "
        f"{ratio(o.get('tg_tok_s'), r.get('tg_tok_s'))} | "
        f"{fmt(o.get('load_s'), '.2f', ' s')} | {fmt(rss / 1e6 if rss else None, '.0f', ' MB')} "
        f"({bound / 1e6:.0f} MB) | "
        f"{fmt(gbs_ref, '.1f')} / {fmt(gbs_ours, '.1f')} | "
        f"{fmt(gbs_ref / bw if gbs_ref is not None else None, '.0%')} / "
        f"{fmt(gbs_ours / bw if gbs_ours is not None else None, '.0%')} |"
    )


HEADER = [
    "| model | file | weights read per token | device (ours) | prefill tok/s (ours) | prefill tok/s (llama.cpp) "
    "| ratio | decode tok/s (ours) | decode tok/s (llama.cpp) | ratio | load (ours) "
    "| peak RSS (ours; bound: file + KV cache + 15%) "
    "| decode GB/s of weights (llama.cpp / ours) | decode share of read bandwidth (llama.cpp / ours) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, action="append", default=[], help="a GGUF file (repeatable)")
    ap.add_argument("--models", type=Path, nargs="+", default=[], help="several GGUF files")
    ap.add_argument("--suite", choices=sorted(SUITES), help="a named list of files under --dir")
    ap.add_argument("--dir", type=Path, default=BENCH_DIR, help="where the --suite files are")
    ap.add_argument("--device", default="flex")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--weights", choices=["quantized", "f32"], default="quantized",
        help="our weight path (bench --weights): in their GGUF blocks (default) or dequantized to f32",
    )
    ap.add_argument("--quantized", dest="weights", action="store_const", const="quantized",
                    help="the same as --weights quantized (older command lines)")
    side = ap.add_mutually_exclusive_group()
    side.add_argument("--llama-only", action="store_true", help="run llama.cpp only")
    side.add_argument("--ours-only", action="store_true", help="run our bench example only")
    ap.add_argument("--bandwidth", default="rust", help="rust (default), numpy, or a value in GB/s")
    ap.add_argument("--cache-type", default="f16", choices=["f16", "f32"],
                    help="KV cache type of both sides (f16: llama.cpp's default)")
    ap.add_argument("--marker", help="marker name in --write's file (default: bench, or bench-<suite>)")
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()

    models = list(args.model) + list(args.models)
    if args.suite:
        models += [args.dir / name for name in SUITES[args.suite]]
    if not models:
        ap.error("give --model, --models or --suite")
    for m in models:
        if not m.is_file():
            hint = " (scripts/make_bench_models.py writes the suite's files)" if args.suite else ""
            raise SystemExit(f"{m}: no such file{hint}")
    marker = args.marker or (f"bench-{args.suite}" if args.suite else "bench")

    import llama_cpp

    load_before = os.getloadavg()[0]
    label = "-" if args.llama_only else f"{args.device}, {args.weights} weights"
    ours_weights = [] if args.llama_only else weights_args(args.weights)  # builds the example first
    # Bandwidth before and after the runs; the higher counts (a short measurement on a shared
    # machine is easily disturbed).
    bw_before, bw_how = measure_bandwidth(args.bandwidth, args.threads)
    print(f"memory read bandwidth: {bw_before:.1f} GB/s ({bw_how})", flush=True)
    results = []
    for model in models:
        ref = None if args.ours_only else llama_cpp_bench(
            model, args.threads, args.prompt_tokens, args.gen_tokens, args.runs, args.cache_type
        )
        ours = None if args.llama_only else ours_bench(
            model, args.device, args.threads, args.prompt_tokens, args.gen_tokens, args.runs, ours_weights,
            args.cache_type,
        )
        results.append((model, ref, ours))
        positions = args.prompt_tokens + args.gen_tokens
        print(table_row(model, label, ref, ours, bw_before, positions, args.cache_type), flush=True)
    bw_after, _ = measure_bandwidth(args.bandwidth, args.threads)
    bw = max(bw_before, bw_after)
    print(f"memory read bandwidth after the runs: {bw_after:.1f} GB/s", flush=True)
    positions = args.prompt_tokens + args.gen_tokens
    rows = [table_row(model, label, ref, ours, bw, positions, args.cache_type) for model, ref, ours in results]

    opts = (
        f"--device {args.device} --threads {args.threads} --prompt-tokens {args.prompt_tokens}"
        f" --gen-tokens {args.gen_tokens} --runs {args.runs}"
        + f" --weights {args.weights}"
        + (f" --cache-type {args.cache_type}" if args.cache_type != "f16" else "")
        + (" --llama-only" if args.llama_only else "")
        + (" --ours-only" if args.ours_only else "")
        + (f" --bandwidth {args.bandwidth}" if args.bandwidth != "rust" else "")
    )
    what = (
        [f"--suite {args.suite}"] + ([f"--dir {args.dir}"] if args.dir != BENCH_DIR else [])
        if args.suite
        else [f"--model {m}" for m in models]
    )
    cmd = " ".join(["python3 scripts/bench_llama_cpp.py", *what, opts])
    block = "\n".join(
        [
            f"<!-- {marker}:begin -->",
            f"Command: `{cmd}`",
            "",
            f"Machine: {cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, {args.threads} threads, "
            f"load average {load_before:.1f} before the runs; memory read bandwidth {bw:.1f} GB/s "
            f"(the higher of {bw_before:.1f} before and {bw_after:.1f} after the runs; {bw_how}); llama-cpp-python {llama_cpp.__version__}. Best of {args.runs} runs, "
            f"{args.prompt_tokens}-token prompt, then {args.gen_tokens} decoded tokens; KV cache "
            f"{args.cache_type} on both sides, flash attention off.",
            "",
            *HEADER,
            *rows,
            f"<!-- {marker}:end -->",
        ]
    )
    print(block)
    if args.write:
        begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
        text = args.write.read_text() if args.write.exists() else ""
        if begin in text and end in text.split(begin, 1)[1]:
            head, rest = text.split(begin, 1)
            tail = rest.split(end, 1)[1]
            text = head + block + tail
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
