"""Aggregate decode throughput and time to first token of the `serve` example beside llama.cpp's
llama-server, on the same file, threads and number of slots, at several numbers of concurrent
requests, in one run.

    python3 scripts/bench_server.py --model SmolLM2-135M-Instruct.Q4_1.gguf \
        --llama-server ~/.cache/gguf-llama/llama-src/.../build/bin/llama-server \
        --concurrency 1 4 8 32 --threads 2 --max-tokens 64 --runs 3

For each concurrency C each server is started with C slots; C streamed completions of distinct
prompts are sent at once (greedy, `ignore_eos`, `cache_prompt: false` so no run reuses another's
prompt), `--runs` times. Per run: aggregate tokens/s = all completion tokens / wall time from the
first request sent to the last token, and the mean time to first token; the best run of each is
kept (timings on shared machines are noisy). Prints a markdown table and one JSON line.
"""
import argparse
import asyncio
import json

try:
    import httpx
except ImportError:  # newer openai packages bring httpx2, its successor
    import httpx2 as httpx

from server_common import PROMPTS, Server, stream_completion


async def measure(base, c, max_tokens, runs):
    best = None
    async with httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=c + 4)) as client:
        warm = {"prompt": "Hello", "max_tokens": 4, "temperature": 0}
        await stream_completion(client, base, warm)
        for _ in range(runs):
            bodies = [{"prompt": PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)),
                       "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                       "cache_prompt": False} for i in range(c)]
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            results = await asyncio.gather(*(stream_completion(client, base, b) for b in bodies))
            wall = loop.time() - t0
            tokens = sum(r[1] for r in results)
            run = {"tok_s": tokens / wall, "ttft_s": sum(r[2] for r in results) / c, "tokens": tokens}
            if best is None or run["tok_s"] > best["tok_s"]:
                best = run
    return best


def main(a):
    rows = []
    for c in a.concurrency:
        row = {"concurrency": c}
        for kind, binary in [("ours", a.serve), ("llama", a.llama_server)]:
            if kind == "llama" and not binary:
                continue
            server = Server(kind, a.model, a.threads, c, a.ctx_per_slot, binary=binary)
            try:
                row[kind] = asyncio.run(measure(server.base, c, a.max_tokens, a.runs))
            finally:
                server.stop()
        rows.append(row)
    print("| concurrent | ours tok/s | llama-server tok/s | ratio | ours TTFT s | llama-server TTFT s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        o, l = r["ours"], r.get("llama")
        print(f"| {r['concurrency']} | {o['tok_s']:.1f} | {l['tok_s']:.1f} | {o['tok_s'] / l['tok_s']:.2f}x "
              f"| {o['ttft_s']:.3f} | {l['ttft_s']:.3f} |" if l else
              f"| {r['concurrency']} | {o['tok_s']:.1f} | - | - | {o['ttft_s']:.3f} | - |")
    print(json.dumps(rows))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--serve", default=None, help="our serve binary (default: the release build's)")
    ap.add_argument("--llama-server", default=None)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 32])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ctx-per-slot", type=int, default=512)
    main(ap.parse_args())
