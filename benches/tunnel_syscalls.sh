#!/usr/bin/env bash
# Underlay system calls per frame across a two-host vswitchd overlay: a load-independent
# measure of tunnel batching (the count of calls does not depend on how busy the machine is;
# only how many frames share a batch does, a little).
#
# Two host namespaces joined by a veth underlay (MTU 1500), a vswitchd --vtep in each, an
# overlay network (ENCRYPTED=1: -o encrypted), a sandbox per host. A fixed-size transfer runs
# from host 1's sandbox to host 2's (MODE=tcp: iperf3 -n $BYTES; MODE=udp: 64-byte datagrams,
# iperf3 -u -l 64 -b $RATE -n $BYTES) while `perf stat` counts each daemon's
# sendmsg/sendmmsg/recvmsg/recvmmsg (syscall tracepoints); `vswitchctl stats vtep` gives the
# datagrams each daemon sent and received. Prints one line per daemon.
#
#   sudo VSWITCHD=target/release/vswitchd VSWITCHCTL=target/release/vswitchctl \
#        MODE=udp BYTES=8M benches/tunnel_syscalls.sh
set -euo pipefail
VSWITCHD=${VSWITCHD:?path to vswitchd} VSWITCHCTL=${VSWITCHCTL:?path to vswitchctl}
MODE=${MODE:-tcp} BYTES=${BYTES:-256M} RATE=${RATE:-40M} ENCRYPTED=${ENCRYPTED:-0}
P=tsc$$ TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for ns in "${P}h1" "${P}h2" "${P}s1" "${P}s2"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
in_ns() { ip netns exec "$@"; }
ctl() { local d=$1; shift; "$VSWITCHCTL" --socket "$TMP/$d.sock" "$@"; }

ip netns add "${P}h1"; ip netns add "${P}h2"
ip link add "${P}u1" netns "${P}h1" type veth peer name "${P}u2" netns "${P}h2"
for i in 1 2; do
    in_ns "${P}h$i" ip link set lo up
    in_ns "${P}h$i" ip addr add "10.251.0.$i/24" dev "${P}u$i"
    in_ns "${P}h$i" ip link set "${P}u$i" mtu 1500 up
done
extra=() opts=()
if [[ $ENCRYPTED == 1 ]]; then
    (umask 077 && "$VSWITCHCTL" secret generate >"$TMP/secret")
    extra=(--secret-file "$TMP/secret") opts=(-o encrypted)
fi
for i in 1 2; do
    nsenter --net="/run/netns/${P}h$i" -- "$VSWITCHD" --ctl-socket "$TMP/d$i.sock" \
        --state-dir "$TMP/d$i-state" --vtep "10.251.0.$i" "${extra[@]}" >"$TMP/d$i.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do ctl "d$i" ping >/dev/null 2>&1 && break; sleep 0.1; done
    ctl "d$i" network create -d overlay --subnet 10.252.0.0/24 --vni 4242 --attachable "${opts[@]}" tsc >/dev/null
    ctl "d$i" peer add "10.251.0.$((3 - i))" >/dev/null
done
for i in 1 2; do
    ctl "d$i" sandbox create "${P}s$i" >/dev/null
    ctl "d$i" network connect tsc "${P}s$i" --ip "10.252.0.$((i + 1))" >/dev/null
done
for _ in $(seq 40); do in_ns "${P}s1" ping -n -q -c 1 -W 0.5 10.252.0.3 >/dev/null 2>&1 && break; done
in_ns "${P}s2" iperf3 -s -1 -D -I "$TMP/iperf.pid"
sleep 0.5
vtep() { ctl "d$1" stats vtep --json | python3 -c '
import json,sys
s=json.load(sys.stdin); s=s[0] if isinstance(s,list) else s
print(s["tx_packets"], s["rx_packets"])'; }
declare -A TX0 RX0
for i in 1 2; do read -r TX0[$i] RX0[$i] < <(vtep "$i"); done
events=syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_recvmsg,syscalls:sys_enter_recvmmsg
for i in 1 2; do
    perf stat -x, -e "$events" -p "${PIDS[$((i - 1))]}" -o "$TMP/perf$i" &
    PERF[$i]=$!
done
sleep 0.5
if [[ $MODE == udp ]]; then
    in_ns "${P}s1" iperf3 -c 10.252.0.3 -u -l 64 -b "$RATE" -n "$BYTES" >"$TMP/iperf.out"
else
    in_ns "${P}s1" iperf3 -c 10.252.0.3 -n "$BYTES" >"$TMP/iperf.out"
fi
sleep 0.5
for i in 1 2; do kill -INT "${PERF[$i]}"; wait "${PERF[$i]}" 2>/dev/null || true; done
for i in 1 2; do
    read -r tx rx < <(vtep "$i")
    tx=$((tx - TX0[$i])) rx=$((rx - RX0[$i]))
    awk -F, -v d="host$i" -v tx="$tx" -v rx="$rx" -v mode="$MODE" -v enc="$ENCRYPTED" '
        /sys_enter_sendmsg/ {s+=$1} /sys_enter_sendmmsg/ {sm+=$1}
        /sys_enter_recvmsg/ {r+=$1} /sys_enter_recvmmsg/ {rm+=$1}
        END {printf "%s mode=%s encrypted=%s tunnel_tx=%d tunnel_rx=%d sendmsg=%d sendmmsg=%d recvmsg=%d recvmmsg=%d send_calls_per_tx_datagram=%.3f\n",
             d, mode, enc, tx, rx, s, sm, r, rm, (s+sm)/(tx>0?tx:1)}' "$TMP/perf$i"
done
grep -E "sender|receiver" "$TMP/iperf.out" | tail -2 >&2
