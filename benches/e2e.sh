#!/usr/bin/env bash
# End-to-end benchmark: two sandboxes (network namespaces) talking through each setup, vswitchd
# side by side with its peers in one invocation.
#
# Local group (ratios to the kernel bridge):
#   vswitchd  - the userspace switch, TAP ports (vswitchd + vswitchctl from this repo)
#   afxdp     - the same switch (a second daemon), the sandboxes connected with
#               --port-type afxdp: veth pairs under an XDP program and AF_XDP sockets
#   ovs       - Open vSwitch's userspace datapath (datapath_type=netdev, userspace-tso-enable=true),
#               private ovsdb-server + ovs-vswitchd in their own namespace; OVS_PORT=tap (default):
#               OVS internal ports (TAPs with a virtio-net header) moved into the sandboxes, its best
#               TCP here; OVS_PORT=system: the host ends of veth pairs
#   ovs-afxdp - Open vSwitch with type=afxdp ports on the host ends of veth pairs (OVS_XDP_MODE,
#               native copy mode by default); its PMD thread busy-polls, so it is stopped
#               (SIGSTOP) whenever another setup is measured
#   vde       - vde_switch in its own namespace with two TAPs moved into the sandboxes
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
#   encrypted-aes - as encrypted, with -o cipher=aes-256-gcm (ChaCha20-Poly1305 is the default)
#   overlay-spread - as overlay, with -o spread: each host's overlay is served by every
#               datapath worker, the kernel hashing each flow's packets over the workers' VTEP
#               sockets (not in SUITE=overlay or all: SETUPS="overlay overlay-spread" compares)
#   encrypted-spread - as encrypted, with -o spread: every worker seals in its own session, and
#               the receiving host steers each session to one worker (not in SUITE=overlay or
#               all: SETUPS="encrypted encrypted-spread" compares)
#   ovs-overlay - per host a private Open vSwitch (userspace datapath) in the host namespace: the
#               underlay veth in a bridge whose internal port holds the host's address, and a
#               bridge with a VXLAN port (VNI 4242) and an internal port moved into the sandbox
#               (MTU 1450); userspace TSO off (with it on, Debian's Open vSwitch 3.1 drops TSO
#               frames that enter a tunnel: "Tunneling packets with HW offload flags is not
#               supported")
# For each, per repetition: TCP throughput (iperf3, 1 and 2 streams); 64-byte UDP from a batched
# sendmmsg sender (benches/e2e/udpflood.rs; or iperf3): offered and received rate, loss, and
# where the drops were counted (sender-side interface TX, the switch's namespace and its own
# counters, receiver RX + socket buffer); sockperf ping-pong half-RTT p50 and p99; the switch's
# CPU during TCP, CPU per Gbit/s and idle CPU (2 s without traffic). After the repetitions, the
# offered load at loss onset of ONSET_SETUPS: a sweep of a paced sender at fixed rates with
# repeats, the lowest rate from which loss stays at or above ONSET_LOSS % (see measure_onset).
# Writes a markdown report (medians, per-repetition min-max, ratios) to REPORT_DIR/report.md
# and prints it, and draws REPORT_DIR/chart.png (benches/e2e/chart.rs, cargo bench target).
#
# Usage (as root; installs iperf3, sockperf, ethtool, iproute2, iputils-ping, openvswitch-switch,
# vde2, fonts-dejavu-core if missing):
#   sudo SUITE=all REPEAT=3 DURATION=5 benches/e2e.sh  # the comparison, about 15 min on 2 vCPUs
#   sudo SUITE=overlay benches/e2e.sh                  # vxlan overlay encrypted encrypted-aes ovs-overlay
#   sudo DURATION=5 REPEAT=5 SETUPS="vswitchd ovs bridge" benches/e2e.sh
#
# Environment:
#   DURATION=10        seconds per TCP and UDP test (latency tests take min(DURATION,3) s)
#   REPEAT=1           repetitions; the setup order rotates each time; the tables show medians
#   SUITE=all          "local" (vswitchd afxdp ovs ovs-afxdp vde bridge veth), "overlay"
#                      (vxlan overlay encrypted encrypted-aes ovs-overlay) or "all"
#   SETUPS=...         explicit subset and order of setups (overrides SUITE)
#   UDP_TOOL=udpflood  or "iperf3" (iperf3 -u -l 64 -b 0; tops out near 170 kpps)
#   PIN=1              pin clients (in sandbox 1) to CPU 0 and servers (sandbox 2) to CPU 1; 0 = let
#                      the scheduler place them (latency then depends on same-core vs cross-core
#                      wakeups). The daemons are never pinned (OVS's PMD thread: last CPU).
#   OVS_PORT=tap       OVS port type: tap (internal ports moved into the sandboxes) or system (veths)
#   OVS_XDP_MODE=native  xdp-mode of OVS's AF_XDP ports (native or generic)
#   ONSET=1            0 = skip the loss-onset sweep; ONSET_SETUPS="vswitchd afxdp bridge ovs",
#                      ONSET_STEPS=8 fixed rates (k/8 of the flat-out rate), ONSET_REPEAT=2
#                      measurements of ONSET_SECS=2 s each, ONSET_LOSS=1 (% loss threshold)
#   REPORT_DIR         where report.md, chart.tsv and chart.png go (default: target dir/e2e)
#   CHART_FONT         TTF file for the chart's text (default: Debian fonts-dejavu-core DejaVuSans)
#   UNDERLAY_OFFLOADS  ethtool -K features for both underlay veths of every overlay setup, e.g.
#                      "gro on" (as a NIC would) or "tx off"; default: veth defaults (GRO off)
#   BUILD=1            0 = do not run cargo; use existing binaries
#   VSWITCHD, VSWITCHCTL  binaries to use (default: $CARGO_TARGET_DIR or target/, release)
#   DAEMON_ARGS        extra vswitchd arguments (a word list) for every vswitchd daemon, e.g.
#                      "--cpu-affinity none" or "--busy-poll-us 0" (A/B runs of a setting)
#   RECEIVER_RPS       receive packet steering in the receiving sandbox, a word list of SETUP=MASK
#                      (e.g. "afxdp=1"): the hex MASK goes to rps_cpus of rx-0 of the interface
#                      holding that setup's server address, so its IP/UDP/TCP input runs on those
#                      CPUs instead of in the switch's transmit (A/B runs; the product never sets it)
#   KEEP_LOGS=1        keep the temporary directory (daemon logs and stats, tool outputs)
#   CHART=1            0 = no chart (drawing it runs cargo bench; A/B runs of two binaries skip it)
#
# Run it on an otherwise idle machine: with 2 CPUs any other load (a cargo build) skews every
# number; the report warns when the CPUs were busy before the tests. Compare ratios within one
# run, never absolute numbers across runs (see shared BENCHMARKS.md: runs vary by up to 30%).
#
# Every namespace and link it creates carries the prefix vb<pid>x; all of them, the daemons
# (vswitchd, ovsdb-server, ovs-vswitchd, vde_switch, all with their sockets, databases and logs
# in the run's temporary directory, never the system's) and every helper process are removed
# on exit, including failure and Ctrl-C. It never
# touches the host namespace's interfaces, routes or firewall. Daemons in host namespaces are
# started with nsenter --net (not ip netns exec, whose private mount namespace would hide the
# sandboxes they create under /run/netns).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=e2e
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

LOCAL_SETUPS="vswitchd afxdp ovs ovs-afxdp vde bridge veth"
OVERLAY_SETUPS="vxlan overlay encrypted encrypted-aes ovs-overlay"
DURATION=${DURATION:-10}
# Open vSwitch: "tap" = OVS internal ports (TAPs in the netdev datapath, with a virtio-net header
# under userspace TSO) moved into the sandboxes, its best TCP number here; "system" = the host
# ends of veth pairs (netdev-linux raw sockets).
OVS_PORT=${OVS_PORT:-tap}
# XDP attach mode of OVS's AF_XDP ports: native (veth XDP, copy mode) or generic.
OVS_XDP_MODE=${OVS_XDP_MODE:-native}
# Offered load at loss onset: the setups swept (after the last repetition), fixed rates of the
# sweep, repeats of each, seconds per measurement, loss threshold (percent).
ONSET=${ONSET:-1}
ONSET_SETUPS=${ONSET_SETUPS:-vswitchd afxdp bridge ovs}
ONSET_STEPS=${ONSET_STEPS:-8}
ONSET_REPEAT=${ONSET_REPEAT:-2}
ONSET_SECS=${ONSET_SECS:-2}
ONSET_LOSS=${ONSET_LOSS:-1}
# Where the markdown report, the chart data and the PNG chart go.
REPORT_DIR=${REPORT_DIR:-$TARGET_DIR/e2e}
# TrueType font the chart's text is drawn with (Debian fonts-dejavu-core).
CHART_FONT=${CHART_FONT:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}
REPEAT=${REPEAT:-1}
SUITE=${SUITE:-all}
case $SUITE in
    local) DEFAULT_SETUPS=$LOCAL_SETUPS ;;
    overlay) DEFAULT_SETUPS=$OVERLAY_SETUPS ;;
    *) DEFAULT_SETUPS="$LOCAL_SETUPS $OVERLAY_SETUPS" ;;
