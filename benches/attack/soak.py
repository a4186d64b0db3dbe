#!/usr/bin/env python3
"""Soak test: two vswitchd hosts under mixed traffic and ctl churn, each killed with
SIGKILL and restarted in turn, checking that no acknowledged change is ever lost, that
memory stays flat and that nothing leaks.

Setup (every namespace and link carries the prefix vs<pid>x, written P below): two "host"
namespaces Ph1 and Ph2 joined by a veth underlay (10.251.0.1 and .2), one vswitchd (release
build) in each with --vtep. On host 1, a bridge network Plan (10.252.0.0/24) with sandboxes
Ps1 (clients), Ps2 (servers) and Ps3 (the flooder); on both, an overlay Pov (VNI 4343,
10.253.0.0/24) with sandboxes Po1 (host 1) and Po2 (host 2). Traffic, all the time:
- TCP Ps1 -> Ps2 and Po1 -> Po2 over the overlay (iperf3, TCP_RATE and OVERLAY_RATE,
  60 s runs back to back), UDP Ps1 -> Ps2 (iperf3 -u, UDP_RATE);
- from Ps3, unknown unicast with random source and destination MACs at FLOOD_FPS and
  broadcasts at FLOOD_FPS / 10 (benches/attack/macflood.rs);
- pings Ps1 -> Ps2 and Po1 -> Po2 every 0.2 s.
Churn: on each daemon, every CHURN_EVERY s one random request among network create/rm,
sandbox create/rm and network connect/disconnect on a small pool of names (so some are
refused: in use, not found, conflict). Every acknowledged change goes to a log
(WORK/acked.jsonl) and into a model of what each daemon must hold; a refused request must
change nothing; a request cut by a kill is "uncertain" (either outcome is accepted, once).
Every RESTART_EVERY s one daemon (alternately) is killed with SIGKILL and restarted; then
its state (`network ls`, `network inspect`, `sandbox ls`, and each endpoint's address
inside its namespace) is compared with the model, and the time until its ping answers
again is measured. The same check runs at the end on both.

Memory: each daemon's RSS and descriptors are sampled every SAMPLE_EVERY s; the report
gives the RSS slope in KiB/min by linear regression over the samples taken WARMUP s or
more after each (re)start, pooled over the daemon's lives (each life its own intercept),
and per life.

At the end everything is removed through the ctl socket; then no sandbox namespace,
/etc/netns directory or TAP (vsw*) in the host namespaces may remain, and the daemons are
stopped. Exit status 1 on a lost or unexpected change, a leak or a dead daemon.

Usage (as root; installs iperf3 if missing):
  sudo nice -n 19 benches/attack/soak.py                       # 30 minutes, a restart every 5
  sudo DURATION=180 RESTART_EVERY=60 benches/attack/soak.py    # a short validation run
Knobs (environment): DURATION=1800, RESTART_EVERY=300, WARMUP=60, SAMPLE_EVERY=5,
CHURN_EVERY=1, TCP_RATE=200M, UDP_RATE=20M, OVERLAY_RATE=50M, FLOOD_FPS=2000, SEED,
BUILD=0 to skip the cargo build, KEEP_LOGS=1 to keep the work directory.

Everything it creates carries the prefix and is removed on exit, failure and Ctrl-C
included; it never touches the host namespace's interfaces, routes or firewall.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "support"))
from vswitch import (  # noqa: E402
    CtlError,
    Daemon,
    build,
    build_tool,
    fds,
    in_ns,
    links,
    log,
    netns_add,
    netns_names,
    remove_prefix,
    sh,
)

DURATION = float(os.environ.get("DURATION", "1800"))
RESTART_EVERY = float(os.environ.get("RESTART_EVERY", "300"))
WARMUP = float(os.environ.get("WARMUP", "60"))
SAMPLE_EVERY = float(os.environ.get("SAMPLE_EVERY", "5"))
CHURN_EVERY = float(os.environ.get("CHURN_EVERY", "1"))
TCP_RATE = os.environ.get("TCP_RATE", "200M")
UDP_RATE = os.environ.get("UDP_RATE", "20M")
OVERLAY_RATE = os.environ.get("OVERLAY_RATE", "50M")
FLOOD_FPS = int(os.environ.get("FLOOD_FPS", "2000"))
SEED = int(os.environ.get("SEED", str(os.getpid())))
KEEP_LOGS = os.environ.get("KEEP_LOGS", "0") == "1"

P = f"vs{os.getpid()}x"
H1, H2 = P + "h1", P + "h2"
LAN, OV = P + "lan", P + "ov"
S1, S2, S3, O1, O2 = P + "s1", P + "s2", P + "s3", P + "o1", P + "o2"
IP = {S1: "10.252.0.2", S2: "10.252.0.3", S3: "10.252.0.4", O1: "10.253.0.11", O2: "10.253.0.12"}
VTEP = {1: "10.251.0.1", 2: "10.251.0.2"}
POOL = 4  # churned networks and sandboxes per daemon

stop = threading.Event()
children, children_lock = [], threading.Lock()
WORK = ""


def say(msg):
    log("soak", f"{time.strftime('%H:%M:%S')} {msg}")


def spawn(ns, argv, out=subprocess.DEVNULL):
    p = subprocess.Popen(in_ns(ns, argv), stdout=out, stderr=subprocess.STDOUT, text=True)
    with children_lock:
        children.append(p)
    return p


def stop_children():
    """Terminates every helper process this run started (SIGKILL after 5 s)."""
    with children_lock:
        procs = list(children)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---------------------------------------------------------------------------- churn and its model


class Model:
    """What one daemon must hold of the churned objects: networks, sandboxes, and
    endpoints (network, sandbox) -> IPv4 address with prefix."""

    def __init__(self):
        self.nets, self.sbs, self.eps = set(), set(), {}

    def copy(self):
        m = Model()
        m.nets, m.sbs, m.eps = set(self.nets), set(self.sbs), dict(self.eps)
        return m

    def as_tuple(self):
        return (sorted(self.nets), sorted(self.sbs), sorted(self.eps.items()))

    def expect(self, op, a):
        """Whether OP(A) should succeed on this state."""
        if op == "network_create":
            return a["name"] not in self.nets
        if op == "network_rm":
            return a["name"] in self.nets and not any(n == a["name"] for n, _ in self.eps)
        if op == "sandbox_create":
            return a["name"] not in self.sbs
        if op == "sandbox_rm":
            return a["name"] in self.sbs
        if op == "network_connect":
            return a["network"] in self.nets and a["sandbox"] in self.sbs and (a["network"], a["sandbox"]) not in self.eps
        if op == "network_disconnect":
            return (a["network"], a["sandbox"]) in self.eps
        raise ValueError(op)

    def apply(self, op, a, reply):
        if op == "network_create":
            self.nets.add(a["name"])
        elif op == "network_rm":
            self.nets.discard(a["name"])
        elif op == "sandbox_create":
            self.sbs.add(a["name"])
        elif op == "sandbox_rm":
            self.sbs.discard(a["name"])
            self.eps = {k: v for k, v in self.eps.items() if k[1] != a["name"]}
        elif op == "network_connect":
            self.eps[(a["network"], a["sandbox"])] = reply["ipv4"] if reply else None
        elif op == "network_disconnect":
            self.eps.pop((a["network"], a["sandbox"]), None)


class Churner:
    """Churn on one daemon; owns its model and the log of what it acknowledged."""

    def __init__(self, n, d, ack_log, stable):
        self.n, self.d, self.ack_log = n, d, ack_log
        self.stable = stable  # (network, sandbox) -> address of the endpoints set up at the start
        self.model = Model()
        self.uncertain = None  # (op, args) cut by a kill
        self.lock = threading.Lock()  # held per request; the verifier takes it to pause churn
        self.up = threading.Event()
        self.up.set()
        self.rng = random.Random(SEED * 10 + n)
        self.counts = {"acked": 0, "refused": 0, "uncertain": 0, "unexpected": 0}
        self.unexpected = []
        self.nets = [f"{P}d{n}c{k}" for k in range(POOL)]
        self.sbs = [f"{P}d{n}a{k}" for k in range(POOL)]
        self.subnet = {net: f"10.{254 if n == 1 else 249}.{k}.0/24" for k, net in enumerate(self.nets)}

    def pick(self):
        """A random request; three times in four one the model expects to succeed (when there
        is one of that verb), else any names, which are often refused."""
        r = self.rng
        op = r.choices(
            ["network_create", "network_rm", "sandbox_create", "sandbox_rm", "network_connect", "network_disconnect"],
            weights=[2, 2, 1, 1, 4, 3],
        )[0]
        pairs = [(net, sb) for net in self.nets for sb in self.sbs]
        valid = [(net, sb) for net, sb in pairs
                 if self.model.expect(op, self.args(op, net, sb))]
        net, sb = r.choice(valid) if valid and r.random() < 0.75 else r.choice(pairs)
        return op, self.args(op, net, sb)

    def args(self, op, net, sb):
        """The fields of request OP on network NET and sandbox SB."""
        if op == "network_create":
            return {"name": net, "subnet": self.subnet[net]}
        if op in ("network_rm", "sandbox_create", "sandbox_rm"):
            return {"name": net if op == "network_rm" else sb}
        return {"network": net, "sandbox": sb}

    def step(self):
        op, a = self.pick()
        with self.lock:
            if not self.up.is_set():
                return
            expected = self.model.expect(op, a)
            t = time.time()
            try:
                reply = self.d.ctl(op, timeout=10.0, **a)
            except (OSError, ValueError) as e:
                # Cut by a kill (or the daemon is down): either outcome is acceptable, once.
                self.uncertain = (op, a)
                self.counts["uncertain"] += 1
                self.record(t, op, a, "uncertain", str(e))
                self.up.clear()
                return
            if "ok" in reply:
                self.model.apply(op, a, reply["ok"])
                self.counts["acked"] += 1
                self.record(t, op, a, "ok", reply["ok"] if op == "network_connect" else None)
            else:
                self.counts["refused"] += 1
                self.record(t, op, a, "err", reply["err"])
            if ("ok" in reply) != expected:
                self.counts["unexpected"] += 1
                self.unexpected.append(f"{op} {a}: expected {'success' if expected else 'refusal'}, got {reply}")

    def record(self, t, op, a, result, detail):
        with open(self.ack_log, "a") as f:
            f.write(json.dumps({"t": t, "daemon": self.n, "op": op, "args": a, "result": result, "detail": detail}) + "\n")

    def run(self):
        while not stop.wait(CHURN_EVERY):
            try:
                self.step()
            except Exception as e:  # noqa: BLE001 - a churn bug must not kill the soak silently
                self.unexpected.append(f"churn error: {type(e).__name__}: {e}")
                self.counts["unexpected"] += 1

    def observe(self):
        """The churned objects the daemon holds now, as a Model; plus the differences
        between `sandbox ls`, `network inspect` and the sandboxes' own interfaces."""
        m, problems = Model(), []
        nets = [n["name"] for n in self.d.ok("network_ls")]
        m.nets = {n for n in nets if n in self.nets}
        stable = {}
        for sb in self.d.ok("sandbox_ls"):
            for ep in sb.get("endpoints", []):
                if (ep["network"], sb["name"]) in self.stable:
                    stable[(ep["network"], sb["name"])] = ep.get("ipv4")
            if sb["name"] not in self.sbs:
                continue
            m.sbs.add(sb["name"])
            for ep in sb.get("endpoints", []):
                if ep["network"] in self.nets:
                    m.eps[(ep["network"], sb["name"])] = ep.get("ipv4")
        if stable != self.stable:
            problems.append(f"daemon {self.n}: the endpoints set up at the start are {stable}, not {self.stable}")
        for net in m.nets:
            info = self.d.ok("network_inspect", name=net)
            inspected = {(net, c["Name"]): c["IPv4Address"] for c in info.get("Containers", {}).values()}
            listed = {k: v for k, v in m.eps.items() if k[0] == net}
            if inspected != listed:
                problems.append(f"{net}: network inspect {inspected} != sandbox ls {listed}")
        for (net, sb), ip in m.eps.items():
            addrs = sh(["ip", "-n", sb, "-o", "-4", "addr", "show"], check=False)
            if ip and ip not in addrs:
                problems.append(f"{sb}: address {ip} (network {net}) not on an interface inside the sandbox")
        return m, problems

    def verify(self):
        """Compares the daemon's state with the model (an uncertain request may have
        happened or not); adopts the observed state. Returns the problems found."""
        with self.lock:
            observed, problems = self.observe()
            candidates = [self.model]
            if self.uncertain:
                alt = self.model.copy()
                op, a = self.uncertain
                if alt.expect(op, a):
                    seen = observed.eps.get((a.get("network"), a.get("sandbox")))
                    alt.apply(op, a, {"ipv4": seen} if op == "network_connect" else None)
                candidates.append(alt)
            if observed.as_tuple() not in [c.as_tuple() for c in candidates]:
                want = self.model.as_tuple()
                got = observed.as_tuple()
                lost = [x for part in range(3) for x in want[part] if x not in got[part]]
                extra = [x for part in range(3) for x in got[part] if x not in want[part]]
                problems.append(f"daemon {self.n}: state differs from the acknowledged log: "
                                f"lost {lost}, not acknowledged {extra} (uncertain: {self.uncertain})")
            self.model = observed
            self.uncertain = None
            self.up.set()
            return problems


