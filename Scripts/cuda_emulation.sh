#!/usr/bin/env bash
# Runs the CUDA kernels (Sources/CKVCuda/kernels/kvcuda.cu) on the CPU, thread by thread, against a
# double-precision reference: Tests/CudaEmulation/. Needs g++ with C++20; no GPU. Run from anywhere:
#   bash Scripts/cuda_emulation.sh [substring]     (only the cases whose name contains it)
# KVCU_EMU_SANITIZE=address (or thread, undefined) builds with that sanitizer (slower).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags=(-std=c++20 -O2 -pthread -fno-strict-aliasing -Wall -Wextra -Wno-unused-parameter)
if [ -n "${KVCU_EMU_SANITIZE:-}" ]; then flags+=(-g -fsanitize="$KVCU_EMU_SANITIZE" -fno-omit-frame-pointer); fi
g++ "${flags[@]}" -DKVCU_EMULATE -I Tests/CudaEmulation -I Sources/CKVCuda/include \
    Tests/CudaEmulation/kvcuda_emulation_test.cpp -o "$tmp/kvcuda_emulation"
"$tmp/kvcuda_emulation" "$@"
