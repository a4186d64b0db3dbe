# shellcheck shell=bash
# Helpers shared by the namespace benchmarks (dns.sh, nat.sh, e2e.sh, workers.sh), sourced by
# them: logging, packages, the release build, namespaces and veth pairs under the run's prefix,
# starting and stopping vswitchd, removing everything the prefix names on exit, process CPU
# samples and iperf3 results.
#
# The sourcing script sets, before it calls any of them:
#   BENCH   its short name: the log prefix ("[BENCH] ...") and the temporary directory's
#   P       the prefix of every namespace and link it creates, unique per run ("vd$$x"; the
#           trailing x keeps one run's prefix from being a prefix of another's: vd12, vd123)
# and defines cleanup(), which bench_start installs as the EXIT trap. It gets, unless the
# environment sets them: ROOT, TARGET_DIR, BUILD (1), KEEP_LOGS (0), VSWITCHD and VSWITCHCTL
# (release binaries of $CARGO_TARGET_DIR or target/); TMP is set by bench_start.
# Nothing here touches the host namespace's interfaces, routes or firewall.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BUILD=${BUILD:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
VSWITCHD=${VSWITCHD:-$TARGET_DIR/release/vswitchd}
VSWITCHCTL=${VSWITCHCTL:-$TARGET_DIR/release/vswitchctl}
TMP=""
VSWITCHD_PID=""   # the daemon start_vswitchd started last
VSWITCHD_ERR=""   # why start_vswitchd failed
declare -a BG_PIDS=() # helper processes kill_bg stops (cleanup)

