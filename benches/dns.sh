#!/usr/bin/env bash
# End-to-end DNS benchmark: vswitchd's embedded DNS (answering at a network's gateway) against
# dnsmasq answering the same names from a sandbox on the same vswitch network, in the same run,
# and the latency the gateway adds to the queries it forwards upstream.
#
# Setup (every namespace and link carries the prefix vd<pid>x, written ${P} below):
#   ${P}dh      the daemon's namespace: vswitchd runs here (nsenter --net) with --dns 10.252.0.2
#   ${P}up      the upstream's namespace, joined to ${P}dh by a veth pair (10.252.0.1 <-> .2);
#               dnsmasq on 10.252.0.2 answers NAMES names fNNN.fwd.test from a hosts file
#   network ${P}net, 10.251.0.0/24, gateway 10.251.0.1 (where vswitchd serves DNS), with sandboxes
#     ${P}c       the client, 10.251.0.2: dnsperf runs here
#     ${P}m       dnsmasq on 10.251.0.3 answering hNNN from a hosts file (--addn-hosts, --no-resolv)
#     ${P}e1...   ENDPOINTS endpoints (10.251.0.11, .12, ...) carrying the same NAMES names hNNN as
#                 --alias, so the switch serves the same names with the same addresses
# Both servers are reached from ${P}c across the switch: the gateway path is client -> switch ->
# DNS in vswitchd; the dnsmasq path is client -> switch -> dnsmasq's sandbox and back.
#
# Measured REPEAT times, the order of the two servers alternating between repetitions:
#   (a) vswitchd gateway: queries/s at saturation (dnsperf -c CLIENTS -q INFLIGHT -l DURATION)
#   (b) dnsmasq: the same; ratio (a)/(b) per repetition and the median of the ratios
#   (c) latency at a fixed rate, the same for both servers: LAT_RATE, by default half the lower
#       of (a) and (b) in that repetition (so neither server is loaded past half its maximum);
#       dnsperf -v prints each query's latency (dnsperf 2.10 has no histogram): p50 and p99
#   (d) forwarded queries (names only the upstream knows) at FWD_RATE queries/s: p50/p99 from
#       ${P}c through the gateway, and from ${P}dh straight to the upstream; the difference is
#       what the gateway and the switch add
# Also: vswitchd's and dnsmasq's CPU during the saturating runs, and the gateway's DNS counters.
#
# Usage (as root; installs dnsperf, dnsmasq-base, bind9-dnsutils, iproute2 if missing):
#   sudo benches/dns.sh
#   sudo BUILD=0 DURATION=10 REPEAT=5 benches/dns.sh
#
# Environment:
#   DURATION=5       seconds per dnsperf run
#   REPEAT=3         repetitions; the server order alternates; the tables show every repetition
#                    and the median
#   NAMES=200        names served (hNNN locally, fNNN.fwd.test upstream)
#   ENDPOINTS=5      vswitch endpoints carrying the NAMES names as aliases (NAMES/ENDPOINTS each)
#   CLIENTS=4        dnsperf -c for the saturating runs
#   THREADS=1        dnsperf -T for the saturating runs (one dnsperf thread can be the limit: the
#                    report shows each process's CPU and the whole machine's)
#   INFLIGHT=200     dnsperf -q for the saturating runs
#   LAT_RATE=auto    queries/s for (c); "auto" = half the lower maximum of the repetition
#   FWD_RATE=500     queries/s for (d)
#   PIN=0            1 = dnsperf on CPU 0 and the dnsmasq sandbox on CPU 1 (vswitchd is never pinned)
#   BUILD=1          0 = do not run cargo; use existing binaries
#   VSWITCHD, VSWITCHCTL  binaries to use (default: $CARGO_TARGET_DIR or target/, release)
#   KEEP_LOGS=0      1 = keep the temporary directory (logs, dnsperf outputs, query files)
#
# Run it on an otherwise idle machine (with 2 CPUs any other load skews every number; the report
# warns when the CPUs were busy before the runs) and compare ratios within one run, never
# absolute numbers across runs (shared BENCHMARKS.md: runs vary by up to 30%). On 2 CPUs the
# dnsmasq path has three busy processes (dnsperf, vswitchd switching, dnsmasq) and the gateway
# path two (dnsperf, vswitchd switching and answering).
#
# Everything it creates carries the prefix; the daemon, dnsmasq, dnsperf and every namespace are
# removed on exit, including failure and Ctrl-C. It never touches the host namespace's
# interfaces, routes or firewall.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=dns
# The trailing "x" keeps one run's prefix from being a prefix of another's (vd12 vs vd123).
P="vd$$x"
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

