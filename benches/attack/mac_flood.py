#!/usr/bin/env python3
"""MAC flood against a real vswitchd: one sandbox floods random source MACs while two
others run a TCP stream and a ping through the same network.

Setup (every namespace carries the prefix vm<pid>x, written P below): the daemon (release
build) runs in its own namespace Ph with one network Pn (10.238.0.0/24) and three
sandboxes: Pa (the attacker, 10.238.0.2), Pb (the server, .3) and Pc (the client, .4).

Each run (RUNS, default 3), after flushing the learned FDB entries:
- Pc starts `iperf3 -c` to Pb for DURATION s (default 10) with 0.1 s intervals, and a
  ping to Pb every 10 ms;
- PRE s (default 2.5) later, Pa sends COUNT frames (default 1,000,000) at full speed from
  a raw AF_PACKET socket on its eth0 (benches/attack/macflood.rs, sendmmsg batches): every
  frame a new random source MAC and a new random unicast destination, so every frame is
  unknown unicast, flooded to every other port;
- meanwhile the FDB size (`fdb_show`) and the daemon's RSS are sampled every 0.2 s.
Reported per run: the flood's frames/s (sent, and received by the switch: the attacker
port's rx counter; the rest died in the TAP's queue), the FDB size before, at most during
and after, with the learning counters (learned, refused by the per-port limit or a full
table), the daemon's RSS before, at most during and after, and TCP throughput and ping
loss and RTT before the flood (the same run's first PRE s, first 0.5 s left out) and
during it.

The FDB's bounds (switch/src/fdb.rs, switch/src/port.rs): 8,192 entries per network, of
which at most 1,024 learned on one access port; a flood from one sandbox therefore stops
at 1,024 of its MACs (plus the few real stations), and new MACs beyond are counted as
`port_limit`, not learned.

Storm control: FLOOD_LIMIT=N creates the network with `-o flood-limit=N` (each port floods
at most N frames a second; the attacker's flood beyond is dropped as `flood_limited`, the
report's "limited" column). Without it the network has no limit (the default).

Usage (as root; installs iperf3 if missing):  sudo benches/attack/mac_flood.py
Knobs (environment): RUNS=3, COUNT=1000000, DURATION=10, PRE=2.5, FLOOD_LIMIT (none),
BUILD=0 to skip the cargo build, KEEP_LOGS=1 to keep the work directory.

Everything it creates carries the prefix and is removed on exit, failure and Ctrl-C
included; it never touches the host namespace's interfaces, routes or firewall.
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "support"))
from vswitch import Daemon, build, build_tool, in_ns, links, log, netns_add, netns_names, remove_prefix  # noqa: E402

RUNS = int(os.environ.get("RUNS", "3"))
COUNT = int(os.environ.get("COUNT", "1000000"))
DURATION = float(os.environ.get("DURATION", "10"))
PRE = float(os.environ.get("PRE", "2.5"))
KEEP_LOGS = os.environ.get("KEEP_LOGS", "0") == "1"
FLOOD_LIMIT = os.environ.get("FLOOD_LIMIT", "")
P = f"vm{os.getpid()}x"
HOST, NET = P + "h", P + "n"
ATTACKER, SERVER, CLIENT = P + "a", P + "b", P + "c"
IPS = {ATTACKER: "10.238.0.2", SERVER: "10.238.0.3", CLIENT: "10.238.0.4"}
PING_INTERVAL = 0.01

children = []  # helper processes to stop on exit


def say(msg):
    log("mac_flood", msg)


def spawn(ns, argv, out):
    p = subprocess.Popen(in_ns(ns, argv), stdout=out, stderr=subprocess.STDOUT, text=True)
    children.append(p)
    return p


def fdb_size(d):
    return len(d.ok("fdb_show", network=NET))


def learning(d):
    """The network's learning counters from the Prometheus text (vswitch_fdb_*_total)."""
    text = d.ok("metrics")["text"]
    out = {}
    for name in ("learned", "port_limit", "table_full"):
        m = re.search(rf'^vswitch_fdb_{name}_total\{{[^}}]*network="{NET}"[^}}]*\}} (\d+)', text, re.M)
        out[name] = int(m.group(1)) if m else 0
    return out


