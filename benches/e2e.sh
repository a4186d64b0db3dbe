#!/usr/bin/env bash
# End-to-end benchmark: two sandboxes (network namespaces) talking through
#   vswitchd  - the userspace switch, TAP ports (vswitchd + vswitchctl from this repo)
#   bridge    - the Linux kernel bridge, in a dedicated "switch" namespace, two veth pairs into it
#   veth      - a direct veth pair (the floor)
# For each: TCP throughput (iperf3, one stream), 64-byte UDP packet rate received and loss
# (batched sendmmsg sender, benches/e2e/udpflood.rs; or iperf3), and latency p50 (ping RTT
# and sockperf ping-pong half-RTT). Prints a markdown table with the ratio to the kernel
# bridge, then vswitchd's idle RSS/CPU and its CPU use under load.
#
# Usage (as root; installs iperf3, sockperf, ethtool, iproute2, iputils-ping if missing):
#   sudo benches/e2e.sh
#   sudo DURATION=5 REPEAT=5 SETUPS="vswitchd bridge" benches/e2e.sh
#
# Environment:
#   DURATION=10        seconds per TCP and UDP test (latency tests take min(DURATION,5) s + 2 s)
#   REPEAT=1           repetitions; the setup order rotates each time; the table shows medians
#   SETUPS="vswitchd bridge veth"   subset and order of setups
#   UDP_TOOL=udpflood  or "iperf3" (iperf3 -u -l 64 -b 0; tops out near 170 kpps)
#   PIN=1              pin clients (in sandbox 1) to CPU 0 and servers (sandbox 2) to CPU 1; 0 = let
#                      the scheduler place them (latency then depends on same-core vs cross-core wakeups)
#   BUILD=1            0 = do not run cargo; use existing binaries
#   VSWITCHD, VSWITCHCTL  binaries to use (default: $CARGO_TARGET_DIR or target/, release)
#   KEEP_LOGS=1        keep the temporary directory (daemon log, tool outputs)
#
# Run it on an otherwise idle machine: with 2 CPUs any other load (a cargo build) skews every
# number; the report warns when the CPUs were busy before the tests. Compare ratios within one
# run, never absolute numbers across runs (see shared BENCHMARKS.md: runs vary by up to 30%).
#
# Every namespace and link it creates carries the prefix vb<pid>; all of them, the daemon
# and every helper process are removed on exit, including failure and Ctrl-C. It never
# touches the host namespace's interfaces, routes or firewall.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

