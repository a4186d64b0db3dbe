#!/usr/bin/env bash
# Runs every fuzz target (or those named) for a fixed time budget each, one after the other,
# one libFuzzer process at a time, and prints a table of executions per target and the total.
#
# Usage (nightly toolchain and cargo-fuzz installed):
#   fuzz/budget.sh                                   # every target, BUDGET seconds each
#   BUDGET=600 BUDGET_dns_query=300 fuzz/budget.sh   # per-target overrides
#   nice -n 19 fuzz/budget.sh bridge ctl_proto       # some targets, politely
#
# Environment:
#   BUDGET=60          seconds per target (libFuzzer -max_total_time)
#   BUDGET_<target>=N  seconds for that target instead
#   BUILD=1            0 = do not run `cargo +nightly fuzz build` first (use the built binaries)
#   SANITIZER=address  cargo fuzz's -s (address, leak, memory, thread, none)
#   CORPUS_DIR=fuzz/target/budget-corpus  where each target's working corpus lives (kept
#                      between runs; libFuzzer writes new inputs there, never into the
#                      committed seeds in fuzz/corpus/<target>, which it only reads)
#   FUZZ_ARGS=""       more libFuzzer flags for every target
#
# Each target runs with -print_final_stats=1; the table takes its executions
# (stat::number_of_executed_units), their rate, peak RSS and the working corpus's size
# from those stats. A target that crashes is reported with its artifact
# (fuzz/artifacts/<target>/...), the others still run, and the exit status is 1.
set -euo pipefail

FUZZ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUDGET=${BUDGET:-60}
BUILD=${BUILD:-1}
SANITIZER=${SANITIZER:-address}
CORPUS_DIR=${CORPUS_DIR:-$FUZZ_DIR/target/budget-corpus}
read -r -a EXTRA <<<"${FUZZ_ARGS:-}"
TRIPLE=$(rustc +nightly -vV | awk '/^host:/ { print $2 }')
# The address-sanitized build is the one `cargo fuzz run` uses (fuzz/target); others get
# their own target directory, so switching does not rebuild it.
TARGET_DIR=$FUZZ_DIR/target
[[ $SANITIZER == address ]] || TARGET_DIR=$FUZZ_DIR/target/sanitizer-$SANITIZER
BIN_DIR=$TARGET_DIR/$TRIPLE/release
LOG_DIR=$FUZZ_DIR/target/budget-logs

if (($# > 0)); then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cd "$FUZZ_DIR" && cargo +nightly fuzz list)
fi

if [[ $BUILD == 1 ]]; then
    echo "[budget] cargo +nightly fuzz build -s $SANITIZER (${TARGETS[*]})" >&2
    for t in "${TARGETS[@]}"; do
        (cd "$FUZZ_DIR" && cargo +nightly fuzz build -s "$SANITIZER" --target-dir "$TARGET_DIR" "$t") >&2
    done
fi
mkdir -p "$LOG_DIR"

# group N: N with thousands separators, whatever the locale.
group() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }

# stat NAME LOG: the value of libFuzzer's final "stat::NAME: VALUE" line.
stat() { awk -v k="stat::$1:" '$1 == k { v = $2 } END { print v + 0 }' "$2"; }

declare -a ROWS=()
total=0
failed=0
for t in "${TARGETS[@]}"; do
    var="BUDGET_$t"
    secs=${!var:-$BUDGET}
    corpus=$CORPUS_DIR/$t
    seeds=$FUZZ_DIR/corpus/$t
    mkdir -p "$corpus" "$FUZZ_DIR/artifacts/$t"
    log=$LOG_DIR/$t.log
    echo "[budget] $t: ${secs} s" >&2
    start=$EPOCHREALTIME
    status=0
    (cd "$FUZZ_DIR" && "$BIN_DIR/$t" "$corpus" "$seeds" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$FUZZ_DIR/artifacts/$t/" "${EXTRA[@]}") >"$log" 2>&1 || status=$?
    wall=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
    execs=$(stat number_of_executed_units "$log")
    rate=$(stat average_exec_per_sec "$log")
    rss=$(stat peak_rss_mb "$log")
    units=$(find "$corpus" -type f | wc -l)
    result=ok
    if ((status != 0)); then
        failed=1
        artifact=$(grep -o "Test unit written to [^ ]*" "$log" | tail -n 1 | sed 's/Test unit written to //')
        result="CRASH (exit $status) ${artifact:-see $log}"
    fi
    total=$((total + execs))
    ROWS+=("| $t | $secs | $wall | $(group "$execs") | $(group "$rate") | $rss | $units | $result |")
done

printf '\n## Fuzzing budget, %s, sanitizer %s, %s\n\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$SANITIZER" \
    "$(nproc) CPUs, one process at a time"
echo "| target | budget s | wall s | executions | exec/s | peak RSS MB | corpus files | result |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
printf '| **total** | | | **%s** | | | | |\n' "$(group "$total")"
echo
echo "(logs: $LOG_DIR)"
exit "$failed"