# ---------------------------------------------------------------------------- traffic


class Loop:
    """Runs ARGV in NS again and again until stop, counting runs that failed."""

    def __init__(self, name, ns, argv):
        self.name, self.ns, self.argv = name, ns, argv
        self.runs = self.failed = 0
        self.bytes = 0

    def run(self):
        out_path = os.path.join(WORK, f"{self.name}.out")
        while not stop.is_set():
            with open(out_path, "w+") as out:
                p = spawn(self.ns, self.argv, out)
                while p.poll() is None and not stop.wait(0.5):
                    pass
                if p.poll() is None:
                    p.terminate()
                    p.wait()
                    return
                self.runs += 1
                out.seek(0)
                text = out.read()
            # The sender's total: "sum_sent" (TCP), or the last "sum" (UDP).
            at = text.rfind('"sum_sent"') if '"sum_sent"' in text else text.rfind('"sum":')
            m = re.search(r'"bytes":\s*(\d+)', text[at:]) if at >= 0 else None
            if p.returncode != 0 or not m:
                self.failed += 1
                stop.wait(1.0)
            else:
                self.bytes += int(m.group(1))


class Pinger:
    """ping every 0.2 s from NS to ADDR, all the time; counts sent and answered."""

    def __init__(self, name, ns, addr):
        self.name, self.ns, self.addr = name, ns, addr
        self.path = os.path.join(WORK, f"{name}.txt")
        self.proc = None

    def start(self):
        self.proc = spawn(self.ns, ["ping", "-D", "-n", "-i", "0.2", self.addr], open(self.path, "w"))

    def totals(self):
        try:
            with open(self.path) as f:
                text = f.read()
        except OSError:
            return (0, 0)
        seqs = [int(s) for s in re.findall(r"icmp_seq=(\d+)", text)]
        return (max(seqs, default=0), len(re.findall(r"time=", text)))


