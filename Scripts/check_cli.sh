#!/usr/bin/env bash
# Scripted checks of the kvcompress command line: exact exit codes and messages for bad input.
# None of them needs the model (every error is caught before it loads).
#   bash Scripts/check_cli.sh [path/to/kvcompress]     (default .build/release/kvcompress)
set -uo pipefail
bin=${1:-.build/release/kvcompress}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect CODE "EXPECTED STDERR LINE OR STDOUT SUBSTRING" -- ARGS...
expect() {
    local code=$1 want=$2; shift 3
    "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" != "$code" ] || ! grep -qF -- "$want" "$tmp/out" "$tmp/err"; then
        echo "FAIL: kvcompress $* -> exit $got (want $code), output:"; cat "$tmp/out" "$tmp/err" | head -5
        echo "      expected: $want"
        failures=$((failures + 1))
    else
        echo "ok   exit $code: kvcompress $*"
    fi
}

printf '[1, 2, x]' > "$tmp/bad.json"
printf '{"prompt_ids": [1, -2, 3]}' > "$tmp/negative.json"
printf '[]' > "$tmp/empty.json"
: > "$tmp/empty.txt"
printf 'caf\xc3\xa9 \xff\xfe text' > "$tmp/latin.txt"
printf 'not a gguf file' > "$tmp/model.gguf"

expect 0 "kvcompress generate --prompt TEXT" -- generate --help
expect 0 "kvcompress kept --policy NAME --ratio R" -- kept --help
expect 0 "kvcompress perplexity --text FILE" -- perplexity --help
expect 0 "USAGE:" -- --help
expect 2 "kvcompress: unknown subcommand 'bogus'" -- bogus
expect 2 "kvcompress: unknown argument '--bogus'" -- generate --prompt hi --bogus
expect 2 "kvcompress: --prompt needs a value" -- generate --prompt
expect 2 "kvcompress: --prompt is empty: give the text to continue" -- generate --prompt ""
expect 2 "kvcompress: --ratio expects a fraction in [0, 1), got '1.5'" -- generate --prompt hi --policy SnapKV --ratio 1.5
expect 2 "kvcompress: --cache: unknown cache format 'q3_k'; known: f32, f16, bf16, q8_0, q4_0, q4_1, q2_1, kivi2, kivi4" -- generate --prompt hi --cache q3_k
expect 2 "kvcompress: --reposition re-rotates cached keys" -- generate --prompt hi --policy StreamingLLM --reposition --keys kivi4
expect 2 "kvcompress: --values: unknown cache format 'int4'" -- perplexity --text "$tmp/latin.txt" --values int4
expect 2 "kvcompress: --ratio needs --policy NAME" -- generate --prompt hi --ratio 0.5
expect 2 "kvcompress: --max-tokens expects an integer in 1...2147483647, got '0'" -- generate --prompt hi --max-tokens 0
expect 2 "kvcompress: --seed expects an integer in 0...18446744073709551615, got '-1'" -- generate --prompt hi --seed -1
expect 2 "kvcompress: --temperature expects a number >= 0 (0 = greedy), got '-1'" -- generate --prompt hi --temperature -1
expect 2 "kvcompress: --top-p expects a number in (0, 1], got '0'" -- generate --prompt hi --top-p 0
expect 2 "kvcompress: --threads expects an integer in 1...4096, got '0'" -- generate --prompt hi --threads 0
expect 2 "kvcompress: --policy: unknown policy 'Nope'" -- generate --prompt hi --policy Nope
expect 2 "kvcompress: --policy: unknown policy 'AdaKV:Nope'" -- generate --prompt hi --policy AdaKV:Nope
expect 2 "expected DMS@THRESHOLD:INNER" -- generate --prompt hi --policy DMS:Knorm
expect 2 "a KVzap surrogate for this model" -- generate --prompt hi --policy DMS@-4:KVzap
expect 1 "cannot read KVzap's config.json" -- generate --prompt hi --policy KVzap --kvzap "$tmp/none"
expect 1 "cannot read the PyTorch checkpoint" -- generate --prompt hi --policy FastKVzip --fastkvzip-gates "$tmp/none.pt"
expect 2 "a RestoreKV artifact for this model" -- generate --prompt hi --policy RestoreKV
expect 1 "cannot read RestoreKV's adapter_config.json" -- generate --prompt hi --policy RestoreKV --restorekv "$tmp/none"
expect 2 "calibrate expected-attention needs --text FILE" -- calibrate expected-attention --out "$tmp/stats"
expect 2 "which only --policy Finch reads" -- generate --prompt "a<|finch_sep|>b" --policy SnapKV
expect 2 "expected exactly one <|finch_sep|> between the context and the question" -- generate --prompt "a<|finch_sep|>b<|finch_sep|>c" --policy Finch
expect 2 "expected the question after <|finch_sep|>" -- generate --prompt "a<|finch_sep|>" --policy Finch
expect 2 "kvcompress: --window applies to --policy StreamingLLM only" -- generate --prompt hi --policy SnapKV --window 100
expect 2 "kvcompress: --ratio and --window exclude each other" -- generate --prompt hi --policy StreamingLLM --window 100 --ratio 0.5
expect 2 "kvcompress: --window expects an integer in 1...2147483647, got '0'" -- generate --prompt hi --policy StreamingLLM --window 0
expect 2 "kvcompress: --out $tmp/missing/kept.json: directory $tmp/missing does not exist" -- \
    kept --policy SnapKV --ratio 0.5 --prompt-ids "$tmp/does-not-exist.json" --out "$tmp/missing/kept.json"