def port_row(d, sandbox):
    """The `stats` row of SANDBOX's port on the network."""
    port = port_of(d, sandbox)
    for row in d.ok("stats"):
        if row["port"] == port:
            return row
    raise RuntimeError(f"no stats row for {sandbox}")


def port_rx(d, sandbox):
    """rx_packets of SANDBOX's port on the network."""
    return port_row(d, sandbox)["rx_packets"]


def port_flood_limited(d, sandbox):
    """Frames of SANDBOX's port dropped by storm control (`flood_limited`)."""
    return port_row(d, sandbox).get("drops", {}).get("flood_limited", 0)


_ports = {}


def port_of(d, sandbox):
    if sandbox not in _ports:
        info = d.ok("sandbox_inspect", name=sandbox)
        _ports[sandbox] = info["endpoints"][0]["port"]
    return _ports[sandbox]


def parse_ping(text):
    """[(send time, rtt ms or None)] per sequence number, from `ping -D` output; lost
    probes get a send time interpolated between their neighbours."""
    replies = {}
    for m in re.finditer(r"^\[(\d+\.\d+)\].*icmp_seq=(\d+).*time=([\d.]+) ms", text, re.M):
        t, seq, rtt = float(m.group(1)), int(m.group(2)), float(m.group(3))
        replies[seq] = (t - rtt / 1000.0, rtt)
    m = re.search(r"(\d+) packets transmitted", text)
    sent = int(m.group(1)) if m else (max(replies) if replies else 0)
    if not replies:
        return []
    known = sorted(replies)
    out = []
    for seq in range(1, sent + 1):
        if seq in replies:
            out.append(replies[seq])
            continue
        before = max((k for k in known if k < seq), default=None)
        after = min((k for k in known if k > seq), default=None)
        if before is not None and after is not None:
            t0, t1 = replies[before][0], replies[after][0]
            t = t0 + (t1 - t0) * (seq - before) / (after - before)
        elif before is not None:
            t = replies[before][0] + (seq - before) * PING_INTERVAL
        else:
            t = replies[after][0] - (after - seq) * PING_INTERVAL
        out.append((t, None))
    return out


def ping_window(probes, t0, t1):
    inside = [rtt for t, rtt in probes if t0 <= t < t1]
    got = [r for r in inside if r is not None]
    loss = 100.0 * (len(inside) - len(got)) / len(inside) if inside else float("nan")
    return {
        "sent": len(inside),
        "lost": len(inside) - len(got),
        "loss_pct": loss,
        "rtt_avg": statistics.mean(got) if got else float("nan"),
        "rtt_max": max(got, default=float("nan")),
    }


def tcp_window(intervals, t0, t1):
    """Mean Gbit/s of the iperf3 intervals that lie within [t0, t1] (seconds from its start)."""
    inside = [i for i in intervals if i["start"] >= t0 - 1e-6 and i["end"] <= t1 + 1e-6]
    secs = sum(i["seconds"] for i in inside)
    return sum(i["bytes"] for i in inside) * 8 / secs / 1e9 if secs else float("nan")


