#!/usr/bin/env bash
# Runs the CUDA kernels (Sources/CKVCuda/kernels/kvcuda.cu) on the CPU, thread by thread, against a
# double-precision reference: Tests/CudaEmulation/. Needs g++ with C++20; no GPU. Run from anywhere:
#   bash Scripts/cuda_emulation.sh [substring]     (only the cases whose name contains it)
# KVCU_EMU_SANITIZE=address (or thread, undefined) builds with that sanitizer (slower).
#
#   bash Scripts/cuda_emulation.sh --driver OUTPUT.so
# builds instead a fake CUDA driver library (Tests/CudaEmulation/fake_libcuda.cpp) that runs the
# same kernels on the CPU, and exits; the CUDA backend then runs end to end with no GPU:
#   KVCOMPRESS_CUDA_DRIVER=OUTPUT.so swift test ...
# (its blocks run as fibers, fast; KVCU_EMU_FIBERS=0 runs them on the pool of threads instead).
# KVCU_EMU_FIBERS=1 runs the test's blocks as fibers too.
set -euo pipefail
driver=""
if [ "${1:-}" = "--driver" ]; then
    if [ -z "${2:-}" ]; then echo "usage: $0 --driver OUTPUT.so" >&2; exit 2; fi
    case "$2" in /*) driver="$2" ;; *) driver="$PWD/$2" ;; esac
fi
cd "$(dirname "$0")/.."
flags=(-std=c++20 -O2 -pthread -fno-strict-aliasing -Wall -Wextra -Wno-unused-parameter)
if [ -n "${KVCU_EMU_SANITIZE:-}" ]; then flags+=(-g -fsanitize="$KVCU_EMU_SANITIZE" -fno-omit-frame-pointer); fi
if [ -n "$driver" ]; then
    # -z nodelete: the library's worker threads outlive a dlclose (kvcu_probe closes the driver).
    # Blocks run as fibers unless KVCU_EMU_FIBERS=0 at run time (kvcuda_emulate.hpp).
    g++ "${flags[@]}" -fPIC -shared -fvisibility=hidden -Wl,-z,nodelete -DKVCU_EMULATE -DKVCU_EMU_FIBERS_DEFAULT=1 \
        -I Tests/CudaEmulation -I Sources/CKVCuda/include \
        Tests/CudaEmulation/fake_libcuda.cpp -o "$driver"
    echo "built $driver"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
g++ "${flags[@]}" -DKVCU_EMULATE -I Tests/CudaEmulation -I Sources/CKVCuda/include \
    Tests/CudaEmulation/kvcuda_emulation_test.cpp -o "$tmp/kvcuda_emulation"
"$tmp/kvcuda_emulation" "$@"
