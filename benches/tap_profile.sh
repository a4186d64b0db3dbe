#!/usr/bin/env bash
# Profiles vswitchd's datapath thread while two TAP-port sandboxes talk: where its time goes
# (perf call graph), how long it waits for a CPU (schedstat), how often it sleeps or is
# preempted, and the system calls it makes per forwarded frame (strace -c).
#
# Usage (as root, with release binaries built; installs nothing but needs iperf3, sockperf,
# perf (Debian: linux-perf) and strace):
#   sudo benches/tap_profile.sh                 # TCP (iperf3, one stream) then sockperf ping-pong
#   sudo SECONDS_PER=10 PIN=0 benches/tap_profile.sh
#
# Environment:
#   SECONDS_PER=6   seconds of each phase's measurement window (traffic runs 2 s longer)
#   PIN=1           client on CPU 0, server on CPU 1 (as benches/e2e.sh); 0 = unpinned
#   PHASES="tcp latency"
#   VSWITCHD, VSWITCHCTL  binaries (default: $CARGO_TARGET_DIR or target/, release)
#   OUT=dir         where perf data and the report go (default: a temporary directory, kept)
#
# Each phase measures three windows of SECONDS_PER one after the other (the tools slow the
# thread down, so they do not overlap): plain (throughput, schedstat, context switches), then
# perf record -g, then strace -c. Compare with the kernel bridge in the same run of
# benches/e2e.sh; this script only explains vswitchd's side.
#
# Everything it creates carries the prefix vp<pid>x and is removed on exit.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$SCRIPT_DIR/../target}
VSWITCHD=${VSWITCHD:-$TARGET_DIR/release/vswitchd}
VSWITCHCTL=${VSWITCHCTL:-$TARGET_DIR/release/vswitchctl}
SECONDS_PER=${SECONDS_PER:-6}
PIN=${PIN:-1}
PHASES=${PHASES:-tcp latency}
OUT=${OUT:-$(mktemp -d /tmp/tap_profile.XXXXXX)}
P="vp$$x"
PIDS=()
DAEMON=""

log() { printf '[tap_profile] %s\n' "$*" >&2; }
ctl() { "$VSWITCHCTL" --socket "$OUT/ctl.sock" "$@"; }
# exec: when it runs in the background, $! is the tool itself, which cleanup kills.
in_ns() { local ns=$1; shift; exec nsenter --net="/run/netns/$ns" -- "$@"; }
CLIENT=()
SERVER=()
if [[ $PIN == 1 ]]; then CLIENT=(taskset -c 0); SERVER=(taskset -c 1); fi

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    if [[ -n $DAEMON ]]; then
        ctl network disconnect "${P}net" "${P}a" >/dev/null 2>&1
        ctl network disconnect "${P}net" "${P}b" >/dev/null 2>&1
        ctl sandbox rm "${P}a" "${P}b" >/dev/null 2>&1
        ctl network rm "${P}net" >/dev/null 2>&1
        kill "$DAEMON" 2>/dev/null
        wait "$DAEMON" 2>/dev/null
    fi
    for f in /run/netns/"$P"*; do [[ -e $f ]] && ip netns del "${f##*/}"; done
    log "report and perf data in $OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in iperf3 sockperf perf strace; do
    command -v "$tool" >/dev/null || { log "$tool is missing"; exit 1; }
done
[[ -x $VSWITCHD && -x $VSWITCHCTL ]] || { log "no binaries at $VSWITCHD (cargo build --release)"; exit 1; }

