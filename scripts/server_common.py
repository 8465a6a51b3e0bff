"""What the server scripts share: starting our `serve` example or llama.cpp's llama-server on a
free port, and one streamed completion with its timings (httpx, which OpenAI's client brings)."""
import json
import os
import socket
import subprocess
import time

try:
    import httpx
except ImportError:  # newer openai packages bring httpx2, its successor
    import httpx2 as httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/gguf-llama/target"))
SERVE = os.path.join(TARGET, "release", "examples", "serve")

PROMPTS = [
    "The capital of France is",
    "Write a haiku about the sea.",
    "List three colors and explain why you like them:",
    "What is 2 + 2? Explain step by step.",
    "Once upon a time, in a small village by the mountains,",
    "def fibonacci(n):",
    "The best way to learn a new language is",
    "Translate to French: good morning, how are you?",
    "Explain photosynthesis to a child.",
    "Give me a recipe for pancakes.",
    "Why is the sky blue?",
    "Write a short poem about autumn leaves.",
    "What are the planets of the solar system?",
    "Describe a cat in three sentences.",
    "How does a bicycle work?",
    "Tell me a joke about programmers.",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on 127.0.0.1; `kind` is `ours` or `llama`."""

    def __init__(self, kind, model, threads, parallel, ctx_per_slot, binary=None, extra=()):
        self.kind = kind
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        if kind == "ours":
            cmd = [binary or SERVE, "--model", model, "--threads", str(threads),
                   "--parallel", str(parallel), "--ctx", str(ctx_per_slot * parallel),
                   "--port", str(self.port), "--queue", "1024"]
        else:
            cmd = [binary, "-m", model, "-t", str(threads), "-tb", str(threads),
                   "-np", str(parallel), "-c", str(ctx_per_slot * parallel),
                   "--port", str(self.port), "--no-webui"]
        self.proc = subprocess.Popen(list(cmd) + list(extra), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {self.proc.returncode}")
            time.sleep(0.2)
        raise RuntimeError(f"{cmd[0]} did not become healthy")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.proc.returncode


async def stream_completion(client, base, body):
    """One streamed /v1/completions request: (text, completion tokens, ttft_s, total_s)."""
    body = dict(body, stream=True, stream_options={"include_usage": True})
    t0 = time.perf_counter()
    ttft, text, tokens, chunks = None, [], None, 0
    async with client.stream("POST", base + "/v1/completions", json=body, timeout=None) as r:
        if r.status_code != 200:
            raise RuntimeError(f"status {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if data == "[DONE]":
                break
            c = json.loads(data)
            if "error" in c:
                raise RuntimeError(f"error event: {c['error']}")
            if c.get("usage"):
                tokens = c["usage"]["completion_tokens"]
            for choice in c.get("choices", []):
                if choice.get("text"):
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    text.append(choice["text"])
                    chunks += 1
    return "".join(text), tokens if tokens is not None else chunks, ttft, time.perf_counter() - t0