esac
# The command line that reproduces this run (printed in the report).
COMMAND="SUITE=$SUITE REPEAT=${REPEAT:-1} DURATION=${DURATION} PIN=${PIN:-1}${SETUPS:+ SETUPS=\"$SETUPS\"}${DAEMON_ARGS:+ DAEMON_ARGS=\"$DAEMON_ARGS\"}"
COMMAND+="${RECEIVER_RPS:+ RECEIVER_RPS=\"$RECEIVER_RPS\"}"
COMMAND+="${ONSET:+ ONSET=$ONSET}${OVS_PORT:+ OVS_PORT=$OVS_PORT} benches/e2e.sh"
SETUPS=${SETUPS:-$DEFAULT_SETUPS}
UDP_TOOL=${UDP_TOOL:-udpflood}
PIN=${PIN:-1}
UNDERLAY_OFFLOADS=${UNDERLAY_OFFLOADS:-}
LAT_DURATION=$((DURATION < 3 ? DURATION : 3))
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
declare -A CNS=([vswitchd]=$NS1 [afxdp]="${P}fa" [ovs]=$NS1 [ovs-afxdp]=$NS1 [vde]=$NS1 [bridge]=$NS1 [veth]=$NS1 [vxlan]="${P}xa" [overlay]="${P}oa" [encrypted]="${P}ea" [ovs-overlay]="${P}wa" [overlay-spread]="${P}sa" [encrypted-spread]="${P}ta" [encrypted-aes]="${P}ga")
declare -A SNS=([vswitchd]=$NS2 [afxdp]="${P}fb" [ovs]=$NS2 [ovs-afxdp]=$NS2 [vde]=$NS2 [bridge]=$NS2 [veth]=$NS2 [vxlan]="${P}xb" [overlay]="${P}ob" [encrypted]="${P}eb" [ovs-overlay]="${P}wb" [overlay-spread]="${P}sb" [encrypted-spread]="${P}tb" [encrypted-aes]="${P}gb")
declare -A SRC_IP=([vswitchd]=10.231.0.2 [afxdp]=10.237.0.2 [bridge]=10.232.0.2 [veth]=10.233.0.2
    [ovs]=10.238.0.2 [ovs-afxdp]=10.239.0.2 [vde]=10.240.0.2
    [vxlan]=10.235.0.2 [overlay]=10.234.0.2 [encrypted]=10.236.0.2 [ovs-overlay]=10.245.0.2 [overlay-spread]=10.247.0.2
    [encrypted-spread]=10.249.0.2 [encrypted-aes]=10.229.0.2)
declare -A DST_IP=([vswitchd]=10.231.0.3 [afxdp]=10.237.0.3 [bridge]=10.232.0.3 [veth]=10.233.0.3
    [ovs]=10.238.0.3 [ovs-afxdp]=10.239.0.3 [vde]=10.240.0.3
    [vxlan]=10.235.0.3 [overlay]=10.234.0.3 [encrypted]=10.236.0.3 [ovs-overlay]=10.245.0.3 [overlay-spread]=10.247.0.3
    [encrypted-spread]=10.249.0.3 [encrypted-aes]=10.229.0.3)
# Overlay setups: the two host namespaces and the underlay /24 (hosts are .1 and .2).
declare -A HOST1=([vxlan]="${P}xh1" [overlay]="${P}oh1" [encrypted]="${P}eh1" [ovs-overlay]="${P}wh1" [overlay-spread]="${P}sh1" [encrypted-spread]="${P}th1" [encrypted-aes]="${P}gh1")
declare -A HOST2=([vxlan]="${P}xh2" [overlay]="${P}oh2" [encrypted]="${P}eh2" [ovs-overlay]="${P}wh2" [overlay-spread]="${P}sh2" [encrypted-spread]="${P}th2" [encrypted-aes]="${P}gh2")
declare -A UNDERLAY=([vxlan]=10.242.0 [overlay]=10.241.0 [encrypted]=10.243.0 [ovs-overlay]=10.244.0 [overlay-spread]=10.248.0 [encrypted-spread]=10.250.0 [encrypted-aes]=10.228.0)
# The client-side interface in sandbox 1, per setup (for the offload/MTU line of the report),
# and the MTU it must have (the report flags a difference).
declare -A IFACE=([vswitchd]=eth0 [afxdp]=eth0 [ovs]="${P}o1" [ovs-afxdp]="${P}x1" [vde]="${P}d1" [bridge]="${P}b1" [veth]="${P}v1" [vxlan]="${P}ks" [overlay]=eth0 [encrypted]=eth0 [ovs-overlay]="${P}w1" [overlay-spread]=eth0 [encrypted-spread]=eth0 [encrypted-aes]=eth0)
declare -A WANT_MTU=([vxlan]=1450 [overlay]=1450 [encrypted]=1418 [ovs-overlay]=1450 [overlay-spread]=1450 [encrypted-spread]=1418 [encrypted-aes]=1418)
declare -A LABEL=([vswitchd]="vswitchd, TAP ports" [afxdp]="vswitchd, AF_XDP ports" [bridge]="Linux kernel bridge" [veth]="veth pair, direct"
    [ovs]="Open vSwitch userspace + TSO, $OVS_PORT ports" [ovs-afxdp]="Open vSwitch userspace, AF_XDP ports ($OVS_XDP_MODE)" [vde]="vde_switch, TAP ports"
    [vxlan]="kernel VXLAN + bridge" [overlay]="vswitchd overlay" [encrypted]="vswitchd overlay, encrypted"
    [ovs-overlay]="Open vSwitch userspace VXLAN, TSO off" [overlay-spread]="vswitchd overlay, -o spread"
    [encrypted-spread]="vswitchd overlay, encrypted, -o spread" [encrypted-aes]="vswitchd overlay, encrypted, AES-256-GCM")
# The vswitchd instances of each setup (sender's host first), for CPU samples and liveness.
declare -A DAEMONS=([vswitchd]=vswitchd [afxdp]=afxdp [overlay]="overlay1 overlay2" [encrypted]="encrypted1 encrypted2"
    [overlay-spread]="overlay-spread1 overlay-spread2" [encrypted-spread]="encrypted-spread1 encrypted-spread2"
    [encrypted-aes]="encrypted-aes1 encrypted-aes2"
    [ovs]=ovs [ovs-afxdp]=ovs-afxdp [vde]=vde [ovs-overlay]="ovs-overlay1 ovs-overlay2")
# Kind of each daemon in DAEMONS: how to stop it and read its drop counters (default vswitchd).
declare -A DKIND=([ovs]=ovs [ovs-afxdp]=ovs [vde]=vde [ovs-overlay1]=ovs [ovs-overlay2]=ovs)
# The namespace of each switch that has its own (its interfaces' kernel drop counters count as
# the switch's).
declare -A SWNS=([bridge]=$NSW [ovs]="${P}os" [ovs-afxdp]="${P}xs" [vde]="${P}ds")
# Setups whose daemon busy-polls: stopped (SIGSTOP) except while measured, so that it does not
# take a core from the other setups.
declare -A PAUSED=([ovs-afxdp]=1)

declare -A RES=()        # "setup,metric" or "daemon,metric" -> space-separated values, one per repetition
declare -A READY=()      # setup -> 1 when it was set up successfully
declare -A STATUS=()     # setup -> why it is not measured
declare -A IFINFO=()     # setup -> description of its client-side interface
declare -A DPID=()       # daemon name -> PID
declare -A DSTATUS=()    # daemon name -> running / what went wrong
declare -A DSANDBOXES=() # daemon name -> sandboxes it created (removed on exit)
UDPFLOOD=""
OUT=""               # result of the last measure_* function
BUSY_BEFORE=0        # CPU use of everything else, sampled before the tests
SERVER_PID=""        # the server spawn_server started last
SERVER_LOG=/dev/null # where spawn_server sends its output

