#!/usr/bin/env bash
# One-command check of the GPU path (issue 20) on a machine where nothing is built or downloaded:
# the binaries are built beforehand (`prepare`, on the development machine) and brought along;
# the models are written there by our own writer (examples/make_model.rs).
#
#   scripts/gpu_check.sh prepare [DIR]   # here: builds the release binaries, stripped, into DIR
#                                        # (default .gpu_check/bin) and DIR.tar.xz (~37 MB: what
#                                        # travels, e.g. the device tool's carry of .gpu_check/bin.tar.xz)
#   scripts/gpu_check.sh run [DIR]       # there: unpacks DIR.tar.xz if DIR is missing, then
#                                        # everything below, results in $GPU_CHECK_OUT
#
# `run` does, in this order, each step timed and logged:
#   1. the device: nvidia-smi and vulkaninfo --summary where they exist;
#   2. the kernel tests on the wgpu device (tests/cube_kernels.rs: every format and kernel
#      variant, the plane variant included, odd and large shapes; tests/extension.rs: every
#      format through the public API with Fusion), with CI=true so that a missing adapter fails;
#   3. the kernel bench (kernels/examples/cube_matmul_bench.rs): copy bandwidth, mat-vec GB/s per
#      format and variant, tiled TFLOP/s;
#   4. per type in $GPU_CHECK_TYPES (default q4_0 q4_k q6_k q8_0): a $GPU_CHECK_SHAPE model
#      (default tinyllama) written by make_model, then the `bench` example's prefill and decode on
#      wgpu (`--prompt-tokens 512 --gen-tokens 128`);
#   5. where $LLAMA_CPP_SRC points at llama.cpp's sources and nvcc exists: llama.cpp's
#      `llama-bench` built with CUDA (sm_90 unless $CUDA_ARCH) into $LLAMA_CPP_BUILD, then run
#      on the same files (`-p 512 -n 128 -ngl 99`): the anchor.
# A summary goes to $GPU_CHECK_OUT/summary.md (default .gpu_check/out).
#
# Without a GPU (lavapipe): GPU_CHECK_SHAPE=small GPU_CHECK_BENCH_ARGS="--rows 2048 --cols 2048
# --m 64 --runs 2 --plane" scripts/gpu_check.sh run  takes a few minutes.
set -euo pipefail

cmd=${1:-}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${2:-$root/.gpu_check/bin}

case "$cmd" in
prepare)
    cd "$root"
    mkdir -p "$bin"
    cargo build --release --example bench --example make_model
    cargo build --release -p gguf-kernels --example cube_matmul_bench
    target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    for e in bench make_model cube_matmul_bench; do
        cp "$target/release/examples/$e" "$bin/"
    done
    # the test binaries (cargo names them with a hash; --message-format says which)
    cargo test --release -p gguf-kernels --test cube_kernels --test extension --no-run \
        --message-format=json |
        python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], sys.argv[1] + "/test_" + m["target"]["name"])
' "$bin"
    strip "$bin"/*
    # what travels: xz brings the ~200 MB of binaries to ~37 MB (the device tool carries 64 MiB)
    tar -C "$bin/.." -cf - "$(basename "$bin")" | xz -T0 -6 >"$bin.tar.xz"
    ls -l "$bin" "$bin.tar.xz"
    ;;
run)
    if [ ! -d "$bin" ] && [ -f "$bin.tar.xz" ]; then
        xz -dc "$bin.tar.xz" | tar -C "$(dirname "$bin")" -xf -
    fi
    out=${GPU_CHECK_OUT:-$root/.gpu_check/out}
    shape=${GPU_CHECK_SHAPE:-tinyllama}
    types=${GPU_CHECK_TYPES:-q4_0 q4_k q6_k q8_0}
    bench_args=${GPU_CHECK_BENCH_ARGS:-}
    mkdir -p "$out"
    summary=$out/summary.md
    : >"$summary"
    note() { echo "$*" | tee -a "$summary"; }
    step() {
        local name=$1
        shift
        local t0=$SECONDS
        echo "== $name: $*"
        if "$@" >"$out/$name.log" 2>&1; then
            note "- $name: ok ($((SECONDS - t0)) s)"
        else
            note "- $name: FAILED ($((SECONDS - t0)) s), see $out/$name.log"
            tail -20 "$out/$name.log"
        fi
    }
    note "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -n)"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/- card: /' | tee -a "$summary"
    fi
    if command -v vulkaninfo >/dev/null; then
        vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverInfo|apiVersion" | sed 's/^/- vulkan: /' | tee -a "$summary" || true
    fi
    export CI=true
    step kernel_tests "$bin/test_cube_kernels" --test-threads 1
    step extension_tests "$bin/test_extension" --test-threads 1
    # shellcheck disable=SC2086  # the arguments are meant to split
    step kernel_bench "$bin/cube_matmul_bench" $bench_args
    sed -n '/^device/,$p' "$out/kernel_bench.log" | sed 's/^/    /' >>"$summary"
    models=()
    for ty in $types; do
        f=$out/$shape-$ty.gguf
        [ -f "$f" ] || step "make_$ty" "$bin/make_model" --shape "$shape" --type "$ty" --out "$f"
        models+=("$f")
        step "bench_$ty" "$bin/bench" --model "$f" --device wgpu --prompt-tokens 512 --gen-tokens 128 --runs 3
        grep -h "device wgpu" "$out/bench_$ty.log" | sed "s/^/- ours $ty: /" >>"$summary" || true
    done
    if [ -n "${LLAMA_CPP_SRC:-}" ] && command -v nvcc >/dev/null; then
        build=${LLAMA_CPP_BUILD:-$out/llama.cpp-build}
        if [ ! -x "$build/bin/llama-bench" ]; then
            step llama_cpp_build bash -c "cmake -S '$LLAMA_CPP_SRC' -B '$build' -G Ninja \
                -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-90} -DLLAMA_CURL=OFF \
                -DCMAKE_BUILD_TYPE=Release && cmake --build '$build' --target llama-bench"
        fi
        for f in "${models[@]}"; do
            name=$(basename "$f" .gguf)
            step "llama_bench_$name" "$build/bin/llama-bench" -m "$f" -p 512 -n 128 -ngl 99
            grep -E "^\|" "$out/llama_bench_$name.log" | sed 's/^/    /' >>"$summary" || true
        done
    else
        note "- llama.cpp: skipped (set LLAMA_CPP_SRC to llama.cpp's sources on a machine with nvcc)"
    fi
    echo
    cat "$summary"
    ! grep -q FAILED "$summary"
    ;;
*)
    sed -n '2,25p' "$0"
    exit 2
    ;;
esac
