"""Writes llama.cpp's reference for the qwen2, qwen3, phi3 and gemma3 architectures (and qwen2 with
YaRN rope scaling): tests/fixtures/families/families.json and tests/fixtures/families/{key}-p{i}.npy.

The test models (written into $GGUF_LLAMA_FAMILIES, default ~/.cache/gguf-llama/models/families/;
never committed):

- `smollm2-as-qwen2.gguf`, `smollm2-as-qwen3.gguf`: SmolLM2-135M-Instruct Q4_1 (the Llama file
  .ci/run fetches, `fixture_common.SMOLLM2_MODEL`; 30 layers, n_embd 576, 9 heads / 3 KV heads of
  64, tied embeddings) rewritten by gguf-py's `GGUFWriter` as another architecture:
  * metadata: `general.architecture` = "qwen2" / "qwen3", every `llama.*` key renamed `qwen2.*` /
    `qwen3.*` (same value, same place), every other key kept in place with its value, except
    `tokenizer.chat_template`, which becomes the bytes of
    tests/fixtures/families/Qwen-Qwen2.5-7B-Instruct.jinja (qwen2) or Qwen-Qwen3-0.6B.jinja (qwen3),
    copies of llama.cpp's models/templates/ files (the Qwen3 one renders with llama-cpp-python's
    Jinja2ChatFormatter, so it is used as is);
  * tensors: the source's tensors in the source's order, data copied as raw bytes, except
    `blk.{i}.attn_q.weight` and `blk.{i}.attn_k.weight`, whose rows are un-permuted: llama.cpp's
    converter (convert_hf_to_gguf.py, `LlamaModel.permute`:
    `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(w.shape)`, n_head = 9
    for q, n_head_kv = 3 for k) interleaved the two halves of each head for llama's adjacent-pair
    RoPE; qwen2/qwen3 rotate halves (NEOX), so row h*64 + j*32 + r of the new tensor is row
    h*64 + 2*r + j of the source (j in {0, 1}, r < 32), moved as whole quantized rows;
  * new F32 tensors, each right after the weight it belongs to (qwen2: `blk.{i}.attn_q.bias` [576]
    after attn_q.weight, `attn_k.bias` [192] after attn_k.weight, `attn_v.bias` [192] after
    attn_v.weight; qwen3: `blk.{i}.attn_q_norm.weight` [64] after attn_q.weight,
    `attn_k_norm.weight` [64] after attn_k.weight), with the values
        det(n, s, scale)[i] = f32( scale * (((i * 7919 + s * 104729) % 2001) - 1000) / 1000.0 )
    (integer arithmetic inside, then f64 left to right, rounded once to f32), biases = det(., s, 0.05),
    norms = f32(1.0 + scale * (...) / 1000.0) with scale 0.1 (the sum in f64, rounded once), and the
    seed s = 1000 * layer + k, k = 1 attn_q.bias, 2 attn_k.bias, 3 attn_v.bias, 4 attn_q_norm,
    5 attn_k_norm. tests/common/families.rs writes the same files with gguf_importer's GgufWriter;
    importer/tests/family_files.rs checks them against the digests recorded here.
- `smollm2-as-qwen2-yarn.gguf`: the qwen2 file (same tensors, same bytes; `write_smollm2_as`'s
  family "qwen2-yarn") with three keys, written where convert_hf_to_gguf.py writes a yarn
  `rope_scaling` (TextModel.set_gguf_parameters: after `qwen2.attention.head_count_kv`, before
  `qwen2.rope.freq_base`), in its order and with gguf-py's writer methods:
  `qwen2.rope.scaling.type` = "yarn" (string), `qwen2.rope.scaling.factor` = 4.0 (f32),
  `qwen2.rope.scaling.original_context_length` = 2048 (u32) (2048 * 4 = SmolLM2's 8192). llama.cpp
  (llama_model::load_hparams, llama_context) then takes freq_scale = 1/4, n_ctx_orig_yarn = 2048,
  ext_factor 1 (yarn), beta_fast 32 / beta_slow 1 (hparams defaults: qwen2 reads no yarn beta or
  ext/attn-factor keys), attn_factor = get_mscale(4) / (1 + 0.1 ln 4) * rope_attn_factor (1) = 1,
  and ggml's rope multiplies cos/sin by attn_factor * (1 + 0.1 ln 4) for every dimension and mixes
  interpolated (theta / 4) and extrapolated angles between ggml_rope_yarn_corr_dims (6, 17).
- `smollm2-as-phi3.gguf`: the same source as llama.cpp's `phi3` reads it (src/models/phi3.cpp;
  keys and tensors as convert_hf_to_gguf.py's Phi3MiniModel writes them, conversion/phi.py):
  * metadata: `general.architecture` = "phi3", `llama.*` renamed `phi3.*`, chat template
    tests/fixtures/families/microsoft-Phi-3.5-mini-instruct.jinja (llama.cpp's copy); two new keys
    as the converter writes them: `phi3.rope.scaling.original_context_length` (u32 256) right after
    `phi3.context_length` (8192), and `phi3.rope.scaling.attn_factor` (f32) last, the converter's
    LongRoPE value sqrt(1 + ln(8192 / 256) / ln(256)) = sqrt(1.625) (ROPE_ATTN_FACTOR). No
    `phi3.rope.scaling.type`: the converter writes none (llama.cpp then assumes "linear" with
    factor 1, freq_scale 1), and phi3's graph uses the factors whatever the type;
  * tensors: first `rope_factors_long.weight` and `rope_factors_short.weight` (F32 [32] = n_rot/2;
    the converter yields them before the model's tensors), f32(1 + det(32, s, 0.5)) with s = 6
    (long) and f32(1 + det(32, s, 0.1)) with s = 7 (short) (no layer: s = k); then the source's
    tensors in its order with, per block, `attn_qkv.weight` in the place of attn_q.weight: the rows
    of attn_q (un-permuted, n_head 9), of attn_k (un-permuted, 3), of attn_v, one Q4_1 tensor
    ggml [576, 960], and `ffn_up.weight` in the place of ffn_up.weight: the rows of ffn_gate, then
    of ffn_up, ggml [576, 3072] (llama.cpp's phi3 FFN is ggml_swiglu of that row: silu(first
    half) * second half); no attn_q/attn_k/attn_v/ffn_gate. Rows are whole Q4_1 blocks, so the
    fused tensors are row bytes concatenated.
- `gemma3-270m-swa16.gguf`: the Gemma 3 270M file (gemma-3-270m-q4_k_m.gguf, $GEMMA3_GGUF or
  ~/.cache/gguf-llama/models/gemma/, sha256 a5fd3b62...6818) with `gemma3.attention.sliding_window`
  changed from 512 to 16 in place (gguf-py's GGUFReader in "r+" mode, as gguf_set_metadata.py does;
  every other byte is the original's), so that llama.cpp's sliding-window layers (5 of every 6)
  mask keys inside prompts of 20-60 tokens.

The reference follows scripts/make_default_kv_fixtures.py (its functions are imported): llama.cpp
(llama-cpp-python's `Llama`) opened with its defaults (F16 KV cache, flash attention off,
n_ctx 512, 2 threads, n_batch = n_ubatch = 512, logits of the last position only); greedy decoding
is the argmax of the last logits after each `llm.eval`, one token at a time. Per prompt: prompt
tokens (`llm.tokenize(text, add_bos=True, special=True)`), 48 greedy tokens (chat prompts stop at
the end of generation), the generated text, the top-1/top-2 gap of every step, and the last prompt
position's logits as float32 [n_vocab] in `{key}-p{i}.npy`.

Models (keys of families.json "models"):
- `smollm2-as-qwen2`, `smollm2-as-qwen3`: the 9 raw prompts of make_default_kv_fixtures (SMOL_RAW)
  and 3 of its chat prompts, rendered with the file's template by make_llama_fixtures.render_chat
  (the `jinja` rendering: llama-cpp-python's Jinja2ChatFormatter).
- `smollm2-as-qwen2-yarn`: the yarn file, as `smollm2-as-qwen2` (same prompts, same defaults,
  n_ctx 512; asserted: same prompt tokens and tensor digest as that record, which must exist), plus
  `llama_cpp_rope_log` (as phi3's), `llama_cpp_rope_op` (rope_op_params: the values llama.cpp's
  graph hands ggml_rope_ext, read from the 60 GGML_OP_ROPE nodes of one decode through an eval
  callback in a second context: n_dims, mode, n_ctx_orig, freq_base, freq_scale, ext_factor,
  attn_factor, beta_fast, beta_slow, their f32 bits, and ggml_rope_yarn_corr_dims for them),
  `rope_scaling` (the keys, where they are, and ggml-cpu's rope magnitude attn_factor *
  (1 + 0.1 logf(1 / freq_scale)) in f32) and `max_abs_logit_diff_vs_smollm2_as_qwen2` (per prompt,
  the largest |difference| of the last prompt logits from the plain record's; all must be > 0).
- `smollm2-as-phi3-long`, `smollm2-as-phi3-short`: the same phi3 file at two context sizes.
  llama.cpp uses rope_factors_long when the context (n_ctx_seq) exceeds
  original_context_length (256), else rope_factors_short (llama_model::get_rope_factors): -long
  opens it with n_ctx 512 (the 9 raw and 3 chat prompts, as the qwen files; the Phi-3.5 markers
  <|user|>, <|end|>, <|assistant|> are not tokens of SmolLM2's vocabulary and tokenize as text),
  -short with n_ctx 256 (the first 4 raw prompts; prompt + 48 < 256). Each also records
  `llama_cpp_rope_log` (llama.cpp's log lines about the rope settings it resolved) and the
  file's `rope_attn_factor`, `rope_factor_scales`, `original_context_length`.
- `gemma3-270m`: the real file; 8 raw and 3 chat prompts. The file has no tokenizer.chat_template,
  so llama.cpp's chat (common/chat.cpp) falls back to ChatML (CHATML_TEMPLATE_SRC); the chat prompts
  are rendered with that template (the copy src/chat.rs embeds as CHATML_TEMPLATE) through the same
  Jinja2ChatFormatter. Gemma's BOS comes from tokenize (add_bos=True).
- `gemma3-270m-swa16`: the swa16 file; 4 raw prompts of 20-60 tokens.
- `smollm2-as-qwen2-f32`, `smollm2-as-qwen3-f32`, `smollm2-as-phi3-long-f32`, `gemma3-270m-f32`:
  the reference for a forward pass in f32 on the quantized weights (no 8-bit rounding of the
  activations, which llama.cpp's CPU backend does for quantized matmuls): llama.cpp on the F32
  twin of the record's file (`smollm2-as-qwen2.gguf`, `smollm2-as-qwen3.gguf`,
  `smollm2-as-phi3.gguf`, the real Gemma file), written beside it as `{stem}-dequant-f32.gguf`
  (never committed; Gemma's is about 1.1 GB) by fixture_common.write_dequantized_f32 (every tensor
  through gguf-py's `gguf.quants.dequantize`, all metadata copied, general.file_type ALL_F32),
  opened with an F32 KV cache, flash attention off, the quantized record's n_ctx (512; for phi3
  that is what selects the long rope factors), 2 threads, logits of the last position only. The
  quantized record's first 3 raw prompts (same texts; the prompt tokens are asserted equal) with
  16 greedy tokens each. Fields: `settings` (type_k/type_v F32), `n_gen`, `n_ctx`, `prompts`
  (`prompt_tokens`, `greedy_tokens`, `generated_text`, `top2_gaps`; no .npy),
  `quantized_record`, `twin_file`, `twin_tensor_data_sha256` (make_default_kv_fixtures'
  `tensor_data_sha256` of the twin), `source`; the phi3 one also `llama_cpp_rope_log`. The
  source file's tensor_data_sha256 must equal the quantized record's (so run the quantized key
  first; a full run does).

Besides the fields of default-kv.json (`settings`, `n_gen`, `prompts`), each model records `file`,
`file_bytes`, `file_sha256` (of the whole file), `tensor_data_sha256` (make_default_kv_fixtures'
`tensor_data_sha256`: name, type id u32 LE, each ggml ne u64 LE, bytes; tensors in name order),
`metadata_sha256` (sha256 of the key/value section exactly as GGUF v3 stores it: for each key in
file order u64 length, key bytes, u32 value type, value; arrays u32 item type, u64 count, items),
`metadata_keys` (in file order), `n_ctx` (as llama.cpp resolved it), `swa_full` (llama.cpp's
default, true: the sliding-window layers get a full-size cache and the window is a mask), `source`;
the swa16 model also `sliding_window`, `swa_layers` (the layers llama.cpp marks is_swa) and
`llama_cpp_kv_log` (llama.cpp's log lines about the window and its KV caches).

    python3 scripts/make_family_fixtures.py [--only smollm2-as-qwen2|smollm2-as-qwen3|
                                             smollm2-as-qwen2-yarn|smollm2-as-phi3|gemma3-270m|
                                             gemma3-270m-swa16|smollm2-as-qwen2-f32|smollm2-as-qwen3-f32|
                                             smollm2-as-phi3-long-f32|gemma3-270m-f32]

(`--only smollm2-as-phi3` writes both phi3 records; `--only KEY-f32` only that F32 record, from
the file its quantized record describes. Every other record is read back and written unchanged.)

Needs llama-cpp-python 0.3.36 (llama.cpp 0c1e57098), gguf, numpy, jinja2, the SmolLM2 file and the
Gemma 3 270M file. Takes about 7.5 minutes on 2 idle cores (writing the files, 11 runs of llama.cpp;
the two phi3 records about 2.5 minutes, the yarn record about 20 s, the four F32 records about 3.5:
35-40 s each for the SmolLM2 twins, 100 s for Gemma's).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import fixture_common as fc  # noqa: E402
from make_default_kv_fixtures import (  # noqa: E402
    SMOL_CHAT,
    SMOL_N_GEN,
    SMOL_RAW,
    greedy,
    open_default,
    resolved_settings,
    tensor_data_sha256,
)
from make_llama_fixtures import is_eog, render_chat, text_of  # noqa: E402

OUT_DIR = fc.FIXTURES / "families"
OUT = OUT_DIR / "families.json"
MODELS_DIR = Path(
    os.environ.get("GGUF_LLAMA_FAMILIES", Path.home() / ".cache" / "gguf-llama" / "models" / "families")
)
GEMMA3_MODEL = Path(
    os.environ.get(
        "GEMMA3_GGUF", Path.home() / ".cache" / "gguf-llama" / "models" / "gemma" / "gemma-3-270m-q4_k_m.gguf"
    )
)
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
# llama.cpp's source tree (the commit llama-cpp-python 0.3.36 vendors), for the template files.
LLAMA_CPP_SRC = Path(os.environ.get("LLAMA_CPP_SRC", "/tmp/llama.cpp"))
TEMPLATES = {
    "qwen2": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "qwen3": "Qwen-Qwen3-0.6B.jinja",
    "phi3": "microsoft-Phi-3.5-mini-instruct.jinja",
}
N_GEN = 48
SWA = 16

# llama.cpp's ChatML fallback (common/chat.cpp CHATML_TEMPLATE_SRC) as src/chat.rs embeds it
# (CHATML_TEMPLATE); both render `<|im_start|>{role}\n{content}<|im_end|>\n` per message and
# `<|im_start|>assistant\n` for the generation prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Chat prompts of make_default_kv_fixtures used for the qwen files.
FAMILY_CHAT = [SMOL_CHAT[0], SMOL_CHAT[1], SMOL_CHAT[5]]
GEMMA_RAW = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time",
    "La capitale de l'Italie est",
    "1, 2, 3, 5, 8, 13,",
    "import numpy as np\n\ndef mean(xs):",
    "The meaning of life is",
    "Here is a short poem about the moon:",
]
GEMMA_CHAT = [SMOL_CHAT[0], SMOL_CHAT[1], SMOL_CHAT[3]]
# 20-60 tokens each (Gemma's tokenizer, BOS included), so the window of 16 cuts into the prompt.
SWA_PROMPTS = [
    "The old lighthouse stood at the edge of the cliff, its white paint peeling in long strips. "
    "Every night for a hundred years its lamp had turned, and every night",
    "To make bread, mix four cups of flour with a spoonful of salt and a packet of yeast. Add warm "
    "water slowly, knead the dough for ten minutes, then",
    "In 1969, three astronauts flew to the Moon aboard Apollo 11. Neil Armstrong and Buzz Aldrin "
    "walked on the surface while Michael Collins",
    "def merge_sort(xs):\n    if len(xs) <= 1:\n        return xs\n    mid = len(xs) // 2\n"
    "    left = merge_sort(xs[:mid])\n",
]

# Seeds of the deterministic tensors: s = 1000 * layer + k (s = k for tensors outside the blocks).
SEED_K = {
    "attn_q.bias": 1,
    "attn_k.bias": 2,
    "attn_v.bias": 3,
    "attn_q_norm.weight": 4,
    "attn_k_norm.weight": 5,
    "rope_factors_long.weight": 6,
    "rope_factors_short.weight": 7,
}
BIAS_SCALE = 0.05
NORM_SCALE = 0.1
# phi3's LongRoPE: factors f32(1 + det(n_rot / 2, s, scale)), the context they were "trained" on,
# and the converter's attention factor for it: sqrt(1 + ln(context_length / orig) / ln(orig)) with
# context_length 8192 (SmolLM2's) and orig 256, i.e. sqrt(1.625), stored as f32.
ROPE_LONG_SCALE = 0.5
ROPE_SHORT_SCALE = 0.1
ROPE_ORIG_CTX = 256
ROPE_ATTN_FACTOR = 1.2747548783981961
PHI3_N_CTX = {"long": 512, "short": 256}
# The YaRN file (qwen2 with Qwen 2.5's long-context keys): rope.scaling.factor (f32) and
# rope.scaling.original_context_length (u32); 2048 * 4 = 8192, SmolLM2's context_length.
YARN_FACTOR = 4.0
YARN_ORIG_CTX = 2048


def det_f64(n: int, seed: int, scale: float) -> np.ndarray:
    """scale * (((i * 7919 + seed * 104729) % 2001) - 1000) / 1000.0 for i < n, in f64."""
    i = np.arange(n, dtype=np.int64)
    m = ((i * 7919 + seed * 104729) % 2001) - 1000
    return scale * m / 1000.0


def det_bias(n: int, seed: int) -> np.ndarray:
    return det_f64(n, seed, BIAS_SCALE).astype(np.float32)


def det_norm(n: int, seed: int) -> np.ndarray:
    return (1.0 + det_f64(n, seed, NORM_SCALE)).astype(np.float32)


def det_rope_factors(n: int, seed: int, scale: float) -> np.ndarray:
    """phi3's rope factors: f32(1 + det), the sum in f64 (as det_norm, with its own scale)."""
    return (1.0 + det_f64(n, seed, scale)).astype(np.float32)


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute (HF rows -> llama.cpp's interleaved rows)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of `permute` on the rows of `w` (for quantized data: rows of bytes)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def metadata_sha256(path: Path) -> tuple[str, list[str]]:
    """sha256 of the key/value section as stored (every key in file order: its parts' bytes, which
    gguf-py's reader keeps as views of the file), and the keys in order."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    h = hashlib.sha256()
    keys = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        keys.append(key)
        for part in field.parts:
            h.update(np.asarray(part).tobytes())
    return h.hexdigest(), keys


def template_path(family: str) -> Path:
    """The committed copy of the family's chat template (copied from llama.cpp's tree if absent)."""
    dst = OUT_DIR / TEMPLATES[family]
    if not dst.exists():
        src = LLAMA_CPP_SRC / "models" / "templates" / TEMPLATES[family]
        if not src.exists():
            raise SystemExit(f"{src} not found; set LLAMA_CPP_SRC to llama.cpp's source tree")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return dst


def write_smollm2_as(family: str, src: Path, dst: Path) -> None:
    """Writes SmolLM2 (llama) as `family` ("qwen2", "qwen3", "phi3" or "qwen2-yarn": the qwen2 file
    with the three YaRN keys); see the module docstring."""
    import gguf

    assert family in ("qwen2", "qwen3", "phi3", "qwen2-yarn")
    yarn = family.endswith("-yarn")
    family = family.removesuffix("-yarn")  # the architecture
    reader = gguf.GGUFReader(str(src))
    first = next(k for k in reader.fields if not k.startswith("GGUF."))
    assert first == "general.architecture" and reader.fields[first].contents() == "llama"
    n_head = int(reader.fields["llama.attention.head_count"].contents())
    n_head_kv = int(reader.fields["llama.attention.head_count_kv"].contents())
    n_layer = int(reader.fields["llama.block_count"].contents())
    template = template_path(family).read_bytes().decode("utf-8")
    n_rot = int(reader.fields["llama.rope.dimension_count"].contents())

    tmp = dst.with_suffix(".tmp")
    writer = gguf.GGUFWriter(str(tmp), family)  # writes general.architecture first
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if key == "tokenizer.chat_template":
            value = template
        if key.startswith("llama."):
            key = family + key.removeprefix("llama")
        if yarn and key == f"{family}.rope.freq_base":
            # Where convert_hf_to_gguf.py writes them (TextModel.set_gguf_parameters: after
            # attention.head_count_kv, before rope.freq_base), in its order.
            writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)  # {arch}.rope.scaling.type, "yarn"
            writer.add_rope_scaling_factor(YARN_FACTOR)  # {arch}.rope.scaling.factor, f32
            writer.add_rope_scaling_orig_ctx_len(YARN_ORIG_CTX)  # ...original_context_length, u32
        writer.add_key_value(key, value, vtype, sub_type)
        if family == "phi3" and key == "phi3.context_length":
            writer.add_rope_scaling_orig_ctx_len(ROPE_ORIG_CTX)  # phi3.rope.scaling.original_context_length
    if family == "phi3":
        ctx = int(reader.fields["llama.context_length"].contents())
        assert abs(ROPE_ATTN_FACTOR - np.sqrt(1 + np.log(ctx / ROPE_ORIG_CTX) / np.log(ROPE_ORIG_CTX))) < 1e-15
        writer.add_rope_scaling_attn_factors(ROPE_ATTN_FACTOR)  # phi3.rope.scaling.attn_factor, f32
        for name, scale in (
            ("rope_factors_long.weight", ROPE_LONG_SCALE),
            ("rope_factors_short.weight", ROPE_SHORT_SCALE),
        ):
            writer.add_tensor(name, det_rope_factors(n_rot // 2, SEED_K[name], scale))

    by_name = {t.name: np.asarray(t.data) for t in reader.tensors}
    head_dim = None
    for t in reader.tensors:
        data = np.asarray(t.data)
        name = t.name
        parts = name.split(".")
        layer = int(parts[1]) if parts[0] == "blk" else None
        base = ".".join(parts[2:]) if layer is not None else name
        if family == "phi3" and base in ("attn_k.weight", "attn_v.weight", "ffn_gate.weight"):
            continue  # fused into attn_qkv / ffn_up
        if base in ("attn_q.weight", "attn_k.weight"):
            heads = n_head if base == "attn_q.weight" else n_head_kv
            rows = data.shape[0]
            assert rows % (2 * heads) == 0 and int(t.shape[1]) == rows
            head_dim = rows // heads
            data = np.ascontiguousarray(unpermute(data, heads))
        if family == "phi3" and base == "attn_q.weight":
            k = unpermute(by_name[f"blk.{layer}.attn_k.weight"], n_head_kv)
            v = by_name[f"blk.{layer}.attn_v.weight"]
            name, data = f"blk.{layer}.attn_qkv.weight", np.ascontiguousarray(np.concatenate([data, k, v]))
        elif family == "phi3" and base == "ffn_up.weight":
            gate = by_name[f"blk.{layer}.ffn_gate.weight"]
            data = np.ascontiguousarray(np.concatenate([gate, data]))
        writer.add_tensor(name, data, raw_dtype=t.tensor_type)
        if layer is None:
            continue
        added: list[tuple[str, np.ndarray]] = []
        if family == "qwen2":
            if base in ("attn_q.weight", "attn_k.weight", "attn_v.weight"):
                bias = base.replace(".weight", ".bias")
                # One bias per output row (ggml ne[1]): 576, 192, 192.
                added.append((bias, det_bias(int(t.shape[1]), 1000 * layer + SEED_K[bias])))
        elif family == "qwen3" and base in ("attn_q.weight", "attn_k.weight"):
            norm = base.replace(".weight", "_norm.weight")
            added.append((norm, det_norm(head_dim, 1000 * layer + SEED_K[norm])))
        for new, values in added:
            writer.add_tensor(f"blk.{layer}.{new}", values)
    assert head_dim == 64 and n_layer == 30
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(dst)


def write_swa(src: Path, dst: Path, window: int) -> None:
    """A copy of `src` with gemma3.attention.sliding_window = `window`, edited in place."""
    import gguf

    tmp = dst.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    reader = gguf.GGUFReader(str(tmp), "r+")
    field = reader.fields["gemma3.attention.sliding_window"]
    assert field.types == [gguf.GGUFValueType.UINT32] and int(field.contents()) == 512
    field.parts[field.data[0]][0] = window
    reader.data.flush()
    del reader
    check = gguf.GGUFReader(str(tmp))
    assert int(check.fields["gemma3.attention.sliding_window"].contents()) == window
    del check
    tmp.replace(dst)


def check_built(path: Path, family: str) -> None:
    """gguf-py reads the file back: keys renamed, q/k rows un-permuted, new tensors as written."""
    import gguf

    src = gguf.GGUFReader(str(fc.SMOLLM2_MODEL))
    out = gguf.GGUFReader(str(path))
    if family == "qwen2-yarn":
        keys = [k for k in out.fields if not k.startswith("GGUF.")]
        at = keys.index("qwen2.rope.freq_base")
        assert keys[at - 4 : at] == ["qwen2.attention.head_count_kv"] + YARN_KEYS, keys[at - 4 : at]
        f = out.fields
        assert f["qwen2.rope.scaling.type"].types == [gguf.GGUFValueType.STRING]
        assert f["qwen2.rope.scaling.type"].contents() == "yarn"
        assert f["qwen2.rope.scaling.factor"].types == [gguf.GGUFValueType.FLOAT32]
        assert f["qwen2.rope.scaling.factor"].contents() == YARN_FACTOR
        assert f["qwen2.rope.scaling.original_context_length"].types == [gguf.GGUFValueType.UINT32]
        assert f["qwen2.rope.scaling.original_context_length"].contents() == YARN_ORIG_CTX
        assert int(f["qwen2.context_length"].contents()) == YARN_ORIG_CTX * YARN_FACTOR
        family = "qwen2"
    src_t = {t.name: t for t in src.tensors}
    if family == "phi3":
        out_t = {t.name: t for t in out.tensors}
        rows = lambda name: np.asarray(src_t[name].data)  # noqa: E731
        for il in range(30):
            qkv = out_t[f"blk.{il}.attn_qkv.weight"]
            assert qkv.tensor_type == gguf.GGMLQuantizationType.Q4_1 and list(qkv.shape) == [576, 960]
            b = np.asarray(qkv.data)
            assert np.array_equal(permute(b[:576], 9), rows(f"blk.{il}.attn_q.weight"))
            assert np.array_equal(permute(b[576:768], 3), rows(f"blk.{il}.attn_k.weight"))
            assert np.array_equal(b[768:], rows(f"blk.{il}.attn_v.weight"))
            up = out_t[f"blk.{il}.ffn_up.weight"]
            assert up.tensor_type == gguf.GGMLQuantizationType.Q4_1 and list(up.shape) == [576, 3072]
            b = np.asarray(up.data)
            assert np.array_equal(b[:1536], rows(f"blk.{il}.ffn_gate.weight"))
            assert np.array_equal(b[1536:], rows(f"blk.{il}.ffn_up.weight"))
            for gone in ("attn_q", "attn_k", "attn_v", "ffn_gate"):
                assert f"blk.{il}.{gone}.weight" not in out_t
        assert [t.name for t in out.tensors[:2]] == ["rope_factors_long.weight", "rope_factors_short.weight"]
        for t in out.tensors[:2]:
            v = np.asarray(t.data)
            assert v.dtype == np.float32 and v.shape == (32,) and v.min() > 0, t.name
        assert int(out.fields["phi3.rope.scaling.original_context_length"].contents()) == ROPE_ORIG_CTX
        assert out.fields["phi3.rope.scaling.attn_factor"].types == [gguf.GGUFValueType.FLOAT32]
        assert "phi3.rope.scaling.type" not in out.fields
        assert not any(k.startswith("llama.") for k in out.fields)
        return
    for t in out.tensors:
        if t.name in src_t:
            a = np.asarray(src_t[t.name].data)
            b = np.asarray(t.data)
            if t.name.endswith(("attn_q.weight", "attn_k.weight")):
                heads = 9 if "attn_q" in t.name else 3
                assert np.array_equal(permute(b, heads), a), t.name
                assert not np.array_equal(a, b), t.name
            else:
                assert np.array_equal(a, b), t.name
    assert not any(k.startswith("llama.") for k in out.fields)


def kv_log(model: Path) -> tuple[list[str], list[int]]:
    """llama.cpp's log lines about the sliding window and its KV caches while it opens `model` (as
    open_default does), and the layers it marks `is_swa`."""
    import ctypes
    import re

    import llama_cpp
    from llama_cpp import _logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def capture(level, text, user_data):
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(capture, ctypes.c_void_p(0))
    try:
        llm = open_default(model)
        n_layer = llama_cpp.llama_model_n_layer(llm._model.model)
        del llm
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
    text = "".join(lines).splitlines()
    swa = [int(m[1]) for m in (re.search(r"layer +(\d+) assigned .* is_swa = 1", line) for line in text) if m]
    swa = [i for i in swa if i < n_layer]  # the last "layer" llama.cpp lists is the output
    keep = ("n_swa ", "is_swa_any", "freq_base_swa", "llama_kv_cache_iswa", "llama_kv_cache: size")
    keep += ("llama_context: n_ctx ",)
    return [line.strip() for line in text if any(k in line for k in keep)], swa


def render_chatml(llm, user: str) -> str:
    """The chat prompt with llama.cpp's ChatML fallback, through llama-cpp-python's formatter."""
    from llama_cpp import llama_chat_format

    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
    return llama_chat_format.Jinja2ChatFormatter(
        template=CHATML_TEMPLATE, eos_token=eos, bos_token=bos, add_generation_prompt=True
    )(messages=[{"role": "user", "content": user}]).prompt


def open_ctx(model: Path, n_ctx: int, kv_f32: bool = False):
    """make_default_kv_fixtures.open_default with another context size (llama-cpp-python then
    takes n_batch = n_ubatch = min(512, n_ctx)). With `kv_f32`, an F32 KV cache and flash
    attention off (asked for explicitly; everything else still llama.cpp's defaults)."""
    import llama_cpp

    extra = {}
    if kv_f32:
        extra = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32, "flash_attn": False}
    return llama_cpp.Llama(
        model_path=str(model),
        n_ctx=n_ctx,
        n_threads=fc.N_THREADS,
        n_threads_batch=fc.N_THREADS,
        n_gpu_layers=0,
        seed=0,
        verbose=False,
        **extra,
    )