# dctl DAEMON ARGS...: vswitchctl against one daemon.
dctl() { vctl "$@"; }
selected() { [[ " $SETUPS " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------- cleanup

# Removes a daemon's endpoints, sandboxes and network, then stops it (TERM, KILL after 5 s).
stop_daemon() {
    local d=$1 pid=${DPID[$1]} sb
    kill -0 "$pid" 2>/dev/null || return 0
    kill -CONT "$pid" 2>/dev/null
    if [[ ${DKIND[$d]:-vswitchd} != vswitchd ]]; then
        kill "$pid" 2>/dev/null
        return 0
    fi
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
    local d keep=0
    kill_bg
    for d in "${!DPID[@]}"; do
        stop_daemon "$d"
    done
    for d in "${!DPID[@]}"; do
        wait_gone "${DPID[$d]}"
        [[ -s $TMP/$d.log ]] && keep=1
    done
    # Sandboxes before hosts (a host's links into its sandbox go with either end).
    remove_prefixed '*h[12]'
    finish_tmp "$rc" "$keep"
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
    if selected ovs || selected ovs-afxdp || selected ovs-overlay; then
        command -v ovs-vswitchd >/dev/null || missing+=(openvswitch-switch)
    fi
    if selected vde; then
        command -v vde_switch >/dev/null || missing+=(vde2)
    fi
    [[ -e $CHART_FONT ]] || missing+=(fonts-dejavu-core)
    install_missing "${missing[@]}"
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

# Draws $REPORT_DIR/chart.png from $REPORT_DIR/chart.tsv (benches/e2e/chart.rs, a cargo bench
# target because it uses the plotters dev-dependency).
draw_chart() {
    local data=$REPORT_DIR/chart.tsv png=$REPORT_DIR/chart.png
    if ! grep -q '^bar' "$data"; then
        log "no chart: it shows ratios, and neither bridge nor vxlan (the references) was measured"
        return 0
    fi
    if ! (cd "$ROOT" && E2E_CHART_FONT=$CHART_FONT nice -n 10 cargo bench -q --bench e2e_chart -- "$data" "$png") >"$TMP/chart.log" 2>&1; then
        log "chart not drawn: $(tail -n 3 "$TMP/chart.log" | tr '\n' ' ')"
        return 1
    fi
    log "chart: $png"
}

# ---------------------------------------------------------------------------- daemons

# start_daemon NAME HOST_NS [VSWITCHD_ARGS...]: start_vswitchd (lib.sh) recording the daemon's
# PID in DPID and its status in DSTATUS.
start_daemon() {
    local d=$1 rc=0 extra
    read -r -a extra <<<"${DAEMON_ARGS:-}"
    start_vswitchd "$@" "${extra[@]}" || rc=1
    [[ -z $VSWITCHD_PID ]] || DPID[$d]=$VSWITCHD_PID
    DSTATUS[$d]=${VSWITCHD_ERR:-running}
    return "$rc"
}

# Applies RECEIVER_RPS's mask for setup $1, if it names one, to rx-0 of the interface holding
# the receiving sandbox's address (sysfs seen from inside the sandbox: ip netns exec mounts the
# namespace's own /sys).
receiver_rps() {
    local item mask dev
    for item in ${RECEIVER_RPS:-}; do
        [[ ${item%%=*} == "$1" ]] || continue
        mask=${item#*=}
        dev=$(ip -n "${SNS[$1]}" -o -4 addr show to "${DST_IP[$1]}" | awk '{ print $2; exit }')
        [[ -n $dev ]] || { STATUS[$1]="no interface with ${DST_IP[$1]} in ${SNS[$1]}"; return 1; }
        ip netns exec "${SNS[$1]}" sh -c 'echo "$1" >"$2"' sh "$mask" "/sys/class/net/$dev/queues/rx-0/rps_cpus" ||
            { STATUS[$1]="could not set rps_cpus $mask on $dev"; return 1; }
        log "$1: rps_cpus $mask on $dev in ${SNS[$1]}"
    done
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
    veth_pair "$NS1" "${P}v1" "${SRC_IP[veth]}/24" "$NS2" "${P}v2" "${DST_IP[veth]}/24"
}

# ovs_env NAME CMD...: runs an Open vSwitch command with every path in $TMP/NAME (never the
# system's /run/openvswitch, /etc/openvswitch or /var/log/openvswitch).
ovs_env() {
    local dir=$TMP/$1
    shift
    OVS_RUNDIR=$dir OVS_DBDIR=$dir OVS_LOGDIR=$dir OVS_SYSCONFDIR=$dir "$@"
}
ovsctl() { local d=$1; shift; ovs_env "$d" ovs-vsctl --db="unix:$TMP/$d/db.sock" --timeout=10 "$@" >>"$TMP/$d/ctl.log" 2>&1; }
ovs_appctl() { local d=$1; shift; ovs_env "$d" ovs-appctl -t "$TMP/$d/vswitchd.ctl" "$@"; }

# ovs_start NAME [NS [TSO]]: a private Open vSwitch: its own ovsdb-server with a fresh database
# and an ovs-vswitchd inside the switch namespace ${SWNS[NAME]} (created here), or inside NS (an
# existing one), userspace TSO on (TSO=false: off), PMD threads (AF_XDP ports) on the last CPU
# only. Both are children of this script (no --detach): the cleanup stops them, and the system
# service is never touched.
ovs_start() {
    local d=$1 dir=$TMP/$1 ns=${2:-${SWNS[$1]:-}} tso=${3:-true} i
    local schema=/usr/share/openvswitch/vswitch.ovsschema
    if ! command -v ovs-vswitchd >/dev/null || [[ ! -e $schema ]]; then
        DSTATUS[$d]="Open vSwitch not installed (apt-get install openvswitch-switch)"
        return 1
    fi
    mkdir -p "$dir" || return 1
    if [[ -z ${2:-} ]]; then
        ip netns add "$ns" && in_ns "$ns" ip link set lo up || return 1
    fi
    ovs_env "$d" ovsdb-tool create "$dir/conf.db" "$schema" >>"$dir/ctl.log" 2>&1 ||
        { DSTATUS[$d]="ovsdb-tool create failed"; return 1; }
    # env execs: the PID is ovsdb-server's own (a shell function here would leave it orphaned).
    env OVS_RUNDIR="$dir" OVS_DBDIR="$dir" OVS_LOGDIR="$dir" OVS_SYSCONFDIR="$dir" ovsdb-server "$dir/conf.db" --remote="punix:$dir/db.sock" --pidfile="$dir/ovsdb-server.pid" \
        --log-file="$dir/ovsdb-server.log" --unixctl="$dir/ovsdb-server.ctl" >/dev/null 2>&1 &
    BG_PIDS+=("$!")
    for i in $(seq 100); do
        [[ -S $dir/db.sock ]] && break
        sleep 0.1
    done
    if ! ovsctl "$d" --no-wait init ||
        ! ovsctl "$d" --no-wait set Open_vSwitch . "other_config:userspace-tso-enable=$tso" \
            "other_config:pmd-cpu-mask=$(printf '0x%x' $((1 << ($(nproc) - 1))))"; then
        DSTATUS[$d]="ovsdb-server did not start (see $d/ovsdb-server.log)"
        return 1
    fi
    nsenter --net="/run/netns/$ns" -- env OVS_RUNDIR="$dir" OVS_DBDIR="$dir" OVS_LOGDIR="$dir" OVS_SYSCONFDIR="$dir" \
        ovs-vswitchd "unix:$dir/db.sock" --pidfile="$dir/ovs-vswitchd.pid" --log-file="$TMP/$d.log" \
        --unixctl="$dir/vswitchd.ctl" >/dev/null 2>&1 &
    DPID[$d]=$!
    for i in $(seq 100); do
        ovs_appctl "$d" version >/dev/null 2>&1 && break
        kill -0 "${DPID[$d]}" 2>/dev/null || { DSTATUS[$d]="ovs-vswitchd exited at startup"; return 1; }
        ((i < 100)) || { DSTATUS[$d]="ovs-vswitchd did not answer within 10 s"; return 1; }
        sleep 0.1
    done
    DSTATUS[$d]="running"
}

# Open vSwitch, userspace (netdev) datapath with userspace TSO, one bridge in L2-learning
# (NORMAL) mode. OVS_PORT=tap: two internal ports (TAPs in the netdev datapath) moved into the
# sandboxes; OVS_PORT=system: veth pairs, the host ends as OVS ports.
setup_ovs() {
    local d=ovs ns=${SWNS[ovs]} br="${P}obr" i sb ip dev
    ovs_start "$d" && ovsctl "$d" add-br "$br" -- set bridge "$br" datapath_type=netdev || return 1
    for i in 1 2; do
        if ((i == 1)); then sb=$NS1 ip=${SRC_IP[ovs]}; else sb=$NS2 ip=${DST_IP[ovs]}; fi
        dev="${P}o$i"
        if [[ $OVS_PORT == tap ]]; then
            ovsctl "$d" add-port "$br" "$dev" -- set interface "$dev" type=internal &&
                in_ns "$ns" ip link set "$dev" netns "$sb" || return 1
        else
            ip link add "$dev" netns "$sb" type veth peer name "${P}oh$i" netns "$ns" &&
                in_ns "$ns" ip link set "${P}oh$i" up &&
                ovsctl "$d" add-port "$br" "${P}oh$i" || return 1
        fi
        in_ns "$sb" ip addr add "$ip/24" dev "$dev" && in_ns "$sb" ip link set "$dev" up || return 1
    done
}

# Open vSwitch with AF_XDP ports (OVS_XDP_MODE, copy mode on veth) on the host ends of two veth
# pairs. Its PMD thread busy-polls, so it is paused while the other setups are measured.
setup_ovs-afxdp() {
    local d=ovs-afxdp ns=${SWNS[ovs-afxdp]} br="${P}xbr" i sb ip err
    ovs_start "$d" && ovsctl "$d" add-br "$br" -- set bridge "$br" datapath_type=netdev || return 1
    for i in 1 2; do
        if ((i == 1)); then sb=$NS1 ip=${SRC_IP[ovs-afxdp]}; else sb=$NS2 ip=${DST_IP[ovs-afxdp]}; fi
        # AF_XDP in copy mode on veth: bad TCP checksums unless the peer computes them itself.
        ip link add "${P}x$i" netns "$sb" type veth peer name "${P}xh$i" netns "$ns" &&
            in_ns "$sb" ethtool -K "${P}x$i" tx off >/dev/null &&
            in_ns "$ns" ip link set "${P}xh$i" up &&
            ovsctl "$d" add-port "$br" "${P}xh$i" -- set interface "${P}xh$i" type=afxdp \
                "options:xdp-mode=$OVS_XDP_MODE" || return 1
        err=$(ovs_env "$d" ovs-vsctl --db="unix:$TMP/$d/db.sock" get interface "${P}xh$i" error 2>&1)
        [[ $err == "[]" ]] || { DSTATUS[$d]="AF_XDP port: $err"; return 1; }
        in_ns "$sb" ip addr add "$ip/24" dev "${P}x$i" && in_ns "$sb" ip link set "${P}x$i" up || return 1
    done
}

# vde_switch in its own namespace with two TAPs, moved into the sandboxes. It needs a console
# on stdin unless daemonized, so it runs with --daemon and its pidfile gives the PID.
setup_vde() {
    local d=vde ns=${SWNS[vde]} dir=$TMP/vde i sb ip
    command -v vde_switch >/dev/null || { DSTATUS[$d]="vde_switch not installed (apt-get install vde2)"; return 1; }
    mkdir -p "$dir" && ip netns add "$ns" && in_ns "$ns" ip link set lo up || return 1
    in_ns "$ns" vde_switch --sock "$dir/ctl" --mgmt "$dir/mgmt" --tap "${P}d1" --tap "${P}d2" \
        --daemon --pidfile "$dir/pid" >"$TMP/$d.log" 2>&1 || { DSTATUS[$d]="vde_switch failed to start"; return 1; }
    for i in $(seq 50); do
        [[ -s $dir/pid ]] && break
        sleep 0.1
    done
    DPID[$d]=$(cat "$dir/pid" 2>/dev/null || true)
    [[ -n ${DPID[$d]} ]] || { DSTATUS[$d]="no vde_switch pidfile"; return 1; }
    DSTATUS[$d]="running"
    for i in 1 2; do
        if ((i == 1)); then sb=$NS1 ip=${SRC_IP[vde]}; else sb=$NS2 ip=${DST_IP[vde]}; fi
        in_ns "$ns" ip link set "${P}d$i" netns "$sb" &&
            in_ns "$sb" ip addr add "$ip/24" dev "${P}d$i" && in_ns "$sb" ip link set "${P}d$i" up || return 1
    done
}

# Stops (SIGSTOP) or resumes (SIGCONT) a busy-polling setup's daemons.
pause_setup() {
    local d
    [[ -n ${PAUSED[$1]:-} ]] || return 0
    for d in ${DAEMONS[$1]:-}; do
        daemon_alive "$d" && kill -"$2" "${DPID[$d]}"
    done
    return 0
}

# Two host namespaces of overlay setup $1 joined by a veth underlay at MTU 1500: ${P}u1 with
# address .1 in host 1, ${P}u2 with .2 in host 2. Offloads stay at the veth defaults unless
# UNDERLAY_OFFLOADS is set.
setup_hosts() {
    local setup=$1 h1=${HOST1[$1]} h2=${HOST2[$1]} net=${UNDERLAY[$1]} features
    read -r -a features <<<"$UNDERLAY_OFFLOADS"
    netns_add "$h1" "$h2" &&
        veth_pair "$h1" "${P}u1" "$net.1/24" "$h2" "${P}u2" "$net.2/24" &&
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

setup_overlay-spread() { setup_vswitchd_overlay overlay-spread "-o spread"; }

setup_encrypted() {
    local secret=$TMP/cluster.secret
    (umask 077 && "$VSWITCHCTL" secret generate >"$secret") ||
        { STATUS[encrypted]="'vswitchctl secret generate' failed"; return 1; }
    setup_vswitchd_overlay encrypted "-o encrypted" --secret-file "$secret"
}

setup_encrypted-spread() {
    local secret=$TMP/cluster-spread.secret
    (umask 077 && "$VSWITCHCTL" secret generate >"$secret") ||
        { STATUS[encrypted-spread]="'vswitchctl secret generate' failed"; return 1; }
    setup_vswitchd_overlay encrypted-spread "-o encrypted -o spread" --secret-file "$secret"
}

setup_encrypted-aes() {
    local secret=$TMP/cluster-aes.secret
    (umask 077 && "$VSWITCHCTL" secret generate >"$secret") ||
        { STATUS[encrypted-aes]="'vswitchctl secret generate' failed"; return 1; }
    setup_vswitchd_overlay encrypted-aes "-o encrypted -o cipher=aes-256-gcm" --secret-file "$secret"
}

# Open vSwitch's userspace VXLAN, per host: a private OVS in the host namespace (userspace TSO
# off, see the header), bridge ${P}wp with the underlay veth as a port and the host's underlay
# address on its internal port (OVS routes and resolves the tunnel's packets itself), and bridge
# ${P}wi with a VXLAN port to the other host and an internal port moved into the sandbox.
setup_ovs-overlay() {
    local setup=ovs-overlay net=${UNDERLAY[ovs-overlay]} i d host sb ip
    setup_hosts "$setup" || return 1
    for i in 1 2; do
        d=$setup$i
        if ((i == 1)); then
            host=${HOST1[$setup]} sb=${CNS[$setup]} ip=${SRC_IP[$setup]}
        else
            host=${HOST2[$setup]} sb=${SNS[$setup]} ip=${DST_IP[$setup]}
        fi
        # The host's kernel must leave the underlay veth to OVS (which reads it through a raw
        # socket): no ARP answers for the address now on ${P}wp (OVS keeps the last answer it
        # sees, and a tunnel aimed at the veth's MAC is not OVS's), and no IP input there
        # (strict reverse-path check: the peer is routed via ${P}wp, so the kernel drops the
        # tunnel's packets instead of answering each with a port-unreachable).
        ovs_start "$d" "$host" false &&
            in_ns "$host" ip addr flush dev "${P}u$i" &&
            in_ns "$host" sysctl -qw "net.ipv4.conf.${P}u$i.arp_ignore=8" "net.ipv4.conf.${P}u$i.rp_filter=1" &&
            ovsctl "$d" add-br "${P}wp" -- set bridge "${P}wp" datapath_type=netdev &&
            ovsctl "$d" add-port "${P}wp" "${P}u$i" &&
            in_ns "$host" ip addr add "$net.$i/24" dev "${P}wp" &&
            in_ns "$host" ip link set "${P}wp" up &&
            ovsctl "$d" add-br "${P}wi" -- set bridge "${P}wi" datapath_type=netdev &&
            ovsctl "$d" add-port "${P}wi" "${P}wx" -- set interface "${P}wx" type=vxlan \
                "options:remote_ip=$net.$((3 - i))" "options:key=$VNI" &&
            ovsctl "$d" add-port "${P}wi" "${P}w$i" -- set interface "${P}w$i" type=internal &&
            ip netns add "$sb" && in_ns "$sb" ip link set lo up &&
            in_ns "$host" ip link set "${P}w$i" netns "$sb" &&
            in_ns "$sb" ip link set "${P}w$i" mtu 1450 up &&
            in_ns "$sb" ip addr add "$ip/24" dev "${P}w$i" || return 1
    done
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

# (cpu_ticks, cpu_percent, rss_mib and machine_busy are lib.sh's.)
now() { echo "$EPOCHREALTIME"; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }

# Records every live daemon's RSS and CPU over the same 3 s of no traffic under key prefix $1.
sample_idle() {
    local key=$1 d t0 t1
    local -A c0=()
    sleep 1
    t0=$(now)
    for d in "${!DPID[@]}"; do
        [[ ${DKIND[$d]:-vswitchd} == vswitchd ]] || continue
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

# Runs "$@" and records the CPU of each of setup $1's daemons during it under metric $2, and
# their sum as the setup's (metric "$2-total").
with_cpu_sample() {
    local setup=$1 metric=$2 d t0 t1 rc=0 pct total=""
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
        pct=$(cpu_percent "${c0[$d]}" "$(cpu_ticks "${DPID[$d]}")" "$t0" "$t1")
        RES["$d,$metric"]+="$pct "
        total=$(awk -v a="${total:-0}" -v b="$pct" 'BEGIN { printf "%.1f", a + b }')
    done
    # Under its own key: a local setup and its daemon share a name.
    [[ -z $total ]] || RES["$setup,$metric-total"]+="$total "
    return "$rc"
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

# TCP throughput received with $2 streams (default 1), in Mbit/s; CPU under metric tcp-cpu or
# tcp2-cpu.
measure_tcp() {
    local setup=$1 streams=${2:-1} out=$TMP/iperf3-tcp-$1.txt metric=tcp-cpu
    ((streams == 1)) || metric=tcp$streams-cpu
    SERVER_LOG=$TMP/iperf3-server-tcp-$setup.log
    spawn_server "$setup" iperf3 -s -1 -B "${DST_IP[$setup]}" -p "$TCP_PORT"
    wait_listen "$setup" t "$TCP_PORT" || { server_failed "$setup" "iperf3 server"; return 1; }
    if ! with_cpu_sample "$setup" "$metric" run_client "$setup" $((DURATION + 20)) "$out" \
        iperf3 -c "${DST_IP[$setup]}" -p "$TCP_PORT" -t "$DURATION" -P "$streams" -f m --connect-timeout 3000; then
        log "$setup: iperf3 TCP failed: $(tail -n 2 "$out" | tr '\n' ' ')"
        wait_or_kill "$SERVER_PID" 0
        return 1
    fi
    wait_or_kill "$SERVER_PID" 5
    OUT=$(awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) }' "$out" | tail -n 1)
}

# Sum of one /proc/net/dev column over every interface of namespace $1: 4 = RX drops, 12 = TX
# drops; $3 = both.
ns_drops() {
    in_ns "$1" cat /proc/net/dev | awk -v c="$2" -v c2="${3:-0}" \
        'NR > 2 { sub(/^[^:]*:/, ""); split($0, f, " "); s += f[c] + (c2 ? f[c2] : 0) } END { print s + 0 }'
}

# Drops counted by setup $1's switch daemons themselves, as "port_drops datapath_drops":
# vswitchd's stats DROPS column (all of its own drops, as port drops, the vtep row's too: its
# underlay socket's receive-buffer drops); OVS's per-port
# "dropped" (which for system and AF_XDP ports include the kernel interface's own counters)
# and its datapath "lost" (dpctl/show -s); vde_switch counts none.
daemon_drops() {
    local d n=0 m=0 v a b
    for d in ${DAEMONS[$1]:-}; do
        daemon_alive "$d" || continue
        case ${DKIND[$d]:-vswitchd} in
            # Worker rows repeat the vtep row's underlay counts: skip them.
            vswitchd) v="$(dctl "$d" stats 2>/dev/null |
                awk 'NR > 1 && $2 != "(worker)" && $8 ~ /^[0-9]+$/ { s += $8 } END { print s + 0 }') 0" ;;
            ovs) v=$(ovs_appctl "$d" dpctl/show -s 2>/dev/null |
                awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(dropped|lost):[0-9]+$/) {
                        k = $i; sub(/:.*/, "", k); sub(/^[a-z]+:/, "", $i); s[k] += $i } }
                    END { print s["dropped"] + 0, s["lost"] + 0 }') ;;
            *) v="0 0" ;;
        esac
        read -r a b <<<"$v"
        n=$((n + ${a:-0})) m=$((m + ${b:-0}))
    done
    echo "$n $m"
}

# UDP RcvbufErrors of namespace $1 (datagrams dropped because a socket's receive buffer was full).
udp_rcvbuf_errors() {
    in_ns "$1" cat /proc/net/snmp |
        awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] + 0 }'
}

# Prints "sender_tx switch receiver" drop counts of setup $1: all interfaces' TX drops in
# sandbox 1 (e.g. a full TAP queue the switch did not drain); the switch's (RX+TX drops of the
# interfaces in its own namespace or the daemon's port counters, whichever is larger, plus its
# datapath counters; in the overlay group also the RX+TX drops of both host namespaces'
# interfaces, the underlay, and their UDP RcvbufErrors, a VTEP socket's full receive buffer);
# RX drops of sandbox 2's interfaces plus its UDP RcvbufErrors (the receiving tool too slow).
drop_counters() {
    local tx sw=0 rx rcvbuf port dp host
    tx=$(ns_drops "${CNS[$1]}" 12)
    [[ -z ${SWNS[$1]:-} ]] || sw=$(ns_drops "${SWNS[$1]}" 4 12)
    for host in ${HOST1[$1]:-} ${HOST2[$1]:-}; do
        sw=$((sw + $(ns_drops "$host" 4 12) + $(udp_rcvbuf_errors "$host")))
    done
    read -r port dp <<<"$(daemon_drops "$1")"
    # OVS's port counters repeat the kernel's for its system/AF_XDP ports, vswitchd's its VTEP
    # sockets' receive-buffer drops (tunnel_rx_dropped, also in the host's RcvbufErrors): count
    # a drop once.
    ((port > sw)) && sw=$port
    sw=$((sw + dp))
    rx=$(ns_drops "${SNS[$1]}" 4)
    rcvbuf=$(udp_rcvbuf_errors "${SNS[$1]}")
    echo "$tx $sw $((rx + ${rcvbuf:-0}))"
}

# Logs where datagrams were lost (counters before $2 and after $3 the test) and leaves the
# differences "tx switch rx" in DROPS.
DROPS=""
log_udp_losses() {
    local setup=$1 before after
    read -r -a before <<<"$2"
    read -r -a after <<<"$3"
    DROPS="$((after[0] - before[0])) $((after[1] - before[1])) $((after[2] - before[2]))"
    log "$setup UDP${6:+ at $6/s}: sent ${4:-?}, received ${5:-?}; drops: sender-side interface TX $((after[0] - before[0])), switch $((after[1] - before[1])), receiver interface + socket buffer $((after[2] - before[2]))"
}

# 64-byte UDP from the batched sender for $2 seconds (default DURATION) at $3 datagrams/s
# (default 0: flat out), CPU under metric $4 (default udp-cpu): "offered_pps received_pps
# loss_percent tx_drops switch_drops rx_drops".
measure_udp_udpflood() {
    local setup=$1 secs=${2:-$DURATION} rate=${3:-0} metric=${4:-udp-cpu}
    local rx=$TMP/udpflood-rx-$1.txt tx=$TMP/udpflood-tx-$1.txt i drops0
    SERVER_LOG=$rx
    spawn_server "$setup" "$UDPFLOOD" recv "${DST_IP[$setup]}:$UDP_PORT" 1000
    for i in $(seq 100); do
        grep -q listening "$rx" && break
        sleep 0.1
    done
    grep -q listening "$rx" || { server_failed "$setup" "udpflood receiver" "$(cat "$rx")"; return 1; }
    drops0=$(drop_counters "$setup")
    if ! with_cpu_sample "$setup" "$metric" run_client "$setup" $((secs + 20)) "$tx" \
        "$UDPFLOOD" send "${DST_IP[$setup]}:$UDP_PORT" "$secs" 64 "$rate"; then
        log "$setup: udpflood sender failed: $(cat "$tx")"
        wait_or_kill "$SERVER_PID" 0
        return 1
    fi
    wait_or_kill "$SERVER_PID" 10
    local sent received
    sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$tx")
    secs=$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' "$tx")
    received=$(sed -n 's/.*received=\([0-9]*\).*/\1/p' "$rx")
    [[ -n $sent && -n $secs && -n $received ]] || { log "$setup: bad udpflood output"; return 1; }
    log_udp_losses "$setup" "$drops0" "$(drop_counters "$setup")" "$sent" "$received" "${rate#0}"
    OUT=$(awk -v s="$sent" -v t="$secs" -v r="$received" -v d="$DROPS" \
        'BEGIN { printf "%.0f %.0f %.2f %s\n", s / t, r / t, (s > 0 ? (s - r) / s * 100 : 0), d }')
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
    log_udp_losses "$setup" "$drops0" "$(drop_counters "$setup")"
    OUT=$(awk -v t="$DURATION" -v d="$DROPS" '/receiver/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\/[0-9]+$/) {
            split($i, a, "/"); printf "%.0f %.0f %.2f %s\n", a[2] / t, (a[2] - a[1]) / t, (a[2] > 0 ? a[1] / a[2] * 100 : 0), d } }' "$out" |
        tail -n 1)
}

