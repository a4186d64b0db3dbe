#!/usr/bin/env bash
# Control-plane latency, A/B: how long `vswitchctl network connect` and `network disconnect` of one
# sandbox take with two builds, measured interleaved (A, B, A, B, ...) so a shared machine's load hits
# both alike; reports the ratios B/A.
#
# Per run: a fresh namespace runs the build's vswitchd with its state directory under /var/tmp (a real
# disk, so the saves' fsyncs count); one network and one sandbox; then CYCLES times `network connect`
# followed by `network disconnect` (PORT_TYPE tap or afxdp), each timed from the client's start to its
# exit (so the vswitchctl process start is in every figure, alike for both builds). Prints the median
# and the 90th percentile of each verb per run, then the per-repetition ratios of the medians B/A.
#
#   sudo A=/path/to/old/bin B=/path/to/new/bin REPEAT=3 CYCLES=30 benches/connect.sh
#
# A and B are directories holding vswitchd and vswitchctl. Nothing outside the run's namespace and
# temporary directories is touched.
set -euo pipefail
A=${A:?directory with the baseline vswitchd and vswitchctl} B=${B:?directory with the new build}
REPEAT=${REPEAT:-3} CYCLES=${CYCLES:-30} PORT_TYPE=${PORT_TYPE:-tap}
[[ $(id -u) == 0 ]] || { echo "run as root (creates a network namespace)" >&2; exit 1; }
P=cnb$$ TMP=$(mktemp -d /var/tmp/vswitch-connect.XXXXXX)
DPID=""
cleanup() {
    [[ -z $DPID ]] || kill "$DPID" 2>/dev/null || true
    wait 2>/dev/null || true
    ip netns del "${P}h" 2>/dev/null || true
    for ns in /run/netns/"${P}"*; do [[ -e $ns ]] && ip netns del "$(basename "$ns")" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

ctl() { local bin=$1; shift; "$bin/vswitchctl" --socket "$TMP/d.sock" "$@"; }

# Prints the milliseconds between two `date +%s%N` readings.
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) / 1e6 }'; }

# median_p90 FILE: "median p90" of the numbers in FILE, one per line.
median_p90() {
    sort -n "$1" | awk '{ v[NR] = $1 } END { printf "%.2f %.2f", v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.5)] }'
}

run() { # LABEL BINDIR: writes "connect_median connect_p90 disconnect_median disconnect_p90" to $TMP/result
    local label=$1 bin=$2 i t0 t1
    ip netns add "${P}h"
    ip netns exec "${P}h" ip link set lo up
    rm -rf "$TMP/state"
    nsenter --net="/run/netns/${P}h" -- "$bin/vswitchd" --ctl-socket "$TMP/d.sock" \
        --state-dir "$TMP/state" >"$TMP/d-$label.log" 2>&1 &
    DPID=$!
    for _ in $(seq 100); do ctl "$bin" ping >/dev/null 2>&1 && break; sleep 0.1; done
    ctl "$bin" ping >/dev/null || { cat "$TMP/d-$label.log" >&2; exit 1; }
    ctl "$bin" network create "${P}n" --subnet 10.254.0.0/24 >/dev/null
    ctl "$bin" sandbox create "${P}s" >/dev/null
    : >"$TMP/connect" && : >"$TMP/disconnect"
    for ((i = 0; i < CYCLES; i++)); do
        t0=$(date +%s%N)
        ctl "$bin" network connect "${P}n" "${P}s" --port-type "$PORT_TYPE" >/dev/null
        t1=$(date +%s%N)
        elapsed_ms "$t0" "$t1" >>"$TMP/connect"
        t0=$(date +%s%N)
        ctl "$bin" network disconnect "${P}n" "${P}s" >/dev/null
        t1=$(date +%s%N)
        elapsed_ms "$t0" "$t1" >>"$TMP/disconnect"
    done
    ctl "$bin" sandbox rm "${P}s" >/dev/null
    kill "$DPID"
    wait "$DPID" 2>/dev/null || true
    DPID=""
    ip netns del "${P}h"
    echo "$(median_p90 "$TMP/connect") $(median_p90 "$TMP/disconnect")" >"$TMP/result"
}

declare -a ca cb da db
echo "run build connect_median_ms connect_p90_ms disconnect_median_ms disconnect_p90_ms (PORT_TYPE=$PORT_TYPE, $CYCLES cycles)"
for ((r = 1; r <= REPEAT; r++)); do
    # Called in this shell (not in $( )), so that set -e stops a failed
    # step and cleanup() sees the daemon's pid.
    run a "$A"
    read -r cm cp dm dp <"$TMP/result"
    echo "$r A $cm $cp $dm $dp"
    ca+=("$cm") && da+=("$dm")
    run b "$B"
    read -r cm cp dm dp <"$TMP/result"
    echo "$r B $cm $cp $dm $dp"
    cb+=("$cm") && db+=("$dm")
done
echo "B/A per repetition (medians):"
for ((r = 0; r < REPEAT; r++)); do
    awk -v ca="${ca[$r]}" -v cb="${cb[$r]}" -v da="${da[$r]}" -v db="${db[$r]}" -v r=$((r + 1)) \
        'BEGIN { printf "  %d: connect %.2f, disconnect %.2f\n", r, cb / ca, db / da }'
done