# ---------------------------------------------------------------------------- memory


def regression_slope(points):
    """Least-squares slope of [(t, y)]; None with fewer than 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / sxx if sxx else None


def pooled_slope(lives):
    """Within-life slope pooled over lives (each life its own intercept), per unit of t."""
    num = den = 0.0
    for points in lives:
        if len(points) < 3:
            continue
        mt = sum(t for t, _ in points) / len(points)
        my = sum(y for _, y in points) / len(points)
        num += sum((t - mt) * (y - my) for t, y in points)
        den += sum((t - mt) ** 2 for t, _ in points)
    return num / den if den else None


def sampler(daemons, samples):
    while not stop.wait(SAMPLE_EVERY):
        now = time.time()
        for n, d in daemons.items():
            if d.alive():
                try:
                    samples.append((now, n, d.pid, d.started_at, d.rss_kib(), fds(d.pid)))
                except OSError:
                    pass


# ---------------------------------------------------------------------------- setup and teardown


def setup(daemons):
    netns_add(H1)
    netns_add(H2)
    sh(["ip", "link", "add", P + "u1", "netns", H1, "type", "veth", "peer", "name", P + "u2", "netns", H2])
    for n, h in ((1, H1), (2, H2)):
        sh(["ip", "-n", h, "addr", "add", f"{VTEP[n]}/24", "dev", f"{P}u{n}"])
        sh(["ip", "-n", h, "link", "set", f"{P}u{n}", "up"])
    for n, d in daemons.items():
        d.start()
        d.ok("network_create", name=OV, driver="overlay", subnet="10.253.0.0/24", vni=4343, attachable=True)
        d.ok("peer_add", addr=f"{VTEP[3 - n]}:4789")
    d1, d2 = daemons[1], daemons[2]
    d1.ok("network_create", name=LAN, subnet="10.252.0.0/24")
    for sb in (S1, S2, S3):
        d1.ok("sandbox_create", name=sb)
        d1.ok("network_connect", network=LAN, sandbox=sb, ip=IP[sb])
    for d, sb in ((d1, O1), (d2, O2)):
        d.ok("sandbox_create", name=sb)
        d.ok("network_connect", network=OV, sandbox=sb, ip=IP[sb])
    for src, dst in ((S1, S2), (O1, O2)):
        wait_ping(src, IP[dst], 20)


def wait_ping(ns, addr, timeout):
    """Seconds until NS pings ADDR (one probe at a time), or None after TIMEOUT."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if subprocess.run(in_ns(ns, ["ping", "-c", "1", "-W", "0.5", addr]), capture_output=True).returncode == 0:
            return time.monotonic() - t0
    return None