# sockperf UDP ping-pong: half-RTT "p50 p99" in microseconds.
measure_sockperf() {
    local setup=$1 out=$TMP/sockperf-$1.txt
    SERVER_LOG=$TMP/sockperf-server-$setup.log
    spawn_server "$setup" sockperf server -i "${DST_IP[$setup]}" -p "$SOCKPERF_PORT"
    wait_listen "$setup" u "$SOCKPERF_PORT" || { server_failed "$setup" "sockperf server"; return 1; }
    run_client "$setup" $((LAT_DURATION + 20)) "$out" \
        sockperf ping-pong -i "${DST_IP[$setup]}" -p "$SOCKPERF_PORT" -t "$LAT_DURATION" ||
        log "$setup: sockperf failed: $(tail -n 2 "$out" | tr '\n' ' ')"
    wait_or_kill "$SERVER_PID" 0
    local p50 p99
    p50=$(sed -n 's/.*percentile 50.000 = *\([0-9.]*\).*/\1/p' "$out" | tail -n 1)
    p99=$(sed -n 's/.*percentile 99.000 = *\([0-9.]*\).*/\1/p' "$out" | tail -n 1)
    [[ -n $p50 ]] && OUT="$p50 ${p99:-NA}"
}

# Appends one value (or NA when empty) to a result list.
record() { RES["$1,$2"]+="${3:-NA} "; }

