#!/usr/bin/env python3
"""Hostile ctl clients against a real vswitchd, and a well-behaved one.

Starts vswitchd (release build) with its own socket and state dir, creates a
network and a sandbox, then for DURATION seconds runs, all at once:

- 1,000 connections opened and held without sending anything (with the
  others, more clients than the daemon serves at once: 1,024);
- 50 slowloris writers sending a request one byte every 0.3 s (reconnecting
  0.2 s after being cut);
- 4 writers each sending a 100 MB line (reconnecting when cut);
- 4 clients sending random bytes, newlines included;
- 4 clients sending well-formed requests that are refused (removing the
  predefined networks, connecting to `host`, bad addresses).

Meanwhile a well-behaved client connects every 50 ms and sends `ping`, and
the daemon's open file descriptors and RSS are sampled. At the end it checks
that the state (networks, sandboxes, settings, the state file) is exactly as
before and prints a report. Exit status 1 if a probe took longer than
100 ms or failed, or the state changed.

Run as root from the repository root:  sudo benches/ctl_abuse.py
Knobs (environment): DURATION (default 20), BUILD=0 to skip the build.
"""

import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
from vswitch import Daemon, build, connect, ctl, fds, rss_kib  # noqa: E402

DURATION = float(os.environ.get("DURATION", "20"))
PROBE_LIMIT_MS = 100.0
stop = threading.Event()
counts = {"held": 0, "held_refused": 0, "slowloris_cut": 0, "huge_cut": 0, "random_sent": 0, "refused_requests": 0}
lock = threading.Lock()


def bump(key, n=1):
    with lock:
        counts[key] += n


def state(path, state_dir):
    snap = {v: ctl(path, v) for v in ("network_ls", "sandbox_ls", "config_show", "peer_ls")}
    with open(os.path.join(state_dir, "state.json"), "rb") as f:
        snap["file"] = f.read().decode()
    return snap


def hold(path, held):
    try:
        s = connect(path, timeout=2.0)
        held.append(s)
        bump("held")
    except OSError:
        bump("held_refused")


def slowloris(path):
    request = b'{"v":1,"id":7,"req":{"verb":"ping"}}\n'
    while not stop.is_set():
        try:
            s = connect(path)
            for byte in request[:-1]:
                if stop.wait(0.3):
                    break
                s.sendall(bytes([byte]))
            s.close()
        except OSError:
            bump("slowloris_cut")
            stop.wait(0.2)


def huge(path):
    chunk = b"a" * (1 << 20)
    while not stop.is_set():
        try:
            s = connect(path)
            for _ in range(100):
                if stop.is_set():
                    break
                s.sendall(chunk)
            s.close()
        except OSError:
            bump("huge_cut")
            stop.wait(0.2)


def garbage(path):
    rng = random.Random(0x5eed)
    while not stop.is_set():
        try:
            s = connect(path)
            for _ in range(50):
                blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) + b"\n"
                s.sendall(blob)
                bump("random_sent")
            s.close()
        except OSError:
            stop.wait(0.05)


def refused(path):
    bad = [
        {"verb": "network_rm", "name": "bridge"},
        {"verb": "network_connect", "network": "host", "sandbox": "abuse-sb"},
        {"verb": "network_create", "name": "abuse-net", "subnet": "10.233.0.0/24"},
        {"verb": "network_connect", "network": "abuse-net", "sandbox": "abuse-sb", "ip": "10.99.0.5"},
        {"verb": "config_set", "key": "aging-time", "value": "1"},
        {"verb": "no_such_verb"},
    ]
    i = 0
    while not stop.is_set():
        try:
            reply = ctl(path, **{"verb": bad[i % len(bad)]["verb"]}, **{k: v for k, v in bad[i % len(bad)].items() if k != "verb"})
            if "err" in reply:
                bump("refused_requests")
        except (OSError, ValueError):
            pass
        i += 1
        stop.wait(0.01)


def probe(path, latencies, failures):
    while not stop.is_set():
        t = time.monotonic()
        try:
            reply = ctl(path, "ping")
            ms = (time.monotonic() - t) * 1000.0
            if "ok" in reply:
                latencies.append(ms)
            else:
                failures.append(f"{reply}")
        except (OSError, ValueError) as e:
            failures.append(f"{type(e).__name__}: {e}")
        stop.wait(0.05)


def main():
    if os.geteuid() != 0:
        print("ctl_abuse: needs root (it creates a sandbox)", file=sys.stderr)
        return 1
    build()
    work = tempfile.mkdtemp(prefix="vswitch-abuse-")
    daemon = Daemon("vswitchd", work)
    sock, state_dir = daemon.sock, daemon.state_dir
    held = []
    sandbox = f"abuse{os.getpid()}"
    try:
        daemon.start()
        ctl(sock, "network_create", name="abuse-net", subnet="10.233.0.0/24")
        ctl(sock, "sandbox_create", name=sandbox)
        ctl(sock, "network_connect", network="abuse-net", sandbox=sandbox)
        before = state(sock, state_dir)
        fd_before, rss_before = fds(daemon.pid), rss_kib(daemon.pid)

        latencies, failures, fd_samples = [], [], []
        threads = [threading.Thread(target=probe, args=(sock, latencies, failures))]
        threads += [threading.Thread(target=slowloris, args=(sock,)) for _ in range(50)]
        threads += [threading.Thread(target=huge, args=(sock,)) for _ in range(4)]
        threads += [threading.Thread(target=garbage, args=(sock,)) for _ in range(4)]
        threads += [threading.Thread(target=refused, args=(sock,)) for _ in range(4)]
        for t in threads:
            t.start()
        for _ in range(1000):
            hold(sock, held)
        end = time.monotonic() + DURATION
        while time.monotonic() < end:
            fd_samples.append(fds(daemon.pid))
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
        for s in held:
            s.close()
        time.sleep(0.5)
        after = state(sock, state_dir)
        alive = daemon.alive()
        fd_after, rss_after = fds(daemon.pid), rss_kib(daemon.pid)
    finally:
        stop.set()
        try:
            ctl(sock, "sandbox_rm", name=sandbox)
            ctl(sock, "network_rm", name="abuse-net")
        except OSError:
            pass
        daemon.stop()

    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else float("nan")
    unchanged = before == after
    print(f"## ctl abuse, {DURATION:.0f} s, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    print(f"attack: {counts['held']} connections held ({counts['held_refused']} refused at connect), "
          f"50 slowloris writers (cut {counts['slowloris_cut']} times), 4 x 100 MB lines (cut {counts['huge_cut']} times), "
          f"{counts['random_sent']} random lines, {counts['refused_requests']} refused requests")
    print(f"well-behaved pings: {len(latencies)} answered, {len(failures)} failed; "
          f"p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms, max {max(latencies, default=float('nan')):.2f} ms (limit {PROBE_LIMIT_MS:.0f} ms)")
    print(f"daemon fds: {fd_before} before, max {max(fd_samples, default=0)} during, {fd_after} after")
    print(f"daemon RSS: {rss_before} KiB before, {rss_after} KiB after")
    print(f"state unchanged: {'yes' if unchanged else 'NO'}; daemon alive: {'yes' if alive else 'NO'}")
    if failures:
        print("first failures:", failures[:5])
    ok = unchanged and alive and not failures and latencies and latencies[-1] <= PROBE_LIMIT_MS
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("log and state kept in", work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