def teardown_objects(daemons, churners):
    """Removes every object through the ctl socket; returns the requests refused."""
    refused = []
    for n, d in daemons.items():
        if not d.alive():
            continue
        mine = set(churners[n].sbs) | ({S1, S2, S3, O1} if n == 1 else {O2})
        for sb in d.ok("sandbox_ls"):
            if sb["name"] in mine:
                try:
                    d.ok("sandbox_rm", name=sb["name"])
                except CtlError as e:
                    refused.append(f"sandbox rm {sb['name']}: {e}")
        for net in d.ok("network_ls"):
            if net["name"].startswith(P):
                try:
                    d.ok("network_rm", name=net["name"])
                except CtlError as e:
                    refused.append(f"network rm {net['name']}: {e}")
        try:
            d.ok("peer_rm", addr=f"{VTEP[3 - n]}:4789")
        except CtlError as e:
            refused.append(f"peer rm: {e}")
    return refused


def leaks():
    """Sandbox namespaces, /etc/netns directories and TAPs (vsw*) in the host namespaces
    that remain after every object was removed."""
    found = [f"namespace {n}" for n in netns_names(P) if n not in (H1, H2)]
    found += [f"/etc/netns/{n}" for n in (os.listdir("/etc/netns") if os.path.isdir("/etc/netns") else [])
              if n.startswith(P)]
    for h in (H1, H2):
        if h in netns_names(P):
            found += [f"{link} in {h}" for link in links(h, "vsw")]
    return found