# Runs one measurement function; it leaves its result in OUT (not stdout: it must run in this
# shell so that the helper PIDs it starts and the CPU samples it records are kept).
measure() {
    OUT=""
    "$@" || OUT=""
}

# record_words SETUP "V1 V2 ..." METRIC...: one value per metric (NA for missing ones).
record_words() {
    local setup=$1 m v
    local -a vals
    read -r -a vals <<<"$2"
    shift 2
    for m in "$@"; do
        v=${vals[0]:-}
        vals=("${vals[@]:1}")
        record "$setup" "$m" "$v"
    done
}

run_setup() {
    local setup=$1
    log "measuring $setup"
    pause_setup "$setup" CONT
    # Idle: no traffic for 2 s (a busy-polling switch shows here).
    with_cpu_sample "$setup" idle-cpu sleep 2
    measure with_cpu_sample "$setup" lat-cpu measure_sockperf "$setup"
    record_words "$setup" "$OUT" half-rtt half-rtt-p99
    sleep 0.5
    measure measure_tcp "$setup" 1
    record "$setup" tcp "$OUT"
    sleep 0.5
    measure measure_tcp "$setup" 2
    record "$setup" tcp2 "$OUT"
    sleep 0.5
    measure measure_udp_"$UDP_TOOL" "$setup"
    record_words "$setup" "$OUT" udp-offered udp-pps udp-loss drop-tx drop-sw drop-rx
    pause_setup "$setup" STOP
    local d
    for d in ${DAEMONS[$setup]:-}; do
        daemon_alive "$d" && continue
        DSTATUS[$d]="died during the tests (see $d.log)"
        log "$d ${DSTATUS[$d]}"
        unset "READY[$setup]"
    done
}

