#!/usr/bin/env bash
# Raw uplinks, A/B: two builds of vswitchd measured interleaved (A, B, A, B, ...) in the same
# minutes, so a shared machine's load hits both alike; report ratios B/A.
#
# Topology per run: a host namespace runs vswitchd; two "LAN" namespaces each join it with a
# veth pair whose host end (up1, up2) is a raw uplink (AF_PACKET socket) of one network, so
# every frame from LAN 1 to LAN 2 is read from one raw socket and written to the other.
# Per run: 64-byte UDP from the batched sender (benches/e2e/udpflood.rs, sendmmsg, flat out),
# received datagrams per second at LAN 2; the daemon's system calls per frame during it
# (`perf stat` on syscall tracepoints; frames = the uplink's rx_packets in `vswitchctl stats`);
# one iperf3 TCP stream LAN 1 -> LAN 2 (GSO frames cross the uplinks whole).
#
#   sudo A=/path/to/old/bin B=/path/to/new/bin REPEAT=3 DURATION=5 benches/uplink.sh
#
# A and B are directories holding vswitchd and vswitchctl. Prints one line per run, then the
# per-repetition ratios B/A and their median.
set -euo pipefail
A=${A:?directory with the baseline vswitchd and vswitchctl} B=${B:?directory with the new build}
REPEAT=${REPEAT:-3} DURATION=${DURATION:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
P=upl$$ TMP=$(mktemp -d)
DPID=""
cleanup() {
    [[ -z $DPID ]] || kill "$DPID" 2>/dev/null || true
    wait 2>/dev/null || true
    for ns in "${P}h" "${P}l1" "${P}l2"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
in_ns() { ip netns exec "$@"; }

UDPFLOOD=$TARGET_DIR/e2e/udpflood
if [[ ! -x $UDPFLOOD || $ROOT/benches/e2e/udpflood.rs -nt $UDPFLOOD ]]; then
    mkdir -p "$TARGET_DIR/e2e"
    rustc --edition 2024 -C opt-level=3 -o "$UDPFLOOD" "$ROOT/benches/e2e/udpflood.rs"
fi

setup() { # BINDIR
    local bin=$1 i
    ip netns add "${P}h"
    in_ns "${P}h" ip link set lo up
    for i in 1 2; do
        ip netns add "${P}l$i"
        in_ns "${P}l$i" ip link set lo up
        ip link add "up$i" netns "${P}h" type veth peer name lan0 netns "${P}l$i"
        in_ns "${P}l$i" ip addr add "10.253.0.$i/24" dev lan0
        in_ns "${P}l$i" ip link set lan0 up
    done
    nsenter --net="/run/netns/${P}h" -- "$bin/vswitchd" --ctl-socket "$TMP/d.sock" \
        --state-dir "$TMP/state" >"$TMP/d.log" 2>&1 &
    DPID=$!
    for _ in $(seq 100); do ctl "$bin" ping >/dev/null 2>&1 && break; sleep 0.1; done
    ctl "$bin" network create upl --subnet 10.253.0.0/24 >/dev/null
    ctl "$bin" port add upl up1 >/dev/null
    ctl "$bin" port add upl up2 >/dev/null
    for _ in $(seq 50); do in_ns "${P}l1" ping -n -q -c 1 -W 0.5 10.253.0.2 >/dev/null 2>&1 && return 0; done
    echo "no ping through the uplinks; log:" >&2
    cat "$TMP/d.log" >&2
    return 1
}

teardown() {
    kill "$DPID" 2>/dev/null || true
    wait "$DPID" 2>/dev/null || true
    DPID=""
    for ns in "${P}h" "${P}l1" "${P}l2"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$TMP/state" "$TMP/d.sock"
}

ctl() { local bin=$1; shift; "$bin/vswitchctl" --socket "$TMP/d.sock" "$@"; }

rx_packets() { # BINDIR PORT
    ctl "$1" stats "$2" --json | python3 -c '
import json,sys
s=json.load(sys.stdin); s=s[0] if isinstance(s,list) else s
print(s["rx_packets"])'
}

EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_epoll_wait

run() { # LABEL BINDIR REP
    local label=$1 bin=$2 rep=$3 rx0 rx1 sent received tcp
    setup "$bin"
    in_ns "${P}l2" "$UDPFLOOD" recv 10.253.0.2:9000 1000 >"$TMP/rx" 2>&1 &
    local rpid=$!
    for _ in $(seq 100); do grep -q listening "$TMP/rx" && break; sleep 0.1; done
    rx0=$(rx_packets "$bin" up1)
    perf stat -x, -e "$EVENTS" -p "$DPID" -o "$TMP/perf" &
    local ppid=$!
    sleep 0.3
    in_ns "${P}l1" "$UDPFLOOD" send 10.253.0.2:9000 "$DURATION" 64 0 >"$TMP/tx" 2>&1
    wait "$rpid" || true
    kill -INT "$ppid"
    wait "$ppid" 2>/dev/null || true
    rx1=$(rx_packets "$bin" up1)
    sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$TMP/tx")
    received=$(sed -n 's/.*received=\([0-9]*\).*/\1/p' "$TMP/rx")
    in_ns "${P}l2" iperf3 -s -1 -B 10.253.0.2 >/dev/null 2>&1 &
    local spid=$!
    sleep 0.5
    tcp=$(in_ns "${P}l1" iperf3 -c 10.253.0.2 -t "$DURATION" -J |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))')
    wait "$spid" 2>/dev/null || true
    local frames=$((rx1 - rx0))
    awk -F, -v label="$label" -v rep="$rep" -v d="$DURATION" -v sent="$sent" -v rcvd="$received" \
        -v frames="$frames" -v tcp="$tcp" '
        $3 == "raw_syscalls:sys_enter" {all=$1}
        $3 == "syscalls:sys_enter_read" {r=$1} $3 == "syscalls:sys_enter_write" {w=$1}
        $3 == "syscalls:sys_enter_writev" {wv=$1} $3 == "syscalls:sys_enter_recvmmsg" {rm=$1}
        $3 == "syscalls:sys_enter_sendmmsg" {sm=$1} $3 == "syscalls:sys_enter_epoll_wait" {ep=$1}
        END {f = frames > 0 ? frames : 1
             printf "%s rep=%d udp_sent_kpps=%.0f udp_rx_kpps=%.0f loss=%.1f%% frames=%d syscalls_per_frame=%.3f (read %.3f write %.3f writev %.3f recvmmsg %.3f sendmmsg %.3f epoll_wait %.3f) tcp_gbit=%s\n",
                 label, rep, sent/d/1000, rcvd/d/1000, (sent > 0 ? (sent - rcvd) / sent * 100 : 0), frames,
                 all/f, r/f, w/f, wv/f, rm/f, sm/f, ep/f, tcp}' "$TMP/perf" | tee -a "$TMP/results"
    teardown
}

for rep in $(seq "$REPEAT"); do
    run A "$A" "$rep"
    run B "$B" "$rep"
done
python3 - "$TMP/results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, rep = line.split()[0], int(re.search(r"rep=(\d+)", line).group(1))
    vals = {k: float(v.rstrip("%")) for k, v in re.findall(r"(\w+)=([\d.]+%?)", line)}
    rows[(label, rep)] = vals
for key in ("udp_rx_kpps", "tcp_gbit", "syscalls_per_frame"):
    ratios = [rows[("B", r)][key] / rows[("A", r)][key] for r in sorted({r for _, r in rows}) if rows[("A", r)][key] > 0]
    a = [rows[("A", r)][key] for r in sorted({r for _, r in rows})]
    b = [rows[("B", r)][key] for r in sorted({r for _, r in rows})]
    print(f"{key}: A {a} B {b} ratio B/A per rep {[round(x, 2) for x in ratios]} median {statistics.median(ratios):.2f}")
PY
