#!/usr/bin/env bash
# Fetches llama.cpp's tokenizer test suites (models/ggml-vocab-*.gguf with their .inp/.out, read by
# tests/tokenizer.rs) into DIR: the first argument, else $GGUF_LLAMA_VOCAB_DIR, else
# ~/.cache/gguf-llama/vocab. They come from the source distribution of llama-cpp-python 0.3.36
# (which vendors llama.cpp 0c1e57098, the version the other fixtures were made with), downloaded
# with pip. Nothing is built: pip downloads the archive and reads its metadata (for which it
# installs the build backend into a temporary environment), and tar takes
# vendor/llama.cpp/models/ggml-vocab-* out of it.
#
#   bash scripts/fetch_vocab_suites.sh [DIR] [--force]
#
# Does nothing when DIR already holds this version's files (a stamp file records it); --force
# fetches again. About 77 MB are downloaded to a temporary directory, removed afterwards; the
# 15 suites take about 60 MB in DIR.
set -euo pipefail

version=0.3.36
dest=""
force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) dest="$arg" ;;
    esac
done
dest="${dest:-${GGUF_LLAMA_VOCAB_DIR:-$HOME/.cache/gguf-llama/vocab}}"
stamp="$dest/.llama-cpp-python-$version"

if [ "$force" = 0 ] && [ -f "$stamp" ]; then
    echo "vocab suites of llama-cpp-python $version already in $dest"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --no-binary for this package only: with ":all:", pip would also build the build backend and its
# dependencies (cmake ...) from source just to read the metadata.
python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -d "$tmp"
sdist="$tmp/llama_cpp_python-$version.tar.gz"
if [ ! -s "$sdist" ]; then
    echo "error: pip did not save $sdist" >&2
    exit 1
fi

prefix="llama_cpp_python-$version/vendor/llama.cpp/models"
tar -xzf "$sdist" -C "$tmp" --wildcards "$prefix/ggml-vocab-*"
mkdir -p "$dest"
# The suites: each vocabulary that has test texts, with its .inp and .out (aquila, baichuan ...
# come without them and are left out).
n=0
for inp in "$tmp/$prefix"/ggml-vocab-*.gguf.inp; do
    base="${inp%.inp}"
    [ -f "$base" ] && [ -f "$base.out" ] || continue
    cp -f "$base" "$base.inp" "$base.out" "$dest/"
    n=$((n + 1))
done
if [ "$n" = 0 ]; then
    echo "error: no ggml-vocab-*.gguf.inp in $sdist" >&2
    exit 1
fi
touch "$stamp"
echo "$n vocab suites of llama-cpp-python $version in $dest"