def one_run(d, flooder, n):
    d.ok("fdb_flush", network=NET)
    # The real stations again (the flush forgot them), so their own traffic is known unicast.
    subprocess.run(in_ns(CLIENT, ["ping", "-c", "1", "-W", "1", IPS[SERVER]]), capture_output=True)
    fdb_before, rss_before, learn_before = fdb_size(d), d.rss_kib(), learning(d)
    rx_before, limited_before = port_rx(d, ATTACKER), port_flood_limited(d, ATTACKER)
    iperf_out = open(os.path.join(WORK, f"iperf3-{n}.json"), "w+")
    ping_out = open(os.path.join(WORK, f"ping-{n}.txt"), "w+")
    count = int(DURATION / PING_INTERVAL)
    t_iperf = time.time()
    iperf = spawn(CLIENT, ["iperf3", "-c", IPS[SERVER], "-t", str(DURATION), "-i", "0.1", "-J"], iperf_out)
    ping = spawn(CLIENT, ["ping", "-D", "-n", "-i", str(PING_INTERVAL), "-c", str(count), IPS[SERVER]], ping_out)
    samples = {"fdb": [], "rss": []}
    stop = threading.Event()

    def sample():
        while not stop.wait(0.2):
            try:
                samples["fdb"].append(fdb_size(d))
            except (OSError, ValueError, RuntimeError):
                pass
            samples["rss"].append(d.rss_kib())

    sampler = threading.Thread(target=sample)
    sampler.start()
    time.sleep(PRE)  # the baseline window: a benchmark's schedule, not synchronisation
    t_flood = time.time()
    flood = subprocess.run(in_ns(ATTACKER, [flooder, "eth0", str(COUNT), "--seed", str(n + 1)]),
                           capture_output=True, text=True)
    t_end = time.time()
    if flood.returncode != 0:
        raise RuntimeError(f"macflood failed: {flood.stdout} {flood.stderr}")
    sent = dict(kv.split("=") for kv in flood.stdout.split())
    iperf.wait(timeout=DURATION + 30)
    ping.wait(timeout=DURATION + 30)
    stop.set()
    sampler.join()
    iperf_out.seek(0)
    ping_out.seek(0)
    report = json.load(iperf_out)
    intervals = [i["sum"] for i in report["intervals"]]
    probes = parse_ping(ping_out.read())
    # iperf3's interval times count from its start, about when it was launched.
    f0, f1 = t_flood - t_iperf, t_end - t_iperf
    rx = port_rx(d, ATTACKER) - rx_before
    learn_after = learning(d)
    return {
        "sent": int(sent["sent"]),
        "secs": float(sent["secs"]),
        "fps": float(sent["fps"]),
        "rx": rx,
        "rx_fps": rx / (t_end - t_flood),
        "limited": port_flood_limited(d, ATTACKER) - limited_before,
        "fdb_before": fdb_before,
        "fdb_max": max(samples["fdb"], default=0),
        "fdb_after": fdb_size(d),
        "learned": learn_after["learned"] - learn_before["learned"],
        "port_limit": learn_after["port_limit"] - learn_before["port_limit"],
        "table_full": learn_after["table_full"] - learn_before["table_full"],
        "rss_before": rss_before,
        "rss_max": max(samples["rss"], default=0),
        "rss_after": d.rss_kib(),
        "tcp_before": tcp_window(intervals, 0.5, f0),
        "tcp_during": tcp_window(intervals, f0, f1),
        "ping_before": ping_window(probes, t_iperf + 0.5, t_flood),
        "ping_during": ping_window(probes, t_flood, t_end),
        "alive": d.alive(),
        "outlasted": f1 > DURATION,
    }