YARN_KEYS = ["qwen2.rope.scaling.type", "qwen2.rope.scaling.factor", "qwen2.rope.scaling.original_context_length"]

ROPE_LOG_KEYS = (
    "rope.scaling",
    "rope type",
    "rope scaling",
    "freq_base_train",
    "freq_scale_train",
    "n_ctx_orig_yarn",
    "rope_yarn_log_mul",
    "rope_finetuned",
    "n_rot ",
    "n_ctx_train",
    "llama_context: n_ctx ",
    "n_ctx_seq ",
    "freq_base ",
    "freq_scale ",
    "n_batch ",
    "n_ubatch ",
    "yarn_attn_factor",
)


def open_logged(model: Path, n_ctx: int, keep: tuple[str, ...], kv_f32: bool = False):
    """open_ctx, keeping llama.cpp's log lines (model loading and context creation) that contain
    one of `keep`."""
    import ctypes

    import llama_cpp
    from llama_cpp import _logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def capture(level, text, user_data):
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(capture, ctypes.c_void_p(0))
    try:
        llm = open_ctx(model, n_ctx, kv_f32)
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
    text = "".join(lines).splitlines()
    return llm, [" ".join(line.split()) for line in text if any(k in line for k in keep)]


def rope_op_params(llm) -> dict:
    """What llama.cpp hands ggml's rope: the op_params of every GGML_OP_ROPE node of one decode (BOS
    at position 0) in a second context on `llm`'s model with `llm`'s context parameters and an eval
    callback (cb_eval) that reads each node when the scheduler asks whether to show it, and declines
    (so nothing else changes; `llm`'s own context is not touched). ggml_rope_ext's op_params
    (ggml.c ggml_rope_impl): i32 n_dims, mode, n_ctx_orig at 1, 2, 4; f32 freq_base, freq_scale,
    ext_factor, attn_factor, beta_fast, beta_slow at 5-10. Also ggml_rope_yarn_corr_dims (the
    ramp's ends, from libggml-base) for those values."""
    import ctypes
    import struct

    import llama_cpp
    from llama_cpp._ggml import libggml

    class GgmlTensor(ctypes.Structure):  # ggml/include/ggml.h `struct ggml_tensor`, up to `name`
        _fields_ = [
            ("type", ctypes.c_int),
            ("buffer", ctypes.c_void_p),
            ("ne", ctypes.c_int64 * 4),
            ("nb", ctypes.c_size_t * 4),
            ("op", ctypes.c_int),
            ("op_params", ctypes.c_int32 * 16),
            ("flags", ctypes.c_int32),
            ("src", ctypes.c_void_p * 10),
            ("view_src", ctypes.c_void_p),
            ("view_offs", ctypes.c_size_t),
            ("data", ctypes.c_void_p),
            ("name", ctypes.c_char * 64),
        ]

    libggml.ggml_op_name.restype = ctypes.c_char_p
    libggml.ggml_op_name.argtypes = [ctypes.c_int]
    seen: list[tuple[str, list[int]]] = []

    @llama_cpp.ggml_backend_sched_eval_callback
    def callback(t, ask, user_data):
        node = ctypes.cast(t, ctypes.POINTER(GgmlTensor)).contents
        if ask and libggml.ggml_op_name(node.op) == b"ROPE":
            seen.append((node.name.decode(), [int(x) for x in node.op_params]))
        return False

    params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
    params.cb_eval = callback
    ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
    assert ctx, "llama_init_from_model failed"
    try:
        token = (llama_cpp.llama_token * 1)(llm.token_bos())
        assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(token, 1)) == 0
    finally:
        llama_cpp.llama_free(ctx)
    n_layer = llama_cpp.llama_model_n_layer(llm._model.model)
    assert len(seen) == 2 * n_layer, len(seen)  # Qcur and Kcur of every layer
    distinct = {tuple(p) for _, p in seen}
    assert len(distinct) == 1, distinct
    p = seen[0][1]
    as_f32 = lambda i: struct.unpack("<f", struct.pack("<i", i))[0]  # noqa: E731
    names = ["freq_base", "freq_scale", "ext_factor", "attn_factor", "beta_fast", "beta_slow"]
    out: dict = {"n_dims": p[1], "mode": p[2], "n_ctx_orig": p[4]}
    out.update({name: as_f32(p[5 + i]) for i, name in enumerate(names)})
    out["f32_bits"] = {name: f"0x{p[5 + i] & 0xFFFFFFFF:08x}" for i, name in enumerate(names)}
    dims = (ctypes.c_float * 2)()
    libggml.ggml_rope_yarn_corr_dims.restype = None
    f = ctypes.c_float
    libggml.ggml_rope_yarn_corr_dims.argtypes = [ctypes.c_int, ctypes.c_int, f, f, f, ctypes.POINTER(f)]
    libggml.ggml_rope_yarn_corr_dims(p[1], p[4], out["freq_base"], out["beta_fast"], out["beta_slow"], dims)
    out["corr_dims"] = [float(dims[0]), float(dims[1])]
    out["nodes"] = len(seen)
    return out


