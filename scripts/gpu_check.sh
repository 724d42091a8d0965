#!/usr/bin/env bash
# The GPU check: one command for a lent GPU machine (see README "GPU check"). Adapter and limits, sync
# cost, streaming-read and matvec GB/s per dtype, t(n) and AR tok/s of a 1B-shaped and a SmolLM2-shaped
# random target made on the machine, AR vs Sequoia on the tiny pair; each stage under its own limit, all
# under --limit (default 420 s). Writes gpu_check.json + gpu_check.md to --out (default $OUT, else
# bench/out/gpu_check). On the machine:
#   source .gpu/enter.sh && bash scripts/gpu_check.sh 2>&1 | tee $OUT/gpu.log
# Here (llvmpipe): bash scripts/gpu_check.sh --quick
set -uo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-gpu-check}
mkdir -p "$XDG_RUNTIME_DIR"
command -v deno >/dev/null || { echo "gpu_check: deno not on PATH (on a lent machine: source .gpu/enter.sh)" >&2; exit 2; }
limit=420
prev=""
for a in "$@"; do
  [ "$prev" = "--limit" ] && limit=$a
  [ "$a" = "--quick" ] && [ "$limit" = 420 ] && limit=120
  prev=$a
done
# With node_modules in place (a lent machine: unpacked by .gpu/enter.sh) every module is local: no registry
# look-up (there is no network there; without --cached-only Deno asks npm for package metadata).
cached=()
[ -d node_modules ] && cached=(--cached-only)
# A hard stop a little past the driver's own limit, in case a stage ignores SIGTERM.
exec timeout -k 5 $((${limit%.*} + 20)) deno run -A "${cached[@]}" scripts/gpu_check.ts "$@"
