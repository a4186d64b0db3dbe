#!/usr/bin/env bash
# End-to-end benchmark: two sandboxes (network namespaces) talking through each setup.
#
# Local group (ratios to the kernel bridge):
#   vswitchd  - the userspace switch, TAP ports (vswitchd + vswitchctl from this repo)
#   afxdp     - the same switch (a second daemon), the sandboxes connected with
#               --port-type afxdp: veth pairs under an XDP program and AF_XDP sockets
#   bridge    - the Linux kernel bridge, in a dedicated "switch" namespace, two veth pairs into it
#   veth      - a direct veth pair (the floor)
# Overlay group (ratios to kernel VXLAN + bridge): two "host" namespaces joined by a veth
# underlay (MTU 1500), one sandbox behind each host:
#   vxlan     - per host a kernel vxlan device (VNI 4242) and a kernel bridge with a veth to
#               the sandbox (MTU 1450): the reference
#   overlay   - per host a vswitchd --vtep, run inside the host namespace, with an overlay
#               network (VNI 4242) and a peer; the sandbox is its endpoint (MTU 1450)
#   encrypted - as overlay, with -o encrypted and a shared --secret-file (MTU 1418); also
#               compared with the unencrypted overlay
# For each: TCP throughput (iperf3, one stream), 64-byte UDP packet rate received and loss
# (batched sendmmsg sender, benches/e2e/udpflood.rs; or iperf3), and latency p50 (ping RTT
# and sockperf ping-pong half-RTT). Prints one markdown table per comparison group, the
# issue targets of the overlay group, with REPEAT > 1 every repetition's numbers and TCP
# ratios (the spread behind each median), then the daemons' RSS/CPU idle and under load.
#
# Usage (as root; installs iperf3, sockperf, ethtool, iproute2, iputils-ping if missing):
#   sudo benches/e2e.sh                                # all six setups
#   sudo SUITE=overlay benches/e2e.sh                  # vxlan overlay encrypted
#   sudo DURATION=5 REPEAT=5 SETUPS="vswitchd bridge" benches/e2e.sh
#
# Environment:
#   DURATION=10        seconds per TCP and UDP test (latency tests take min(DURATION,5) s + 2 s)
#   REPEAT=1           repetitions; the setup order rotates each time; the tables show medians
#   SUITE=all          "local" (vswitchd afxdp bridge veth), "overlay" (vxlan overlay encrypted) or "all"
#   SETUPS=...         explicit subset and order of setups (overrides SUITE)
#   UDP_TOOL=udpflood  or "iperf3" (iperf3 -u -l 64 -b 0; tops out near 170 kpps)
#   PIN=1              pin clients (in sandbox 1) to CPU 0 and servers (sandbox 2) to CPU 1; 0 = let
#                      the scheduler place them (latency then depends on same-core vs cross-core
#                      wakeups). The daemons are never pinned.
#   UNDERLAY_OFFLOADS  ethtool -K features for both underlay veths of every overlay setup, e.g.
#                      "gro on" (as a NIC would) or "tx off"; default: veth defaults (GRO off)
#   BUILD=1            0 = do not run cargo; use existing binaries
#   VSWITCHD, VSWITCHCTL  binaries to use (default: $CARGO_TARGET_DIR or target/, release)
#   KEEP_LOGS=1        keep the temporary directory (daemon logs and stats, tool outputs)
#
# Run it on an otherwise idle machine: with 2 CPUs any other load (a cargo build) skews every
# number; the report warns when the CPUs were busy before the tests. Compare ratios within one
# run, never absolute numbers across runs (see shared BENCHMARKS.md: runs vary by up to 30%).
#
# Every namespace and link it creates carries the prefix vb<pid>x; all of them, the daemons
# and every helper process are removed on exit, including failure and Ctrl-C. It never
# touches the host namespace's interfaces, routes or firewall. Daemons in host namespaces are
# started with nsenter --net (not ip netns exec, whose private mount namespace would hide the
# sandboxes they create under /run/netns).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

LOCAL_SETUPS="vswitchd afxdp bridge veth"
OVERLAY_SETUPS="vxlan overlay encrypted"
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-1}
SUITE=${SUITE:-all}
case $SUITE in
    local) DEFAULT_SETUPS=$LOCAL_SETUPS ;;
    overlay) DEFAULT_SETUPS=$OVERLAY_SETUPS ;;
    *) DEFAULT_SETUPS="$LOCAL_SETUPS $OVERLAY_SETUPS" ;;