DURATION=${DURATION:-5}
REPEAT=${REPEAT:-3}
NAMES=${NAMES:-200}
ENDPOINTS=${ENDPOINTS:-5}
CLIENTS=${CLIENTS:-4}
THREADS=${THREADS:-1}
INFLIGHT=${INFLIGHT:-200}
LAT_RATE=${LAT_RATE:-auto}
FWD_RATE=${FWD_RATE:-500}
PIN=${PIN:-0}
DNSMASQ=/usr/sbin/dnsmasq
CLIENT_PIN=()
SERVER_PIN=()
if [[ $PIN == 1 ]] && (($(nproc) >= 2)); then
    CLIENT_PIN=(taskset -c 0)
    SERVER_PIN=(taskset -c 1)
fi

NSD="${P}dh"          # the daemon's namespace
NSU="${P}up"          # the upstream's namespace
NSC="${P}c"           # client sandbox
NSM="${P}m"           # dnsmasq sandbox
NET="${P}net"
SUBNET=10.251.0.0/24
GW=10.251.0.1
CLIENT_IP=10.251.0.2
DNSMASQ_IP=10.251.0.3
UPLINK_DAEMON=10.252.0.1
UPSTREAM_IP=10.252.0.2

declare -A RES=()        # "key" -> space-separated values, one per repetition (NA when missing)
declare -A STATUS=()     # target -> why it is not measured
declare -a SANDBOXES=()  # sandboxes the daemon created
DAEMON_PID=""
MASQ_PID=""              # dnsmasq in the sandbox
LAST_PID=""              # the process start_dnsmasq started last
BUSY_BEFORE=0
FIRST_NAME=""            # a name of each zone and the address it must resolve to
FIRST_ADDR=""
FWD_NAME=""
FWD_ADDR=""

dctl() { vctl vswitchd "$@"; }

# ---------------------------------------------------------------------------- cleanup

cleanup() {
    local rc=$? sb
    set +e
    trap - INT TERM
    kill_bg
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        # The daemon removes what it made: endpoints, namespaces, /etc/netns/NAME.
        for sb in "${SANDBOXES[@]}"; do
            dctl sandbox rm "$sb" >/dev/null 2>&1
        done
        dctl network rm "$NET" >/dev/null 2>&1
        kill "$DAEMON_PID" 2>/dev/null
        wait_gone "$DAEMON_PID"
    fi
    remove_prefixed
    finish_tmp "$rc"
    exit "$rc"
}

# ---------------------------------------------------------------------------- prerequisites