def main():
    global WORK
    if os.geteuid() != 0:
        print("mac_flood: needs root (namespaces, TAPs, raw sockets)", file=sys.stderr)
        return 1
    if not shutil.which("iperf3"):
        subprocess.run(["apt-get", "install", "-y", "-q", "iperf3"], check=True)
    build()
    flooder = build_tool(os.path.join(HERE, "macflood.rs"), "macflood")
    WORK = tempfile.mkdtemp(prefix="vswitch-macflood-")
    d = Daemon("vswitchd", WORK, netns=HOST)
    results, ok = [], False

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        netns_add(HOST)
        d.start()
        options = {"flood-limit": FLOOD_LIMIT} if FLOOD_LIMIT else {}
        d.ok("network_create", name=NET, subnet="10.238.0.0/24", options=options)
        for sb in (ATTACKER, SERVER, CLIENT):
            d.ok("sandbox_create", name=sb)
            d.ok("network_connect", network=NET, sandbox=sb, ip=IPS[sb])
        server = spawn(SERVER, ["iperf3", "-s"], open(os.path.join(WORK, "iperf3-server.txt"), "w"))
        for _ in range(100):
            if subprocess.run(in_ns(CLIENT, ["ping", "-c", "1", "-W", "0.2", IPS[SERVER]]),
                              capture_output=True).returncode == 0:
                break
        else:
            raise RuntimeError("the client cannot reach the server")
        time.sleep(0.3)  # iperf3 -s listening (its start is not observable otherwise)
        rss_start = d.rss_kib()
        for n in range(RUNS):
            say(f"run {n + 1}/{RUNS}")
            results.append(one_run(d, flooder, n))
        rss_end = d.rss_kib()
        server.terminate()
        ok = all(r["alive"] for r in results)
    finally:
        for p in children:
            if p.poll() is None:
                p.terminate()
        for p in children:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        try:
            for sb in (ATTACKER, SERVER, CLIENT):
                d.ctl("sandbox_rm", name=sb)
            d.ctl("network_rm", name=NET)
        except (OSError, ValueError):
            pass
        d.stop()
        leaked = [n for n in netns_names(P) if n != HOST]
        if HOST in netns_names(P):
            leaked += [f"{link} (in {HOST})" for link in links(HOST, "vsw")]
        remove_prefix(P, hosts=(HOST,))
        if ok and not KEEP_LOGS:
            shutil.rmtree(WORK, ignore_errors=True)
        else:
            say(f"logs kept in {WORK}")

    print(f"## MAC flood: {RUNS} runs of {COUNT:,} frames with random source MACs from one sandbox, "
          f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    print("FDB bound: 8,192 entries per network, 1,024 learned per access port; flood limit: "
          f"{FLOOD_LIMIT + ' frames/s per port' if FLOOD_LIMIT else 'none'}\n")
    print("| run | flood sent/s | switch rx/s (flood_limited) | FDB before / max / after | learned / refused (port limit, table full) "
          "| RSS KiB before / max / after | TCP Gbit/s before / during | ping loss before / during | ping RTT ms avg before / during (max) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, r in enumerate(results, 1):
        pb, pd = r["ping_before"], r["ping_during"]
        print(f"| {n} | {r['fps']:,.0f} ({r['sent']:,} in {r['secs']:.2f} s) | {r['rx_fps']:,.0f} ({r['rx']:,}; {r['limited']:,}) "
              f"| {r['fdb_before']} / {r['fdb_max']} / {r['fdb_after']} "
              f"| {r['learned']} / {r['port_limit']:,}, {r['table_full']:,} "
              f"| {r['rss_before']:,} / {r['rss_max']:,} / {r['rss_after']:,} "
              f"| {r['tcp_before']:.2f} / {r['tcp_during']:.2f} "
              f"| {pb['lost']}/{pb['sent']} / {pd['lost']}/{pd['sent']} ({pd['loss_pct']:.1f}%) "
              f"| {pb['rtt_avg']:.3f} / {pd['rtt_avg']:.3f} ({pd['rtt_max']:.1f}) |")
    if any(r["outlasted"] for r in results):
        print("\nnote: the flood outlasted the TCP stream in some runs (raise DURATION); 'during' covers its overlap")
    print(f"\ndaemon RSS: {rss_start:,} KiB before the first run, {rss_end:,} KiB after the last; daemon alive: "
          f"{'yes' if ok else 'NO'}; leaked namespaces or TAPs: {', '.join(leaked) if leaked else 'none'}")
    return 0 if ok and not leaked else 1


if __name__ == "__main__":
    sys.exit(main())
