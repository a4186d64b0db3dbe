#!/usr/bin/env bash
# End-to-end benchmark of the L4 translator (egress, published ports) against the tools that do
# the same without iptables, and against plain kernel routing, in the same run.
#
# Setup (every namespace carries the prefix vn<pid>x, written ${P} below):
#   ${P}h   the "host": vswitchd, pasta, slirp4netns and socat run here (nsenter --net). Default
#           route via the outside namespace; IPv4 forwarding on (for the kernel setup only).
#   ${P}o   the "outside world", joined to ${P}h by a veth (198.18.250.1 host <-> .2 outside,
#           a /30); it also holds 198.19.250.1 on its loopback ("far", routed from the host
#           through the veth): the egress servers listen there. It routes 10.249.1.0/24 (the
#           kernel container) via the host.
#   ${P}k   "kernel": a container routed by the host's kernel over a veth (10.249.1.2, host
#           side .1), no translation at all: the ceiling
#   ${P}v   "vswitch": a vswitchd sandbox on network ${P}n (10.248.0.0/24), egress on, ports
#           published with `network connect -p`
#   ${P}p   "pasta": a namespace attached by pasta (Debian passt) running in the host with
#           --config-net --no-map-gw and -t for the published ports
#   ${P}s   "slirp4netns": a namespace attached by slirp4netns --configure --mtu=65520
# Each container runs an iperf3 server (5201) and a tiny HTTP server (8080,
# benches/nat/httpd.rs, `Connection: close` on every answer).
#
# Measured REPEAT times, the setup order rotating between repetitions:
#   (1) egress TCP, one iperf3 stream container -> far address in the outside namespace:
#       vswitch, pasta, slirp4netns, kernel routing
#   (2) published-port TCP, one iperf3 stream outside -> container, through the host's address:
#       vswitch (-p 15201:5201), pasta (-t 25201:5201), a socat proxy in the host
#       (TCP-LISTEN:35201,fork,reuseaddr -> the kernel container, the docker-proxy stand-in),
#       and the kernel container reached by routing
#   (3) new connections per second through a published port: wrk -H "Connection: close" from
#       the outside namespace, same setups as (2)
#   (4) per-connection memory at CONNS idle connections (benches/nat/hold.py on both ends):
#       RSS delta of the translating process / CONNS, for vswitch (egress and published port),
#       pasta (egress and -t) and slirp4netns (egress); kernel socket buffers are not in RSS
#   (5) UDP through a published port, outside -> container: a sender of UDP GSO trains, as
#       QUIC servers send (benches/e2e/udpflood.rs, UDP_TRAIN datagrams of UDP_SIZE bytes per
#       send, flat out) to a receiver in the container; datagrams received per second and
#       lost: vswitch (-p 15300:5300/udp), pasta (-u 25300:5300), kernel routing. Run it with
#       VSWITCH_NO_UDP_GRO=1 in the environment for vswitchd without UDP GRO (datagrams read
#       and written to the sandbox one by one), against the same-run kernel baseline. Then the
#       same trains the other way, container -> a receiver at the far address (egress):
#       vswitch, pasta, kernel routing
# Prints one table per test with every repetition, the median and the min-max spread, the
# same-run ratios, and the issue's targets.
#
# Usage (as root; installs iperf3, passt, slirp4netns, socat, wrk, python3 if missing):
#   sudo benches/nat.sh
#   sudo BUILD=0 DURATION=10 REPEAT=5 benches/nat.sh
#   sudo TESTS="egress inbound" SETUPS="pasta slirp socat kernel" benches/nat.sh
#
# Environment:
#   DURATION=5     seconds per iperf3 and wrk run
#   REPEAT=3       repetitions (at least 3 for a spread); the setup order rotates
#   TESTS="egress inbound cps memory udp"   which of (1) to (5) to run
#   UDP_SIZE=1400 UDP_TRAIN=32   (5)'s datagram size and datagrams per send (1: no GSO)
#   SETUPS="vswitch pasta slirp socat kernel"   which setups to run (each test uses those that apply)
#   CONNS=10000    idle connections for (4)
#   WRK_CONNS=32   wrk -c for (3) (one wrk thread)
#   BUILD=1        0 = do not run cargo; use existing binaries
#   VSWITCHD, VSWITCHCTL  binaries to use (default: $CARGO_TARGET_DIR or target/, release)
#   KEEP_LOGS=0    1 = keep the temporary directory (logs, tool outputs)
#
# Run it on an otherwise idle machine (with 2 CPUs any other load skews every number; the report
# warns when the CPUs were busy before the runs) and compare ratios within one run, never
# absolute numbers across runs (shared BENCHMARKS.md: runs vary by up to 30%). A setup that
# cannot be set up (vswitch before the translator exists, a tool missing) is reported as not
# measured, with why, and the others still run.
#
# Everything it creates carries the prefix; the daemon, every helper and every namespace are
# removed on exit, including failure and Ctrl-C. It never touches the host namespace's
# interfaces, routes or firewall.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=nat
# The trailing "x" keeps one run's prefix from being a prefix of another's (vn12 vs vn123).
P="vn$$x"
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

