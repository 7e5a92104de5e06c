#!/usr/bin/env bash
# The prepared GPU check of the CUDA backend: one call on a machine with an NVIDIA GPU (sm_80 or
# later) and its driver; no Swift needed there. Runs in about 3 minutes and writes one report.
#
# Here (a machine with Swift), build kvbench with the static Swift standard library into the
# ignored folder .gpu/, compressed (the static binary is ~62 MB stripped, ~16 MB with xz):
#   swift build -c release --static-swift-stdlib --build-path .build-static --product kvbench
#   mkdir -p .gpu && strip -o .gpu/kvbench .build-static/release/kvbench && xz -f .gpu/kvbench
# (built on Debian 12 it needs glibc 2.35 or later there: `objdump -T` lists GLIBC_2.35 at most.)
# For the model rows (kept sets on a passkey prompt, CPU vs CUDA; model decode with attention on
# the GPU), the default model too, in parts small enough to carry (a call carries at most 64 MiB;
# the model is 98 MB and hardly compresses): `split -b 45M -d
# ~/.cache/kvcompress/SmolLM2-135M-Instruct.Q4_1.gguf .gpu/model.part`; carry .gpu/model.part00 in
# a first short call (command `true`), .gpu/model.part01 in a second, and .gpu/kvbench.xz with
# .gpu/model.part02 in the call that runs this script (a warm machine keeps ignored files between
# calls). Without the model those rows are skipped with a note.
# There:
#   bash Scripts/gpu_check.sh            (the report goes to $OUT, or to gpu-check/ without $OUT)
#
# What it runs: `kvbench kernels --backend cuda`: CPU vs CUDA differences for every row format at
# d 64 and 128 (target <= 1e-3, same kept positions after compaction), the device's copy
# bandwidth, decode attention GB/s at 32K and 128K tokens over it (target >= 0.7 for f16 at 32K),
# prefill TFLOP/s, and with the model the kept sets of nine eviction policies with attention on the
# CPU and on the GPU (target: identical) and model decode tok/s on each with their logit difference.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
mkdir -p "$out"
report="$out/gpu_check.md"
{
    echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
    echo '```'
} > "$report"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -f .gpu/kvbench.xz ]; then
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        .gpu/kvbench.xz "$work/kvbench"
elif [ -f .gpu/kvbench ]; then
    cp .gpu/kvbench "$work/kvbench"
else
    echo "no .gpu/kvbench.xz: build it as the header of Scripts/gpu_check.sh says" | tee -a "$report"
    exit 2
fi
chmod +x "$work/kvbench"
if ls .gpu/model.part* > /dev/null 2>&1; then
    cat .gpu/model.part* > "$work/model.gguf"
    export KVCOMPRESS_MODEL="$work/model.gguf"
fi
export KVCOMPRESS_CACHE="$work"  # nothing is fetched there: the machine has no network
{
    echo
    echo "## kvbench kernels --backend cuda"
    echo '```'
} >> "$report"
timeout 420 "$work/kvbench" kernels --backend cuda 2>&1 | tee -a "$report"
echo "exit status: ${PIPESTATUS[0]}" >> "$report"
echo '```' >> "$report"
echo "report: $report"
