#!/usr/bin/env bash
# Builds the libFuzzer targets (release, AddressSanitizer) and runs each for N seconds.
#
#   bash Fuzz/run.sh [seconds] [target...]     seconds: default 60; targets: GGUF Tokenizer (default both)
#
# Environment:
#   KVCOMPRESS_CACHE        model cache (default ~/.cache/kvcompress): the default model there seeds the
#                           GGUF target and is the Tokenizer target's model
#   KVCOMPRESS_FUZZ_MODEL   the GGUF file for both instead
#   KVCOMPRESS_FUZZ_SCRATCH build directory, corpora, logs and crash artifacts (default .build-fuzz in
#                           the repository, git-ignored)
#   KVCOMPRESS_FUZZ_FLAGS   extra libFuzzer flags (for example "-runs=1000000" to stop after that many
#                           inputs, or "-max_len=4096")
#
# Exit status: 0 when every target ran its time without a crash, leak, timeout or out-of-memory;
# otherwise 1, after printing the end of the failing target's log (the input that failed is under
# $KVCOMPRESS_FUZZ_SCRATCH/artifacts/<target>/; re-run it with `.../Fuzz<target> <that file>`).
set -euo pipefail

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(GGUF Tokenizer)

fuzz="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$fuzz")"
scratch="${KVCOMPRESS_FUZZ_SCRATCH:-$root/.build-fuzz}"
export KVCOMPRESS_CACHE="${KVCOMPRESS_CACHE:-$HOME/.cache/kvcompress}"
model="${KVCOMPRESS_FUZZ_MODEL:-$KVCOMPRESS_CACHE/SmolLM2-135M-Instruct.Q4_1.gguf}"
export KVCOMPRESS_FUZZ_MODEL="$model"

# --sanitize=fuzzer makes SwiftPM link libFuzzer's main instead of the executables' own entry point;
# the -Xswiftc -sanitize=fuzzer,address that follows it on swiftc's command line is the one that counts
# (swiftc keeps only the last -sanitize flag, so SwiftPM's `--sanitize=fuzzer --sanitize=address` would
# build with only one of the two), and -Xcc instruments the C kernels the same way. -enable-testing:
# the targets reach the GGUF parser's in-memory entry point through @testable import.
build=(swift build -c release --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=address
       -Xswiftc -enable-testing --scratch-path "$scratch")
echo "== building the fuzz targets: (cd Fuzz && ${build[*]})"
started=$(date +%s)
(cd "$fuzz" && "${build[@]}" 2>&1 | grep -v "Cannot export local symbol '__asan_extra_spill_area'")
bin="$(cd "$fuzz" && "${build[@]}" --show-bin-path)"
echo "   built in $(($(date +%s) - started)) s"

seeds="$scratch/seeds"
if [ -f "$model" ]; then
    python3 "$fuzz/make-seeds.py" model "$model" "$seeds"
else
    echo "   no model at $model: the GGUF target runs on the synthetic seeds only"
fi

status=0
for target in "${targets[@]}"; do
    corpus="$scratch/corpus/$target"
    artifacts="$scratch/artifacts/$target"
    log="$scratch/Fuzz$target.log"
    mkdir -p "$corpus" "$artifacts"
    dirs=("$corpus" "$fuzz/Seeds/$target")
    [ -d "$seeds/$target" ] && dirs+=("$seeds/$target")
    echo "== Fuzz$target for $seconds s (new inputs in $corpus, log in $log)"
    started=$(date +%s)
    # -timeout: an input that takes 20 s is reported as a hang; -rss_limit_mb / -malloc_limit_mb
    # (2048 by default) report a file that makes the reader allocate gigabytes.
    # shellcheck disable=SC2086
    if "$bin/Fuzz$target" -max_total_time="$seconds" -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" ${KVCOMPRESS_FUZZ_FLAGS:-} "${dirs[@]}" >"$log" 2>&1; then
        rc=0
    else
        rc=$?
    fi
    runs=$(awk '/stat::number_of_executed_units:/ { n += $NF } END { if (NR) print n }' "$log")
    echo "   Fuzz$target: ${runs:-?} inputs executed in $(($(date +%s) - started)) s, exit status $rc"
    if [ "$rc" -ne 0 ]; then
        tail -n 60 "$log"
        status=1
    fi
done
exit $status
