#!/usr/bin/env bash
# Build the wasm backend's kernels: src/wasm/kernels/llama.c -> src/wasm/kernels/llama.wasm (committed, so
# users need no toolchain). Reproducible: Debian 12's clang-14 and lld-14 (apt-get install -y clang-14
# lld-14), no libc, no timestamps or paths in the output; tests/wasm_build_test.ts rebuilds it when the
# toolchain is present and compares bytes.
#
#   bash scripts/build_wasm.sh [OUT]     (OUT defaults to src/wasm/kernels/llama.wasm)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/src/wasm/kernels/llama.c"
out="${1:-$root/src/wasm/kernels/llama.wasm}"
cc="${CLANG:-clang-14}"
command -v "$cc" >/dev/null || { echo "build_wasm: $cc not found (apt-get install -y clang-14 lld-14)" >&2; exit 2; }
command -v wasm-ld-14 >/dev/null || command -v wasm-ld >/dev/null ||
  { echo "build_wasm: wasm-ld not found (apt-get install -y lld-14)" >&2; exit 2; }
# -msimd128: 128-bit SIMD; -matomics -mbulk-memory + --shared-memory: one memory for every thread;
# -mmutable-globals: the loader gives each thread's instance its own stack by setting __stack_pointer.
# --max-memory: wasm32's 4 GiB, so weights, caches and scratch of a model up to ~3.5 GB fit.
"$cc" --target=wasm32 -O3 -msimd128 -matomics -mbulk-memory -mmutable-globals -nostdlib \
  -fno-builtin -ffile-prefix-map="$root"=. \
  -Wall -Wextra -Wno-unused-parameter -Werror \
  -Wl,--no-entry -Wl,--import-memory -Wl,--shared-memory -Wl,--max-memory=4294967296 \
  -Wl,--export=__stack_pointer -Wl,--export=__heap_base -Wl,--strip-all \
  -o "$out" "$src"
echo "build_wasm: $(wc -c <"$out") bytes -> ${out#$root/}"
