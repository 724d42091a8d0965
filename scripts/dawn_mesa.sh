#!/usr/bin/env bash
# Install Mesa 25's lavapipe (Vulkan on the CPU) from Debian 12's bookworm-backports BESIDE the system's
# Mesa, for Dawn alone (--webgpu dawn on a machine without a GPU driver), and print the path of its driver
# manifest: export it as SPECDEC_DAWN_ICD.
#
# Why beside, not instead: Dawn rejects Debian 12's Mesa 22.3 lavapipe ("shaderUniform*ArrayDynamicIndexing
# required"), but Mesa 25's lavapipe compiles this project's shaders several times slower on a cold shader
# cache (the tiny pair's first Sequoia generation: ~90 s vs a few s), so Deno's built-in WebGPU keeps the
# system's driver. The package is unpacked into DIR (default $HOME/.cache/specdec/mesa-dawn), not
# installed: nothing else on the machine changes, except an apt source for bookworm-backports (apt never
# prefers backports' packages by itself).
#
# Usage: bash scripts/dawn_mesa.sh [DIR]     (root, Debian 12; idempotent: a finished DIR is kept)
set -euo pipefail
dir=${1:-${HOME}/.cache/specdec/mesa-dawn}
manifest="$dir/lvp_icd.json"
if [ -f "$manifest" ] && [ -f "$dir/root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so" ]; then
  echo "$manifest"
  exit 0
fi
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != bookworm ]; then
  echo "dawn_mesa.sh: this is for Debian 12 (bookworm), not ${PRETTY_NAME:-unknown}; install a Mesa >= 24" \
    "Vulkan driver with your package manager instead" >&2
  exit 1
fi
list=/etc/apt/sources.list.d/bookworm-backports.list
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" >"$list"
fi
apt-get update -o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 \
  >/dev/null 2>&1 || apt-get update >/dev/null
mkdir -p "$dir/root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod a+rwx "$work" # apt downloads as _apt
(cd "$work" && apt-get download -t bookworm-backports mesa-vulkan-drivers >/dev/null)
deb=$(ls "$work"/mesa-vulkan-drivers_*.deb)
dpkg-deb -x "$deb" "$dir/root"
lib="$dir/root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"
[ -f "$lib" ] || { echo "dawn_mesa.sh: $deb has no libvulkan_lvp.so" >&2; exit 1; }
api=$(sed -n 's/.*"api_version": *"\([^"]*\)".*/\1/p' "$dir/root/usr/share/vulkan/icd.d/lvp_icd.json" | head -1)
cat >"$manifest.tmp" <<EOF
{
  "file_format_version": "1.0.0",
  "ICD": { "library_path": "$lib", "api_version": "${api:-1.3.0}" }
}
EOF
mv "$manifest.tmp" "$manifest"
echo "$manifest"