install_packages() {
    local missing=()
    command -v dnsperf >/dev/null || missing+=(dnsperf)
    [[ -x $DNSMASQ ]] || missing+=(dnsmasq-base)
    command -v dig >/dev/null || missing+=(bind9-dnsutils)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v nsenter >/dev/null && command -v taskset >/dev/null || missing+=(util-linux)
    install_missing --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------------------- setup

# The zones: local names hNNN -> the endpoint carrying them; upstream names fNNN.fwd.test.
write_zones() {
    local i k name
    : >"$TMP/local.hosts"
    : >"$TMP/local.queries"
    : >"$TMP/fwd.hosts"
    : >"$TMP/fwd.queries"
    for ((i = 1; i <= NAMES; i++)); do
        name=$(printf 'h%03d' "$i")
        k=$(((i - 1) % ENDPOINTS + 1))
        printf '10.251.0.%d %s\n' $((10 + k)) "$name" >>"$TMP/local.hosts"
        printf '%s A\n' "$name" >>"$TMP/local.queries"
        printf '10.253.%d.%d %s\n' $((i / 250)) $((i % 250 + 1)) "$(printf 'f%03d.fwd.test' "$i")" >>"$TMP/fwd.hosts"
        printf 'f%03d.fwd.test A\n' "$i" >>"$TMP/fwd.queries"
    done
    read -r FIRST_ADDR FIRST_NAME <"$TMP/local.hosts"
    read -r FWD_ADDR FWD_NAME <"$TMP/fwd.hosts"
}

# The aliases of endpoint $1 (1-based): every name whose index maps to it.
aliases_of() {
    local k=$1 i out=""
    for ((i = k; i <= NAMES; i += ENDPOINTS)); do
        out+=" --alias $(printf 'h%03d' "$i")"
    done
    echo "$out"
}

# start_dnsmasq NS ADDR HOSTS LOG [PREFIX...]: dnsmasq in the foreground in NS on ADDR:53 only,
# answering from HOSTS (NXDOMAIN for anything else); its PID goes to LAST_PID and the cleanup
# list. PREFIX (e.g. taskset) goes before it; nsenter and taskset exec, so the PID is dnsmasq's.
start_dnsmasq() {
    local ns=$1 addr=$2 hosts=$3 logf=$4
    shift 4
    nsenter --net="/run/netns/$ns" -- "$@" "$DNSMASQ" --keep-in-foreground --no-resolv --no-hosts \
        --conf-file=/dev/null --pid-file= --log-facility=- --bind-interfaces --listen-address="$addr" \
        --port=53 --addn-hosts="$hosts" --local=/#/ --local=// >"$logf" 2>&1 &
    LAST_PID=$!
    BG_PIDS+=("$LAST_PID")
}

# wait_answer NS SERVER NAME ADDR: waits up to 10 s until SERVER answers NAME with ADDR (dig in NS).
wait_answer() {
    local ns=$1 server=$2 name=$3 addr=$4 i got
    for i in $(seq 20); do
        got=$(in_ns "$ns" dig @"$server" +time=1 +tries=1 +short "$name" 2>/dev/null | head -n 1) || true
        [[ $got == "$addr" ]] && return 0
        sleep 0.5
    done
    log "$server does not answer $name with $addr (last answer: '${got:-none}')"
    return 1
}

# ctl STEP...: runs each vswitchctl step (a word list); on failure logs why and returns 1.
ctl_steps() {
    local step
    for step in "$@"; do
        # shellcheck disable=SC2086 # the step is a word list on purpose
        if ! dctl $step >>"$TMP/ctl.log" 2>&1; then
            log "'vswitchctl ${step:0:80}' failed: $(tail -n 3 "$TMP/ctl.log" | tr '\n' ' ')"
            return 1
        fi
        [[ $step == "sandbox create "* ]] && SANDBOXES+=("${step#sandbox create }")
    done
    return 0
}

setup() {
    local k
    if ! { netns_add "$NSD" "$NSU" &&
        veth_pair "$NSD" "${P}u1" "$UPLINK_DAEMON/24" "$NSU" "${P}u2" "$UPSTREAM_IP/24"; }; then
        die "cannot set up the daemon and upstream namespaces"
    fi
    start_dnsmasq "$NSU" "$UPSTREAM_IP" "$TMP/fwd.hosts" "$TMP/dnsmasq-upstream.log"
    wait_answer "$NSU" "$UPSTREAM_IP" "$FWD_NAME" "$FWD_ADDR" || die "the upstream dnsmasq does not answer"

    if ! start_vswitchd vswitchd "$NSD" --dns "$UPSTREAM_IP"; then
        DAEMON_PID=$VSWITCHD_PID
        die "vswitchd: $VSWITCHD_ERR: $(tail -n 5 "$TMP/vswitchd.log" 2>/dev/null)"
    fi
    DAEMON_PID=$VSWITCHD_PID
    local steps=("network create $NET --subnet $SUBNET" "sandbox create $NSC" "sandbox create $NSM"
        "network connect $NET $NSC --ip $CLIENT_IP" "network connect $NET $NSM --ip $DNSMASQ_IP")
    for ((k = 1; k <= ENDPOINTS; k++)); do
        steps+=("sandbox create ${P}e$k" "network connect $NET ${P}e$k --ip 10.251.0.$((10 + k))$(aliases_of "$k")")
    done
    ctl_steps "${steps[@]}" || die "vswitchd setup failed"
    start_dnsmasq "$NSM" "$DNSMASQ_IP" "$TMP/local.hosts" "$TMP/dnsmasq-sandbox.log" "${SERVER_PIN[@]}"
    MASQ_PID=$LAST_PID

    # Each target answers a name of its zone with the right address, or is not measured.
    wait_answer "$NSC" "$DNSMASQ_IP" "$FIRST_NAME" "$FIRST_ADDR" ||
        STATUS[dnsmasq]="dnsmasq in $NSM does not answer $FIRST_NAME"
    wait_answer "$NSC" "$GW" "$FIRST_NAME" "$FIRST_ADDR" ||
        STATUS[gw]="the gateway $GW does not answer $FIRST_NAME with $FIRST_ADDR"
    wait_answer "$NSC" "$GW" "$FWD_NAME" "$FWD_ADDR" ||
        STATUS[fwd]="the gateway $GW does not forward $FWD_NAME"
    wait_answer "$NSD" "$UPSTREAM_IP" "$FWD_NAME" "$FWD_ADDR" ||
        STATUS[direct]="the upstream does not answer from the daemon's namespace"
    return 0
}

# ---------------------------------------------------------------------------- measuring

# dnsperf_in NS OUT ARGS...: runs dnsperf ARGS in namespace NS (pinned if PIN=1), output to OUT,
# in the background while this shell waits (Ctrl-C interrupts at once).
dnsperf_in() {
    local ns=$1 out=$2 pid rc=0
    shift 2
    timeout $((DURATION + 30)) nsenter --net="/run/netns/$ns" -- "${CLIENT_PIN[@]}" dnsperf "$@" >"$out" 2>&1 &
    pid=$!
    BG_PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

forget_pid() {
    local keep=() p
    for p in "${BG_PIDS[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    BG_PIDS=("${keep[@]}")
}

record() { RES["$1"]+="${2:-NA} "; }

# Saturating run against target $1 (gw or dnsmasq) in repetition $2: queries/s, lost %, CPU.
measure_max() {
    local target=$1 rep=$2 server out qps lost t0 t1 d0 m0 s0
    [[ $target == gw ]] && server=$GW || server=$DNSMASQ_IP
    out=$TMP/max-$target-$rep.txt
    if [[ -n ${STATUS[$target]:-} ]]; then
        record "$target,qps" NA
        record "$target,lost" NA
        return 0
    fi
    log "rep $rep: $target, saturating ($CLIENTS clients, $INFLIGHT in flight, $DURATION s)"
    d0=$(cpu_ticks "$DAEMON_PID") m0=$(cpu_ticks "$MASQ_PID") t0=$EPOCHREALTIME s0=$(head -n 1 /proc/stat)
    dnsperf_in "$NSC" "$out" -s "$server" -d "$TMP/local.queries" -c "$CLIENTS" -T "$THREADS" -q "$INFLIGHT" \
        -l "$DURATION" -t 2 || log "$target: dnsperf failed: $(tail -n 2 "$out" | tr '\n' ' ')"
    t1=$EPOCHREALTIME
    record "$target,cpu-all" "$(busy_between "$s0" "$(head -n 1 /proc/stat)")"
    record "$target,cpu-vswitchd" "$(cpu_percent "$d0" "$(cpu_ticks "$DAEMON_PID")" "$t0" "$t1" 0)"
    record "$target,cpu-dnsmasq" "$(cpu_percent "$m0" "$(cpu_ticks "$MASQ_PID")" "$t0" "$t1" 0)"
    qps=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$out")
    lost=$(awk '/Queries lost:/ { gsub(/[()%]/, "", $4); print $4 }' "$out")
    record "$target,qps" "$qps"
    record "$target,lost" "$lost"
    RES["$target,rcodes"]=$(sed -n 's/^ *Response codes: *//p' "$out" | head -n 1)
}

# lat_stats FILE: "p50 p99 answered timeouts not_noerror" from dnsperf -v output, in µs.
lat_stats() {
    local f=$1 timeouts bad
    timeouts=$(grep -c 'Timeout' "$f" || true)
    bad=$(awk '/^> / && $2 != "NOERROR"' "$f" | wc -l)
    awk '/^> / { print $NF * 1000000 }' "$f" | sort -g | awk -v to="$timeouts" -v bad="$bad" '
        { v[NR] = $1 }
        END {
            if (!NR) { printf "NA NA 0 %d %d\n", to, bad; exit }
            printf "%.0f %.0f %d %d %d\n", v[int((NR - 1) * 0.50) + 1], v[int((NR - 1) * 0.99) + 1], NR, to, bad
        }'
}

# Paced run at RATE queries/s: target $1 (gw, dnsmasq, fwd or direct), repetition $2, rate $3.
measure_lat() {
    local target=$1 rep=$2 rate=$3 ns=$NSC server queries out p50 p99 n to bad
    case $target in
        gw) server=$GW queries=$TMP/local.queries ;;
        dnsmasq) server=$DNSMASQ_IP queries=$TMP/local.queries ;;
        fwd) server=$GW queries=$TMP/fwd.queries ;;
        direct) ns=$NSD server=$UPSTREAM_IP queries=$TMP/fwd.queries ;;
    esac
    out=$TMP/lat-$target-$rep.txt
    if [[ -n ${STATUS[$target]:-} || $rate == NA ]]; then
        record "$target,p50" NA
        record "$target,p99" NA
        return 0
    fi
    log "rep $rep: $target, $rate queries/s for $DURATION s"
    dnsperf_in "$ns" "$out" -s "$server" -d "$queries" -c 1 -q "$INFLIGHT" -Q "$rate" -l "$DURATION" -t 2 -v ||
        log "$target: dnsperf failed: $(tail -n 2 "$out" | tr '\n' ' ')"
    read -r p50 p99 n to bad < <(lat_stats "$out")
    record "$target,p50" "$p50"
    record "$target,p99" "$p99"
    record "$target,n" "$n"
    ((to == 0 && bad == 0)) || log "warning: $target rep $rep: $to timeouts, $bad answers other than NOERROR"
    record "$target,bad" $((to + bad))
}