esac
SETUPS=${SETUPS:-$DEFAULT_SETUPS}
UDP_TOOL=${UDP_TOOL:-udpflood}
BUILD=${BUILD:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
VSWITCHD=${VSWITCHD:-$TARGET_DIR/release/vswitchd}
VSWITCHCTL=${VSWITCHCTL:-$TARGET_DIR/release/vswitchctl}
PIN=${PIN:-1}
UNDERLAY_OFFLOADS=${UNDERLAY_OFFLOADS:-}
LAT_DURATION=$((DURATION < 5 ? DURATION : 5))
# With PIN=1 and 2+ CPUs, clients run on CPU 0 and servers on CPU 1. Unpinned, the scheduler
# sometimes puts both on one core, which halves ping-pong latency and makes runs bimodal.
CLIENT_PIN=()
SERVER_PIN=()
if [[ $PIN == 1 ]] && (($(nproc) >= 2)); then
    CLIENT_PIN=(taskset -c 0)
    SERVER_PIN=(taskset -c 1)
fi

# Prefix of every namespace and link this run creates. The trailing "x" keeps one run's prefix
# from being a prefix of another's (vb12 vs vb123).
P="vb$$x"
NS1="${P}a"          # local sandbox 1: clients
NS2="${P}b"          # local sandbox 2: servers
NSW="${P}sw"         # the kernel bridge's own namespace
NET="${P}net"        # vswitchd network name (every daemon)
VNI=4242
TCP_PORT=5201
UDP_PORT=5301
SOCKPERF_PORT=11111

# Per setup: the client's (sandbox 1) and the server's (sandbox 2) namespace and address.
declare -A CNS=([vswitchd]=$NS1 [afxdp]="${P}fa" [bridge]=$NS1 [veth]=$NS1 [vxlan]="${P}xa" [overlay]="${P}oa" [encrypted]="${P}ea")
declare -A SNS=([vswitchd]=$NS2 [afxdp]="${P}fb" [bridge]=$NS2 [veth]=$NS2 [vxlan]="${P}xb" [overlay]="${P}ob" [encrypted]="${P}eb")
declare -A SRC_IP=([vswitchd]=10.231.0.2 [afxdp]=10.237.0.2 [bridge]=10.232.0.2 [veth]=10.233.0.2
    [vxlan]=10.235.0.2 [overlay]=10.234.0.2 [encrypted]=10.236.0.2)
declare -A DST_IP=([vswitchd]=10.231.0.3 [afxdp]=10.237.0.3 [bridge]=10.232.0.3 [veth]=10.233.0.3
    [vxlan]=10.235.0.3 [overlay]=10.234.0.3 [encrypted]=10.236.0.3)
# Overlay setups: the two host namespaces and the underlay /24 (hosts are .1 and .2).
declare -A HOST1=([vxlan]="${P}xh1" [overlay]="${P}oh1" [encrypted]="${P}eh1")
declare -A HOST2=([vxlan]="${P}xh2" [overlay]="${P}oh2" [encrypted]="${P}eh2")
declare -A UNDERLAY=([vxlan]=10.242.0 [overlay]=10.241.0 [encrypted]=10.243.0)
# The client-side interface in sandbox 1, per setup (for the offload/MTU line of the report),
# and the MTU it must have (the report flags a difference).
declare -A IFACE=([vswitchd]=eth0 [afxdp]=eth0 [bridge]="${P}b1" [veth]="${P}v1" [vxlan]="${P}ks" [overlay]=eth0 [encrypted]=eth0)
declare -A WANT_MTU=([vxlan]=1450 [overlay]=1450 [encrypted]=1418)
declare -A LABEL=([vswitchd]="vswitchd, TAP ports" [afxdp]="vswitchd, AF_XDP ports" [bridge]="Linux kernel bridge" [veth]="veth pair, direct"
    [vxlan]="kernel VXLAN + bridge" [overlay]="vswitchd overlay" [encrypted]="vswitchd overlay, encrypted")
# The vswitchd instances of each setup (sender's host first), for CPU samples and liveness.
declare -A DAEMONS=([vswitchd]=vswitchd [afxdp]=afxdp [overlay]="overlay1 overlay2" [encrypted]="encrypted1 encrypted2")

declare -A RES=()        # "setup,metric" or "daemon,metric" -> space-separated values, one per repetition
declare -A READY=()      # setup -> 1 when it was set up successfully
declare -A STATUS=()     # setup -> why it is not measured
declare -A IFINFO=()     # setup -> description of its client-side interface
declare -A DPID=()       # daemon name -> PID
declare -A DSTATUS=()    # daemon name -> running / what went wrong
declare -A DSANDBOXES=() # daemon name -> sandboxes it created (removed on exit)
declare -a BG_PIDS=()    # helper processes to kill on exit
TMP=""
UDPFLOOD=""
OUT=""               # result of the last measure_* function
BUSY_BEFORE=0        # CPU use of everything else, sampled before the tests
SERVER_PID=""        # the server spawn_server started last
SERVER_LOG=/dev/null # where spawn_server sends its output

log() { printf '[e2e] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" -- "$@"; }
# dctl DAEMON ARGS...: vswitchctl against one daemon.
dctl() { local d=$1; shift; "$VSWITCHCTL" --socket "$TMP/$d.sock" "$@"; }
selected() { [[ " $SETUPS " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------- cleanup

# Removes a daemon's endpoints, sandboxes and network, then stops it (TERM, KILL after 5 s).
stop_daemon() {
    local d=$1 pid=${DPID[$1]} sb
    kill -0 "$pid" 2>/dev/null || return 0
    for sb in ${DSANDBOXES[$d]:-}; do
        dctl "$d" network disconnect "$NET" "$sb" >/dev/null 2>&1
    done
    # shellcheck disable=SC2086 # a word list on purpose
    [[ -n ${DSANDBOXES[$d]:-} ]] && dctl "$d" sandbox rm ${DSANDBOXES[$d]} >/dev/null 2>&1
    dctl "$d" network rm "$NET" >/dev/null 2>&1
    kill "$pid" 2>/dev/null
}

cleanup() {
    local rc=$?
    set +e
    trap - INT TERM
    local pid d i f keep=0
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${BG_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    for d in "${!DPID[@]}"; do
        stop_daemon "$d"
    done
    for d in "${!DPID[@]}"; do
        for i in $(seq 50); do
            kill -0 "${DPID[$d]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "${DPID[$d]}" 2>/dev/null && kill -KILL "${DPID[$d]}"
        wait "${DPID[$d]}" 2>/dev/null
        [[ -s $TMP/$d.log ]] && keep=1
    done
    # Sandboxes before hosts (a host's links into its sandbox go with either end).
    for f in /run/netns/"$P"*; do
        [[ -e $f && ${f##*/} != *h[12] ]] && ip netns del "${f##*/}" 2>/dev/null
    done
    for f in /run/netns/"$P"*; do
        [[ -e $f ]] && ip netns del "${f##*/}" 2>/dev/null
    done
    # Links that escaped into the host namespace (should be none): only our prefix.
    ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep "^$P" |
        while read -r link; do ip link del "$link" 2>/dev/null; done
    cd /
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ $KEEP_LOGS == 1 || ($rc -ne 0 && $keep == 1) ]]; then
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
    command -v ip >/dev/null && command -v ss >/dev/null && command -v bridge >/dev/null || missing+=(iproute2)
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
    if [[ ! -x $UDPFLOOD || $src -nt $UDPFLOOD || $SCRIPT_DIR/support/mmsg.rs -nt $UDPFLOOD ]]; then
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

# ---------------------------------------------------------------------------- daemons

# start_daemon NAME HOST_NS [VSWITCHD_ARGS...]: starts vswitchd NAME (socket $TMP/NAME.sock,
# state $TMP/NAME-state, log $TMP/NAME.log) inside the network namespace HOST_NS ("" = this
# one) and waits until it answers. nsenter execs, so the PID is the daemon's own.
start_daemon() {
    local d=$1 host=$2 i
    shift 2
    [[ -x $VSWITCHD && -x $VSWITCHCTL ]] || { DSTATUS[$d]="binaries missing ($VSWITCHD)"; return 1; }
    local cmd=("$VSWITCHD" --ctl-socket "$TMP/$d.sock" --state-dir "$TMP/$d-state" "$@")
    [[ -z $host ]] || cmd=(nsenter --net="/run/netns/$host" -- "${cmd[@]}")
    "${cmd[@]}" >"$TMP/$d.log" 2>&1 &
    DPID[$d]=$!
    for i in $(seq 100); do
        dctl "$d" ping >/dev/null 2>&1 && break
        kill -0 "${DPID[$d]}" 2>/dev/null || { DSTATUS[$d]="daemon exited at startup"; return 1; }
        ((i < 100)) || { DSTATUS[$d]="no answer to 'vswitchctl ping' within 10 s"; return 1; }
        sleep 0.1
    done
    DSTATUS[$d]="running"
}

# ctl_steps DAEMON STEP...: runs each vswitchctl step (a word list) against DAEMON; on failure
# records why in DSTATUS and returns 1.
ctl_steps() {
    local d=$1 step
    shift
    for step in "$@"; do
        # shellcheck disable=SC2086 # the step is a word list on purpose
        if ! dctl "$d" $step >>"$TMP/$d-ctl.log" 2>&1; then
            DSTATUS[$d]="'vswitchctl $step' failed: $(tail -n 3 "$TMP/$d-ctl.log" | tr '\n' ' ')"
            return 1
        fi
        if [[ $step == "sandbox create "* ]]; then
            DSANDBOXES[$d]+="${step#sandbox create } "
        fi
    done
}

daemon_alive() { [[ -n ${DPID[$1]:-} ]] && kill -0 "${DPID[$1]}" 2>/dev/null; }

# Why setup $1 could not be measured: its daemons' status, else "setup failed".
why_not() {
    local d why=""
    for d in ${DAEMONS[$1]:-}; do
        [[ ${DSTATUS[$d]:-running} == running ]] || why+="$d: ${DSTATUS[$d]}; "
    done
    why=${why%; }
    echo "${STATUS[$1]:-${why:-setup failed}}"
}

# Logs the last lines of every log of setup $1's daemons (after a failure).
log_daemon_tails() {
    local d
    for d in ${DAEMONS[$1]:-}; do
        [[ -s $TMP/$d.log ]] || continue
        log "--- $d.log (last 20 lines)"
        tail -n 20 "$TMP/$d.log" >&2
    done
}

# ---------------------------------------------------------------------------- setups

# vswitchd creates both local sandboxes; it goes first so that the namespaces exist for the others.
setup_vswitchd() {
    start_daemon vswitchd "" &&
        ctl_steps vswitchd "sandbox create $NS1" "sandbox create $NS2" \
            "network create $NET --subnet 10.231.0.0/24" \
            "network connect $NET $NS1 --ip ${SRC_IP[vswitchd]}" \
            "network connect $NET $NS2 --ip ${DST_IP[vswitchd]}"
}

# A second daemon whose two sandboxes are AF_XDP endpoints (veth pairs, copy mode).
setup_afxdp() {
    start_daemon afxdp "" &&
        ctl_steps afxdp "sandbox create ${CNS[afxdp]}" "sandbox create ${SNS[afxdp]}" \
            "network create $NET --subnet 10.237.0.0/24" \
            "network connect $NET ${CNS[afxdp]} --ip ${SRC_IP[afxdp]} --port-type afxdp" \
            "network connect $NET ${SNS[afxdp]} --ip ${DST_IP[afxdp]} --port-type afxdp"
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

# Two host namespaces of overlay setup $1 joined by a veth underlay at MTU 1500: ${P}u1 with
# address .1 in host 1, ${P}u2 with .2 in host 2. Offloads stay at the veth defaults unless
# UNDERLAY_OFFLOADS is set.
setup_hosts() {
    local setup=$1 h1=${HOST1[$1]} h2=${HOST2[$1]} net=${UNDERLAY[$1]} features
    read -r -a features <<<"$UNDERLAY_OFFLOADS"
    ip netns add "$h1" && ip netns add "$h2" &&
        in_ns "$h1" ip link set lo up && in_ns "$h2" ip link set lo up &&
        ip link add "${P}u1" netns "$h1" type veth peer name "${P}u2" netns "$h2" &&
        in_ns "$h1" ip link set "${P}u1" mtu 1500 up && in_ns "$h2" ip link set "${P}u2" mtu 1500 up &&
        in_ns "$h1" ip addr add "$net.1/24" dev "${P}u1" && in_ns "$h2" ip addr add "$net.2/24" dev "${P}u2" &&
        { ((${#features[@]} == 0)) ||
            { in_ns "$h1" ethtool -K "${P}u1" "${features[@]}" && in_ns "$h2" ethtool -K "${P}u2" "${features[@]}"; }; }
}

# Kernel reference, per host: vxlan device ${P}vx (VNI 4242, port 4789, flooding to the other
# host), kernel bridge ${P}kb with it and a veth ${P}kh <-> ${P}ks (the sandbox's, MTU 1450).
setup_vxlan() {
    local net=${UNDERLAY[vxlan]} i host sb ip
    setup_hosts vxlan || return 1
    for i in 1 2; do
        if ((i == 1)); then
            host=${HOST1[vxlan]} sb=${CNS[vxlan]} ip=${SRC_IP[vxlan]}
        else
            host=${HOST2[vxlan]} sb=${SNS[vxlan]} ip=${DST_IP[vxlan]}
        fi
        ip netns add "$sb" && in_ns "$sb" ip link set lo up &&
            in_ns "$host" ip link add "${P}vx" type vxlan id "$VNI" dstport 4789 \
                local "$net.$i" remote "$net.$((3 - i))" dev "${P}u$i" &&
            in_ns "$host" ip link add "${P}kb" type bridge stp_state 0 forward_delay 0 &&
            in_ns "$host" ip link set "${P}vx" master "${P}kb" up &&
            ip link add "${P}kh" netns "$host" type veth peer name "${P}ks" netns "$sb" &&
            in_ns "$host" ip link set "${P}kh" master "${P}kb" up &&
            in_ns "$host" ip link set "${P}kb" up &&
            in_ns "$sb" ip link set "${P}ks" mtu 1450 up &&
            in_ns "$sb" ip addr add "$ip/24" dev "${P}ks" || return 1
    done
}

# vswitchd overlay setup $1 (overlay or encrypted): per host a daemon with --vtep inside the
# host namespace, the overlay network, the other host as peer, and the sandbox as endpoint.
# Further arguments go to both daemons; NET_OPTS (a word list) to "network create".
setup_vswitchd_overlay() {
    local setup=$1 net_opts=$2 net=${UNDERLAY[$1]} i d host subnet sb ip
    shift 2
    subnet="${SRC_IP[$setup]%.*}.0/24"
    setup_hosts "$setup" || return 1
    for i in 1 2; do
        d=$setup$i
        if ((i == 1)); then host=${HOST1[$setup]}; else host=${HOST2[$setup]}; fi
        start_daemon "$d" "$host" --vtep "$net.$i" "$@" &&
            ctl_steps "$d" "network create -d overlay --subnet $subnet --vni $VNI --attachable $net_opts $NET" \
                "peer add $net.$((3 - i))" || return 1
    done
    # Sandboxes only once both ends know the VNI: their first frames (IPv6 DAD, ARP) then
    # count as no unknown_vni drop, so any drop in the report means something.
    for i in 1 2; do
        d=$setup$i
        if ((i == 1)); then
            sb=${CNS[$setup]} ip=${SRC_IP[$setup]}
        else
            sb=${SNS[$setup]} ip=${DST_IP[$setup]}
        fi
        ctl_steps "$d" "sandbox create $sb" "network connect $NET $sb --ip $ip" || return 1
    done
}

setup_overlay() { setup_vswitchd_overlay overlay ""; }

setup_encrypted() {
    local secret=$TMP/cluster.secret
    (umask 077 && "$VSWITCHCTL" secret generate >"$secret") ||
        { STATUS[encrypted]="'vswitchctl secret generate' failed"; return 1; }
    setup_vswitchd_overlay encrypted "-o encrypted" --secret-file "$secret"
}

# Waits up to 10 s for the first ping reply (links come up, ARP resolves).
wait_reachable() {
    local setup=$1 i
    for i in $(seq 20); do
        in_ns "${CNS[$setup]}" ping -n -q -c 1 -W 0.5 "${DST_IP[$setup]}" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

# Describes setup $1's client-side interface: driver, MTU and the offloads that decide TCP
# numbers; for overlays also the host's underlay veth.
iface_info() {
    local setup=$1 dev=${IFACE[$1]} ns=${CNS[$1]} mtu info
    mtu=$(in_ns "$ns" ip -o link show dev "$dev" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
    info=$(describe_iface "$ns" "$dev")
    if [[ -n ${WANT_MTU[$setup]:-} && $mtu != "${WANT_MTU[$setup]}" ]]; then
        info+=" (MTU ${WANT_MTU[$setup]} expected)"
        log "warning: $setup: sandbox MTU $mtu, expected ${WANT_MTU[$setup]}"
    fi
    if [[ -n ${HOST1[$setup]:-} ]]; then
        # A frame of the sandbox's full MTU must cross the tunnel (outer packets carry DF).
        if in_ns "$ns" ping -n -q -M "do" -s $((mtu - 28)) -c 3 -i 0.2 -W 1 "${DST_IP[$setup]}" >/dev/null 2>&1; then
            info+="; full-size DF ping ok"
        else
            info+="; FULL-SIZE DF PING FAILED"
            log "warning: $setup: a $mtu-byte ping with DF does not cross the tunnel"
        fi
        info+="; underlay $(describe_iface "${HOST1[$setup]}" "${P}u1")"
    fi
    echo "$info"
}

# describe_iface NS DEV: "DEV (driver, mtu N): tx-csum on, tso on, ...".
describe_iface() {
    local ns=$1 dev=$2 driver mtu offloads
    driver=$(in_ns "$ns" ethtool -i "$dev" 2>/dev/null | awk '/^driver:/ { print $2 }')
    mtu=$(in_ns "$ns" ip -o link show dev "$dev" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
    offloads=$(in_ns "$ns" ethtool -k "$dev" 2>/dev/null | awk -F': ' '
        /^tx-checksumming:/ { o = o " tx-csum " $2 }
        /^tcp-segmentation-offload:/ { o = o ", tso " $2 }
        /^generic-segmentation-offload:/ { o = o ", gso " $2 }
        /^generic-receive-offload:/ { o = o ", gro " $2 }
        END { print o }')
    echo "$dev (${driver:-?}, mtu ${mtu:-?}):${offloads:- offloads unknown}"
}

# ---------------------------------------------------------------------------- daemon process stats

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

# Records every live daemon's RSS and CPU over the same 3 s of no traffic under key prefix $1.
sample_idle() {
    local key=$1 d t0 t1
    local -A c0=()
    sleep 1
    t0=$(now)
    for d in "${!DPID[@]}"; do
        daemon_alive "$d" && c0[$d]=$(cpu_ticks "${DPID[$d]}")
    done
    ((${#c0[@]} > 0)) || return 0
    sleep 3
    t1=$(now)
    for d in "${!c0[@]}"; do
        daemon_alive "$d" || continue
        RES["$d,$key-cpu"]+="$(cpu_percent "${c0[$d]}" "$(cpu_ticks "${DPID[$d]}")" "$t0" "$t1") "
        RES["$d,$key-rss"]+="$(rss_mib "${DPID[$d]}") "
        RES["$d,$key-threads"]+="$(threads "${DPID[$d]}") "
    done
}

# Runs "$@" and records the CPU of each of setup $1's daemons during it under metric $2.
with_cpu_sample() {
    local setup=$1 metric=$2 d t0 t1 rc=0
    local -A c0=()
    shift 2
    for d in ${DAEMONS[$setup]:-}; do
        daemon_alive "$d" && c0[$d]=$(cpu_ticks "${DPID[$d]}")
    done
    t0=$(now)
    "$@" || rc=$?
    t1=$(now)
    for d in "${!c0[@]}"; do
        daemon_alive "$d" || continue
        RES["$d,$metric"]+="$(cpu_percent "${c0[$d]}" "$(cpu_ticks "${DPID[$d]}")" "$t0" "$t1") "
    done
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

# Starts a server "${@:2}" in sandbox 2 of setup $1 in the background (pinned if PIN=1), output
# to $SERVER_LOG. The PID is the server itself (nsenter and taskset exec): no orphan when killed.
spawn_server() {
    local ns=${SNS[$1]}
    shift
    nsenter --net="/run/netns/$ns" -- "${SERVER_PIN[@]}" "$@" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    BG_PIDS+=("$SERVER_PID")
}

# Runs a client "${@:4}" in sandbox 1 of setup $1 (pinned if PIN=1) for at most $2 seconds,
# output to $3. It runs in the background and this shell waits for it, so Ctrl-C/TERM
# interrupt at once.
run_client() {
    local ns=${CNS[$1]} secs=$2 out=$3 pid rc=0
    shift 3
    timeout "$secs" nsenter --net="/run/netns/$ns" -- "${CLIENT_PIN[@]}" "$@" >"$out" 2>&1 &
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

# Waits up to 10 s until something listens on TCP/UDP port $3 in sandbox 2 of setup $1 ($2 =
# t or u).
wait_listen() {
    local ns=${SNS[$1]} proto=$2 port=$3 i
    for i in $(seq 100); do
        [[ -n $(in_ns "$ns" ss -Hn"$proto"l "sport = :$port") ]] && return 0
        sleep 0.1
    done
    return 1
}

# The server spawn_server started last did not come up: log it and stop it, so that it cannot
# hold the port against the next test.
server_failed() {
    log "$1: $2 did not start${3:+: $3}"
    wait_or_kill "$SERVER_PID" 0
}

# TCP throughput received, in Mbit/s.
measure_tcp() {
    local setup=$1 out=$TMP/iperf3-tcp-$1.txt
    SERVER_LOG=$TMP/iperf3-server-tcp-$setup.log
    spawn_server "$setup" iperf3 -s -1 -B "${DST_IP[$setup]}" -p "$TCP_PORT"
    wait_listen "$setup" t "$TCP_PORT" || { server_failed "$setup" "iperf3 server"; return 1; }
    if ! with_cpu_sample "$setup" tcp-cpu run_client "$setup" $((DURATION + 20)) "$out" \
        iperf3 -c "${DST_IP[$setup]}" -p "$TCP_PORT" -t "$DURATION" -f m --connect-timeout 3000; then
        log "$setup: iperf3 TCP failed: $(tail -n 2 "$out" | tr '\n' ' ')"
        wait_or_kill "$SERVER_PID" 0
        return 1
    fi
    wait_or_kill "$SERVER_PID" 5
    OUT=$(awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) }' "$out" | tail -n 1)
}

# Prints "sender_tx_drops receiver_socket_drops" of setup $1: all interfaces' TX drops in
# sandbox 1 (e.g. a full TAP queue the switch did not drain) and UDP RcvbufErrors in sandbox 2
# (the receiving tool too slow).
drop_counters() {
    local tx rcvbuf
    tx=$(in_ns "${CNS[$1]}" cat /proc/net/dev |
        awk 'NR > 2 { sub(/^[^:]*:/, ""); split($0, f, " "); s += f[12] } END { print s + 0 }')
    rcvbuf=$(in_ns "${SNS[$1]}" cat /proc/net/snmp |
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
    spawn_server "$setup" "$UDPFLOOD" recv "${DST_IP[$setup]}:$UDP_PORT" 1000
    for i in $(seq 100); do
        grep -q listening "$rx" && break
        sleep 0.1
    done
    grep -q listening "$rx" || { server_failed "$setup" "udpflood receiver" "$(cat "$rx")"; return 1; }
    drops0=$(drop_counters "$setup")
    if ! with_cpu_sample "$setup" udp-cpu run_client "$setup" $((DURATION + 20)) "$tx" \
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
    log_udp_losses "$setup" "$drops0" "$(drop_counters "$setup")" "$sent" "$received"
    OUT=$(awk -v s="$sent" -v t="$secs" -v r="$received" \
        'BEGIN { printf "%.0f %.1f\n", r / t, (s > 0 ? (s - r) / s * 100 : 0) }')
}

# 64-byte UDP from iperf3 (-b 0): "received_pps loss_percent".
measure_udp_iperf3() {
    local setup=$1 out=$TMP/iperf3-udp-$1.txt drops0
    SERVER_LOG=$TMP/iperf3-server-udp-$setup.log
    spawn_server "$setup" iperf3 -s -1 -B "${DST_IP[$setup]}" -p "$TCP_PORT"
    wait_listen "$setup" t "$TCP_PORT" || { server_failed "$setup" "iperf3 server"; return 1; }
    drops0=$(drop_counters "$setup")
    if ! with_cpu_sample "$setup" udp-cpu run_client "$setup" $((DURATION + 20)) "$out" \
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
    log_udp_losses "$setup" "$drops0" "$(drop_counters "$setup")"
}

# Median ping round-trip time in microseconds (200 pings, 10 ms apart).
measure_ping() {
    local setup=$1 out=$TMP/ping-$1.txt
    run_client "$setup" 30 "$out" ping -n -i 0.01 -c 200 -W 1 "${DST_IP[$setup]}" || true
    OUT=$(sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' "$out" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) printf "%.0f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) * 1000 }')
}

# sockperf UDP ping-pong: half-RTT p50 in microseconds.
measure_sockperf() {
    local setup=$1 out=$TMP/sockperf-$1.txt
    SERVER_LOG=$TMP/sockperf-server-$setup.log
    spawn_server "$setup" sockperf server -i "${DST_IP[$setup]}" -p "$SOCKPERF_PORT"
    wait_listen "$setup" u "$SOCKPERF_PORT" || { server_failed "$setup" "sockperf server"; return 1; }
    run_client "$setup" $((LAT_DURATION + 20)) "$out" \
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
    measure with_cpu_sample "$setup" lat-cpu measure_sockperf "$setup"
    record "$setup" half-rtt "$OUT"
    sleep 1
    measure measure_tcp "$setup"
    record "$setup" tcp "$OUT"
    sleep 1
    measure measure_udp_"$UDP_TOOL" "$setup"
    record "$setup" udp-pps "${OUT% *}"
    record "$setup" udp-loss "${OUT#* }"
    local d
    for d in ${DAEMONS[$setup]:-}; do
        daemon_alive "$d" && continue
        DSTATUS[$d]="died during the tests (see $d.log)"
        log "$d ${DSTATUS[$d]}"
        unset "READY[$setup]"
    done
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
# ratio VALUE METRIC BASE_SETUP: VALUE over the base setup's median of METRIC.
ratio() {
    local base
    base=$(med "$3" "$2")
    [[ $1 == NA || $base == NA ]] && { echo "-"; return; }
    awk -v v="$1" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f\n", v / b; else print "-" }'
}
# scaled "V1 V2 ..." SCALE DECIMALS: each value divided by SCALE ("NA" stays).
scaled() {
    local v
    for v in $1; do
        if [[ $v == NA ]]; then printf 'NA '; else fmt "$v" "$2" "$3" " " | tr -d '\n'; fi
    done
}
check() { awk -v v="$1" -v lim="$2" 'BEGIN { print (v <= lim ? "ok" : "OVER TARGET") }'; }
# rep_ratios SETUP BASE METRIC: SETUP / BASE for each repetition (both ran in
# the same repetition), to show the spread behind the median ratio.
rep_ratios() {
    local -a a b out=()
    local i
    read -ra a <<<"${RES[$1,$3]:-}"
    read -ra b <<<"${RES[$2,$3]:-}"
    for i in "${!a[@]}"; do
        if [[ ${a[$i]} == NA || ${b[$i]:-NA} == NA ]]; then
            out+=(NA)
        else
            out+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { printf "%.2f", (y > 0 ? x / y : 0) }')")
        fi
    done
    echo "${out[*]}"
}
# target_line TEXT SETUP BASE METRIC MIN: "TEXT: R (target >= MIN: ok|BELOW TARGET)".
target_line() {
    local r
    selected "$2" && selected "$3" || return 0
    r=$(ratio "$(med "$2" "$4")" "$4" "$3")
    if [[ $r == - ]]; then
        printf -- '- %s: not measured\n' "$1"
    else
        printf -- '- %s: %s (target >= %s: %s)\n' "$1" "$r" "$5" \
            "$(awk -v r="$r" -v m="$5" 'BEGIN { print (r >= m ? "ok" : "BELOW TARGET") }')"
    fi
}

# report_group TITLE BASE_SETUP SETUP...: one markdown table of the selected setups, with
# ratios to BASE_SETUP.
report_group() {
    local title=$1 base=$2 setup rows=() tcp pps loss ping half
    shift 2
    for setup in "$@"; do
        selected "$setup" && rows+=("$setup")
    done
    ((${#rows[@]} > 0)) || return 0
    printf '\n### %s\n\n' "$title"
    printf '| Setup | TCP 1 stream | ratio to %s | UDP 64 B rx | loss | ratio | ping RTT p50 | ½RTT p50 (sockperf) | ratio |\n' \
        "${LABEL[$base]}"
    printf '|---|---|---|---|---|---|---|---|---|\n'
    for setup in "${rows[@]}"; do
        if [[ -z ${RES[$setup,tcp]:-} ]]; then
            printf '| %s | not measured: %s | | | | | | | |\n' "${LABEL[$setup]}" "$(why_not "$setup")"
            continue
        fi
        tcp=$(med "$setup" tcp) pps=$(med "$setup" udp-pps) loss=$(med "$setup" udp-loss)
        ping=$(med "$setup" ping) half=$(med "$setup" half-rtt)
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$setup]}" \
            "$(fmt "$tcp" 1000 2 " Gbit/s")" "$(ratio "$tcp" tcp "$base")" \
            "$(fmt "$pps" 1000 0 " kpps")" "$(fmt "$loss" 1 0 "%")" "$(ratio "$pps" udp-pps "$base")" \
            "$(fmt "$ping" 1 0 " µs")" "$(fmt "$half" 1 1 " µs")" "$(ratio "$half" half-rtt "$base")"
    done
}

# The local vswitchd: idle RSS/CPU before and after the tests, CPU under load.
report_local_daemon() {
    local d=${1:-vswitchd} rss cpu status
    selected "$d" || return 0
    if [[ -n ${DPID[$d]:-} ]]; then
        status="pid ${DPID[$d]}, ${DSTATUS[$d]}"
    else
        status=$(why_not "$d")
    fi
    printf '\n%s, local (%s):\n' "${LABEL[$d]}" "$status"
    if [[ -n ${RES[$d,idle0-rss]:-} ]]; then
        rss=$(med "$d" idle0-rss) cpu=$(med "$d" idle0-cpu)
        printf '  idle before traffic: RSS %s MiB (target <= 20: %s), CPU %s%% over 3 s (target ~0: %s), %s threads\n' \
            "$rss" "$(check "$rss" 20)" "$cpu" "$(check "$cpu" 1)" "$(med "$d" idle0-threads)"
    fi
    if [[ -n ${RES[$d,udp-cpu]:-} ]]; then
        printf '  under load: %s of one core during the UDP test, %s during the TCP test\n' \
            "$(fmt "$(med "$d" udp-cpu)" 1 0 %)" "$(fmt "$(med "$d" tcp-cpu)" 1 0 %)"
    fi
    if [[ -n ${RES[$d,idle1-rss]:-} ]]; then
        rss=$(med "$d" idle1-rss) cpu=$(med "$d" idle1-cpu)
        printf '  idle after traffic:  RSS %s MiB (target <= 20: %s), CPU %s%% over 3 s (target ~0: %s)\n' \
            "$rss" "$(check "$rss" 20)" "$cpu" "$(check "$cpu" 1)"
    fi
}

# The overlay daemons: CPU during each test, idle RSS/CPU, and the drops they counted.
report_overlay_daemons() {
    local setup d i any=0
    for setup in overlay encrypted; do
        selected "$setup" && any=1
    done
    ((any)) || return 0
    printf '\nvswitchd overlay daemons (one per host; host 1 runs the clients, host 2 the servers; CPU in %% of one core):\n\n'
    printf '| Daemon | status | CPU during TCP | during UDP 64 B | during sockperf | idle RSS before / after | idle CPU before / after | threads |\n'
    printf '|---|---|---|---|---|---|---|---|\n'
    for setup in overlay encrypted; do
        selected "$setup" || continue
        for i in 1 2; do
            d=$setup$i
            printf '| %s host %s | %s | %s | %s | %s | %s / %s MiB | %s / %s %% | %s |\n' "${LABEL[$setup]}" "$i" \
                "$([[ -n ${DPID[$d]:-} ]] && echo "pid ${DPID[$d]}, ${DSTATUS[$d]}" || echo "${DSTATUS[$d]:-not started}")" \
                "$(fmt "$(med "$d" tcp-cpu)" 1 0 %)" "$(fmt "$(med "$d" udp-cpu)" 1 0 %)" \
                "$(fmt "$(med "$d" lat-cpu)" 1 0 %)" \
                "$(fmt "$(med "$d" idle0-rss)" 1 1 "")" "$(fmt "$(med "$d" idle1-rss)" 1 1 "")" \
                "$(fmt "$(med "$d" idle0-cpu)" 1 1 "")" "$(fmt "$(med "$d" idle1-cpu)" 1 1 "")" \
                "$(fmt "$(med "$d" idle0-threads)" 1 0 "")"
        done
    done
    printf '\nDrops counted by the overlay daemons over the whole run (vswitchctl stats, non-zero only):\n'
    for setup in overlay encrypted; do
        selected "$setup" || continue
        for i in 1 2; do
            d=$setup$i
            [[ -s $TMP/$d-stats.txt ]] || continue
            # Rows whose DROPS column lists reasons: "N (reason=n, ...)".
            awk -v d="$d" 'NR > 1 && match($0, /\([a-z_]+=[0-9]+.*\)$/) {
                    printf "  %-11s %-22s %s\n", d, $1, substr($0, RSTART); n++ }
                END { if (!n) printf "  %-11s none\n", d }' "$TMP/$d-stats.txt"
        done
    done
}

report() {
    local setup
    printf '\n## vswitch e2e: %s s per test, %s repetition(s), %s, kernel %s, %s CPUs, %s\n' \
        "$DURATION" "$REPEAT" "UDP sender: $UDP_TOOL, pinned: $([[ ${#CLIENT_PIN[@]} -gt 0 ]] && echo yes || echo no)" "$(uname -r)" "$(nproc)" "$(date -u +%FT%TZ)"
    ((BUSY_BEFORE < 10)) ||
        printf '\n**Warning: the machine was %s%% busy before the tests (other processes); numbers are skewed.**\n' \
            "$BUSY_BEFORE"
    report_group "Two sandboxes on one host" bridge vswitchd afxdp bridge veth
    report_group "Overlay: two hosts (namespaces) over a veth underlay, MTU 1500, one sandbox each" vxlan vxlan overlay encrypted
    if selected encrypted; then
        report_group "Encryption cost" overlay overlay encrypted
    fi
    local targets
    targets=$(target_line "vswitchd overlay TCP / kernel VXLAN + bridge" overlay vxlan tcp 0.50
        target_line "vswitchd overlay 64 B rate / kernel VXLAN + bridge" overlay vxlan udp-pps 0.50
        target_line "encrypted overlay TCP / vswitchd overlay" encrypted overlay tcp 0.60)
    [[ -z $targets ]] || printf '\nIssue targets:\n%s\n' "$targets"
    printf '\nClient-side interfaces in sandbox 1:\n'
    for setup in $SETUPS; do
        [[ -n ${IFINFO[$setup]:-} ]] && printf '  %-9s %s\n' "$setup" "${IFINFO[$setup]}"
    done
    if ((REPEAT > 1)); then
        printf '\nPer repetition, in run order (TCP Gbit/s | UDP 64 B kpps received | ½RTT µs):\n'
        for setup in $SETUPS; do
            [[ -n ${RES[$setup,tcp]:-} ]] || continue
            printf '  %-9s %s| %s| %s\n' "$setup" "$(scaled "${RES[$setup,tcp]}" 1000 1)" \
                "$(scaled "${RES[$setup,udp-pps]}" 1000 0)" "$(scaled "${RES[$setup,half-rtt]}" 1 1)"
        done
        printf 'TCP ratios per repetition:\n'
        local pair setup_a setup_b
        for pair in "vswitchd bridge" "afxdp bridge" "afxdp vswitchd" "overlay vxlan" "encrypted overlay"; do
            read -r setup_a setup_b <<<"$pair"
            if [[ -n ${RES[$setup_a,tcp]:-} && -n ${RES[$setup_b,tcp]:-} ]]; then
                printf '  %-9s / %-9s %s\n' "$setup_a" "$setup_b" "$(rep_ratios "$setup_a" "$setup_b" tcp)"
            fi
        done
    fi
    report_local_daemon vswitchd
    report_local_daemon afxdp
    report_overlay_daemons
}

# ---------------------------------------------------------------------------- main

main() {
    [[ $(id -u) == 0 ]] || die "run as root (creates network namespaces)"
    [[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer"
    [[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer"
    [[ $UDP_TOOL == udpflood || $UDP_TOOL == iperf3 ]] || die "UDP_TOOL must be udpflood or iperf3"
    [[ $SUITE =~ ^(local|overlay|all)$ ]] || die "SUITE must be local, overlay or all"
    local setup
    for setup in $SETUPS; do
        [[ -n ${LABEL[$setup]:-} ]] || die "unknown setup '$setup' (use $LOCAL_SETUPS $OVERLAY_SETUPS)"
    done
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    TMP=$(mktemp -d /tmp/vswitch-e2e.XXXXXX)
    cd "$TMP"   # tools never write into the caller's directory

    install_packages
    [[ $UDP_TOOL == udpflood ]] && build_udpflood
    local build_ok=1
    if selected vswitchd || selected afxdp || selected overlay || selected encrypted; then
        build_switch || build_ok=0
    fi
    # The local vswitchd goes first: it creates the local sandboxes.
    local order=()
    selected vswitchd && order+=(vswitchd)
    for setup in $SETUPS; do
        [[ $setup == vswitchd ]] || order+=("$setup")
    done
    for setup in "${order[@]}"; do
        [[ $setup == bridge || $setup == veth ]] && ensure_sandboxes
        if [[ -n ${DAEMONS[$setup]:-} && $build_ok == 0 ]]; then
            STATUS[$setup]="cargo build failed"
        elif "setup_$setup"; then
            READY[$setup]=1
            continue
        fi
        log "$setup setup failed: $(why_not "$setup")"
        log_daemon_tails "$setup"
    done
    for setup in $SETUPS; do
        [[ -n ${READY[$setup]:-} ]] || continue
        if ! wait_reachable "$setup"; then
            STATUS[$setup]="${DST_IP[$setup]} unreachable from ${CNS[$setup]}"
            log "$setup: ${STATUS[$setup]}"
            log_daemon_tails "$setup"
            unset "READY[$setup]"
        fi
    done
    sample_idle idle0
    for setup in $SETUPS; do
        [[ -n ${READY[$setup]:-} ]] && IFINFO[$setup]=$(iface_info "$setup")
    done
    BUSY_BEFORE=$(machine_busy)
    ((BUSY_BEFORE < 10)) || log "warning: the machine is already ${BUSY_BEFORE}% busy; expect skewed numbers"

    local rep i n
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

    sample_idle idle1
    local d
    for d in "${!DPID[@]}"; do
        daemon_alive "$d" && dctl "$d" stats >"$TMP/$d-stats.txt" 2>&1
    done
    report
    local failed=()
    for setup in $SETUPS; do
        [[ -n ${RES[$setup,tcp]:-} ]] || failed+=("$setup")
    done
    ((${#failed[@]} == 0)) || die "not measured: ${failed[*]}"
}

main "$@"