def run_family(
    key: str,
    model: Path,
    cases: list[tuple[str, str]],
    n_gen: int,
    doc: dict,
    chatml: bool = False,
    n_ctx: int | None = None,
    rope_probe: bool = False,
) -> dict:
    """make_default_kv_fixtures.run_model, writing `{key}-p{i}.npy` into tests/fixtures/families/
    and rendering chat prompts with the ChatML fallback when `chatml`. With `n_ctx`, llama.cpp gets
    that context size and the entry its rope log lines (`llama_cpp_rope_log`); with `rope_probe`,
    also the values its graph hands ggml's rope (`llama_cpp_rope_op`, rope_op_params)."""
    log = None
    if n_ctx is None:
        llm = open_default(model)
    else:
        llm, log = open_logged(model, n_ctx, ROPE_LOG_KEYS)
    entry = {"settings": resolved_settings(llm), "n_gen": n_gen, "prompts": []}
    if log is not None:
        entry["llama_cpp_rope_log"] = log
    if rope_probe:
        entry["llama_cpp_rope_op"] = rope_op_params(llm)
    settings = entry["settings"]
    if settings["type_k"] != "F16" or settings["type_v"] != "F16" or settings["flash_attn_type"] != "disabled":
        raise SystemExit(f"llama-cpp-python's defaults changed: {settings}")
    for i, (kind, text) in enumerate(cases):
        rendered = text
        rec: dict = {"kind": kind, "prompt": text}
        if kind == "chat":
            rendered = render_chatml(llm, text) if chatml else render_chat(llm, text)["jinja"]
            rec["rendered_prompt"] = rendered
        prompt = llm.tokenize(rendered.encode(), add_bos=True, special=True)
        tokens, gaps, first = greedy(llm, prompt, n_gen, stop_at_eog=kind == "chat")
        npy = f"{key}-p{i}.npy"
        np.save(OUT_DIR / npy, first)
        stopped = bool(tokens) and is_eog(llm, tokens[-1])
        rec.update(
            {
                "prompt_tokens": prompt,
                "greedy_tokens": tokens,
                "generated_text": text_of(llm, tokens[:-1] if stopped else tokens),
                "stopped_at_eog": stopped,
                "top2_gaps": [round(g, 6) for g in gaps],
                "last_prompt_logits": npy,
            }
        )
        entry["prompts"].append(rec)
        print(f"{key} {kind} {text[:40]!r}: {len(prompt)} -> {rec['generated_text'][:60]!r} (min gap {min(gaps):.4f})")
    entry["n_ctx"] = settings["n_ctx"]
    # llama_context_default_params: a full-size sliding-window cache (masks still apply).
    entry["swa_full"] = bool(llm.context_params.swa_full)
    del llm
    doc["models"][key] = entry
    return entry