"$VSWITCHD" --ctl-socket "$OUT/ctl.sock" --state-dir "$OUT/state" >"$OUT/vswitchd.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do ctl ping >/dev/null 2>&1 && break; sleep 0.1; done
ctl sandbox create "${P}a" >/dev/null
ctl sandbox create "${P}b" >/dev/null
ctl network create "${P}net" --subnet 10.238.0.0/24 >/dev/null
ctl network connect "${P}net" "${P}a" --ip 10.238.0.2 >/dev/null
ctl network connect "${P}net" "${P}b" --ip 10.238.0.3 >/dev/null
TID=$( (grep -ls '^datapath$' /proc/"$DAEMON"/task/*/comm || true) | head -n 1 | cut -d/ -f5)
[[ -n $TID ]] || { log "no datapath thread in $DAEMON"; exit 1; }

(in_ns "${P}b" "${SERVER[@]}" iperf3 -s -B 10.238.0.3 -p 5299 >/dev/null 2>&1) &
PIDS+=($!)
(in_ns "${P}b" "${SERVER[@]}" sockperf server -i 10.238.0.3 -p 11299 >/dev/null 2>&1) &
PIDS+=($!)
sleep 1

# Frames the switch wrote to both ports so far.
tx_frames() { ctl stats | awk '$2 == "'"${P}net"'" && $1 !~ /^gw:/ { n += $5 } END { print n + 0 }'; }
sched() { cat "/proc/$DAEMON/task/$TID/schedstat"; }
ctxt() { awk '/ctxt_switches/ { printf "%s ", $2 } END { print "" }' "/proc/$DAEMON/task/$TID/status"; }

# traffic PHASE SECONDS: starts the client in the background, prints nothing.
traffic() {
    case $1 in
    tcp) (in_ns "${P}a" "${CLIENT[@]}" iperf3 -c 10.238.0.3 -p 5299 -t "$2" -f m >"$OUT/$1-client.txt" 2>&1) & ;;
    latency) (in_ns "${P}a" "${CLIENT[@]}" sockperf ping-pong -i 10.238.0.3 -p 11299 -t "$2" >"$OUT/$1-client.txt" 2>&1) & ;;
    esac
    PIDS+=($!)
}

for phase in $PHASES; do
    log "$phase: plain window"
    traffic "$phase" $((SECONDS_PER + 2))
    sleep 1
    read -r run0 wait0 _ < <(sched)
    read -r vol0 invol0 < <(ctxt)
    f0=$(tx_frames)
    sleep "$SECONDS_PER"
    read -r run1 wait1 _ < <(sched)
    read -r vol1 invol1 < <(ctxt)
    f1=$(tx_frames)
    wait "${PIDS[-1]}" || true
    frames=$((f1 - f0))
    {
        echo "## $phase (PIN=$PIN, $SECONDS_PER s window, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
        case $phase in
        tcp) awk '/receiver/ { print "iperf3: " $(NF - 2) " Mbit/s" }' "$OUT/$phase-client.txt" ;;
        latency) sed -n 's/.*percentile \(50\|99\)\.000 = *\([0-9.]*\).*/sockperf half-RTT p\1: \2 us/p' "$OUT/$phase-client.txt" ;;
        esac
        awk -v r=$((run1 - run0)) -v w=$((wait1 - wait0)) -v s="$SECONDS_PER" -v f="$frames" \
            -v v=$((vol1 - vol0)) -v i=$((invol1 - invol0)) 'BEGIN {
            printf "datapath thread: on CPU %.0f%% of the window, runnable but waiting for a CPU %.0f%%\n", r / s / 1e7, w / s / 1e7
            printf "frames written: %d (%.0f/s); sleeps (voluntary switches): %d, preemptions: %d; frames per sleep: %.1f\n", f, f / s, v, i, (v ? f / v : 0)
        }'
    } | tee -a "$OUT/report.md"

    log "$phase: perf record window"
    traffic "$phase" $((SECONDS_PER + 2))
    sleep 1
    perf record -q -g -t "$TID" -o "$OUT/$phase.perf" -- sleep "$SECONDS_PER" >/dev/null 2>&1 || true
    wait "${PIDS[-1]}" || true
    {
        echo "perf (children, the datapath thread; top 25):"
        perf report -i "$OUT/$phase.perf" --children --sort sym --stdio 2>/dev/null |
            grep -E '^ +[0-9.]+%' | head -n 25 || true
    } | tee -a "$OUT/report.md"

    log "$phase: strace -c window"
    traffic "$phase" $((SECONDS_PER + 2))
    sleep 1
    f0=$(tx_frames)
    timeout -s INT "$SECONDS_PER" strace -c -p "$TID" -o "$OUT/$phase-strace.txt" >/dev/null 2>&1 || true
    f1=$(tx_frames)
    wait "${PIDS[-1]}" || true
    {
        echo "system calls per frame written (strace -c, $((f1 - f0)) frames):"
        awk -v f=$((f1 - f0)) '$NF ~ /^(read|write|writev|epoll_wait|recvmsg|sendmsg|sendmmsg|recvmmsg)$/ {
            errs = (NF == 6) ? $5 : 0
            printf "  %-12s %.2f per frame (%s calls, %s errors)\n", $NF, (f ? $4 / f : 0), $4, errs }' "$OUT/$phase-strace.txt"
        echo
    } | tee -a "$OUT/report.md"
done