# Offered load at loss onset of setup $1: a sweep of ONSET_STEPS fixed rates of the paced
# 64-byte sender, 1/N ... N/N of the last flat-out offered rate, each measured ONSET_REPEAT
# times for ONSET_SECS s (passes alternate ascending and descending, so that a drift of the
# machine's load spreads over all rates). A step is lossy when the median loss of its repeats
# is at least ONSET_LOSS %. Loss need not grow with the offered load (OVS lost 33% at 23 kpps
# and 1.3% at 46 kpps in one loaded trial; a bisection then converges anywhere), so the onset
# is the lowest step from which every higher step is lossy; lossy steps below it stay in the
# step list, marked "!". Records onset (that step's offered pps), onset-open (1: no step was
# lossy, the onset lies above the sweep) and onset-steps ("offered_kpps:loss%/loss%" a step,
# every repeat's loss, ascending).
measure_onset() {
    local setup=$1 hi i k rep offered loss_med lowest=""
    local -a last_off last_loss w rates order
    local -A offered_at=() loss_at=()
    read -r -a last_off <<<"${RES[$setup,udp-offered]:-}"
    read -r -a last_loss <<<"${RES[$setup,udp-loss]:-}"
    hi=${last_off[-1]:-NA}
    [[ $hi =~ ^[0-9]+$ ]] || { log "$setup: no flat-out UDP result, no onset sweep"; return 1; }
    if awk -v l="${last_loss[-1]}" -v t="$ONSET_LOSS" 'BEGIN { exit !(l < t) }'; then
        # Under the threshold flat out (last repetition): the sender, not the switch, is the limit.
        RES["$setup,onset"]="$hi"
        RES["$setup,onset-open"]=1
        RES["$setup,onset-steps"]="under $ONSET_LOSS% loss at the flat-out rate of the last repetition: the sender is the limit"
        return 0
    fi
    for ((k = 1; k <= ONSET_STEPS; k++)); do
        rates+=($((hi * k / ONSET_STEPS)))
    done
    pause_setup "$setup" CONT
    for ((rep = 0; rep < ONSET_REPEAT; rep++)); do
        if ((rep % 2)); then order=($(seq $((ONSET_STEPS - 1)) -1 0)); else order=($(seq 0 $((ONSET_STEPS - 1)))); fi
        for i in "${order[@]}"; do
            OUT=""
            measure_udp_udpflood "$setup" "$ONSET_SECS" "${rates[$i]}" onset-cpu || OUT=""
            read -r -a w <<<"$OUT"
            [[ -n ${w[2]:-} ]] || continue
            offered_at[$i]+="${w[0]} "
            loss_at[$i]+="${w[2]} "
            log "$setup: onset step $((i + 1))/$ONSET_STEPS, repeat $((rep + 1)): offered ${w[0]} pps, loss ${w[2]}%"
            sleep 0.3
        done
    done
    pause_setup "$setup" STOP
    # From the top down: the lossy run that reaches the highest step starts at the onset.
    for ((i = ONSET_STEPS - 1; i >= 0; i--)); do
        loss_med=$(median "${loss_at[$i]:-}")
        [[ $loss_med != NA ]] && awk -v l="$loss_med" -v t="$ONSET_LOSS" 'BEGIN { exit !(l >= t) }' || break
        lowest=$i
    done
    RES["$setup,onset-steps"]=""
    for ((i = 0; i < ONSET_STEPS; i++)); do
        offered=$(median "${offered_at[$i]:-}")
        [[ $offered != NA ]] || offered=${rates[$i]}
        loss_med=$(median "${loss_at[$i]:-}")
        local mark="" losses=${loss_at[$i]:-NA }
        if [[ -n $lowest ]] && ((i < lowest)) && [[ $loss_med != NA ]] &&
            awk -v l="$loss_med" -v t="$ONSET_LOSS" 'BEGIN { exit !(l >= t) }'; then
            mark="!"
        fi
        losses=${losses% }
        RES["$setup,onset-steps"]+="$(awk -v o="$offered" 'BEGIN { printf "%.0fk", o / 1000 }'):${losses// //}%$mark "
    done
    log "$setup: onset steps (offered:loss of each repeat): ${RES[$setup,onset-steps]}"
    if [[ -n $lowest ]]; then
        offered=$(median "${offered_at[$lowest]}")
        RES["$setup,onset"]=${offered%.*}
    else
        RES["$setup,onset"]=$hi
        RES["$setup,onset-open"]=1
        RES["$setup,onset-steps"]="under $ONSET_LOSS% loss at every step: ${RES[$setup,onset-steps]}"
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
# target_line TEXT SETUP BASE METRIC OP LIMIT: "TEXT: R (target OP LIMIT: ok|MISSED)", OP is
# >= or <=.
target_line() {
    local r
    selected "$2" && selected "$3" || return 0
    r=$(ratio "$(med "$2" "$4")" "$4" "$3")
    if [[ $r == - ]]; then
        printf -- '- %s: not measured\n' "$1"
    else
        printf -- '- %s: %s (target %s %s: %s)\n' "$1" "$r" "$5" "$6" \
            "$(awk -v r="$r" -v m="$6" -v op="$5" 'BEGIN { ok = (op == ">=" ? r >= m : r <= m); print (ok ? "ok" : "MISSED") }')"
    fi
}

# value_line TEXT SETUP METRIC OP LIMIT UNIT: "TEXT: V UNIT (target OP LIMIT UNIT: ok|MISSED)" for
# the median of SETUP's METRIC itself (not a ratio).
value_line() {
    local v
    selected "$2" || return 0
    v=$(med "$2" "$3")
    if [[ $v == NA ]]; then
        printf -- '- %s: not measured\n' "$1"
    else
        printf -- '- %s: %s (target %s %s%s: %s)\n' "$1" "$(fmt "$v" 1 2 "$6")" "$4" "$5" "$6" \
            "$(awk -v v="$v" -v m="$5" -v op="$4" 'BEGIN {
                if (op == ">=") ok = v >= m; else if (op == "<") ok = v < m; else if (op == "<=") ok = v <= m
                else { print "unknown operator " op; exit }
                print (ok ? "ok" : "MISSED") }')"
    fi
}

