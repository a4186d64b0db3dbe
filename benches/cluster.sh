#!/usr/bin/env bash
# Cluster benchmarks (issue 13), on real etcd and vswitchd hosts in namespaces:
#
#  (a) connect-to-ping: time from `vswitchctl network connect` on node A to the first ping reply
#      from a sandbox on node B (benches/cluster_latency.rs: 3 hosts, 1 etcd member, TLS; each
#      trial pre-starts `ping -D -i 0.005` in B's sandbox toward the address the connect will get,
#      so the time is connect + store round trips + reconcile + first ARP/ICMP, not process
#      start-up). TRIALS trials per repetition; every trial and the p50/p99/max are printed.
#  (b) control-plane scale by simulation (benches/cluster_sim.rs): NODES simulated nodes, each a
#      real cluster::Cluster client (lease, watch, mirror) writing ENDPOINTS endpoints (address
#      claim + endpoint record) through one etcd member with TLS; prints start-up, write rate and
#      watch fan-out to every node per node count (a curve).
#
# Usage (as root; needs etcd-server, etcd-client, protobuf-compiler):
#   sudo benches/cluster.sh                 # both, REPEAT=3
#   sudo WHAT=latency REPEAT=5 benches/cluster.sh
#
# Environment:
#   WHAT=all        latency | sim | all
#   REPEAT=3        repetitions of each; every repetition is printed, then a summary
#   TRIALS=100      connect-to-ping trials per repetition
#   NODES=10,25,50,100   simulated node counts
#   ENDPOINTS=100   endpoints per simulated node
#   PROBES=20       single-record fan-out probes per node count
#   BUILD=1         0 = do not run cargo (use the binaries of a previous run)
#
# Everything runs in namespaces the programs make and remove (also on failure); nothing touches
# the host's interfaces, routes or firewall. On a shared 2-CPU machine the absolute numbers vary
# between runs; compare within a run.
set -euo pipefail
cd "$(dirname "$0")/.."

WHAT=${WHAT:-all}
REPEAT=${REPEAT:-3}
TRIALS=${TRIALS:-100}
NODES=${NODES:-10,25,50,100}
ENDPOINTS=${ENDPOINTS:-100}
PROBES=${PROBES:-20}
BUILD=${BUILD:-1}
TARGET=${CARGO_TARGET_DIR:-target}

if [[ $(id -u) -ne 0 ]]; then
    echo "benches/cluster.sh: needs root (namespaces, vswitchd)" >&2
    exit 1
fi
for bin in etcd etcdctl; do
    command -v "$bin" >/dev/null || { echo "benches/cluster.sh: $bin missing (apt-get install etcd-server etcd-client)" >&2; exit 1; }
done

bench_bin() { # the newest executable of bench $1 in the release deps dir
    ls -t "$TARGET"/release/deps/"$1"-* 2>/dev/null | grep -v '\.d$' | head -1
}

if [[ $BUILD == 1 ]]; then
    cargo build --release -p switch -p ctl --bins
    cargo bench --no-run --bench cluster_latency --bench cluster_sim
fi
export VSWITCHD_BIN=$TARGET/release/vswitchd VSWITCHCTL_BIN=$TARGET/release/vswitchctl
LAT=$(bench_bin cluster_latency)
SIM=$(bench_bin cluster_sim)

if [[ $WHAT == all || $WHAT == latency ]]; then
    results=()
    for r in $(seq 1 "$REPEAT"); do
        echo "== connect-to-ping, repetition $r/$REPEAT ($TRIALS trials)"
        out=$("$LAT" --trials "$TRIALS" | tee /dev/stderr | grep '^RESULT')
        results+=("rep $r: ${out#RESULT }")
    done
    echo "== connect-to-ping summary (A = host1 connects, B = host2 pings)"
    printf '%s\n' "${results[@]}"
fi

if [[ $WHAT == all || $WHAT == sim ]]; then
    for r in $(seq 1 "$REPEAT"); do
        echo "== simulation, repetition $r/$REPEAT"
        "$SIM" --nodes "$NODES" --endpoints "$ENDPOINTS" --probes "$PROBES"
    done
fi