def describe_file(entry: dict, path: Path) -> None:
    meta, keys = metadata_sha256(path)
    entry.update(
        {
            "file": path.name,
            "file_bytes": path.stat().st_size,
            "file_sha256": sha256_file(path),
            "tensor_data_sha256": tensor_data_sha256(path),
            "metadata_sha256": meta,
            "metadata_keys": keys,
        }
    )


def twin_path(src: Path) -> Path:
    """Where the F32-dequantized twin of `src` goes: beside it, `{stem}-dequant-f32.gguf` (as
    make_llama_fixtures.py names SmolLM2's)."""
    return src.with_name(src.stem + "-dequant-f32.gguf")


def run_f32_twin(key: str, src: Path, doc: dict) -> dict:
    """The `{key}-f32` record: llama.cpp on `src` with every tensor dequantized to F32 by gguf-py
    (fixture_common.write_dequantized_f32), F32 KV cache, flash attention off, the quantized
    record's n_ctx, 2 threads, logits of the last position only; the quantized record's first
    F32_N_PROMPTS raw prompts (same texts, same prompt tokens), F32_N_GEN greedy tokens each."""
    base = doc["models"].get(key)
    if base is None:
        raise SystemExit(f"{key}-f32: no `{key}` record in {fc.rel(OUT)}; run --only {key.removesuffix('-long')} first")
    if not src.exists():
        raise SystemExit(f"{src} not found; run --only {key.removesuffix('-long')} first")
    got = tensor_data_sha256(src)
    if got != base["tensor_data_sha256"]:
        raise SystemExit(f"{src}: tensor_data_sha256 {got}, the `{key}` record has {base['tensor_data_sha256']}")
    twin = twin_path(src)
    t0 = time.time()
    tmp = twin.with_suffix(".tmp")
    fc.write_dequantized_f32(src, tmp)
    tmp.replace(twin)
    print(f"{key}-f32: wrote {twin} ({twin.stat().st_size / 1e6:.0f} MB) in {time.time() - t0:.0f} s")
    n_ctx = base["n_ctx"]
    log = None
    if key.startswith("smollm2-as-phi3"):
        llm, log = open_logged(twin, n_ctx, ROPE_LOG_KEYS, kv_f32=True)
        orig = [line for line in log if "n_ctx_orig_yarn" in line]
        assert orig and orig[0].endswith(f"= {ROPE_ORIG_CTX}"), orig
    else:
        llm = open_ctx(twin, n_ctx, kv_f32=True)
    settings = resolved_settings(llm)
    if settings["type_k"] != "F32" or settings["type_v"] != "F32" or settings["flash_attn_type"] != "disabled":
        raise SystemExit(f"{key}-f32: llama.cpp resolved {settings}")
    if settings["n_ctx"] != n_ctx:
        raise SystemExit(f"{key}-f32: llama.cpp resolved n_ctx {settings['n_ctx']}, asked for {n_ctx}")
    entry: dict = {"settings": settings, "n_gen": F32_N_GEN, "prompts": []}
    if log is not None:
        entry["llama_cpp_rope_log"] = log
    raw = [rec for rec in base["prompts"] if rec["kind"] == "raw"][:F32_N_PROMPTS]
    assert len(raw) == F32_N_PROMPTS, key
    for rec in raw:
        prompt = llm.tokenize(rec["prompt"].encode(), add_bos=True, special=True)
        assert prompt == rec["prompt_tokens"], (key, rec["prompt"], prompt, rec["prompt_tokens"])
        tokens, gaps, _ = greedy(llm, prompt, F32_N_GEN, stop_at_eog=False)
        entry["prompts"].append(
            {
                "kind": "raw",
                "prompt": rec["prompt"],
                "prompt_tokens": prompt,
                "greedy_tokens": tokens,
                "generated_text": text_of(llm, tokens),
                "top2_gaps": [round(g, 6) for g in gaps],
            }
        )
        q = rec["greedy_tokens"][:F32_N_GEN]
        diff = next((i for i, (a, b) in enumerate(zip(tokens, q)) if a != b), None)
        n_diff = sum(a != b for a, b in zip(tokens, q))
        vs = "same tokens" if diff is None else f"first differs at step {diff}, {n_diff} of {len(q)} differ"
        print(
            f"{key}-f32 {rec['prompt'][:40]!r}: {len(prompt)} -> {text_of(llm, tokens)[:60]!r} "
            f"(min gap {min(gaps):.4f}; vs quantized: {vs})"
        )
    entry["n_ctx"] = settings["n_ctx"]
    del llm
    entry["quantized_record"] = key
    entry["twin_file"] = twin.name
    entry["twin_tensor_data_sha256"] = tensor_data_sha256(twin)
    entry["source"] = (
        f"{src.name} (the `{key}` record's file, tensor_data_sha256 {base['tensor_data_sha256'][:16]}...) with every "
        "tensor dequantized to F32 by gguf-py (fixture_common.write_dequantized_f32: gguf.quants.dequantize, "
        "all metadata copied, general.file_type ALL_F32); llama.cpp with an F32 KV cache, flash attention off, "
        f"n_ctx {n_ctx}: f32 math on the quantized weights, no Q8 activation rounding"
    )
    doc["models"][f"{key}-f32"] = entry
    return entry


