"""Captures llama.cpp's intermediate activations for one prompt (for layer-by-layer comparison).

Runs one llama_decode of the prompt through llama.cpp's C API (via llama-cpp-python's
ctypes bindings) with an eval callback (`cb_eval` in the context params). The callback
asks the scheduler to stop at every graph node whose name is wanted (this llama.cpp
names them `embd` (the token embeddings; older versions `inp_embd`), `attn_norm-{il}`,
`Qcur-{il}`, `Kcur-{il}`, `Vcur-{il}`, `kqv_out-{il}`, `attn_out-{il}`, `ffn_inp-{il}`,
`ffn_norm-{il}`, `ffn_gate-{il}`, `ffn_up-{il}`, `ffn_swiglu-{il}`, `ffn_out-{il}`,
`l_out-{il}`, `result_norm`, `result_output`; run with --names '.*' to list them
all) and copies the tensor out of host memory as float32. Every position's logits
are requested, so the last layer is not reduced to the last token.

Array shapes are the ggml `ne` reversed with trailing size-1 dims of ne dropped,
e.g. `l_out-0` [n_tokens, n_embd], `Qcur-0` [n_tokens, n_head, head_dim],
`result_output` [n_tokens, n_vocab] (with a one-token prompt the token axis of size 1
is dropped too).

llama.cpp gives several graph nodes the same name (e.g. `Qcur-0` after the matmul,
after the reshape and after RoPE). The last occurrence is stored under the plain
`{name}`, earlier ones as `{name}#{k}` (k = 0, 1, ... in evaluation order); the
array `_order` lists the keys in evaluation order, `_ops` the ggml op of each, and
`_tokens` the prompt tokens.

Library use:
    from llama_activations import capture_activations
    tokens, acts, order = capture_activations("models/stories260k-f32.gguf", "Once upon a time")

CLI (writes an .npz of float32 arrays):
    python3 scripts/llama_activations.py --model models/stories260k-f32.gguf \
        --prompt "Once upon a time" --out /tmp/acts.npz [--names 'l_out-.*|result_.*']
"""

from __future__ import annotations

import argparse
import ctypes
import re
import sys
from pathlib import Path

import numpy as np

# Layout of `struct ggml_tensor` (ggml/include/ggml.h; GGML_MAX_DIMS = 4,
# GGML_MAX_OP_PARAMS = 64, GGML_MAX_SRC = 10, GGML_MAX_NAME = 64). Only read here.
GGML_MAX_DIMS = 4


