#!/usr/bin/env bash
# Install node-llama-cpp's prebuilt llama.cpp binaries (CPU + Vulkan, linux-x64) into tools/llama_cpp/node_modules
# (about 155 MB, 10 s), at the versions package-lock.json pins.
# Prebuilt only, never a build or a GitHub download:
#   --ignore-scripts                 skips node-llama-cpp's postinstall (which would build from source when no
#                                    prebuilt binary fits); NODE_LLAMA_CPP_POSTINSTALL=skip says the same
#   NODE_LLAMA_CPP_SKIP_DOWNLOAD     no llama.cpp source download, at install or at run time
#   --omit=optional                  skips the other platforms' and the CUDA binaries (node-llama-cpp's
#                                    optionalDependencies); the two linux-x64 ones are direct dependencies
# `npm install`, not `npm ci`: the registry mirror this project reaches has no win/mac/riscv64 packages, so the
# lockfile cannot list them and `npm ci` refuses it as out of sync; `npm install` keeps the lockfile as it is.
# reference.mjs then calls getLlama({build: "never", skipDownload: true, usePrebuiltBinaries: true}).
set -euo pipefail
cd "$(dirname "$0")"
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true NODE_LLAMA_CPP_POSTINSTALL=skip \
  npm install --omit=optional --ignore-scripts --no-audit --no-fund "$@"