expect 2 "kvcompress: --out $tmp is a directory" -- kept --policy SnapKV --ratio 0.5 --prompt-ids "$tmp/bad.json" --out "$tmp"
expect 1 "kvcompress: malformed file $tmp/bad.json: field 'JSON' at byte offset 7: unexpected character 'x'" -- \
    kept --policy SnapKV --ratio 0.5 --prompt-ids "$tmp/bad.json" --out "$tmp/kept.json"
expect 1 "kvcompress: malformed file $tmp/negative.json: field 'prompt_ids[1]' at byte offset 19: not a token id" -- \
    kept --policy SnapKV --ratio 0.5 --prompt-ids "$tmp/negative.json" --out "$tmp/kept.json"
expect 2 "kvcompress: the prompt is empty" -- kept --policy SnapKV --ratio 0.5 --prompt-ids "$tmp/empty.json" --out "$tmp/kept.json"
expect 2 "kvcompress: perplexity needs --text FILE" -- perplexity
expect 2 "kvcompress: --text $tmp/empty.txt is empty" -- perplexity --text "$tmp/empty.txt"
expect 1 "kvcompress: malformed file $tmp/latin.txt: field 'text' at byte offset 6: not valid UTF-8" -- perplexity --text "$tmp/latin.txt"
expect 2 "kvcompress: --max-tokens expects an integer >= 2, got '1'" -- perplexity --text "$tmp/latin.txt" --max-tokens 1
expect 1 "kvcompress: malformed file $tmp/model.gguf" -- generate --prompt hi --model "$tmp/model.gguf"
expect 2 "kvcompress: --backend: unknown backend 'gpu'; known: cpu, cuda, automatic" -- generate --prompt hi --backend gpu
KVCOMPRESS_CUDA_DRIVER=$tmp/none/libcuda.so.1 expect 1 "kvcompress: backend error: CUDA: no CUDA driver: cannot load $tmp/none/libcuda.so.1" -- \
    generate --prompt hi --backend cuda
KVCOMPRESS_CUDA_DRIVER=$tmp/none/libcuda.so.1 expect 1 "kvcompress: backend error: CUDA: no CUDA driver" -- \
    kept --policy SnapKV --ratio 0.5 --prompt-ids "$tmp/bad.json" --out "$tmp/kept.json" --backend cuda

# The policy list is a table (up to its first blank line; the wrappers follow in prose): every
# column starts at the same offset on every line.
"$bin" kept --policy list | awk 'NF == 0 { exit } { print }' > "$tmp/list"
header=$(head -1 "$tmp/list")
col2=$(awk -v h="$header" 'BEGIN { print index(h, "KVPRESS CLASS") }')
col3=$(awk -v h="$header" 'BEGIN { print index(h, "WHAT IT KEEPS") }')
if awk -v c2="$col2" -v c3="$col3" 'NR > 1 && (substr($0, c2 - 1, 1) != " " || substr($0, c2, 1) == " " || substr($0, c3 - 1, 1) != " " || substr($0, c3, 1) == " ") { bad = 1 } END { exit bad }' "$tmp/list"; then
    echo "ok   kept --policy list: aligned columns at $col2 and $col3"
else
    echo "FAIL: kept --policy list is not aligned:"; cat "$tmp/list"; failures=$((failures + 1))
fi

if [ "$failures" -gt 0 ]; then echo "$failures CLI check(s) failed"; exit 1; fi
echo "all CLI checks passed"