DURATION=${DURATION:-5}
REPEAT=${REPEAT:-3}
TESTS=${TESTS:-egress inbound cps memory udp}
UDP_SIZE=${UDP_SIZE:-1400}
UDP_TRAIN=${UDP_TRAIN:-32}
UDPFLOOD=$TARGET_DIR/e2e/udpflood
SETUPS=${SETUPS:-vswitch pasta slirp socat kernel}
CONNS=${CONNS:-10000}
WRK_CONNS=${WRK_CONNS:-32}
HTTPD=$TARGET_DIR/nat-bench/httpd
HOLD=$SCRIPT_DIR/nat/hold.py

NSH="${P}h"
NSO="${P}o"
NSK="${P}k"
NSV="${P}v"
NSP="${P}p"
NSS="${P}s"
NET="${P}n"
HOST_IP=198.18.250.1
OUT_IP=198.18.250.2
FAR_IP=198.19.250.1
K_HOST_IP=10.249.1.1
K_IP=10.249.1.2
V_SUBNET=10.248.0.0/24
IPERF_PORT=5201
HTTP_PORT=8080
HOLD_PORT=9100
UDP_PORT=5300

# Per setup: the container namespace, and the address:port the outside namespace uses to reach
# its iperf3 server, its HTTP server and its hold.py listener (empty: no inbound path).
declare -A CNS=([vswitch]=$NSV [pasta]=$NSP [slirp]=$NSS [socat]=$NSK [kernel]=$NSK)
declare -A IN_IPERF=([vswitch]=$HOST_IP:15201 [pasta]=$HOST_IP:25201 [socat]=$HOST_IP:35201
    [kernel]=$K_IP:$IPERF_PORT)
declare -A IN_HTTP=([vswitch]=$HOST_IP:18080 [pasta]=$HOST_IP:28080 [socat]=$HOST_IP:38080
    [kernel]=$K_IP:$HTTP_PORT)
declare -A IN_HOLD=([vswitch]=$HOST_IP:19100 [pasta]=$HOST_IP:29100)
declare -A IN_UDP=([vswitch]=$HOST_IP:15300 [pasta]=$HOST_IP:25300 [kernel]=$K_IP:$UDP_PORT)
declare -A LABEL=([vswitch]="vswitchd translator" [pasta]="pasta (passt)" [slirp]="slirp4netns (MTU 65520)"
    [socat]="socat proxy in the host (docker-proxy stand-in)" [kernel]="kernel routing, no translation")
# Which setups each test measures (those selected in SETUPS).
declare -A TEST_SETUPS=([egress]="vswitch pasta slirp kernel" [inbound]="vswitch pasta socat kernel"
    [udp-egress]="vswitch pasta kernel"
    [cps]="vswitch pasta socat kernel" [memory]="vswitch pasta slirp" [udp]="vswitch pasta kernel")

declare -A RES=()      # "test,setup" -> space-separated values, one per repetition (NA when missing)
declare -A STATUS=()   # setup -> why it is not measured (empty: ready)
declare -A PIDOF=()    # vswitch/pasta/slirp -> the translating process's PID
declare -A NOTE=()     # free-form notes for the report
BUSY_BEFORE=0
LAST_PID=""
HELD=NA