# The F32 twins' records: the quantized record's key (and its file) -> `{key}-f32`.
F32_N_GEN = 16
F32_N_PROMPTS = 3
F32_KEYS = ["smollm2-as-qwen2-f32", "smollm2-as-qwen3-f32", "smollm2-as-phi3-long-f32", "gemma3-270m-f32"]
KEYS = ["smollm2-as-qwen2", "smollm2-as-qwen3", "smollm2-as-qwen2-yarn", "smollm2-as-phi3", "gemma3-270m"]
KEYS += ["gemma3-270m-swa16"] + F32_KEYS


def run_yarn(doc: dict) -> None:
    """The `smollm2-as-qwen2-yarn` record: the qwen2 file with YaRN's keys, as the qwen2 record (same
    prompts, n_ctx 512 = open_default's), plus llama.cpp's rope log lines and what it hands ggml's
    rope; checked against the `smollm2-as-qwen2` record (same tensors, same prompt tokens, other
    logits), so that record must exist (a full run writes it first)."""
    import ctypes
    import ctypes.util

    key = "smollm2-as-qwen2-yarn"
    plain = doc["models"].get("smollm2-as-qwen2")
    if plain is None:
        raise SystemExit(f"{key}: no `smollm2-as-qwen2` record in {fc.rel(OUT)}; run --only smollm2-as-qwen2 first")
    if not fc.SMOLLM2_MODEL.exists():
        raise SystemExit(f"{fc.SMOLLM2_MODEL} not found; see scripts/README.md for how to get it")
    path = MODELS_DIR / f"{key}.gguf"
    write_smollm2_as("qwen2-yarn", fc.SMOLLM2_MODEL, path)
    check_built(path, "qwen2-yarn")
    cases = [("raw", p) for p in SMOL_RAW] + [("chat", p) for p in FAMILY_CHAT]
    entry = run_family(key, path, cases, N_GEN, doc, n_ctx=512, rope_probe=True)
    if entry["n_ctx"] != 512:
        raise SystemExit(f"{key}: llama.cpp resolved n_ctx {entry['n_ctx']}, asked for 512")
    describe_file(entry, path)
    if entry["tensor_data_sha256"] != plain["tensor_data_sha256"]:
        raise SystemExit(f"{key}: not the `smollm2-as-qwen2` record's tensors")
    log = entry["llama_cpp_rope_log"]
    for want in ("rope scaling = yarn", "freq_scale_train = 0.25", f"n_ctx_orig_yarn = {YARN_ORIG_CTX}"):
        assert any(line.endswith(want) for line in log), (want, log)
    op = entry["llama_cpp_rope_op"]
    want = {"n_dims": 64, "mode": 2, "n_ctx_orig": YARN_ORIG_CTX, "freq_base": 100000.0}
    want |= {"freq_scale": 1.0 / YARN_FACTOR, "ext_factor": 1.0, "beta_fast": 32.0, "beta_slow": 1.0}
    assert {k: op[k] for k in want} == want, op
    # ggml-cpu's rope_yarn scales cos and sin by attn_factor * (1 + 0.1 ln(1 / freq_scale)) when
    # ext_factor != 0 (llama_context divides attn_factor by the same term first), here in f32 with
    # libm's logf, with and without a fused multiply-add (equal here).
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.logf.restype, libm.logf.argtypes = ctypes.c_float, [ctypes.c_float]
    f32 = np.float32
    ln = f32(libm.logf(f32(1.0) / f32(op["freq_scale"])))
    term = f32(f32(1.0) + f32(f32(0.1) * ln))
    fused = f32(1.0 + np.float64(f32(0.1)) * np.float64(ln))
    assert term == fused, (term, fused)
    mscale = f32(f32(op["attn_factor"]) * term)
    entry["rope_scaling"] = {
        "type": "yarn",
        "factor": YARN_FACTOR,
        "original_context_length": YARN_ORIG_CTX,
        "keys": YARN_KEYS,
        "keys_position": "after qwen2.attention.head_count_kv, before qwen2.rope.freq_base "
        "(convert_hf_to_gguf.py TextModel.set_gguf_parameters' order)",
        "ggml_rope_mscale": float(mscale),
        "ggml_rope_mscale_f32_bits": f"0x{mscale.view(np.uint32):08x}",
        "ggml_rope_mscale_formula": "attn_factor * (1.0f + 0.1f * logf(1.0f / freq_scale)) "
        "(ggml-cpu ops.cpp rope_yarn, ext_factor != 0), f32",
    }
    # The scaling matters: the last prompt logits differ from the plain qwen2 record's.
    diffs = []
    for i, (rec, base) in enumerate(zip(entry["prompts"], plain["prompts"], strict=True)):
        assert rec["prompt_tokens"] == base["prompt_tokens"], rec["prompt"]
        a = np.load(OUT_DIR / rec["last_prompt_logits"])
        b = np.load(OUT_DIR / base["last_prompt_logits"])
        diffs.append(round(float(np.max(np.abs(a - b))), 4))
    assert min(diffs) > 0, diffs
    entry["max_abs_logit_diff_vs_smollm2_as_qwen2"] = diffs
    print(f"{key} vs smollm2-as-qwen2, max |last prompt logit difference| per prompt: {diffs}")
    print(f"{key}: llama.cpp's rope: {op}; ggml mscale {float(mscale)!r}")
    entry["source"] = (
        "smollm2-as-qwen2.gguf (same tensors, same bytes) with qwen2.rope.scaling.type = \"yarn\", "
        f"qwen2.rope.scaling.factor = f32({YARN_FACTOR}) and qwen2.rope.scaling.original_context_length = "
        f"u32({YARN_ORIG_CTX}) inserted between qwen2.attention.head_count_kv and qwen2.rope.freq_base; "
        "llama.cpp's defaults (n_ctx 512)"
    )
    doc["source_sha256"]["SmolLM2-135M-Instruct.Q4_1.gguf"] = sha256_file(fc.SMOLLM2_MODEL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=KEYS)
    args = ap.parse_args()
    fc.quiet_llama()
    start = time.time()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    # The unpermutation is the converter's permutation undone.
    w = np.arange(576 * 3).reshape(576, 3)
    assert np.array_equal(permute(unpermute(w, 9), 9), w) and not np.array_equal(unpermute(w, 9), w)

    doc = fc.read_json(OUT) if OUT.exists() else {}
    doc.update(
        {
            "generator": "scripts/make_family_fixtures.py",
            "versions": fc.versions(),
            "decoding": "argmax of llama_get_logits after each llm.eval (one token per eval)",
            "tokenize": "llm.tokenize(text.encode(), add_bos=True, special=True)",
            "deterministic_values": "f32(scale * (((i * 7919 + s * 104729) % 2001) - 1000) / 1000.0), "
            "norms f32(1.0 + that in f64); s = 1000 * layer + k",
            "seed_k": SEED_K,
            "bias_scale": BIAS_SCALE,
            "norm_scale": NORM_SCALE,
            "rope_factor_scales": {"long": ROPE_LONG_SCALE, "short": ROPE_SHORT_SCALE},
            "chat_templates": {f: fc.rel(OUT_DIR / name) for f, name in TEMPLATES.items()},
        }
    )
    doc.setdefault("models", {})
    doc.setdefault("source_sha256", {})
    for family in ("qwen2", "qwen3"):
        key = f"smollm2-as-{family}"
        if args.only not in (None, key):
            continue
        if not fc.SMOLLM2_MODEL.exists():
            raise SystemExit(f"{fc.SMOLLM2_MODEL} not found; see scripts/README.md for how to get it")
        path = MODELS_DIR / f"{key}.gguf"
        write_smollm2_as(family, fc.SMOLLM2_MODEL, path)
        check_built(path, family)
        cases = [("raw", p) for p in SMOL_RAW] + [("chat", p) for p in FAMILY_CHAT]
        entry = run_family(key, path, cases, N_GEN, doc)
        describe_file(entry, path)
        entry["source"] = (
            f"SmolLM2-135M-Instruct.Q4_1.gguf rewritten by gguf-py as {family}: llama.* keys renamed "
            f"{family}.*, chat template {TEMPLATES[family]}, attn_q/attn_k rows un-permuted (NEOX), "
            + ("attn_q/k/v biases added" if family == "qwen2" else "attn_q_norm/attn_k_norm added")
        )
        doc["source_sha256"]["SmolLM2-135M-Instruct.Q4_1.gguf"] = sha256_file(fc.SMOLLM2_MODEL)
    if args.only in (None, "smollm2-as-qwen2-yarn"):
        run_yarn(doc)
    if args.only in (None, "smollm2-as-phi3"):
        if not fc.SMOLLM2_MODEL.exists():
            raise SystemExit(f"{fc.SMOLLM2_MODEL} not found; see scripts/README.md for how to get it")
        path = MODELS_DIR / "smollm2-as-phi3.gguf"
        write_smollm2_as("phi3", fc.SMOLLM2_MODEL, path)
        check_built(path, "phi3")
        long_cases = [("raw", p) for p in SMOL_RAW] + [("chat", p) for p in FAMILY_CHAT]
        short_cases = [("raw", p) for p in SMOL_RAW[:4]]
        for which, cases in (("long", long_cases), ("short", short_cases)):
            key = f"smollm2-as-phi3-{which}"
            n_ctx = PHI3_N_CTX[which]
            entry = run_family(key, path, cases, N_GEN, doc, n_ctx=n_ctx)
            if entry["n_ctx"] != n_ctx:
                raise SystemExit(f"{key}: llama.cpp resolved n_ctx {entry['n_ctx']}, asked for {n_ctx}")
            for rec in entry["prompts"]:
                assert len(rec["prompt_tokens"]) + N_GEN < n_ctx, (key, rec["prompt"])
            orig = [line for line in entry["llama_cpp_rope_log"] if "n_ctx_orig_yarn" in line]
            assert orig and orig[0].endswith(f"= {ROPE_ORIG_CTX}"), orig
            describe_file(entry, path)
            entry.update(
                {
                    "rope_factors": which,
                    "original_context_length": ROPE_ORIG_CTX,
                    "rope_attn_factor": float(np.float32(ROPE_ATTN_FACTOR)),
                    "rope_factor_scales": {"long": ROPE_LONG_SCALE, "short": ROPE_SHORT_SCALE},
                    "chat_template": TEMPLATES["phi3"],
                    "source": (
                        "SmolLM2-135M-Instruct.Q4_1.gguf rewritten by gguf-py as phi3: llama.* keys renamed phi3.*, "
                        f"chat template {TEMPLATES['phi3']}, attn_q/attn_k rows un-permuted (NEOX) and fused with "
                        "attn_v into attn_qkv, ffn_gate and ffn_up fused into ffn_up (gate first), "
                        "rope_factors_long/short added, phi3.rope.scaling.original_context_length = "
                        f"{ROPE_ORIG_CTX} and phi3.rope.scaling.attn_factor = f32({ROPE_ATTN_FACTOR}) added; "
                        f"opened with n_ctx {n_ctx} ({which} factors: n_ctx "
                        + (">" if which == "long" else "<=")
                        + f" {ROPE_ORIG_CTX})"
                    ),
                }
            )
        # The factors matter: the same prompts' last logits differ between the two contexts.
        diffs = []
        for i in range(len(short_cases)):
            a = np.load(OUT_DIR / f"smollm2-as-phi3-long-p{i}.npy")
            b = np.load(OUT_DIR / f"smollm2-as-phi3-short-p{i}.npy")
            diffs.append(float(np.max(np.abs(a - b))))
        assert min(diffs) > 0, diffs
        print(f"phi3 long vs short, max |logit difference| per prompt: {[round(d, 4) for d in diffs]}")
        doc["source_sha256"]["SmolLM2-135M-Instruct.Q4_1.gguf"] = sha256_file(fc.SMOLLM2_MODEL)
    for key in ("gemma3-270m", "gemma3-270m-swa16"):
        if args.only not in (None, key):
            continue
        if not GEMMA3_MODEL.exists():
            raise SystemExit(f"{GEMMA3_MODEL} not found (set GEMMA3_GGUF)")
        got = sha256_file(GEMMA3_MODEL)
        if got != GEMMA3_SHA256:
            raise SystemExit(f"{GEMMA3_MODEL}: sha256 {got}, expected {GEMMA3_SHA256}")
        doc["source_sha256"][GEMMA3_MODEL.name] = got
        if key == "gemma3-270m":
            cases = [("raw", p) for p in GEMMA_RAW] + [("chat", p) for p in GEMMA_CHAT]
            entry = run_family(key, GEMMA3_MODEL, cases, N_GEN, doc, chatml=True)
            describe_file(entry, GEMMA3_MODEL)
            entry["source"] = f"{GEMMA3_MODEL.name} as published (sha256 {GEMMA3_SHA256}); chat: ChatML fallback"
            entry["chat_template"] = "ChatML (llama.cpp's CHATML_TEMPLATE_SRC, src/chat.rs CHATML_TEMPLATE)"
        else:
            path = MODELS_DIR / "gemma3-270m-swa16.gguf"
            write_swa(GEMMA3_MODEL, path, SWA)
            log, swa_layers = kv_log(path)
            entry = run_family(key, path, [("raw", p) for p in SWA_PROMPTS], N_GEN, doc)
            describe_file(entry, path)
            entry["sliding_window"] = SWA
            entry["swa_layers"] = swa_layers
            entry["llama_cpp_kv_log"] = log
            entry["source"] = (
                f"{GEMMA3_MODEL.name} with gemma3.attention.sliding_window = {SWA} (was 512), edited in "
                "place by gguf-py; every other byte the original's"
            )
            for rec in entry["prompts"]:
                assert 20 <= len(rec["prompt_tokens"]) <= 60, (rec["prompt"], len(rec["prompt_tokens"]))
    for key32 in F32_KEYS:
        if args.only not in (None, key32):
            continue
        key = key32.removesuffix("-f32")
        if key == "gemma3-270m":
            src = GEMMA3_MODEL
        else:
            src = MODELS_DIR / f"{key.removesuffix('-long')}.gguf"
        run_f32_twin(key, src, doc)
    fc.write_json(OUT, doc)
    print(f"wrote {fc.rel(OUT)} in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
