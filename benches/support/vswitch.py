"""Helpers shared by the Python benchmark and attack scripts (benches/ctl_abuse.py,
benches/attack/*.py): building the binaries, starting and killing vswitchd (optionally
inside a network namespace), the ctl protocol over the Unix socket, reading a process's
RSS and descriptors, and removing what a run created by its unique name prefix.

Import it with `sys.path.insert(0, <benches>/support)`; it has no side effects.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

BENCHES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCHES)
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
VSWITCHD = os.environ.get("VSWITCHD") or os.path.join(TARGET_DIR, "release", "vswitchd")
VSWITCHCTL = os.environ.get("VSWITCHCTL") or os.path.join(TARGET_DIR, "release", "vswitchctl")


def log(tag, msg):
    print(f"[{tag}] {msg}", file=sys.stderr, flush=True)


def build():
    """Builds the release daemon and vswitchctl unless BUILD=0."""
    if os.environ.get("BUILD", "1") == "0":
        return
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "switch", "-p", "ctl", "--bins"], cwd=ROOT, check=True)


def build_tool(source, name):
    """Builds a std-only helper program (like benches/e2e/udpflood.rs) with plain rustc into
    TARGET_DIR/attack/NAME unless it is up to date; returns its path."""
    out = os.path.join(TARGET_DIR, "attack", name)
    # The tools share benches/support/mmsg.rs (a `#[path]` module).
    shared = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mmsg.rs")
    newest = max(os.path.getmtime(source), os.path.getmtime(shared))
    if not os.path.exists(out) or os.path.getmtime(out) < newest:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run(["rustc", "--edition", "2024", "-C", "opt-level=3", "-o", out, source], check=True)
    return out


class CtlError(Exception):
    """The daemon answered a request with an error object."""

    def __init__(self, kind, message):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def connect(path, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def ctl(path, verb, timeout=5.0, **fields):
    """One request on a fresh connection; returns the decoded reply (with "ok" or "err").
    Raises OSError when the daemon cannot be reached or closes the connection first, and
    ValueError when the reply is not JSON."""
    with connect(path, timeout) as s:
        s.sendall((json.dumps({"v": 1, "id": 1, "req": {"verb": verb, **fields}}) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionResetError(f"{verb}: connection closed before the reply")
            data += chunk
    return json.loads(data)


def ctl_ok(path, verb, timeout=5.0, **fields):
    """As ctl(), returning the "ok" payload; an error reply raises CtlError."""
    reply = ctl(path, verb, timeout, **fields)
    if "err" in reply:
        raise CtlError(reply["err"].get("kind"), reply["err"].get("message"))
    return reply["ok"]


def rss_kib(pid):
    """VmRSS of process PID in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fds(pid):
    """Open file descriptors of process PID."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def in_ns(ns, argv):
    """ARGV run inside network namespace NS ("" or None: this one). nsenter --net, not
    ip netns exec: the latter's private mount namespace would hide the sandboxes a daemon
    creates under /run/netns, and it execs, so a Popen's pid is the program's own."""
    return argv if not ns else ["nsenter", f"--net=/run/netns/{ns}", "--", *argv]


def sh(argv, check=True):
    """Runs ARGV quietly; returns its stdout. A failure raises with stderr when CHECK."""
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout


class Daemon:
    """One vswitchd with its own socket, state dir and log under WORK, optionally inside
    network namespace NETNS; EXTRA are further arguments. start() waits until it answers."""

    def __init__(self, name, work, netns=None, extra=()):
        self.name = name
        self.netns = netns
        self.sock = os.path.join(work, f"{name}.sock")
        self.state_dir = os.path.join(work, f"{name}-state")
        self.log_path = os.path.join(work, f"{name}.log")
        self.extra = list(extra)
        self.proc = None
        self.starts = 0
        self.started_at = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=15.0):
        argv = [VSWITCHD, "--ctl-socket", self.sock, "--state-dir", self.state_dir, *self.extra]
        log_file = open(self.log_path, "a")
        self.proc = subprocess.Popen(in_ns(self.netns, argv), stdout=log_file, stderr=log_file)
        log_file.close()
        self.starts += 1
        self.started_at = time.time()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if "ok" in ctl(self.sock, "ping", timeout=1.0):
                    return
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; log: {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer within {timeout} s; log: {self.log_path}")
            time.sleep(0.05)

    def kill9(self):
        """kill -9, and reap it."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after TIMEOUT."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def ctl(self, verb, timeout=5.0, **fields):
        return ctl(self.sock, verb, timeout, **fields)

    def ok(self, verb, timeout=5.0, **fields):
        return ctl_ok(self.sock, verb, timeout, **fields)

    def rss_kib(self):
        return rss_kib(self.pid) if self.alive() else 0


def netns_add(ns):
    sh(["ip", "netns", "add", ns])
    sh(["ip", "-n", ns, "link", "set", "lo", "up"])


def netns_names(prefix):
    """Named namespaces whose name starts with PREFIX."""
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix))
    except FileNotFoundError:
        return []


def links(ns=None, prefix=""):
    """Link names in namespace NS (None: this one) that start with PREFIX."""
    argv = ["ip", "-o", "link", "show"] if not ns else ["ip", "-n", ns, "-o", "link", "show"]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    names = [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]
    return sorted(n for n in names if n.startswith(prefix))


def remove_prefix(prefix, hosts=()):
    """Deletes every named namespace starting with PREFIX (those in HOSTS last: their links
    into the others go with either end) and links with that prefix in this namespace."""
    names = netns_names(prefix)
    for ns in [n for n in names if n not in hosts] + [n for n in names if n in hosts]:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for link in links(None, prefix):
        subprocess.run(["ip", "link", "del", link], capture_output=True)
