"""Load test of the `serve` example: many concurrent streaming clients for a while, each greedy
answer checked against the same request's answer alone; then the slots must all be free.

    python3 scripts/load_test.py --model SmolLM2-135M-Instruct.Q4_1.gguf --clients 32 --duration 180

Prints one JSON line: requests, lost (failed), corrupted (answer differs from alone), tokens,
aggregate tokens/s, mean and p90 time to first token, and the server's gauges at the end.
"""
import argparse
import asyncio
import json
import re
import time

try:
    import httpx
except ImportError:  # newer openai packages bring httpx2, its successor
    import httpx2 as httpx

from server_common import PROMPTS, Server, stream_completion


def body(prompt, max_tokens):
    return {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}


async def main(a):
    server = Server("ours", a.model, a.threads, a.parallel, a.ctx_per_slot)
    try:
        async with httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=a.clients + 4)) as client:
            alone = {}
            for p in PROMPTS:
                alone[p] = (await stream_completion(client, server.base, body(p, a.max_tokens)))[0]
            stats = {"requests": 0, "lost": 0, "corrupted": 0, "tokens": 0, "ttft": []}
            deadline = time.time() + a.duration
            errors = []

            async def worker(k):
                i = k
                while time.time() < deadline:
                    p = PROMPTS[i % len(PROMPTS)]
                    i += 1
                    stats["requests"] += 1
                    try:
                        text, n, ttft, _ = await stream_completion(client, server.base, body(p, a.max_tokens))
                    except Exception as e:  # noqa: BLE001 - every failure counts as lost
                        stats["lost"] += 1
                        errors.append(str(e)[:200])
                        continue
                    stats["tokens"] += n
                    stats["ttft"].append(ttft)
                    if text != alone[p]:
                        stats["corrupted"] += 1

            t0 = time.time()
            await asyncio.gather(*(worker(k) for k in range(a.clients)))
            wall = time.time() - t0
            metrics = (await client.get(server.base + "/metrics")).text
        gauge = lambda name: float(re.search(rf"^gguf_llama_{name} (\S+)$", metrics, re.M).group(1))
        ttft = sorted(stats.pop("ttft"))
        out = dict(stats,
                   clients=a.clients, parallel=a.parallel, duration_s=round(wall, 1),
                   tokens_per_s=round(stats["tokens"] / wall, 1),
                   ttft_mean_s=round(sum(ttft) / max(len(ttft), 1), 3),
                   ttft_p90_s=round(ttft[int(0.9 * (len(ttft) - 1))] if ttft else 0.0, 3),
                   active_slots_after=gauge("active_slots"), queue_length_after=gauge("queue_length"),
                   errors=errors[:5])
    finally:
        rc = server.stop()
    out["exit_status"] = rc
    print(json.dumps(out))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=8, help="server slots")
    ap.add_argument("--duration", type=float, default=180)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx-per-slot", type=int, default=512)
    asyncio.run(main(ap.parse_args()))