class GgmlTensor(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
        ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * (64 // 4)),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1

DEFAULT_NAMES = (
    r"embd|inp_embd|(attn_norm|Qcur|Kcur|Vcur|kqv_out|attn_out|ffn_inp|ffn_norm|ffn_gate|ffn_up"
    r"|ffn_swiglu|ffn_out|l_out)-\d+"
    r"|result_norm|result_output"
)


def _ggml_op_namer():
    """Returns a function op id -> op name using ggml_op_name from the loaded ggml, or str()."""
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    for cand in sorted(lib_dir.glob("libggml-base*.so*")) + sorted(lib_dir.glob("libggml*.so*")):
        try:
            lib = ctypes.CDLL(str(cand))
            fn = lib.ggml_op_name
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_char_p
        fn.argtypes = [ctypes.c_int]
        return lambda op: fn(op).decode()
    return str


def _read_tensor(t: GgmlTensor) -> np.ndarray:
    """Copies a host tensor (F32 or F16, any strides) into a float32 array [ne3, ne2, ne1, ne0]."""
    if t.type == GGML_TYPE_F32:
        dtype = np.float32
    elif t.type == GGML_TYPE_F16:
        dtype = np.float16
    else:
        raise ValueError(f"tensor {t.name.decode()} has ggml type {t.type}, not F32/F16")
    if not t.data:
        raise ValueError(f"tensor {t.name.decode()} has no host data")
    ne = [int(t.ne[i]) for i in range(GGML_MAX_DIMS)]
    nb = [int(t.nb[i]) for i in range(GGML_MAX_DIMS)]
    # Byte span covered by the strided view.
    span = sum((n - 1) * s for n, s in zip(ne, nb)) + np.dtype(dtype).itemsize
    raw = ctypes.string_at(t.data, span)
    view = np.ndarray(
        shape=tuple(reversed(ne)), dtype=dtype, buffer=raw, strides=tuple(reversed(nb))
    )
    return np.array(view, dtype=np.float32)


def _squeeze_ne(arr: np.ndarray) -> np.ndarray:
    """Drops leading axes of size 1 (trailing dims of ggml ne), keeping at least 1 axis."""
    while arr.ndim > 1 and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def capture_activations(
    model_path: str | Path,
    prompt: str,
    names: str = DEFAULT_NAMES,
    add_bos: bool = True,
    n_threads: int = 2,
    n_ctx: int = 0,
    flash_attn: bool = False,
    last_alone: bool = False,
    kv_type: str = "f32",
) -> tuple[list[int], dict[str, np.ndarray], list[tuple[str, str]]]:
    """Decodes `prompt` once with llama.cpp and returns (tokens, arrays, order).

    `names` is a regular expression matched against whole tensor names. `arrays` maps
    `{name}` (last occurrence) and `{name}#{k}` (earlier k-th occurrences) to float32
    arrays; `order` lists (key, ggml op name) in evaluation order. The KV cache holds `kv_type`
    ("f32", or "f16": llama.cpp's default) and flash attention is off unless `flash_attn`
    (llama.cpp's own default is "auto").

    With `last_alone`, the prompt but its last token is decoded first without capturing, then the
    last token alone (a decoding step: one query row over the cached positions) is captured.
    """
    import llama_cpp

    from llama_cpp import _logger

    _logger.set_verbose(False)  # only llama.cpp's errors reach stderr
    pattern = re.compile(names)
    op_name = _ggml_op_namer()
    captured: dict[str, np.ndarray] = {}
    order: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    errors: list[str] = []

    capturing = [not last_alone]

    def callback(t_ptr, ask, _user_data):
        if not capturing[0]:
            return not ask  # ask: nothing wanted; otherwise go on
        t = ctypes.cast(t_ptr, ctypes.POINTER(GgmlTensor)).contents
        name = t.name.decode(errors="replace")
        if ask:
            return bool(pattern.fullmatch(name))
        if not pattern.fullmatch(name):
            return True
        try:
            arr = _squeeze_ne(_read_tensor(t))
        except Exception as e:  # keep going; reported after decode
            errors.append(f"{name}: {e}")
            return True
        k = counts.get(name, 0)
        counts[name] = k + 1
        captured[f"{name}#{k}"] = arr
        order.append((f"{name}#{k}", op_name(t.op)))
        return True

    cb = llama_cpp.ggml_backend_sched_eval_callback(callback)

    llama_cpp.llama_backend_init()
    mparams = llama_cpp.llama_model_default_params()
    mparams.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), mparams)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {model_path}")
    ctx = None
    batch = None
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        text = prompt.encode()
        buf = (llama_cpp.llama_token * (len(text) + 8))()
        n = llama_cpp.llama_tokenize(vocab, text, len(text), buf, len(buf), add_bos, True)
        if n < 0:
            raise RuntimeError(f"llama_tokenize needs {-n} tokens")
        tokens = [int(buf[i]) for i in range(n)]
        if not tokens:
            raise RuntimeError("prompt tokenized to nothing")

        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx if n_ctx > 0 else max(64, len(tokens))
        cparams.n_batch = max(cparams.n_ctx, len(tokens))
        cparams.n_ubatch = cparams.n_batch
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads
        kv = {"f32": llama_cpp.GGML_TYPE_F32, "f16": llama_cpp.GGML_TYPE_F16}[kv_type]
        cparams.type_k = kv
        cparams.type_v = kv
        # Same attention path as the Llama(...) runs of make_llama_fixtures.py.
        cparams.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cparams.cb_eval = cb
        cparams.cb_eval_user_data = None
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            raise RuntimeError("llama_init_from_model failed")

        batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)

        def decode(first: int, last: int) -> None:
            for i in range(first, last):
                batch.token[i - first] = tokens[i]
                batch.pos[i - first] = i
                batch.n_seq_id[i - first] = 1
                batch.seq_id[i - first][0] = 0
                batch.logits[i - first] = True
            batch.n_tokens = last - first
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")

        if last_alone and len(tokens) > 1:
            decode(0, len(tokens) - 1)
            capturing[0] = True
            decode(len(tokens) - 1, len(tokens))
        else:
            capturing[0] = True
            decode(0, len(tokens))
        # Cross-check the captured logits against the context's own output.
        if "result_output" in counts:
            n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
            last = llama_cpp.llama_get_logits_ith(ctx, -1)
            ref = np.ctypeslib.as_array(last, shape=(n_vocab,)).copy()
            got = captured[f"result_output#{counts['result_output'] - 1}"].reshape(-1, n_vocab)[-1]
            if not np.array_equal(ref, got):
                errors.append("captured result_output differs from llama_get_logits_ith")
    finally:
        if batch is not None:
            llama_cpp.llama_batch_free(batch)
        if ctx:
            llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
    if errors:
        raise RuntimeError("activation capture failed: " + "; ".join(errors))
    # The last occurrence of each name is stored under the plain name.
    arrays: dict[str, np.ndarray] = {}
    keys: list[tuple[str, str]] = []
    for key, op in order:
        name, k = key.rsplit("#", 1)
        if int(k) == counts[name] - 1:
            key = name
        arrays[key] = captured[f"{name}#{k}"]
        keys.append((key, op))
    return tokens, arrays, keys


def save_npz(path: str | Path, tokens: list[int], arrays: dict[str, np.ndarray], order) -> None:
    out = dict(arrays)
    out["_tokens"] = np.array(tokens, dtype=np.int32)
    out["_order"] = np.array([k for k, _ in order])
    out["_ops"] = np.array([op for _, op in order])
    np.savez_compressed(path, **out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--out", required=True, help="output .npz")
    ap.add_argument("--names", default=DEFAULT_NAMES, help="regex over tensor names")
    ap.add_argument("--no-bos", action="store_true", help="tokenize without BOS")
    ap.add_argument("--n-ctx", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flash-attn", action="store_true")
    args = ap.parse_args(argv)
    tokens, arrays, order = capture_activations(
        args.model, args.prompt, args.names, not args.no_bos, args.threads, args.n_ctx, args.flash_attn
    )
    save_npz(args.out, tokens, arrays, order)
    print(f"tokens {tokens}")
    for key, op in order:
        print(f"{key:24} {op:12} {list(arrays[key].shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