dctl() { vctl vswitchd "$@"; }
selected() { [[ " $SETUPS " == *" $1 "* ]]; }
testing() { [[ " $TESTS " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------- cleanup

cleanup() {
    local rc=$? pid
    set +e
    trap - INT TERM
    kill_bg
    pid=${PIDOF[vswitch]:-}
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        dctl network disconnect "$NET" "$NSV" >/dev/null 2>&1
        dctl sandbox rm "$NSV" >/dev/null 2>&1
        dctl network rm "$NET" >/dev/null 2>&1
        kill "$pid" 2>/dev/null
        wait_gone "$pid"
    fi
    # Containers before the host (their links into the host go with either end).
    remove_prefixed "$NSH"
    finish_tmp "$rc"
    exit "$rc"
}

# ---------------------------------------------------------------------------- prerequisites

install_packages() {
    local missing=()
    command -v iperf3 >/dev/null || missing+=(iperf3)
    command -v pasta >/dev/null || missing+=(passt)
    command -v slirp4netns >/dev/null || missing+=(slirp4netns)
    command -v socat >/dev/null || missing+=(socat)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v python3 >/dev/null || missing+=(python3)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v nsenter >/dev/null || missing+=(util-linux)
    install_missing --no-install-recommends "${missing[@]}"
}

build_tools() {
    local src=$SCRIPT_DIR/nat/httpd.rs
    if [[ ! -x $HTTPD || $src -nt $HTTPD ]]; then
        log "building $HTTPD"
        mkdir -p "${HTTPD%/*}"
        rustc --edition 2024 -C opt-level=3 -o "$HTTPD" "$src"
    fi
    src=$SCRIPT_DIR/e2e/udpflood.rs
    if [[ ! -x $UDPFLOOD || $src -nt $UDPFLOOD || $SCRIPT_DIR/support/mmsg.rs -nt $UDPFLOOD ]]; then
        log "building $UDPFLOOD"
        mkdir -p "${UDPFLOOD%/*}"
        rustc --edition 2024 -C opt-level=3 -o "$UDPFLOOD" "$src"
    fi
    selected vswitch || return 0
    build_switch
}

# ---------------------------------------------------------------------------- setup

# bg NAME NS CMD...: runs CMD in namespace NS ("-": this one) in the background, output to
# $TMP/NAME.log; its PID goes to LAST_PID and the cleanup list. nsenter execs (and so does
# bash for a simple command run with &), so the PID is the program's own and killing it
# ends the program.
bg() {
    local name=$1 ns=$2
    shift 2
    if [[ $ns == - ]]; then
        "$@" >"$TMP/$name.log" 2>&1 &
    else
        nsenter --net="/run/netns/$ns" -- "$@" >"$TMP/$name.log" 2>&1 &
    fi
    LAST_PID=$!
    BG_PIDS+=("$LAST_PID")
}

# wait_line FILE TEXT [SECONDS] [PID]: waits until FILE has a line starting with TEXT; fails
# early when PID has exited.
wait_line() {
    local f=$1 text=$2 secs=${3:-10} pid=${4:-} i
    for ((i = 0; i < secs * 20; i++)); do
        grep -q "^$text" "$f" 2>/dev/null && return 0
        [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null && return 1
        sleep 0.05
    done
    return 1
}

# servers NS: an iperf3 server and the HTTP server in container NS.
servers() {
    local ns=$1
    bg "iperf3-$ns" "$ns" iperf3 -s -p "$IPERF_PORT"
    bg "httpd-$ns" "$ns" "$HTTPD" "0.0.0.0:$HTTP_PORT" 2
    wait_line "$TMP/httpd-$ns.log" listening 10 "$LAST_PID" || return 1
}

# wait_tcp NS ADDR PORT: waits up to 10 s until a TCP connection from NS to ADDR:PORT succeeds.
wait_tcp() {
    local ns=$1 addr=$2 port=$3 i
    for i in $(seq 50); do
        in_ns "$ns" timeout 2 bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

setup_world() {
    local ns
    for ns in "$NSH" "$NSO" "$NSK" "$NSP" "$NSS"; do
        netns_add "$ns" || die "cannot create namespace $ns"
    done
    { veth_pair "$NSH" up0 "$HOST_IP/30" "$NSO" eth0 "$OUT_IP/30" &&
        ip -n "$NSO" addr add "$FAR_IP/32" dev lo &&
        ip -n "$NSH" route add default via "$OUT_IP" &&
        veth_pair "$NSH" k0 "$K_HOST_IP/24" "$NSK" eth0 "$K_IP/24" &&
        ip -n "$NSK" route add default via "$K_HOST_IP" &&
        ip -n "$NSO" route add 10.249.1.0/24 via "$HOST_IP" &&
        in_ns "$NSH" sysctl -qw net.ipv4.ip_forward=1; } || die "cannot set up the host and outside namespaces"
    bg iperf3-outside "$NSO" iperf3 -s -B "$FAR_IP" -p "$IPERF_PORT"
    servers "$NSK" || die "the servers in $NSK did not start"
}

setup_vswitch() {
    local out
    if ! start_vswitchd vswitchd "$NSH"; then
        PIDOF[vswitch]=$VSWITCHD_PID
        STATUS[vswitch]="vswitchd: $VSWITCHD_ERR"
        return 1
    fi
    PIDOF[vswitch]=$VSWITCHD_PID
    if ! out=$({ dctl network create "$NET" --subnet "$V_SUBNET" && dctl sandbox create "$NSV"; } 2>&1); then
        STATUS[vswitch]="setup failed: $(tail -n 1 <<<"$out")"
        return 1
    fi
    servers "$NSV" || { STATUS[vswitch]="the servers in the sandbox did not start"; return 1; }
    if ! out=$(dctl network connect "$NET" "$NSV" -p "${IN_IPERF[vswitch]#*:}:$IPERF_PORT" \
        -p "${IN_HTTP[vswitch]#*:}:$HTTP_PORT" -p "${IN_HOLD[vswitch]#*:}:$HOLD_PORT" \
        -p "${IN_UDP[vswitch]#*:}:$UDP_PORT/udp" 2>&1); then
        NOTE[vswitch]="network connect -p failed ($(head -n 1 <<<"$out")); connected without published ports"
        dctl network connect "$NET" "$NSV" >/dev/null 2>&1 || { STATUS[vswitch]="network connect failed: $out"; return 1; }
    fi
    wait_tcp "$NSV" "$FAR_IP" "$IPERF_PORT" || { STATUS[vswitch]="no egress: the sandbox cannot reach $FAR_IP:$IPERF_PORT"; }
    NOTE[vswitch-mtu]="sandbox eth0 MTU $(in_ns "$NSV" cat /sys/class/net/eth0/mtu 2>/dev/null || echo ?)"
    return 0
}

setup_pasta() {
    command -v pasta >/dev/null || { STATUS[pasta]="pasta not installed"; return 1; }
    servers "$NSP" || { STATUS[pasta]="the servers in $NSP did not start"; return 1; }
    # As root pasta must keep uid 0 (--runas 0) and run in the host namespace with nsenter (ip
    # netns exec's private mount namespace breaks its namespace setup). --no-map-gw: the
    # default route's gateway is the outside namespace, not the host.
    bg pasta "$NSH" pasta --runas 0 -f -q --config-net --no-map-gw \
        -t "${IN_IPERF[pasta]#*:}:$IPERF_PORT" -t "${IN_HTTP[pasta]#*:}:$HTTP_PORT" \
        -t "${IN_HOLD[pasta]#*:}:$HOLD_PORT" -u "${IN_UDP[pasta]#*:}:$UDP_PORT" -T none -U none \
        --netns "/run/netns/$NSP"
    PIDOF[pasta]=$LAST_PID
    log "pasta pid $LAST_PID: $(cat /proc/$LAST_PID/comm 2>/dev/null) children: $(pgrep -P $LAST_PID | tr "\n" " ")"
    wait_tcp "$NSP" "$FAR_IP" "$IPERF_PORT" || { STATUS[pasta]="no egress through pasta: $(tail -n 2 "$TMP/pasta.log")"; return 1; }
    NOTE[pasta-mtu]="namespace MTU $(in_ns "$NSP" ip -o link | awk '!/ lo:/ { for (i = 1; i < NF; i++) if ($i == "mtu") print $(i + 1) }' | head -n 1)"
}

setup_slirp() {
    command -v slirp4netns >/dev/null || { STATUS[slirp]="slirp4netns not installed"; return 1; }
    bg slirp "$NSH" slirp4netns --configure --mtu=65520 --disable-host-loopback \
        --netns-type=path "/run/netns/$NSS" tap0
    PIDOF[slirp]=$LAST_PID
    wait_tcp "$NSS" "$FAR_IP" "$IPERF_PORT" || { STATUS[slirp]="no egress through slirp4netns: $(tail -n 2 "$TMP/slirp.log")"; return 1; }
}

setup_socat() {
    command -v socat >/dev/null || { STATUS[socat]="socat not installed"; return 1; }
    bg socat-iperf "$NSH" socat "TCP-LISTEN:${IN_IPERF[socat]#*:},fork,reuseaddr" "TCP:$K_IP:$IPERF_PORT"
    bg socat-http "$NSH" socat "TCP-LISTEN:${IN_HTTP[socat]#*:},fork,reuseaddr" "TCP:$K_IP:$HTTP_PORT"
    wait_tcp "$NSO" "$HOST_IP" "${IN_HTTP[socat]#*:}" || { STATUS[socat]="socat does not accept"; return 1; }
}

# ---------------------------------------------------------------------------- measuring

record() { RES["$1"]+="${2:-NA} "; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo NA; }

# iperf_gbps CLIENT_NS ADDR PORT OUT: one iperf3 stream for DURATION s; prints Gbit/s received
# (or nothing on failure).
iperf_gbps() {
    local ns=$1 addr=$2 port=$3 out=$4
    timeout $((DURATION + 20)) nsenter --net="/run/netns/$ns" -- iperf3 -c "$addr" -p "$port" -t "$DURATION" -J \
        >"$out" 2>&1 || true
    iperf3_gbps "$out"
}

# measure_iperf TEST SETUP REP CLIENT_NS ADDR PORT: one iperf3 stream from CLIENT_NS to
# ADDR:PORT, recorded as TEST of SETUP (Gbit/s) with the translating process's CPU (TEST-cpu).
measure_iperf() {
    local test=$1 s=$2 rep=$3 v pid=${PIDOF[$2]:-} c0 t0 out=$TMP/$1-$2-$3.json
    c0=$([[ -n $pid ]] && cpu_ticks "$pid" || echo 0) t0=$EPOCHREALTIME
    v=$(iperf_gbps "$4" "$5" "$6" "$out")
    [[ -n $v ]] || log "$test $s: iperf3 failed: $(grep -m1 error "$out")"
    record "$test,$s" "$v"
    [[ -z $pid ]] || record "$test-cpu,$s" "$(cpu_percent "$c0" "$(cpu_ticks "$pid")" "$t0" "$EPOCHREALTIME" 0)"
}

# Egress: setup $1, repetition $2.
measure_egress() {
    log "rep $2: egress, $1"
    measure_iperf egress "$1" "$2" "${CNS[$1]}" "$FAR_IP" "$IPERF_PORT"
}

# Published port: setup $1, repetition $2.
measure_inbound() {
    log "rep $2: published port, $1"
    measure_iperf inbound "$1" "$2" "$NSO" "${IN_IPERF[$1]%:*}" "${IN_IPERF[$1]#*:}"
}

# New connections per second: setup $1, repetition $2.
measure_cps() {
    local s=$1 rep=$2 out=$TMP/cps-$1-$2.txt v err
    log "rep $rep: connections/s, $s"
    timeout $((DURATION + 20)) nsenter --net="/run/netns/$NSO" -- wrk -t 1 -c "$WRK_CONNS" -d "${DURATION}s" \
        -H "Connection: close" "http://${IN_HTTP[$s]}/" >"$out" 2>&1 || true
    v=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
    err=$(awk '/Socket errors|Non-2xx/ { $1 = $1; printf "%s; ", $0 }' "$out")
    [[ -n $v ]] || log "cps $s: wrk failed: $(tail -n 2 "$out" | tr '\n' ' ')"
    [[ -z $err ]] || NOTE["cps-$s-$rep"]="$err"
    record "cps,$s" "$v"
}

# hold_conns DIR SETUP REP: opens CONNS idle connections (egress: container -> far address;
# inbound: outside -> published port) and sets HELD to the translating process's RSS delta per
# connection in bytes, or NA. (Not run in a subshell: its helpers must stay in BG_PIDS.)
hold_conns() {
    local dir=$1 s=$2 rep=$3 pid=${PIDOF[$2]:-} sns cns addr port before after sink holder tag
    tag=$dir-$s-$rep
    HELD=NA
    if [[ $dir == egress ]]; then
        sns=$NSO cns=${CNS[$s]} addr=$FAR_IP port=$HOLD_PORT
    else
        sns=${CNS[$s]} cns=$NSO addr=${IN_HOLD[$s]%:*} port=${IN_HOLD[$s]#*:}
    fi
    [[ -n $pid ]] || return 0
    bg "sink-$tag" "$sns" python3 -u "$HOLD" listen 0.0.0.0 "$HOLD_PORT" "$CONNS"
    sink=$LAST_PID
    if ! wait_line "$TMP/sink-$tag.log" listening 10 "$sink"; then
        log "memory $tag: the listener did not start: $(tail -n 1 "$TMP/sink-$tag.log")"
        stop_pid "$sink"
        return 0
    fi
    before=$(rss_kib "$pid")
    bg "holder-$tag" "$cns" python3 -u "$HOLD" connect "$addr" "$port" "$CONNS"
    holder=$LAST_PID
    if wait_line "$TMP/holder-$tag.log" held 300 "$holder" && wait_line "$TMP/sink-$tag.log" accepted 60 "$sink"; then
        sleep 1
        after=$(rss_kib "$pid")
        HELD=$(awk -v a="$before" -v b="$after" -v n="$CONNS" 'BEGIN { printf "%.0f\n", (b - a) * 1024 / n }')
        NOTE["rss-$tag"]="$before -> $after KiB"
    else
        NOTE["memory-$tag"]="clients: $(tail -n 1 "$TMP/holder-$tag.log"); listener: $(tail -n 1 "$TMP/sink-$tag.log")"
        log "memory $tag: not all connections were made: ${NOTE["memory-$tag"]}"
    fi
    stop_pid "$holder"
    stop_pid "$sink"
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local keep=() p
    for p in "${BG_PIDS[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    BG_PIDS=("${keep[@]}")
}

# Memory: setup $1, repetition $2.
measure_memory() {
    local s=$1 rep=$2
    log "rep $rep: $CONNS idle connections, $s"
    hold_conns egress "$s" "$rep"
    record "memory-egress,$s" "$HELD"
    if [[ -n ${IN_HOLD[$s]:-} ]]; then
        hold_conns inbound "$s" "$rep"
        record "memory-inbound,$s" "$HELD"
    fi
    # Let the translator close the flows before the next measurement.
    sleep 2
}

# UDP trains through a published port (test udp), or from the container to the far address
# (udp-egress): setup $1, repetition $2, test $3 (default udp). Records received datagrams per
# second (thousands), the offered rate, the loss and the translating process's CPU.
measure_udp() {
    local s=$1 rep=$2 t=${3:-udp} pid=${PIDOF[$1]:-} tag=${3:-udp}-$1-$2 rx tx c0 t0 sent secs received
    local rx_ns=${CNS[$s]} tx_ns=$NSO to=${IN_UDP[$s]:-}
    if [[ $t == udp-egress ]]; then
        rx_ns=$NSO tx_ns=${CNS[$s]} to=$FAR_IP:$UDP_PORT
    fi
    log "rep $rep: UDP trains ($t), $s"
    bg "rx-$tag" "$rx_ns" "$UDPFLOOD" recv "0.0.0.0:$UDP_PORT" 1000
    rx=$LAST_PID
    if ! wait_line "$TMP/rx-$tag.log" listening 10 "$rx"; then
        log "$t $s: the receiver did not start: $(tail -n 1 "$TMP/rx-$tag.log")"
        stop_pid "$rx"
        record "$t,$s"
        return 0
    fi
    tx=$TMP/tx-$tag.log
    c0=$([[ -n $pid ]] && cpu_ticks "$pid" || echo 0) t0=$EPOCHREALTIME
    timeout $((DURATION + 20)) nsenter --net="/run/netns/$tx_ns" -- "$UDPFLOOD" send "$to" "$DURATION" \
        "$UDP_SIZE" 0 "$UDP_TRAIN" >"$tx" 2>&1 || log "$t $s: sender failed: $(tail -n 1 "$tx")"
    [[ -z $pid ]] || record "$t-cpu,$s" "$(cpu_percent "$c0" "$(cpu_ticks "$pid")" "$t0" "$EPOCHREALTIME" 0)"
    # The receiver ends 1 s after the last datagram.
    wait_line "$TMP/rx-$tag.log" received 15 "$rx" || true
    stop_pid "$rx"
    sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$tx")
    secs=$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' "$tx")
    received=$(sed -n 's/^received=\([0-9]*\).*/\1/p' "$TMP/rx-$tag.log")
    if [[ -z $sent || -z $secs || -z $received ]]; then
        log "$t $s: no result (sender: $(tail -n 1 "$tx"); receiver: $(tail -n 1 "$TMP/rx-$tag.log"))"
        record "$t,$s"
        return 0
    fi
    record "$t,$s" "$(awk -v r="$received" -v t="$secs" 'BEGIN { printf "%.1f", r / t / 1000 }')"
    record "$t-offered,$s" "$(awk -v n="$sent" -v t="$secs" 'BEGIN { printf "%.1f", n / t / 1000 }')"
    record "$t-loss,$s" "$(awk -v n="$sent" -v r="$received" 'BEGIN { printf "%.1f", (n > 0 ? (n - r) / n * 100 : 0) }')"
}

# The same trains from the container to the far address: setup $1, repetition $2.
measure_udp-egress() { measure_udp "$1" "$2" udp-egress; }

# ---------------------------------------------------------------------------- report

median() {
    tr ' ' '\n' <<<"$1" | awk '/^-?[0-9.]+$/' | sort -g |
        awk '{ v[NR] = $1 } END { if (!NR) print "NA"; else print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
spread() {
    tr ' ' '\n' <<<"$1" | awk '/^-?[0-9.]+$/' | sort -g |
        awk -v d="$2" '{ v[NR] = $1 } END { if (!NR) print "NA"; else printf "%." d "f–%." d "f\n", v[1], v[NR] }'
}
# pair_div "A1 A2 ..." "B1 B2 ...": per-repetition A/B.
pair_div() {
    local -a a b out=()
    local i
    read -ra a <<<"$1"
    read -ra b <<<"$2"
    for i in "${!a[@]}"; do
        out+=("$(awk -v x="${a[$i]}" -v y="${b[$i]:-NA}" 'BEGIN {
            if (x !~ /^[0-9.]+$/ || y !~ /^[0-9.]+$/ || y == 0) print "NA"; else printf "%.2f\n", x / y }')")
    done
    echo "${out[*]}"
}
num() {
    [[ $1 =~ ^-?[0-9.]+$ ]] || { echo "${1:-NA}"; return; }
    awk -v v="$1" -v d="$2" -v u="$3" 'BEGIN { printf "%." d "f%s\n", v, u }'
}
# row LABEL "V1 V2 ..." UNIT DECIMALS
row() {
    local label=$1 values=$2 unit=${3:-} decimals=${4:-0} v cells="" i=0
    for v in $values; do
        cells+=" $(num "$v" "$decimals" "$unit") |"
        i=$((i + 1))
    done
    for (( ; i < REPEAT; i++)); do cells+=" NA |"; done
    printf '| %s |%s **%s** | %s |\n' "$label" "$cells" "$(num "$(median "$values")" "$decimals" "$unit")" \
        "$(spread "$values" "$decimals")"
}
header() {
    local i h="| $1 |" sep="|---|"
    for ((i = 1; i <= REPEAT; i++)); do
        h+=" rep $i |"
        sep+="---|"
    done
    printf '%s median | min–max |\n%s---|---|\n' "$h" "$sep"
}
# ratio_row A B: the row "A / B" for test $T.
ratio_row() {
    local num_s=$1 den_s=$2
    [[ -n ${RES[$T,$num_s]:-} && -n ${RES[$T,$den_s]:-} ]] || return 0
    row "$num_s / $den_s" "$(pair_div "${RES[$T,$num_s]}" "${RES[$T,$den_s]}")" "×" 2
}
# target LINE TEST A B MIN: "LINE: median ratio X (rep range) — met / NOT met".
target() {
    local what=$1 t=$2 num_s=$3 den_s=$4 min=$5 r m
    [[ -n ${RES[$t,$num_s]:-} && -n ${RES[$t,$den_s]:-} ]] || { printf -- '- %s: not measured\n' "$what"; return; }
    r=$(pair_div "${RES[$t,$num_s]}" "${RES[$t,$den_s]}")
    m=$(median "$r")
    printf -- '- %s: median %s× (repetitions %s) — %s\n' "$what" "$m" "$r" \
        "$(awk -v m="$m" -v min="$min" 'BEGIN { if (m !~ /^[0-9.]+$/) print "not measured"; else if (m >= min) print "met"; else print "NOT met" }')"
}

# udp_report TEST TITLE: the table of test (5) or (5b).
udp_report() {
    local s
    T=$1
    printf '\n### %s: trains of %s datagrams of %s bytes per send (UDP GSO), flat out%s\n\n' "$2" \
        "$UDP_TRAIN" "$UDP_SIZE" "$([[ -n ${VSWITCH_NO_UDP_GRO:-} ]] && echo "; vswitchd with VSWITCH_NO_UDP_GRO=1")"
    header "setup"
    for s in ${TEST_SETUPS[udp]}; do
        [[ -n ${RES[$T,$s]:-} ]] && row "${LABEL[$s]}, received" "${RES[$T,$s]}" " kpps" 1
        [[ -n ${RES[$T-offered,$s]:-} ]] && row "${LABEL[$s]}, offered" "${RES[$T-offered,$s]}" " kpps" 1
        [[ -n ${RES[$T-loss,$s]:-} ]] && row "${LABEL[$s]}, lost" "${RES[$T-loss,$s]}" "%" 1
    done
    ratio_row vswitch kernel
    ratio_row vswitch pasta
    ratio_row pasta kernel
    for s in vswitch pasta; do
        [[ -n ${RES[$T-cpu,$s]:-} ]] && row "$s CPU (% of one core)" "${RES[$T-cpu,$s]}" "%"
    done
    return 0
}

report() {
    local s T
    printf '\n## vswitch L4 translator vs pasta, slirp4netns, socat and kernel routing: %s s per run, %s repetition(s), kernel %s, %s CPUs, %s\n' \
        "$DURATION" "$REPEAT" "$(uname -r)" "$(nproc)" "$(date -u +%FT%TZ)"
    printf '\npasta: %s; slirp4netns: %s; iperf3: %s; wrk: %s\n' \
        "$(dpkg-query -W -f='${Version}' passt 2>/dev/null || echo ?)" \
        "$(dpkg-query -W -f='${Version}' slirp4netns 2>/dev/null || echo ?)" \
        "$(dpkg-query -W -f='${Version}' iperf3 2>/dev/null || echo ?)" \
        "$(dpkg-query -W -f='${Version}' wrk 2>/dev/null || echo ?)"
    ((BUSY_BEFORE < 10)) ||
        printf '\n**Warning: the machine was %s%% busy before the runs (other processes); numbers are skewed.**\n' "$BUSY_BEFORE"
    for s in vswitch pasta slirp socat kernel; do
        selected "$s" || continue
        [[ -z ${STATUS[$s]:-} ]] || printf '\n**%s not measured: %s**\n' "$s" "${STATUS[$s]}"
        [[ -z ${NOTE[$s]:-} ]] || printf '\n%s: %s\n' "$s" "${NOTE[$s]}"
    done
    printf '\nMTUs: vswitch %s; pasta %s; slirp4netns 65520; kernel veth 1500 (TSO/GRO on)\n' \
        "${NOTE[vswitch-mtu]:-?}" "${NOTE[pasta-mtu]:-?}"

    if testing egress; then
        T=egress
        printf '\n### (1) Egress TCP, one iperf3 stream, container -> outside namespace (%s)\n\n' "$FAR_IP"
        header "setup"
        for s in ${TEST_SETUPS[egress]}; do
            [[ -n ${RES[egress,$s]:-} ]] && row "${LABEL[$s]}" "${RES[egress,$s]}" " Gbit/s" 2
        done
        ratio_row vswitch pasta
        ratio_row vswitch slirp
        ratio_row vswitch kernel
        ratio_row pasta kernel
        ratio_row slirp kernel
        for s in vswitch pasta slirp; do
            [[ -n ${RES[egress-cpu,$s]:-} ]] && row "$s CPU (% of one core)" "${RES[egress-cpu,$s]}" "%"
        done
    fi
    if testing inbound; then
        T=inbound
        printf '\n### (2) Published-port TCP, one iperf3 stream, outside -> container through the host address (%s)\n\n' "$HOST_IP"
        header "setup"
        for s in ${TEST_SETUPS[inbound]}; do
            [[ -n ${RES[inbound,$s]:-} ]] && row "${LABEL[$s]}" "${RES[inbound,$s]}" " Gbit/s" 2
        done
        ratio_row vswitch pasta
        ratio_row vswitch socat
        ratio_row vswitch kernel
        ratio_row pasta kernel
        ratio_row socat kernel
        for s in vswitch pasta; do
            [[ -n ${RES[inbound-cpu,$s]:-} ]] && row "$s CPU (% of one core)" "${RES[inbound-cpu,$s]}" "%"
        done
    fi
    if testing cps; then
        T=cps
        printf '\n### (3) New connections per second through a published port (wrk -t1 -c%s, Connection: close, from outside)\n\n' "$WRK_CONNS"
        header "setup"
        for s in ${TEST_SETUPS[cps]}; do
            [[ -n ${RES[cps,$s]:-} ]] && row "${LABEL[$s]}" "${RES[cps,$s]}" " conn/s"
        done
        ratio_row vswitch kernel
        ratio_row vswitch pasta
        ratio_row vswitch socat
        ratio_row pasta kernel
        ratio_row socat kernel
        local k
        for k in "${!NOTE[@]}"; do
            [[ $k == cps-* ]] && printf '\nwrk %s: %s\n' "${k#cps-}" "${NOTE[$k]}"
        done
    fi
    if testing memory; then
        local k
        printf '\n### (4) Translator RSS per idle connection at %s connections (bytes; kernel socket buffers not in RSS)\n\n' "$CONNS"
        header "setup"
        for s in ${TEST_SETUPS[memory]}; do
            [[ -n ${RES[memory-egress,$s]:-} ]] && row "${LABEL[$s]}, egress" "${RES[memory-egress,$s]}" " B"
            [[ -n ${RES[memory-inbound,$s]:-} ]] && row "${LABEL[$s]}, published port" "${RES[memory-inbound,$s]}" " B"
        done
        for k in "${!NOTE[@]}"; do
            [[ $k == memory-* ]] && printf '\n%s: %s\n' "${k#memory-}" "${NOTE[$k]}"
        done
    fi

    if testing udp; then
        udp_report udp "(5) UDP through a published port, outside -> container"
        udp_report udp-egress "(5b) UDP egress, container -> outside namespace ($FAR_IP)"
    fi

    printf '\n### Issue targets (same-run ratios, medians of the per-repetition ratios)\n\n'
    target "egress vswitch / pasta >= 1.0" egress vswitch pasta 1.0
    target "egress vswitch / slirp4netns >= 2.0" egress vswitch slirp 2.0
    target "published port vswitch / pasta >= 1.0" inbound vswitch pasta 1.0
    target "published port vswitch / socat >= 2.0" inbound vswitch socat 2.0
    target "connections/s vswitch / kernel >= 0.5" cps vswitch kernel 0.5
    local m
    m=$(median "${RES[memory-egress,vswitch]:-} ${RES[memory-inbound,vswitch]:-}")
    printf -- '- per-connection memory <= 16384 B: %s\n' \
        "$(awk -v m="$m" 'BEGIN { if (m !~ /^[0-9.]+$/) print "not measured"; else if (m <= 16384) printf "%d B, met\n", m; else printf "%d B, NOT met\n", m }')"
    [[ -z ${PIDOF[vswitch]:-} ]] || printf '\nvswitchd (pid %s): RSS %s KiB after the runs\n' "${PIDOF[vswitch]}" "$(rss_kib "${PIDOF[vswitch]}")"
}

# ---------------------------------------------------------------------------- main

main() {
    [[ $(id -u) == 0 ]] || die "run as root (creates network namespaces)"
    local v
    for v in DURATION REPEAT CONNS WRK_CONNS; do
        [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
    done
    bench_start
    install_packages
    build_tools || die "build failed"
    # Enough descriptors for CONNS connections in each translator (children inherit it).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    (($(ulimit -n) > CONNS + 256)) || log "warning: open-file limit $(ulimit -n) is low for CONNS=$CONNS"

    setup_world
    for v in vswitch pasta slirp socat; do
        selected "$v" || continue
        "setup_$v" || true
        [[ -z ${STATUS[$v]:-} ]] || log "$v: ${STATUS[$v]}"
    done
    BUSY_BEFORE=$(machine_busy)
    ((BUSY_BEFORE < 10)) || log "warning: the machine is already ${BUSY_BEFORE}% busy; expect skewed numbers"

    local rep t s list order
    for ((rep = 1; rep <= REPEAT; rep++)); do
        for t in egress inbound cps memory udp udp-egress; do
            testing "${t%-egress}" || continue
            list=()
            for s in ${TEST_SETUPS[$t]}; do
                selected "$s" && [[ -z ${STATUS[$s]:-} ]] && list+=("$s")
            done
            ((${#list[@]})) || continue
            # Rotate the order by the repetition number.
            order=("${list[@]:$(((rep - 1) % ${#list[@]}))}" "${list[@]:0:$(((rep - 1) % ${#list[@]}))}")
            for s in "${order[@]}"; do
                "measure_$t" "$s" "$rep"
            done
        done
        [[ -z ${PIDOF[vswitch]:-} ]] || kill -0 "${PIDOF[vswitch]}" 2>/dev/null ||
            die "vswitchd died during the runs (see $TMP/vswitchd.log)"
    done
    report
}

main "$@"