# cell SETUP METRIC SCALE DECIMALS UNIT: "median UNIT (min–max)" of the repetitions (the spread
# only with two or more values), "n/a" if none.
cell() {
    local values=${RES[$1,$2]:-} m
    m=$(median "$values")
    [[ $m == NA ]] && { echo "n/a"; return; }
    awk -v vals="$values" -v m="$m" -v s="$3" -v d="$4" -v u="$5" 'BEGIN {
        n = split(vals, v, " "); c = 0
        for (i = 1; i <= n; i++) if (v[i] ~ /^[0-9.]+$/) {
            x = v[i] + 0; c++
            if (c == 1 || x < lo) lo = x
            if (c == 1 || x > hi) hi = x
        }
        printf "%." d "f%s", m / s, u
        if (c > 1) printf " (%." d "f–%." d "f)", lo / s, hi / s
        printf "\n" }'
}

# Derived per-repetition metrics: switch CPU (% of one core) per Gbit/s of single-stream TCP.
derive_metrics() {
    local setup i
    local -a cpu tcp
    for setup in $SETUPS; do
        read -r -a cpu <<<"${RES[$setup,tcp-cpu-total]:-}"
        read -r -a tcp <<<"${RES[$setup,tcp]:-}"
        RES["$setup,cpu-per-gbit"]=""
        for i in "${!cpu[@]}"; do
            RES["$setup,cpu-per-gbit"]+="$(awk -v c="${cpu[$i]}" -v t="${tcp[$i]:-NA}" \
                'BEGIN { if (t ~ /^[0-9.]+$/ && t > 0) printf "%.1f", c / (t / 1000); else printf "NA" }') "
        done
    done
}