# The rate for (c) in repetition $1: LAT_RATE, or half the lower maximum measured in it.
lat_rate() {
    local i=$1 a b
    if [[ $LAT_RATE != auto ]]; then
        echo "$LAT_RATE"
        return
    fi
    a=$(nth "${RES[gw,qps]:-}" "$i") b=$(nth "${RES[dnsmasq,qps]:-}" "$i")
    awk -v a="$a" -v b="$b" 'BEGIN {
        if (a !~ /^[0-9.]+$/ && b !~ /^[0-9.]+$/) { print "NA"; exit }
        m = (a ~ /^[0-9.]+$/) ? a : b
        if (b ~ /^[0-9.]+$/ && b < m) m = b
        printf "%d\n", (m / 2 < 1 ? 1 : m / 2) }'
}

# nth "V1 V2 ..." I: the I-th word (0-based), or NA.
nth() {
    local -a words
    read -ra words <<<"$1"
    echo "${words[$2]:-NA}"
}

# The gateway row's DNS counters from `vswitchctl --json stats` (pretty JSON, one object per
# port, keys in any order): "key=value ...".
gw_dns_counters() {
    dctl --json stats 2>/dev/null | awk -v port="\"gw:$NET\"" '
        /^  \{/ { dns = ""; indns = 0; mine = 0; next }
        /"dns": \{/ { indns = 1; next }
        indns && /\}/ { indns = 0; next }
        indns { line = $0; gsub(/[", ]/, "", line); sub(/:/, "=", line); dns = dns " " line; next }
        $0 ~ "\"port\": " port { mine = 1 }
        /^  \}/ && mine { print substr(dns, 2); exit }'
}

# ---------------------------------------------------------------------------- report

median() {
    tr ' ' '\n' <<<"$1" | awk '/^-?[0-9.]+$/' | sort -g |
        awk '{ v[NR] = $1 } END { if (!NR) print "NA"; else print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
# pair_op "A1 A2 ..." "B1 B2 ..." OP: per-repetition A/B (OP=div) or A-B (OP=sub).
pair_op() {
    local -a a b out=()
    local i
    read -ra a <<<"$1"
    read -ra b <<<"$2"
    for i in "${!a[@]}"; do
        out+=("$(awk -v x="${a[$i]}" -v y="${b[$i]:-NA}" -v op="$3" 'BEGIN {
            if (x !~ /^[0-9.]+$/ || y !~ /^[0-9.]+$/) { print "NA"; exit }
            if (op == "div") { if (y > 0) printf "%.2f\n", x / y; else print "NA" } else printf "%.0f\n", x - y }')")
    done
    echo "${out[*]}"
}
# row LABEL "V1 V2 ..." [UNIT] [DECIMALS]: a table row with every repetition and the median.
row() {
    local label=$1 values=$2 unit=${3:-} decimals=${4:-0} v cells="" m
    for v in $values; do
        cells+=" $(num "$v" "$decimals" "$unit") |"
    done
    m=$(median "$values")
    printf '| %s |%s **%s** |\n' "$label" "$cells" "$(num "$m" "$decimals" "$unit")"
}
# num VALUE DECIMALS UNIT: the number rounded, with its unit; NA stays NA.
num() {
    [[ $1 =~ ^-?[0-9.]+$ ]] || { echo "${1:-NA}"; return; }
    awk -v v="$1" -v d="$2" -v u="$3" 'BEGIN { printf "%." d "f%s\n", v, u }'
}
header() {
    local i h="| $1 |" sep="|---|"
    for ((i = 1; i <= REPEAT; i++)); do
        h+=" rep $i |"
        sep+="---|"
    done
    printf '%s median |\n%s---|\n' "$h" "$sep"
}
why() { echo "${STATUS[$1]:-}"; }

report() {
    local rates=${RES[rate]:-}
    printf '\n## vswitch DNS: %s s per run, %s repetition(s), %s names, dnsperf -c %s -T %s -q %s, kernel %s, %s CPUs, pinned: %s, %s\n' \
        "$DURATION" "$REPEAT" "$NAMES" "$CLIENTS" "$THREADS" "$INFLIGHT" "$(uname -r)" "$(nproc)" \
        "$([[ ${#CLIENT_PIN[@]} -gt 0 ]] && echo yes || echo no)" "$(date -u +%FT%TZ)"
    ((BUSY_BEFORE < 10)) ||
        printf '\n**Warning: the machine was %s%% busy before the runs (other processes); numbers are skewed.**\n' \
            "$BUSY_BEFORE"
    printf '\nRepetitions ran the two servers in alternating order (rep 1: gateway first).\n'
    local t
    for t in gw dnsmasq fwd direct; do
        [[ -z $(why "$t") ]] || printf '\n**%s not measured: %s**\n' "$t" "$(why "$t")"
    done

    printf '\n### (a, b) Answers per second at saturation, from a sandbox on the same vswitch network\n\n'
    header "server"
    row "vswitchd gateway ($GW)" "${RES[gw,qps]:-}" " q/s"
    row "dnsmasq in a sandbox ($DNSMASQ_IP)" "${RES[dnsmasq,qps]:-}" " q/s"
    row "ratio vswitchd / dnsmasq" "$(pair_op "${RES[gw,qps]:-}" "${RES[dnsmasq,qps]:-}" div)" "" 2
    row "lost, vswitchd" "${RES[gw,lost]:-}" "%" 2
    row "lost, dnsmasq" "${RES[dnsmasq,lost]:-}" "%" 2
    row "vswitchd CPU during (a)" "${RES[gw,cpu-vswitchd]:-}" "%"
    row "vswitchd CPU during (b)" "${RES[dnsmasq,cpu-vswitchd]:-}" "%"
    row "dnsmasq CPU during (b)" "${RES[dnsmasq,cpu-dnsmasq]:-}" "%"
    row "all CPUs busy during (a)" "${RES[gw,cpu-all]:-}" "%"
    row "all CPUs busy during (b)" "${RES[dnsmasq,cpu-all]:-}" "%"
    printf '\nCPU: %% of one core for vswitchd and dnsmasq; %% of all %s CPUs for the machine (dnsperf,\n' "$(nproc)"
    printf 'softirq and everything else included). With the server far from 100%% of a core and the\n'
    printf 'machine not saturated, the client (dnsperf, %s thread(s)) is the limit, not the server.\n' "$THREADS"
    printf '\nResponse codes (last run): vswitchd: %s; dnsmasq: %s\n' "${RES[gw,rcodes]:-n/a}" \
        "${RES[dnsmasq,rcodes]:-n/a}"

    printf '\n### (c) Latency at the same fixed rate for both (%s)\n\n' \
        "$([[ $LAT_RATE == auto ]] && echo "half the lower maximum of each repetition" || echo "LAT_RATE")"
    header "what"
    row "rate" "$rates" " q/s"
    row "vswitchd p50" "${RES[gw,p50]:-}" " µs"
    row "vswitchd p99" "${RES[gw,p99]:-}" " µs"
    row "dnsmasq p50" "${RES[dnsmasq,p50]:-}" " µs"
    row "dnsmasq p99" "${RES[dnsmasq,p99]:-}" " µs"
    row "p50 ratio vswitchd / dnsmasq" "$(pair_op "${RES[gw,p50]:-}" "${RES[dnsmasq,p50]:-}" div)" "" 2
    row "p99 ratio vswitchd / dnsmasq" "$(pair_op "${RES[gw,p99]:-}" "${RES[dnsmasq,p99]:-}" div)" "" 2
    row "answers counted, vswitchd" "${RES[gw,n]:-}"
    row "answers counted, dnsmasq" "${RES[dnsmasq,n]:-}"
    row "timeouts or not NOERROR, vswitchd" "${RES[gw,bad]:-}"
    row "timeouts or not NOERROR, dnsmasq" "${RES[dnsmasq,bad]:-}"

    printf '\n### (d) Forwarded queries at %s q/s: names only the upstream (dnsmasq over a veth) knows\n\n' "$FWD_RATE"
    header "what"
    row "through the gateway, p50" "${RES[fwd,p50]:-}" " µs"
    row "through the gateway, p99" "${RES[fwd,p99]:-}" " µs"
    row "upstream asked directly from the daemon's namespace, p50" "${RES[direct,p50]:-}" " µs"
    row "upstream asked directly from the daemon's namespace, p99" "${RES[direct,p99]:-}" " µs"
    row "added by the gateway, p50" "$(pair_op "${RES[fwd,p50]:-}" "${RES[direct,p50]:-}" sub)" " µs"
    row "added by the gateway, p99" "$(pair_op "${RES[fwd,p99]:-}" "${RES[direct,p99]:-}" sub)" " µs"
    row "timeouts or not NOERROR, through the gateway" "${RES[fwd,bad]:-}"

    printf '\nvswitchd (pid %s): RSS %s MiB after the runs; gateway DNS counters: %s\n' "${DAEMON_PID:-?}" \
        "$(rss_mib "${DAEMON_PID:-0}")" "$(gw_dns_counters)"
}

# ---------------------------------------------------------------------------- main

main() {
    [[ $(id -u) == 0 ]] || die "run as root (creates network namespaces)"
    local v
    for v in DURATION REPEAT NAMES ENDPOINTS CLIENTS THREADS INFLIGHT FWD_RATE; do
        [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
    done
    [[ $LAT_RATE == auto || $LAT_RATE =~ ^[1-9][0-9]*$ ]] || die "LAT_RATE must be auto or a positive integer"
    ((NAMES <= 999 && ENDPOINTS <= 200)) || die "NAMES <= 999 and ENDPOINTS <= 200"
    bench_start
    chmod 755 "$TMP" # dnsmasq reads the hosts files after dropping root

    install_packages
    build_switch || die "cargo build failed"
    write_zones
    setup
    [[ -z ${STATUS[gw]:-} ]] || log "vswitchd: ${STATUS[gw]}; log tail:$(tail -n 5 "$TMP/vswitchd.log")"
    BUSY_BEFORE=$(machine_busy)
    ((BUSY_BEFORE < 10)) || log "warning: the machine is already ${BUSY_BEFORE}% busy; expect skewed numbers"

    local rep i order rate
    for ((rep = 1; rep <= REPEAT; rep++)); do
        i=$((rep - 1))
        if ((rep % 2)); then order="gw dnsmasq"; else order="dnsmasq gw"; fi
        for v in $order; do
            measure_max "$v" "$rep"
            sleep 1
        done
        rate=$(lat_rate "$i")
        record rate "$rate"
        for v in $order; do
            measure_lat "$v" "$rep" "$rate"
        done
        if ((rep % 2)); then order="fwd direct"; else order="direct fwd"; fi
        for v in $order; do
            measure_lat "$v" "$rep" "$FWD_RATE"
        done
        kill -0 "$DAEMON_PID" 2>/dev/null || die "vswitchd died during the runs (see $TMP/vswitchd.log)"
    done
    report
    local missing=()
    for v in gw dnsmasq fwd direct; do
        [[ -z ${STATUS[$v]:-} ]] || missing+=("$v")
    done
    ((${#missing[@]} == 0)) || die "not measured: ${missing[*]}"
}

main "$@"
