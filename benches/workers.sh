#!/usr/bin/env bash
# Worker-thread scaling benchmark: one vswitchd, two bridge networks, one pair of sandboxes on
# each, and two iperf3 streams (TCP, or UDP with UDP=1) at the same time (one per network), with
# `vswitchd --workers 1` and `--workers 2`. With two workers each network is owned by its own
# datapath thread (see README "Workers"), so the aggregate should scale with the cores the
# machine has to spare. Prints each repetition's aggregate Gbit/s per worker count, the medians
# and their ratio (workers=2 / workers=1).
#
# Usage (as root; installs iperf3, iproute2, util-linux and python3 if missing):
#   sudo benches/workers.sh
#   sudo DURATION=5 REPEAT=5 benches/workers.sh
#
# Environment:
#   DURATION=10     seconds per iperf3 run
#   SPREAD=0        1 = both pairs on ONE network created with `-o spread` (see README "Workers"):
#                   with two workers each TAP has a queue per worker; each new TCP connection is
#                   placed on the less busy worker, and a busy worker moves an open connection to an
#                   idle one once its traffic shows, so the two streams end up on different workers
#                   (the log shows each worker's frames, the connections placed, and how many were
#                   moved after opening)
#   STREAMS=1       parallel streams per pair (iperf3 -P)
#   PORT_TYPE=tap   afxdp = every sandbox connected with `--port-type afxdp` (a veth pair under an AF_XDP
#                   socket); with SPREAD=1 and two workers each veth has a queue per worker and each
#                   worker reads its own, the sandbox's stack picking a connection's queue by its hash
#                   (no placement or moving by load, see README "Workers")
#   UDP=0           1 = UDP streams instead (iperf3 -u -l 1400 -b UDP_RATE, the Gbit/s received);
#                   iperf3's UDP streams go one way only, so with SPREAD=1 none is normally moved (a worker
#                   moves a UDP flow only once it saw it both ways and gives a moved one back when it
#                   keeps arriving one way only, see README "Workers")
#   UDP_RATE=0      each UDP stream's offered rate (iperf3 -b, e.g. 700M); 0 = as fast as the sender
#                   goes (then four busy iperf3 processes share the CPUs with the workers)
#   REPEAT=3        repetitions; the order of the two worker counts alternates each time
#   BUILD=1         0 = do not run cargo; use existing binaries
#   VSWITCHD, VSWITCHCTL  binaries (default: $CARGO_TARGET_DIR or target/, release)
#   KEEP_LOGS=1     keep the temporary directory (daemon logs, iperf3 outputs)
#
# Run it on an otherwise idle machine; on a loaded one the numbers are indicative and only the
# ratio within one run means anything. Every namespace it creates carries the prefix vw<pid>x
# and is removed on exit (also on failure and Ctrl-C); it never touches the host namespace's
# interfaces, routes or firewall.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=workers
P=vw$$x
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
DURATION=${DURATION:-10}
UDP=${UDP:-0}
UDP_ARGS=()
[[ $UDP == 1 ]] && UDP_ARGS=(-u -b "${UDP_RATE:-0}" -l 1400)
REPEAT=${REPEAT:-3}
DNAME=""   # the running daemon: d-WORKERS (socket, state and log in TMP)
SPREAD=${SPREAD:-0}
STREAMS=${STREAMS:-1}
PORT_TYPE=${PORT_TYPE:-tap}
[[ $PORT_TYPE == tap || $PORT_TYPE == afxdp ]] || { echo "PORT_TYPE must be tap or afxdp, not $PORT_TYPE" >&2; exit 2; }

# net_of N, client_ip N, server_ip N: pair N's network and the addresses of its client (a$N)
# and server (b$N): network N and subnet N, or with SPREAD=1 the one network.
net_of() { if [[ $SPREAD == 1 ]]; then echo "${P}n1"; else echo "${P}n$1"; fi; }
pair_ip() { if [[ $SPREAD == 1 ]]; then echo "10.246.1.$(($1 * 10 + $2))"; else echo "10.246.$1.1$2"; fi; }
client_ip() { pair_ip "$1" 1; }
server_ip() { pair_ip "$1" 2; }

ctl() { vctl "$DNAME" "$@"; }

stop_daemon() {
    [[ -n $VSWITCHD_PID ]] || return 0
    ctl sandbox rm "${P}a1" "${P}b1" "${P}a2" "${P}b2" >/dev/null 2>&1 || true
    kill "$VSWITCHD_PID" 2>/dev/null || true
    wait_gone "$VSWITCHD_PID"
    VSWITCHD_PID=""
}

cleanup() {
    local rc=$?
    set +e
    trap - INT TERM
    kill_bg
    stop_daemon
    remove_prefixed
    finish_tmp "$rc"
    exit "$rc"
}

install_packages() {
    local missing=()
    command -v iperf3 >/dev/null || missing+=(iperf3)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v nsenter >/dev/null || missing+=(util-linux)
    command -v python3 >/dev/null || missing+=(python3)
    install_missing "${missing[@]}"
}