# report_group TITLE BASE_SETUP SETUP...: two markdown tables of the selected setups (rate and
# latency with ratios to BASE_SETUP; loss and CPU), medians with the per-repetition min–max.
report_group() {
    local title=$1 base=$2 setup rows=()
    shift 2
    for setup in "$@"; do
        selected "$setup" && rows+=("$setup")
    done
    ((${#rows[@]} > 0)) || return 0
    printf '\n### %s\n\n' "$title"
    printf 'Medians of %s repetition(s), (min–max) over the repetitions; × = ratio of the medians to %s.\n\n' \
        "$REPEAT" "${LABEL[$base]}"
    printf '| Setup | TCP 1 stream | × | TCP 2 streams | × | UDP 64 B received | × | ½RTT p50 | × | ½RTT p99 | × |\n'
    printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
    for setup in "${rows[@]}"; do
        if [[ -z ${RES[$setup,tcp]:-} ]]; then
            printf '| %s | not measured: %s | | | | | | | | | |\n' "${LABEL[$setup]}" "$(why_not "$setup")"
            continue
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$setup]}" \
            "$(cell "$setup" tcp 1000 2 " Gbit/s")" "$(ratio "$(med "$setup" tcp)" tcp "$base")" \
            "$(cell "$setup" tcp2 1000 2 " Gbit/s")" "$(ratio "$(med "$setup" tcp2)" tcp2 "$base")" \
            "$(cell "$setup" udp-pps 1000 0 " kpps")" "$(ratio "$(med "$setup" udp-pps)" udp-pps "$base")" \
            "$(cell "$setup" half-rtt 1 1 " µs")" "$(ratio "$(med "$setup" half-rtt)" half-rtt "$base")" \
            "$(cell "$setup" half-rtt-p99 1 1 " µs")" "$(ratio "$(med "$setup" half-rtt-p99)" half-rtt-p99 "$base")"
    done
    printf '\n| Setup | UDP 64 B offered | loss | drops: sender TX / switch / receiver | switch CPU, TCP 1 stream | CPU per Gbit/s | idle CPU | loss onset: lowest offered load from which loss stays ≥ %s%% |\n' "$ONSET_LOSS"
    printf '|---|---|---|---|---|---|---|---|\n'
    for setup in "${rows[@]}"; do
        [[ -n ${RES[$setup,tcp]:-} ]] || continue
        local onset=n/a
        if [[ -n ${RES[$setup,onset]:-} ]]; then
            onset="$(fmt "${RES[$setup,onset]}" 1000 0 " kpps")"
            [[ -z ${RES[$setup,onset-open]:-} ]] || onset="> $onset"
            onset+=" (${RES[$setup,onset-steps]% })"
        elif [[ $ONSET == 1 && " $ONSET_SETUPS " == *" $setup "* ]]; then
            onset="not measured"
        fi
        printf '| %s | %s | %s | %s / %s / %s | %s | %s | %s | %s |\n' "${LABEL[$setup]}" \
            "$(cell "$setup" udp-offered 1000 0 " kpps")" "$(cell "$setup" udp-loss 1 1 "%")" \
            "$(fmt "$(med "$setup" drop-tx)" 1 0 "")" "$(fmt "$(med "$setup" drop-sw)" 1 0 "")" "$(fmt "$(med "$setup" drop-rx)" 1 0 "")" \
            "$(cell "$setup" tcp-cpu-total 1 0 "%")" "$(cell "$setup" cpu-per-gbit 1 0 "%")" \
            "$(cell "$setup" idle-cpu-total 1 1 "%")" "$onset"
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
    for setup in overlay encrypted encrypted-aes overlay-spread encrypted-spread; do
        selected "$setup" && any=1
    done
    ((any)) || return 0
    printf '\nvswitchd overlay daemons (one per host; host 1 runs the clients, host 2 the servers; CPU in %% of one core):\n\n'
    printf '| Daemon | status | CPU during TCP | during UDP 64 B | during sockperf | idle RSS before / after | idle CPU before / after | threads |\n'
    printf '|---|---|---|---|---|---|---|---|\n'
    for setup in overlay encrypted encrypted-aes overlay-spread encrypted-spread; do
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
    for setup in overlay encrypted encrypted-aes overlay-spread encrypted-spread; do
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
    derive_metrics
    printf '\n## vswitch e2e: %s s per test, %s repetition(s), %s, kernel %s, %s CPUs, %s\n' \
        "$DURATION" "$REPEAT" "UDP sender: $UDP_TOOL, pinned: $([[ ${#CLIENT_PIN[@]} -gt 0 ]] && echo yes || echo no)" "$(uname -r)" "$(nproc)" "$(date -u +%FT%TZ)"
    # shellcheck disable=SC2016 # backquotes for markdown
    printf '\nCommand: `%s`; setup order rotated each repetition: %s.\n' "$COMMAND" "$SETUPS"
    ((BUSY_BEFORE < 10)) ||
        printf '\n**Warning: the machine was %s%% busy before the tests (other processes); numbers are skewed.**\n' \
            "$BUSY_BEFORE"
    report_group "Two sandboxes on one host" bridge vswitchd afxdp ovs ovs-afxdp vde bridge veth
    report_group "Overlay: two hosts (namespaces) over a veth underlay, MTU 1500, one sandbox each" vxlan vxlan overlay encrypted encrypted-aes ovs-overlay overlay-spread encrypted-spread
    if selected encrypted; then
        report_group "Encryption cost" overlay overlay encrypted $(selected encrypted-aes && echo encrypted-aes)
    elif selected encrypted-aes; then
        report_group "Encryption cost" overlay overlay encrypted-aes
    fi
    if selected encrypted && selected encrypted-spread; then
        report_group "Spreading an encrypted overlay over the workers" encrypted encrypted encrypted-spread
    fi
    printf '\nDrops are counted where they happen: "sender TX" = TX drops of sandbox 1'"'"'s interfaces (a TAP queue the switch did not drain, a veth whose peer did not take the frame); "switch" = RX/TX drops of the interfaces in the switch'"'"'s own namespace plus the switch'"'"'s own counters (vswitchd stats, OVS dpctl dropped/lost; vde_switch counts none), and in the overlay group the RX/TX drops of both hosts'"'"' interfaces and their UDP receive-buffer errors (the kernel counts a UDP GRO train it drops once, so a VTEP socket that overflows loses more datagrams than counted); "receiver" = RX drops of sandbox 2'"'"'s interfaces plus its UDP receive-buffer errors. CPU is %% of one core, summed over the setup'"'"'s daemons (the kernel setups have none); idle CPU over 2 s without traffic. Loss onset: a sweep of a paced sender at %s fixed rates (1/%s to %s/%s of the flat-out offered rate), each %s times for %s s, shown as offered:loss of each repeat; the onset is the lowest rate from which the median loss of every higher rate is ≥ %s%% (loss need not grow with the load: lossy rates below the onset are marked !).\n' \
        "$ONSET_STEPS" "$ONSET_STEPS" "$ONSET_STEPS" "$ONSET_STEPS" "$ONSET_REPEAT" "$ONSET_SECS" "$ONSET_LOSS"
    local targets
    # The issue asks 1.0 of the bridge unpinned and 0.8 pinned (PIN=1, where the bridge runs
    # on the sender's and receiver's own CPUs and the switch must share them).
    local tcp_target=1.0 pinned=unpinned
    if ((${#CLIENT_PIN[@]})); then tcp_target=0.8 pinned=pinned; fi
    targets=$(target_line "TCP 1 stream ($pinned), vswitchd TAP / kernel bridge" vswitchd bridge tcp ">=" $tcp_target
        target_line "UDP 64 B received, vswitchd AF_XDP / kernel bridge" afxdp bridge udp-pps ">=" 1.5
        value_line "UDP 64 B loss, vswitchd AF_XDP" afxdp udp-loss "<" 5 "%"
        target_line "½RTT p50, vswitchd TAP / kernel bridge" vswitchd bridge half-rtt "<=" 1.0
        target_line "½RTT p99, vswitchd TAP / kernel bridge" vswitchd bridge half-rtt-p99 "<=" 1.5
        target_line "TCP 1 stream, vswitchd AF_XDP / OVS AF_XDP" afxdp ovs-afxdp tcp ">=" 3.0
        target_line "vswitchd overlay TCP / kernel VXLAN + bridge" overlay vxlan tcp ">=" 0.85
        target_line "vswitchd overlay ½RTT p50 / kernel VXLAN + bridge" overlay vxlan half-rtt "<=" 1.3
        target_line "encrypted overlay TCP / vswitchd overlay" encrypted overlay tcp ">=" 0.7
        target_line "encrypted overlay, AES-256-GCM, TCP / vswitchd overlay" encrypted-aes overlay tcp ">=" 0.7
        target_line "vswitchd overlay TCP / Open vSwitch userspace VXLAN (TSO off, see the header)" overlay ovs-overlay tcp ">=" 1.0)
    [[ -z $targets ]] || printf '\nIssue 11 targets (medians; ratios of medians unless a unit is shown):\n%s\n' "$targets"
    printf '\nClient-side interfaces in sandbox 1:\n'
    for setup in $SETUPS; do
        [[ -n ${IFINFO[$setup]:-} ]] && printf '  %-16s %s\n' "$setup" "${IFINFO[$setup]}"
    done
    if ((REPEAT > 1)); then
        printf '\nPer repetition, in run order (TCP Gbit/s | UDP 64 B kpps received | ½RTT µs):\n'
        for setup in $SETUPS; do
            [[ -n ${RES[$setup,tcp]:-} ]] || continue
            printf '  %-16s %s| %s| %s\n' "$setup" "$(scaled "${RES[$setup,tcp]}" 1000 1)" \
                "$(scaled "${RES[$setup,udp-pps]}" 1000 0)" "$(scaled "${RES[$setup,half-rtt]}" 1 1)"
        done
        printf 'TCP ratios per repetition:\n'
        local pair setup_a setup_b
        for pair in "vswitchd bridge" "afxdp bridge" "ovs bridge" "vswitchd ovs" "afxdp ovs-afxdp" "overlay vxlan" "encrypted overlay" "encrypted-aes overlay" "overlay ovs-overlay"; do
            read -r setup_a setup_b <<<"$pair"
            if [[ -n ${RES[$setup_a,tcp]:-} && -n ${RES[$setup_b,tcp]:-} ]]; then
                printf '  %-16s / %-11s %s\n' "$setup_a" "$setup_b" "$(rep_ratios "$setup_a" "$setup_b" tcp)"
            fi
        done
    fi
    report_local_daemon vswitchd
    report_local_daemon afxdp
    report_overlay_daemons
}

# The chart's data (benches/e2e/chart.rs): ratios of medians per setup, local group to the
# kernel bridge, overlay group to kernel VXLAN.
chart_data() {
    local setup base panel
    printf 'title\tvswitch e2e, %s, %s x %s s, %s\n' "$(uname -r)" "$REPEAT" "$DURATION" "$(date -u +%F)"
    printf 'metrics\tTCP 1 stream\tUDP 64 B received\t½RTT p50 (lower is better)\n'
    for panel in "bridge:vswitchd afxdp ovs ovs-afxdp vde bridge veth" "vxlan:vxlan overlay encrypted encrypted-aes ovs-overlay overlay-spread encrypted-spread"; do
        base=${panel%%:*}
        selected "$base" || continue
        printf 'panel\tratio to %s\n' "${LABEL[$base]}"
        for setup in ${panel#*:}; do
            if ! selected "$setup" || [[ -z ${RES[$setup,tcp]:-} ]]; then continue; fi
            printf 'bar\t%s\t%s\t%s\t%s\n' "$setup" \
                "$(ratio "$(med "$setup" tcp)" tcp "$base" | sed 's/^-$/NA/')" \
                "$(ratio "$(med "$setup" udp-pps)" udp-pps "$base" | sed 's/^-$/NA/')" \
                "$(ratio "$(med "$setup" half-rtt)" half-rtt "$base" | sed 's/^-$/NA/')"
        done
    done
}

# ---------------------------------------------------------------------------- main

main() {
    [[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer"
    [[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer"
    [[ $UDP_TOOL == udpflood || $UDP_TOOL == iperf3 ]] || die "UDP_TOOL must be udpflood or iperf3"
    local item
    for item in ${RECEIVER_RPS:-}; do
        [[ $item =~ ^[a-z-]+=[0-9a-fA-F,]+$ && -n ${SNS[${item%%=*}]:-} ]] ||
            die "RECEIVER_RPS: '$item' is not SETUP=HEXMASK with a known setup"
    done
    [[ $SUITE =~ ^(local|overlay|all)$ ]] || die "SUITE must be local, overlay or all"
    [[ $OVS_PORT == tap || $OVS_PORT == system ]] || die "OVS_PORT must be tap or system"
    [[ $ONSET_STEPS =~ ^[1-9][0-9]*$ && $ONSET_SECS =~ ^[1-9][0-9]*$ && $ONSET_REPEAT =~ ^[1-9][0-9]*$ ]] ||
        die "ONSET_STEPS, ONSET_SECS and ONSET_REPEAT must be positive integers"
    [[ $ONSET_LOSS =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "ONSET_LOSS must be a number (percent)"
    local setup
    for setup in $SETUPS; do
        [[ -n ${LABEL[$setup]:-} ]] || die "unknown setup '$setup' (use $LOCAL_SETUPS $OVERLAY_SETUPS)"
    done
    bench_start

    install_packages
    [[ $UDP_TOOL == udpflood ]] && build_udpflood
    local build_ok=1
    if selected vswitchd || selected afxdp || selected overlay || selected encrypted || selected encrypted-aes || selected overlay-spread || selected encrypted-spread; then
        build_switch || build_ok=0
    fi
    # The local vswitchd goes first: it creates the local sandboxes.
    local order=()
    selected vswitchd && order+=(vswitchd)
    for setup in $SETUPS; do
        [[ $setup == vswitchd ]] || order+=("$setup")
    done
    for setup in "${order[@]}"; do
        [[ -z ${CNS[$setup]:-} || ${CNS[$setup]} != "$NS1" || $setup == vswitchd ]] || ensure_sandboxes
        if [[ -n ${DAEMONS[$setup]:-} && ${DKIND[${DAEMONS[$setup]%% *}]:-vswitchd} == vswitchd && $build_ok == 0 ]]; then
            STATUS[$setup]="cargo build failed"
        elif "setup_$setup" && receiver_rps "$setup"; then
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
        pause_setup "$setup" STOP
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

    if [[ $ONSET == 1 && $UDP_TOOL == udpflood ]]; then
        for setup in $ONSET_SETUPS; do
            [[ -n ${READY[$setup]:-} ]] || continue
            log "loss onset sweep: $setup"
            measure_onset "$setup" || true
        done
    fi
    sample_idle idle1
    local d
    for d in "${!DPID[@]}"; do
        [[ ${DKIND[$d]:-vswitchd} == vswitchd ]] || continue
        daemon_alive "$d" && dctl "$d" stats >"$TMP/$d-stats.txt" 2>&1
    done
    mkdir -p "$REPORT_DIR"
    report | tee "$REPORT_DIR/report.md"
    chart_data >"$REPORT_DIR/chart.tsv"
    [[ ${CHART:-1} == 0 ]] || draw_chart || true
    log "report: $REPORT_DIR/report.md; took $((SECONDS / 60)) min $((SECONDS % 60)) s"
    local failed=()
    for setup in $SETUPS; do
        [[ -n ${RES[$setup,tcp]:-} ]] || failed+=("$setup")
    done
    ((${#failed[@]} == 0)) || die "not measured: ${failed[*]}"
}

main "$@"
