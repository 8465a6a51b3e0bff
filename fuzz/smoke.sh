#!/usr/bin/env bash
# Fuzz smoke run (issue 17): each target of fuzz/ (the GGUF reader, the tokenizer, chat templates)
# for SECONDS_PER_TARGET (default 60) seconds, starting from the committed corpus, under the same
# limits as the long runs. Fails on a crash, a leak, a timeout or an allocation over the limits;
# the input that failed is left in $ARTIFACTS.
#
#   bash fuzz/smoke.sh              # every target, 60 s each
#   SECONDS_PER_TARGET=10 bash fuzz/smoke.sh gguf_header
#
# Needs a nightly toolchain and cargo-fuzz. cargo-fuzz is installed with `cargo install` when absent
# (`cargo install cargo-fuzz --locked`). When either is missing the script says so and exits 0,
# except under CI (CI=true), where a smoke run that cannot run fails.
#
# The corpus is not changed: new inputs go to a scratch folder. The build is cached in
# CARGO_TARGET_DIR (default ~/.cache/gguf-llama/fuzz-target).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${SECONDS_PER_TARGET:-60}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf_file gguf_header tokenizer chat_template)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gguf-llama/fuzz-target}"
# Dequantization uses rayon; one thread keeps the run on one core.
export RAYON_NUM_THREADS=1

missing() {
    if [ "${CI:-}" = "true" ]; then
        echo "fuzz smoke: $1; failing because CI=true" >&2
        exit 1
    fi
    echo "fuzz smoke: $1; skipped (not under CI)"
    exit 0
}

if ! cargo +nightly --version >/dev/null 2>&1; then
    missing "no nightly toolchain (rustup toolchain install nightly)"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked || missing "cargo-fuzz could not be installed"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export ARTIFACTS="${ARTIFACTS:-$scratch/artifacts}"

for target in "${targets[@]}"; do
    mkdir -p "$scratch/corpus/$target" "$ARTIFACTS/$target"
    echo "fuzz smoke: $target for ${seconds}s"
    # --debug-assertions: an integer overflow is a crash, as in a debug build of a user's program.
    # The scratch folder comes first: libFuzzer adds new inputs to the first corpus folder only.
    if ! cargo +nightly fuzz run --debug-assertions "$target" \
        "$scratch/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -artifact_prefix="$ARTIFACTS/$target/" -print_final_stats=1; then
        echo "fuzz smoke: $target failed; inputs in $ARTIFACTS/$target:" >&2
        ls -l "$ARTIFACTS/$target" >&2 || true
        trap - EXIT
        exit 1
    fi
done
echo "fuzz smoke: ${targets[*]} ran ${seconds}s each without a crash"