# start WORKERS: a daemon with WORKERS datapath threads, two networks, two sandboxes on each.
start() {
    local workers=$1
    DNAME=d-$workers
    rm -rf "$TMP/$DNAME-state"
    start_vswitchd "$DNAME" "" --workers "$workers" || { log "vswitchd: $VSWITCHD_ERR"; return 1; }
    {
        if [[ $SPREAD == 1 ]]; then
            ctl network create "${P}n1" --subnet 10.246.1.0/24 -o spread
        else
            ctl network create "${P}n1" --subnet 10.246.1.0/24
            ctl network create "${P}n2" --subnet 10.246.2.0/24
        fi
        for n in 1 2; do
            ctl sandbox create "${P}a$n"
            ctl sandbox create "${P}b$n"
            ctl network connect "$(net_of "$n")" "${P}a$n" --ip "$(client_ip "$n")" --port-type "$PORT_TYPE"
            ctl network connect "$(net_of "$n")" "${P}b$n" --ip "$(server_ip "$n")" --port-type "$PORT_TYPE"
        done
    } >>"$TMP/ctl.log"
    ctl show >>"$TMP/ctl.log"
}

# run WORKERS: prints the aggregate Gbit/s of the two concurrent streams.
run() {
    local workers=$1 n total=0 got
    start "$workers" || return 1
    for n in 1 2; do
        in_ns "${P}b$n" iperf3 -s -1 -B "$(server_ip "$n")" -p 5201 >"$TMP/server-$n.txt" 2>&1 &
        BG_PIDS+=($!)
    done
    for n in 1 2; do
        for _ in $(seq 50); do
            in_ns "${P}a$n" ping -c 1 -W 1 "$(server_ip "$n")" >/dev/null 2>&1 && break
        done
    done
    sleep 0.5
    local clients=()
    for n in 1 2; do
        in_ns "${P}a$n" iperf3 -c "$(server_ip "$n")" -p 5201 -t "$DURATION" -P "$STREAMS" "${UDP_ARGS[@]}" -J \
            >"$TMP/client-$workers-$n.json" 2>&1 &
        clients+=($!)
    done
    for n in 1 2; do
        wait "${clients[$((n - 1))]}" || { log "iperf3 on network $n failed"; cat "$TMP/client-$workers-$n.json" >&2; }
        got=$(iperf3_gbps "$TMP/client-$workers-$n.json")
        total=$(awk -v a="$total" -v b="${got:-0}" 'BEGIN { print a + b }')
    done
    ctl stats >"$TMP/stats-$workers.txt" 2>&1 || true
    # Which worker carried what (AS-REPLICA: frames a replica forwarded itself).
    if [[ $SPREAD == 1 ]]; then
        grep -E '^vsw-dp-[0-9]+ +[0-9]+ +[0-9]+ ' "$TMP/stats-$workers.txt" | sed 's/^/    /' >&2 || true
        # Of the placed connections, those moved after their opening (the daemon logs each).
        log "    connections moved off a busy worker after opening: $(grep -c 'moving a flow off a busy' "$TMP/$DNAME.log" || true)"
    fi
    for pid in "${BG_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    BG_PIDS=()
    stop_daemon
    awk -v t="$total" 'BEGIN { printf "%.2f\n", t }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

main() {
    bench_start
    install_packages
    build_switch
    log "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), DURATION=$DURATION REPEAT=$REPEAT SPREAD=$SPREAD STREAMS=$STREAMS PORT_TYPE=$PORT_TYPE UDP=$UDP${UDP_RATE:+ UDP_RATE=$UDP_RATE}"
    local r one=() two=() order w g
    for r in $(seq "$REPEAT"); do
        if ((r % 2)); then order="1 2"; else order="2 1"; fi
        for w in $order; do
            g=$(run "$w")
            log "repetition $r: --workers $w: $g Gbit/s (two concurrent $([[ $UDP == 1 ]] && echo UDP || echo TCP) streams, aggregate)"
            if [[ $w == 1 ]]; then one+=("$g"); else two+=("$g"); fi
        done
    done
    local m1 m2
    m1=$(printf '%s\n' "${one[@]}" | median)
    m2=$(printf '%s\n' "${two[@]}" | median)
    echo "| workers | Gbit/s per repetition | median |"
    echo "|---|---|---|"
    echo "| 1 | ${one[*]} | $m1 |"
    echo "| 2 | ${two[*]} | $m2 |"
    awk -v a="$m2" -v b="$m1" 'BEGIN { if (b > 0) printf "ratio workers=2 / workers=1: %.2f\n", a / b }'
    local i
    for i in "${!one[@]}"; do
        awk -v a="${two[$i]}" -v b="${one[$i]}" -v r="$((i + 1))" \
            'BEGIN { if (b > 0) printf "  repetition %d ratio: %.2f\n", r, a / b }'
    done
}

main "$@"