log() { printf '[%s] %s\n' "$BENCH" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# in_ns NS CMD...: CMD in network namespace NS. nsenter execs, so a background job's PID is
# the program's own (not ip netns exec, whose private mount namespace would hide the
# namespaces a daemon creates under /run/netns).
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" -- "$@"; }

# bench_start: checks for root, installs cleanup() as the EXIT trap (INT and TERM exit through
# it), makes TMP (/tmp/vswitch-BENCH.XXXXXX) and enters it, so tools never write into the
# caller's directory.
bench_start() {
    [[ $(id -u) == 0 ]] || die "run as root (creates network namespaces)"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    TMP=$(mktemp -d "/tmp/vswitch-$BENCH.XXXXXX")
    cd "$TMP"
}

# install_missing [--no-install-recommends] PACKAGE...: apt-get install of the packages (none:
# nothing to do), with an apt-get update first only when the plain install fails.
install_missing() {
    local opts=(-y -q)
    if [[ ${1:-} == --no-install-recommends ]]; then
        opts+=("$1")
        shift
    fi
    (($# > 0)) || return 0
    log "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >&2; }
}

# build_switch: the release vswitchd and vswitchctl (cargo), unless BUILD=0.
build_switch() {
    [[ $BUILD == 1 ]] || return 0
    log "cargo build --release -p switch -p ctl --bins"
    (cd "$ROOT" && cargo build --release -q -p switch -p ctl --bins) >&2
}

# netns_add NS...: new network namespaces, loopback up.
netns_add() {
    local ns
    for ns in "$@"; do
        ip netns add "$ns" && in_ns "$ns" ip link set lo up || return 1
    done
}

# veth_pair NS_A IF_A ADDR_A NS_B IF_B ADDR_B: a veth pair IF_A (in NS_A) <-> IF_B (in NS_B),
# each end with its address (CIDR; "" for none) and up.
veth_pair() {
    local ns_a=$1 if_a=$2 addr_a=$3 ns_b=$4 if_b=$5 addr_b=$6
    ip -n "$ns_a" link add "$if_a" type veth peer name "$if_b" netns "$ns_b" &&
        { [[ -z $addr_a ]] || in_ns "$ns_a" ip addr add "$addr_a" dev "$if_a"; } &&
        { [[ -z $addr_b ]] || in_ns "$ns_b" ip addr add "$addr_b" dev "$if_b"; } &&
        in_ns "$ns_a" ip link set "$if_a" up && in_ns "$ns_b" ip link set "$if_b" up
}

# vctl NAME ARGS...: vswitchctl against daemon NAME (socket $TMP/NAME.sock).
vctl() { local d=$1; shift; "$VSWITCHCTL" --socket "$TMP/$d.sock" "$@"; }

# start_vswitchd NAME NS [VSWITCHD_ARGS...]: starts vswitchd NAME (socket $TMP/NAME.sock, state
# $TMP/NAME-state, log $TMP/NAME.log) in network namespace NS ("" = this one) and waits up to
# 10 s until it answers. Its PID goes to VSWITCHD_PID as soon as it runs (set even when the
# start fails, for cleanup); on failure VSWITCHD_ERR says why and it returns 1.
start_vswitchd() {
    local d=$1 ns=$2 i
    shift 2
    VSWITCHD_PID="" VSWITCHD_ERR=""
    [[ -x $VSWITCHD && -x $VSWITCHCTL ]] || { VSWITCHD_ERR="binaries missing ($VSWITCHD)"; return 1; }
    local cmd=("$VSWITCHD" --ctl-socket "$TMP/$d.sock" --state-dir "$TMP/$d-state" "$@")
    [[ -z $ns ]] || cmd=(nsenter --net="/run/netns/$ns" -- "${cmd[@]}")
    "${cmd[@]}" >"$TMP/$d.log" 2>&1 &
    VSWITCHD_PID=$!
    for i in $(seq 100); do
        vctl "$d" --timeout 5 ping >/dev/null 2>&1 && return 0
        kill -0 "$VSWITCHD_PID" 2>/dev/null || { VSWITCHD_ERR="daemon exited at startup"; return 1; }
        sleep 0.1
    done
    VSWITCHD_ERR="no answer to 'vswitchctl ping' within 10 s"
    return 1
}

# wait_gone PID: waits up to 5 s for PID (sent TERM by the caller) to exit, then kills it;
# reaps it.
wait_gone() {
    local pid=$1 i
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

# kill_bg: stops and reaps every process in BG_PIDS.
kill_bg() {
    local pid
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${BG_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    BG_PIDS=()
    return 0
}

# remove_prefixed [LATER_GLOB]: deletes every network namespace named $P*, those matching
# LATER_GLOB last (hosts after the sandboxes whose links lead into them), their /etc/netns
# directories, and links with the prefix that escaped into this namespace (should be none).
remove_prefixed() {
    local later=${1:-} f link
    for f in /run/netns/"$P"*; do
        [[ -e $f ]] || continue
        [[ -n $later && ${f##*/} == $later ]] && continue
        ip netns del "${f##*/}" 2>/dev/null
    done
    for f in /run/netns/"$P"*; do
        [[ -e $f ]] && ip netns del "${f##*/}" 2>/dev/null
    done
    for f in /etc/netns/"$P"*; do
        [[ -e $f ]] && rm -rf "$f"
    done
    ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep "^$P" |
        while read -r link; do ip link del "$link" 2>/dev/null; done
    return 0
}

# finish_tmp RC [KEEP_ON_FAILURE]: removes TMP, or keeps it (and says so) with KEEP_LOGS=1 or
# when RC is not 0 and KEEP_ON_FAILURE (default 1) is 1.
finish_tmp() {
    local rc=$1 keep=${2:-1}
    cd /
    [[ -n $TMP && -d $TMP ]] || return 0
    if [[ $KEEP_LOGS == 1 || ($rc -ne 0 && $keep == 1) ]]; then
        log "logs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
}

# cpu_ticks PID: utime+stime of a process (all threads) in clock ticks; 0 once it is gone.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# cpu_percent TICKS0 TICKS1 T0 T1 [DECIMALS]: percent of one core between two samples.
cpu_percent() {
    awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v hz="$(getconf CLK_TCK)" -v d="${5:-1}" \
        'BEGIN { printf "%.*f", d, (b - a) / hz / (t1 - t0) * 100 }'
}
# rss_mib PID: resident memory in MiB (NA once it is gone).
rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo NA; }

# busy_between "CPU LINE A" "CPU LINE B": percent of all CPUs busy between two samples of
# /proc/stat's first line.
busy_between() {
    printf '%s\n%s\n' "$1" "$2" | awk '{ idle = $5 + $6; total = 0; for (i = 2; i <= NF; i++) total += $i
        if (NR == 1) { i0 = idle; t0 = total } else printf "%.0f\n", (1 - (idle - i0) / (total - t0)) * 100 }'
}

# machine_busy: how busy all CPUs were (percent) over one second: other load skews every number.
machine_busy() {
    local a
    a=$(head -n 1 /proc/stat)
    sleep 1
    busy_between "$a" "$(head -n 1 /proc/stat)"
}

# iperf3_gbps FILE: the Gbit/s received of an iperf3 -J client's output (3 decimals), or
# nothing when the run failed.
iperf3_gbps() {
    python3 - "$1" <<'EOF' 2>/dev/null || true
import json, sys
d = json.load(open(sys.argv[1]))
if not d.get("error"):
    end = d["end"]
    if "sum_received" in end:
        print("%.3f" % (end["sum_received"]["bits_per_second"] / 1e9))
    else:  # UDP before iperf3 3.11: the sender's rate less what was lost
        s = end["sum"]
        print("%.3f" % (s["bits_per_second"] * (1 - s.get("lost_percent", 0) / 100) / 1e9))
EOF
}