DURATION=${DURATION:-10}
REPEAT=${REPEAT:-1}
SETUPS=${SETUPS:-vswitchd bridge veth}
UDP_TOOL=${UDP_TOOL:-udpflood}
BUILD=${BUILD:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
VSWITCHD=${VSWITCHD:-$TARGET_DIR/release/vswitchd}
VSWITCHCTL=${VSWITCHCTL:-$TARGET_DIR/release/vswitchctl}
PIN=${PIN:-1}
LAT_DURATION=$((DURATION < 5 ? DURATION : 5))
# With PIN=1 and 2+ CPUs, clients run on CPU 0 and servers on CPU 1. Unpinned, the scheduler
# sometimes puts both on one core, which halves ping-pong latency and makes runs bimodal.
CLIENT_PIN=()
SERVER_PIN=()
if [[ $PIN == 1 ]] && (($(nproc) >= 2)); then
    CLIENT_PIN=(taskset -c 0)
    SERVER_PIN=(taskset -c 1)
fi

P="vb$$"             # prefix of every namespace and link this run creates
NS1="${P}a"          # sandbox 1: clients
NS2="${P}b"          # sandbox 2: servers
NSW="${P}sw"         # the kernel bridge's own namespace
NET="${P}net"        # vswitchd network name
TCP_PORT=5201
UDP_PORT=5301
SOCKPERF_PORT=11111

# Addresses per setup: client (in NS1) and server (in NS2).
declare -A SRC_IP=([vswitchd]=10.231.0.2 [bridge]=10.232.0.2 [veth]=10.233.0.2)
declare -A DST_IP=([vswitchd]=10.231.0.3 [bridge]=10.232.0.3 [veth]=10.233.0.3)
# The client-side interface in sandbox 1, per setup (for the offload/MTU line of the report).
declare -A IFACE=([vswitchd]=eth0 [bridge]="${P}b1" [veth]="${P}v1")
declare -A LABEL=([vswitchd]="vswitchd, TAP ports" [bridge]="Linux kernel bridge" [veth]="veth pair, direct")

declare -A RES=()        # "setup,metric" -> space-separated values, one per repetition
declare -A READY=()      # setup -> 1 when it was set up successfully
declare -A IFINFO=()     # setup -> description of its client-side interface
declare -a BG_PIDS=()    # helper processes to kill on exit
TMP=""
DAEMON_PID=""
DAEMON_STATUS="not started"
UDPFLOOD=""
OUT=""               # result of the last measure_* function
BUSY_BEFORE=0        # CPU use of everything else, sampled before the tests
SERVER_PID=""        # the server spawn_server started last
SERVER_LOG=/dev/null # where spawn_server sends its output

log() { printf '[e2e] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" -- "$@"; }
ctl() { "$VSWITCHCTL" --socket "$TMP/s.sock" "$@"; }

# ---------------------------------------------------------------------------- cleanup

cleanup() {
    local rc=$?
    set +e
    trap - INT TERM
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${BG_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        ctl network disconnect "$NET" "$NS1" >/dev/null 2>&1
        ctl network disconnect "$NET" "$NS2" >/dev/null 2>&1
        ctl sandbox rm "$NS1" "$NS2" >/dev/null 2>&1
        ctl network rm "$NET" >/dev/null 2>&1
        kill "$DAEMON_PID" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$DAEMON_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$DAEMON_PID" 2>/dev/null && kill -KILL "$DAEMON_PID"
        wait "$DAEMON_PID" 2>/dev/null
    fi
    for ns in "$NS1" "$NS2" "$NSW"; do
        [[ -e /run/netns/$ns ]] && ip netns del "$ns" 2>/dev/null
    done
    # Links that escaped into the host namespace (should be none): only our prefix.
    ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep "^$P" |
        while read -r link; do ip link del "$link" 2>/dev/null; done
    cd /
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ $KEEP_LOGS == 1 || ($rc -ne 0 && -s $TMP/vswitchd.log) ]]; then
            log "logs kept in $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}

# ---------------------------------------------------------------------------- prerequisites

install_packages() {
    local missing=()
    command -v iperf3 >/dev/null || missing+=(iperf3)
    command -v sockperf >/dev/null || missing+=(sockperf)
    command -v ethtool >/dev/null || missing+=(ethtool)
    command -v ping >/dev/null || missing+=(iputils-ping)
    command -v ip >/dev/null && command -v ss >/dev/null || missing+=(iproute2)
    command -v nsenter >/dev/null || missing+=(util-linux)
    ((${#missing[@]} == 0)) && return
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; }
}

# Builds the batched UDP sender with plain rustc (std only) unless it is up to date.
build_udpflood() {
    local src=$SCRIPT_DIR/e2e/udpflood.rs
    UDPFLOOD=$TARGET_DIR/e2e/udpflood
    if [[ ! -x $UDPFLOOD || $src -nt $UDPFLOOD ]]; then
        log "building $UDPFLOOD"
        mkdir -p "$TARGET_DIR/e2e"
        rustc --edition 2024 -C opt-level=3 -o "$UDPFLOOD" "$src"
    fi
}

build_switch() {
    [[ $BUILD == 1 ]] || return 0
    log "cargo build --release -p switch -p ctl --bins"
    (cd "$ROOT" && cargo build --release -q -p switch -p ctl --bins) >&2
}

# ---------------------------------------------------------------------------- setups

# vswitchd creates both sandboxes; it goes first so that the namespaces exist for the others.
setup_vswitchd() {
    [[ -x $VSWITCHD && -x $VSWITCHCTL ]] || { DAEMON_STATUS="binaries missing ($VSWITCHD)"; return 1; }
    "$VSWITCHD" --ctl-socket "$TMP/s.sock" --state-dir "$TMP/state" >"$TMP/vswitchd.log" 2>&1 &
    DAEMON_PID=$!
    local i
    for i in $(seq 100); do
        ctl ping >/dev/null 2>&1 && break
        kill -0 "$DAEMON_PID" 2>/dev/null || { DAEMON_STATUS="daemon exited at startup"; return 1; }
        ((i < 100)) || { DAEMON_STATUS="no answer to 'vswitchctl ping' within 10 s"; return 1; }
        sleep 0.1
    done
    DAEMON_STATUS="running"
    local step
    for step in "sandbox create $NS1" "sandbox create $NS2" \
        "network create $NET --subnet 10.231.0.0/24" \
        "network connect $NET $NS1 --ip ${SRC_IP[vswitchd]}" \
        "network connect $NET $NS2 --ip ${DST_IP[vswitchd]}"; do
        # shellcheck disable=SC2086 # the step is a word list on purpose
        if ! ctl $step >>"$TMP/ctl.log" 2>&1; then
            DAEMON_STATUS="'vswitchctl $step' failed: $(tail -n 3 "$TMP/ctl.log" | tr '\n' ' ')"
            return 1
        fi
    done
}

ensure_sandboxes() {
    local ns
    for ns in "$NS1" "$NS2"; do
        [[ -e /run/netns/$ns ]] || ip netns add "$ns"
        in_ns "$ns" ip link set lo up
    done
}

# The setup functions run inside "if", where set -e does not apply: each step chains with &&.
setup_bridge() {
    ip netns add "$NSW" &&
        in_ns "$NSW" ip link set lo up &&
        in_ns "$NSW" ip link add "${P}br" type bridge stp_state 0 forward_delay 0 &&
        ip link add "${P}b1" netns "$NS1" type veth peer name "${P}s1" netns "$NSW" &&
        ip link add "${P}b2" netns "$NS2" type veth peer name "${P}s2" netns "$NSW" &&
        in_ns "$NSW" ip link set "${P}s1" master "${P}br" up &&
        in_ns "$NSW" ip link set "${P}s2" master "${P}br" up &&
        in_ns "$NSW" ip link set "${P}br" up &&
        in_ns "$NS1" ip addr add "${SRC_IP[bridge]}/24" dev "${P}b1" &&
        in_ns "$NS2" ip addr add "${DST_IP[bridge]}/24" dev "${P}b2" &&
        in_ns "$NS1" ip link set "${P}b1" up &&
        in_ns "$NS2" ip link set "${P}b2" up
}

setup_veth() {
    ip link add "${P}v1" netns "$NS1" type veth peer name "${P}v2" netns "$NS2" &&
        in_ns "$NS1" ip addr add "${SRC_IP[veth]}/24" dev "${P}v1" &&
        in_ns "$NS2" ip addr add "${DST_IP[veth]}/24" dev "${P}v2" &&
        in_ns "$NS1" ip link set "${P}v1" up &&
        in_ns "$NS2" ip link set "${P}v2" up
}

# Waits up to 10 s for the first ping reply (links come up, ARP resolves).
wait_reachable() {
    local setup=$1 i
    for i in $(seq 20); do
        in_ns "$NS1" ping -n -q -c 1 -W 0.5 "${DST_IP[$setup]}" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

# Describes setup $1's client-side interface: driver, MTU and the offloads that decide TCP numbers.
iface_info() {
    local dev=${IFACE[$1]} driver mtu offloads
    driver=$(in_ns "$NS1" ethtool -i "$dev" 2>/dev/null | awk '/^driver:/ { print $2 }')
    mtu=$(in_ns "$NS1" ip -o link show dev "$dev" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
    offloads=$(in_ns "$NS1" ethtool -k "$dev" 2>/dev/null | awk -F': ' '
        /^tx-checksumming:/ { o = o " tx-csum " $2 }
        /^tcp-segmentation-offload:/ { o = o ", tso " $2 }
        /^generic-segmentation-offload:/ { o = o ", gso " $2 }
        /^generic-receive-offload:/ { o = o ", gro " $2 }
        END { print o }')
    echo "$dev (${driver:-?}, mtu ${mtu:-?}):${offloads:- offloads unknown}"
}

# ---------------------------------------------------------------------------- vswitchd process stats

# Prints utime+stime of a process in clock ticks (all threads).
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
now() { echo "$EPOCHREALTIME"; }
# cpu_percent TICKS0 TICKS1 T0 T1: percent of one core.
cpu_percent() {
    awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.1f", (b - a) / hz / (t1 - t0) * 100 }'
}
rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }
daemon_alive() { [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; }

# Records the daemon's RSS and CPU over 3 s of no traffic under the key prefix $1.
sample_idle() {
    local key=$1 c0 c1 t0 t1
    daemon_alive || return 0
    sleep 1
    c0=$(cpu_ticks "$DAEMON_PID") t0=$(now)
    sleep 3
    c1=$(cpu_ticks "$DAEMON_PID") t1=$(now)
    RES["vswitchd,$key-cpu"]+="$(cpu_percent "$c0" "$c1" "$t0" "$t1") "
    RES["vswitchd,$key-rss"]+="$(rss_mib "$DAEMON_PID") "
    RES["vswitchd,$key-threads"]+="$(threads "$DAEMON_PID") "
}

# Runs "$@" and, for vswitchd, records the daemon's CPU during it under metric $2.
with_cpu_sample() {
    local setup=$1 metric=$2 c0 t0 rc=0
    shift 2
    if [[ $setup != vswitchd ]] || ! daemon_alive; then
        "$@"
        return
    fi
    c0=$(cpu_ticks "$DAEMON_PID") t0=$(now)
    "$@" || rc=$?
    if daemon_alive; then
        RES["vswitchd,$metric"]+="$(cpu_percent "$c0" "$(cpu_ticks "$DAEMON_PID")" "$t0" "$(now)") "
    fi
    return "$rc"
}

# Prints how busy all CPUs were (percent) over one second: other load skews every number.
machine_busy() {
    local a b
    a=$(head -n 1 /proc/stat)
    sleep 1
    b=$(head -n 1 /proc/stat)
    printf '%s\n%s\n' "$a" "$b" | awk '{ idle = $5 + $6; total = 0; for (i = 2; i <= NF; i++) total += $i
        if (NR == 1) { i0 = idle; t0 = total } else printf "%.0f\n", (1 - (idle - i0) / (total - t0)) * 100 }'
}

# ---------------------------------------------------------------------------- measurements

# Starts a server "$@" in sandbox 2 in the background (pinned if PIN=1), output to $SERVER_LOG.
# The PID is the server itself (nsenter and taskset exec), so killing it leaves no orphan.
spawn_server() {
    nsenter --net="/run/netns/$NS2" -- "${SERVER_PIN[@]}" "$@" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    BG_PIDS+=("$SERVER_PID")
}

# Runs a client "$@" in sandbox 1 (pinned if PIN=1) for at most $1 seconds, output to $2.
# It runs in the background and this shell waits for it, so Ctrl-C/TERM interrupt at once.
run_client() {
    local secs=$1 out=$2 pid rc=0
    shift 2
    timeout "$secs" nsenter --net="/run/netns/$NS1" -- "${CLIENT_PIN[@]}" "$@" >"$out" 2>&1 &
    pid=$!
    BG_PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# Drops a reaped PID from the cleanup list so that a recycled PID is never killed.
forget_pid() {
    local keep=() p
    for p in "${BG_PIDS[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    BG_PIDS=("${keep[@]}")
}

# Waits up to $2 seconds for background PID $1 to exit, then kills it and reaps it.
wait_or_kill() {
    local pid=$1 secs=$2 i
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# Waits up to 5 s until something listens on TCP/UDP port $2 in sandbox 2 ($1 = t or u).
wait_listen() {
    local proto=$1 port=$2 i
    for i in $(seq 50); do
        [[ -n $(in_ns "$NS2" ss -Hn"$proto"l "sport = :$port") ]] && return 0
        sleep 0.1
    done
    return 1
}

# TCP throughput received, in Mbit/s.
measure_tcp() {
    local setup=$1 out=$TMP/iperf3-tcp-$1.txt
    SERVER_LOG=$TMP/iperf3-server-tcp-$setup.log
    spawn_server iperf3 -s -1 -B "${DST_IP[$setup]}" -p "$TCP_PORT"
    wait_listen t "$TCP_PORT" || { log "$setup: iperf3 server did not start"; return 1; }
    if ! with_cpu_sample "$setup" tcp-cpu run_client $((DURATION + 20)) "$out" \
        iperf3 -c "${DST_IP[$setup]}" -p "$TCP_PORT" -t "$DURATION" -f m --connect-timeout 3000; then
        log "$setup: iperf3 TCP failed: $(tail -n 2 "$out" | tr '\n' ' ')"
        wait_or_kill "$SERVER_PID" 0
        return 1
    fi
    wait_or_kill "$SERVER_PID" 5
    OUT=$(awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) }' "$out" | tail -n 1)
}

# Prints "sender_tx_drops receiver_socket_drops": all interfaces' TX drops in NS1 (e.g. a full
# TAP queue the switch did not drain) and UDP RcvbufErrors in NS2 (the receiving tool too slow).
drop_counters() {
    local tx rcvbuf
    tx=$(in_ns "$NS1" cat /proc/net/dev |
        awk 'NR > 2 { sub(/^[^:]*:/, ""); split($0, f, " "); s += f[12] } END { print s + 0 }')
    rcvbuf=$(in_ns "$NS2" cat /proc/net/snmp |
        awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] }')
    echo "$tx ${rcvbuf:-0}"
}

# Logs where datagrams were lost: counters before ($2) and after ($3) the test.
log_udp_losses() {
    local setup=$1 before after
    read -r -a before <<<"$2"
    read -r -a after <<<"$3"
    log "$setup UDP: sent ${4:-?}, received ${5:-?}; drops: sender-side interface TX $((after[0] - before[0])), receiver socket buffer $((after[1] - before[1]))"
}

# 64-byte UDP from the batched sender: "received_pps loss_percent".
measure_udp_udpflood() {
    local setup=$1 rx=$TMP/udpflood-rx-$1.txt tx=$TMP/udpflood-tx-$1.txt i drops0
    SERVER_LOG=$rx
    spawn_server "$UDPFLOOD" recv "${DST_IP[$setup]}:$UDP_PORT" 1000
    for i in $(seq 50); do
        grep -q listening "$rx" && break
        sleep 0.1
    done
    grep -q listening "$rx" || { log "$setup: udpflood receiver did not start: $(cat "$rx")"; return 1; }
    drops0=$(drop_counters)
    if ! with_cpu_sample "$setup" udp-cpu run_client $((DURATION + 20)) "$tx" \
        "$UDPFLOOD" send "${DST_IP[$setup]}:$UDP_PORT" "$DURATION" 64; then
        log "$setup: udpflood sender failed: $(cat "$tx")"
        wait_or_kill "$SERVER_PID" 0
        return 1
    fi
    wait_or_kill "$SERVER_PID" 10
    local sent secs received
    sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$tx")
    secs=$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' "$tx")
    received=$(sed -n 's/.*received=\([0-9]*\).*/\1/p' "$rx")
    [[ -n $sent && -n $secs && -n $received ]] || { log "$setup: bad udpflood output"; return 1; }
    log_udp_losses "$setup" "$drops0" "$(drop_counters)" "$sent" "$received"
    OUT=$(awk -v s="$sent" -v t="$secs" -v r="$received" \
        'BEGIN { printf "%.0f %.1f\n", r / t, (s > 0 ? (s - r) / s * 100 : 0) }')
}

# 64-byte UDP from iperf3 (-b 0): "received_pps loss_percent".
measure_udp_iperf3() {
    local setup=$1 out=$TMP/iperf3-udp-$1.txt drops0
    SERVER_LOG=$TMP/iperf3-server-udp-$setup.log
    spawn_server iperf3 -s -1 -B "${DST_IP[$setup]}" -p "$TCP_PORT"
    wait_listen t "$TCP_PORT" || { log "$setup: iperf3 server did not start"; return 1; }
    drops0=$(drop_counters)
    if ! with_cpu_sample "$setup" udp-cpu run_client $((DURATION + 20)) "$out" \
        iperf3 -c "${DST_IP[$setup]}" -p "$TCP_PORT" -u -l 64 -b 0 -t "$DURATION"; then
        log "$setup: iperf3 UDP failed: $(tail -n 2 "$out" | tr '\n' ' ')"
        wait_or_kill "$SERVER_PID" 0
        return 1
    fi
    wait_or_kill "$SERVER_PID" 5
    # "... sec  X MBytes  Y Mbits/sec  J ms  LOST/TOTAL (P%)  receiver"
    OUT=$(awk -v t="$DURATION" '/receiver/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\/[0-9]+$/) {
            split($i, a, "/"); printf "%.0f %.1f\n", (a[2] - a[1]) / t, (a[2] > 0 ? a[1] / a[2] * 100 : 0) } }' "$out" |
        tail -n 1)
    log_udp_losses "$setup" "$drops0" "$(drop_counters)"
}

# Median ping round-trip time in microseconds (200 pings, 10 ms apart).
measure_ping() {
    local setup=$1 out=$TMP/ping-$1.txt
    run_client 30 "$out" ping -n -i 0.01 -c 200 -W 1 "${DST_IP[$setup]}" || true
    OUT=$(sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' "$out" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) printf "%.0f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) * 1000 }')
}

# sockperf UDP ping-pong: half-RTT p50 in microseconds.
measure_sockperf() {
    local setup=$1 out=$TMP/sockperf-$1.txt
    SERVER_LOG=$TMP/sockperf-server-$setup.log
    spawn_server sockperf server -i "${DST_IP[$setup]}" -p "$SOCKPERF_PORT"
    wait_listen u "$SOCKPERF_PORT" || { log "$setup: sockperf server did not start"; return 1; }
    run_client $((LAT_DURATION + 20)) "$out" \
        sockperf ping-pong -i "${DST_IP[$setup]}" -p "$SOCKPERF_PORT" -t "$LAT_DURATION" ||
        log "$setup: sockperf failed: $(tail -n 2 "$out" | tr '\n' ' ')"
    wait_or_kill "$SERVER_PID" 0
    OUT=$(sed -n 's/.*percentile 50.000 = *\([0-9.]*\).*/\1/p' "$out" | tail -n 1)
}

# Appends one value (or NA when empty) to a result list.
record() { RES["$1,$2"]+="${3:-NA} "; }

# Runs one measurement function; it leaves its result in OUT (not stdout: it must run in this
# shell so that the helper PIDs it starts and the CPU samples it records are kept).
measure() {
    OUT=""
    "$@" || OUT=""
}

run_setup() {
    local setup=$1
    log "measuring $setup"
    measure measure_ping "$setup"
    record "$setup" ping "$OUT"
    measure measure_sockperf "$setup"
    record "$setup" half-rtt "$OUT"
    sleep 1
    measure measure_tcp "$setup"
    record "$setup" tcp "$OUT"
    sleep 1
    measure measure_udp_"$UDP_TOOL" "$setup"
    record "$setup" udp-pps "${OUT% *}"
    record "$setup" udp-loss "${OUT#* }"
    if [[ $setup == vswitchd ]] && ! daemon_alive; then
        DAEMON_STATUS="vswitchd died during the tests (see log)"
        log "$DAEMON_STATUS"
        unset 'READY[vswitchd]'
    fi
}

# ---------------------------------------------------------------------------- report

# Median of the numeric words in $1; NA if none.
median() {
    tr ' ' '\n' <<<"$1" | awk '/^[0-9.]+$/' | sort -g |
        awk '{ v[NR] = $1 } END { if (!NR) print "NA"; else print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
med() { median "${RES[$1,$2]:-}"; }
# fmt VALUE SCALE DECIMALS UNIT
fmt() {
    if [[ $1 == NA ]]; then
        echo "n/a"
    else
        awk -v v="$1" -v s="$2" -v d="$3" -v u="$4" 'BEGIN { printf "%." d "f%s\n", v / s, u }'
    fi
}
ratio() {
    local base
    base=$(med bridge "$2")
    [[ $1 == NA || $base == NA ]] && { echo "-"; return; }
    awk -v v="$1" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f\n", v / b; else print "-" }'
}
check() { awk -v v="$1" -v lim="$2" 'BEGIN { print (v <= lim ? "ok" : "OVER TARGET") }'; }

report() {
    local setup tcp pps loss ping half
    printf '\n## vswitch e2e: %s s per test, %s repetition(s), %s, kernel %s, %s CPUs, %s\n\n' \
        "$DURATION" "$REPEAT" "UDP sender: $UDP_TOOL, pinned: $([[ ${#CLIENT_PIN[@]} -gt 0 ]] && echo yes || echo no)" "$(uname -r)" "$(nproc)" "$(date -u +%FT%TZ)"
    ((BUSY_BEFORE < 10)) ||
        printf '**Warning: the machine was %s%% busy before the tests (other processes); numbers are skewed.**\n\n' \
            "$BUSY_BEFORE"
    printf '| Setup | TCP 1 stream | ratio to bridge | UDP 64 B rx | loss | ratio | ping RTT p50 | ½RTT p50 (sockperf) | ratio |\n'
    printf '|---|---|---|---|---|---|---|---|---|\n'
    for setup in $SETUPS; do
        if [[ -z ${RES[$setup,tcp]:-} ]]; then
            printf '| %s | not measured: %s | | | | | | | |\n' "${LABEL[$setup]}" \
                "$([[ $setup == vswitchd ]] && echo "$DAEMON_STATUS" || echo "setup failed")"
            continue
        fi
        tcp=$(med "$setup" tcp) pps=$(med "$setup" udp-pps) loss=$(med "$setup" udp-loss)
        ping=$(med "$setup" ping) half=$(med "$setup" half-rtt)
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$setup]}" \
            "$(fmt "$tcp" 1000 2 " Gbit/s")" "$(ratio "$tcp" tcp)" \
            "$(fmt "$pps" 1000 0 " kpps")" "$(fmt "$loss" 1 0 "%")" "$(ratio "$pps" udp-pps)" \
            "$(fmt "$ping" 1 0 " µs")" "$(fmt "$half" 1 1 " µs")" "$(ratio "$half" half-rtt)"
    done
    printf '\nClient-side interfaces in sandbox 1:\n'
    for setup in $SETUPS; do
        [[ -n ${IFINFO[$setup]:-} ]] && printf '  %-9s %s\n' "$setup" "${IFINFO[$setup]}"
    done
    [[ " $SETUPS " == *" vswitchd "* ]] || return 0
    printf '\nvswitchd (%s):\n' "$([[ -n $DAEMON_PID ]] && echo "pid $DAEMON_PID, $DAEMON_STATUS" || echo "$DAEMON_STATUS")"
    local rss cpu
    if [[ -n ${RES[vswitchd,idle0-rss]:-} ]]; then
        rss=$(med vswitchd idle0-rss) cpu=$(med vswitchd idle0-cpu)
        printf '  idle before traffic: RSS %s MiB (target <= 20: %s), CPU %s%% over 3 s (target ~0: %s), %s threads\n' \
            "$rss" "$(check "$rss" 20)" "$cpu" "$(check "$cpu" 1)" "$(med vswitchd idle0-threads)"
    fi
    if [[ -n ${RES[vswitchd,udp-cpu]:-} ]]; then
        printf '  under load: %s of one core during the UDP test, %s during the TCP test\n' \
            "$(fmt "$(med vswitchd udp-cpu)" 1 0 %)" "$(fmt "$(med vswitchd tcp-cpu)" 1 0 %)"
    fi
    if [[ -n ${RES[vswitchd,idle1-rss]:-} ]]; then
        rss=$(med vswitchd idle1-rss) cpu=$(med vswitchd idle1-cpu)
        printf '  idle after traffic:  RSS %s MiB (target <= 20: %s), CPU %s%% over 3 s (target ~0: %s)\n' \
            "$rss" "$(check "$rss" 20)" "$cpu" "$(check "$cpu" 1)"
    fi
}

# ---------------------------------------------------------------------------- main

main() {
    [[ $(id -u) == 0 ]] || die "run as root (creates network namespaces)"
    [[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer"
    [[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer"
    [[ $UDP_TOOL == udpflood || $UDP_TOOL == iperf3 ]] || die "UDP_TOOL must be udpflood or iperf3"
    local setup
    for setup in $SETUPS; do
        [[ -n ${LABEL[$setup]:-} ]] || die "unknown setup '$setup' (use vswitchd, bridge, veth)"
    done
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    TMP=$(mktemp -d /tmp/vswitch-e2e.XXXXXX)
    cd "$TMP"   # tools never write into the caller's directory

    install_packages
    [[ $UDP_TOOL == udpflood ]] && build_udpflood
    if [[ " $SETUPS " == *" vswitchd "* ]]; then
        build_switch || DAEMON_STATUS="cargo build failed"
        if [[ $DAEMON_STATUS != "cargo build failed" ]] && setup_vswitchd; then
            READY[vswitchd]=1
        else
            log "vswitchd setup failed: $DAEMON_STATUS"
            [[ -s $TMP/vswitchd.log ]] && tail -n 20 "$TMP/vswitchd.log" >&2
        fi
    fi
    ensure_sandboxes
    for setup in $SETUPS; do
        [[ $setup == vswitchd ]] && continue
        if "setup_$setup"; then READY[$setup]=1; else log "$setup setup failed"; fi
    done
    for setup in $SETUPS; do
        [[ -n ${READY[$setup]:-} ]] || continue
        if ! wait_reachable "$setup"; then
            log "$setup: ${DST_IP[$setup]} unreachable from $NS1"
            [[ $setup == vswitchd ]] && DAEMON_STATUS="${DST_IP[$setup]} unreachable from $NS1 through vswitchd"
            unset "READY[$setup]"
        fi
    done
    [[ -n ${READY[vswitchd]:-} ]] && sample_idle idle0
    for setup in $SETUPS; do
        [[ -n ${READY[$setup]:-} ]] && IFINFO[$setup]=$(iface_info "$setup")
    done
    BUSY_BEFORE=$(machine_busy)
    ((BUSY_BEFORE < 10)) || log "warning: the machine is already ${BUSY_BEFORE}% busy; expect skewed numbers"

    local rep i n order
    read -r -a order <<<"$SETUPS"
    n=${#order[@]}
    for ((rep = 0; rep < REPEAT; rep++)); do
        log "repetition $((rep + 1))/$REPEAT"
        for ((i = 0; i < n; i++)); do
            setup=${order[(i + rep) % n]}
            [[ -n ${READY[$setup]:-} ]] && run_setup "$setup"
            sleep 1
        done
    done

    [[ -n ${READY[vswitchd]:-} ]] && sample_idle idle1
    report
    local failed=()
    for setup in $SETUPS; do
        [[ -n ${RES[$setup,tcp]:-} ]] || failed+=("$setup")
    done
    ((${#failed[@]} == 0)) || die "not measured: ${failed[*]}"
}

main "$@"