# ---------------------------------------------------------------------------- main


def main():
    global WORK
    if os.geteuid() != 0:
        print("soak: needs root (namespaces, TAPs)", file=sys.stderr)
        return 1
    if not shutil.which("iperf3"):
        subprocess.run(["apt-get", "install", "-y", "-q", "iperf3"], check=True)
    build()
    flooder = build_tool(os.path.join(HERE, "macflood.rs"), "macflood")
    WORK = tempfile.mkdtemp(prefix="vswitch-soak-")
    daemons = {n: Daemon(f"d{n}", WORK, netns=h, extra=["--vtep", VTEP[n]]) for n, h in ((1, H1), (2, H2))}
    stable = {
        1: {(LAN, S1): IP[S1] + "/24", (LAN, S2): IP[S2] + "/24", (LAN, S3): IP[S3] + "/24", (OV, O1): IP[O1] + "/24"},
        2: {(OV, O2): IP[O2] + "/24"},
    }
    churners = {n: Churner(n, d, os.path.join(WORK, "acked.jsonl"), stable[n]) for n, d in daemons.items()}
    samples, restarts, problems, threads = [], [], [], []
    loops, pingers = [], {}
    result = {"ok": False}

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    t_start = time.time()
    try:
        say(f"setting up (prefix {P}, work {WORK})")
        setup(daemons)
        spawn(S2, ["iperf3", "-s", "-p", "5201"])
        spawn(S2, ["iperf3", "-s", "-p", "5202"])
        spawn(O2, ["iperf3", "-s", "-p", "5201"])
        time.sleep(0.5)  # iperf3 servers listening (not observable otherwise)
        loops = [
            Loop("tcp", S1, ["iperf3", "-c", IP[S2], "-p", "5201", "-t", "60", "-b", TCP_RATE, "-J"]),
            Loop("udp", S1, ["iperf3", "-c", IP[S2], "-p", "5202", "-u", "-t", "60", "-b", UDP_RATE, "-J"]),
            Loop("overlay_tcp", O1, ["iperf3", "-c", IP[O2], "-p", "5201", "-t", "60", "-b", OVERLAY_RATE, "-J"]),
        ]
        spawn(S3, [flooder, "eth0", "0", "--rate", str(FLOOD_FPS), "--seed", str(SEED)])
        spawn(S3, [flooder, "eth0", "0", "--rate", str(max(1, FLOOD_FPS // 10)), "--broadcast"])
        pingers = {1: Pinger("ping_lan", S1, IP[S2]), 2: Pinger("ping_overlay", O1, IP[O2])}
        for p in pingers.values():
            p.start()
        threads = [threading.Thread(target=x.run) for x in loops + list(churners.values())]
        threads.append(threading.Thread(target=sampler, args=(daemons, samples)))
        for t in threads:
            t.start()

        victim, next_kill, end = 1, t_start + RESTART_EVERY, t_start + DURATION
        say(f"running {DURATION:.0f} s, a kill -9 every {RESTART_EVERY:.0f} s")
        while time.time() < end:
            time.sleep(min(1.0, max(0.0, end - time.time())))
            for n, d in daemons.items():
                if not d.alive():
                    raise RuntimeError(f"daemon {n} died on its own; log {d.log_path}")
            if time.time() >= next_kill and time.time() < end - 5:
                d = daemons[victim]
                t_kill = time.time()
                d.kill9()
                d.start()
                back = wait_ping(*((S1, IP[S2]) if victim == 1 else (O1, IP[O2])), 30)
                back = None if back is None else time.time() - t_kill
                found = churners[victim].verify()
                restarts.append({"t": t_kill - t_start, "daemon": victim, "problems": found, "ping_back_s": back})
                problems += found
                say(f"restarted daemon {victim} at {t_kill - t_start:.0f} s: "
                    f"{'state as acknowledged' if not found else found}; ping back after "
                    f"{'never' if back is None else f'{back:.1f}'} s")
                victim, next_kill = 3 - victim, next_kill + RESTART_EVERY
        stop.set()
        for t in threads:
            t.join()
        # No process may hold a sandbox's namespace (and its interfaces) when it is removed.
        stop_children()
        for n in daemons:
            problems += churners[n].verify()
        refused = teardown_objects(daemons, churners)
        problems += refused
        leaked = leaks()
        alive = all(d.alive() for d in daemons.values())
        result.update(ok=not problems and not leaked and alive, leaked=leaked, alive=alive)
    finally:
        stop.set()
        stop_children()
        for t in threads:
            t.join(timeout=10)
        if not result["ok"]:
            try:
                teardown_objects(daemons, churners)
            except (OSError, ValueError, CtlError, RuntimeError):
                pass
        for d in daemons.values():
            d.stop()
        remove_prefix(P, hosts=(H1, H2))
        for n in os.listdir("/etc/netns") if os.path.isdir("/etc/netns") else []:
            if n.startswith(P):
                shutil.rmtree(os.path.join("/etc/netns", n), ignore_errors=True)
        report(t_start, daemons, churners, samples, restarts, problems, loops, pingers, result)
        if result["ok"] and not KEEP_LOGS:
            shutil.rmtree(WORK, ignore_errors=True)
        else:
            say(f"logs kept in {WORK}")
    return 0 if result["ok"] else 1


def report(t_start, daemons, churners, samples, restarts, problems, loops, pingers, result):
    elapsed = time.time() - t_start
    print(f"## Soak: {elapsed / 60:.1f} min, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, seed {SEED}")
    print(f"traffic: TCP {TCP_RATE}bit/s, UDP {UDP_RATE}bit/s, overlay TCP {OVERLAY_RATE}bit/s (iperf3, 60 s runs), "
          f"unknown-unicast flood {FLOOD_FPS} frames/s + broadcast {max(1, FLOOD_FPS // 10)}/s, pings every 0.2 s")
    for lp in loops:
        print(f"- {lp.name}: {lp.runs} iperf3 runs, {lp.failed} failed, {lp.bytes / 1e9:.2f} GB sent")
    for n, p in pingers.items():
        sent, answered = p.totals()
        print(f"- {p.name}: {answered}/{sent} answered ({100.0 * (sent - answered) / sent if sent else 0:.2f}% lost, "
              f"outages during restarts included)")
    print(f"restarts (kill -9): {len(restarts)}")
    for r in restarts:
        print(f"- at {r['t']:.0f} s daemon {r['daemon']}: {'state as acknowledged' if not r['problems'] else 'PROBLEMS'}"
              f", ping answered again after {r['ping_back_s']:.1f} s" if r["ping_back_s"] is not None else
              f"- at {r['t']:.0f} s daemon {r['daemon']}: ping did NOT come back within 30 s")
    total = {k: sum(c.counts[k] for c in churners.values()) for k in ("acked", "refused", "uncertain", "unexpected")}
    print(f"ctl churn: {total['acked']} acknowledged changes (all checked after each restart and at the end), "
          f"{total['refused']} refused requests, {total['uncertain']} cut by a kill, "
          f"{total['unexpected']} answers other than the model predicted")
    for c in churners.values():
        for u in c.unexpected[:5]:
            print(f"  unexpected (daemon {c.n}): {u}")
    print(f"memory (RSS sampled every {SAMPLE_EVERY:.0f} s, slope over samples {WARMUP:.0f} s or more after each start):")
    for n in daemons:
        lives = {}
        for t, dn, pid, started, rss, fd in samples:
            if dn == n:
                lives.setdefault((pid, started), []).append((t, rss, fd))
        fitted = []
        for (_, started), pts in lives.items():
            fitted.append([(t, rss) for t, rss, _ in pts if t - started >= WARMUP])
        pooled = pooled_slope(fitted)
        per_life = []
        for pts, fit in zip(lives.values(), fitted):
            s = regression_slope(fit)
            per_life.append(f"{pts[0][1]:,}->{pts[-1][1]:,} KiB"
                            + (f" ({s * 60:+.1f} KiB/min over {(fit[-1][0] - fit[0][0]) / 60:.1f} min)" if s is not None else ""))
        fd_max = max((fd for _, dn, _, _, _, fd in samples if dn == n), default=0)
        pooled_text = f"{pooled * 60:+.2f} KiB/min" if pooled is not None else "n/a (too few samples)"
        print(f"- daemon {n}: pooled slope {pooled_text}; {len(lives)} lives: {'; '.join(per_life)}; "
              f"at most {fd_max} descriptors")
    print(f"leaks after removing everything: {', '.join(result.get('leaked') or []) or 'none'}; "
          f"daemons alive at the end: {'yes' if result.get('alive') else 'NO'}")
    for p in problems[:20]:
        print(f"PROBLEM: {p}")
    print(f"result: {'PASS' if result['ok'] else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
