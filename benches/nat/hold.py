"""Holds many idle TCP connections for the per-connection memory benchmark (benches/nat.sh).

    hold.py listen ADDR PORT N    accept N connections, print "accepted", hold them
    hold.py connect ADDR PORT N   open N connections one after the other, print "held", hold them

Either side holds its sockets until it is killed (SIGTERM), which closes them. Prints
"listening" once the listener is up, and a line starting "failed" on an error.
"""
import signal
import socket
import sys
import time

mode, addr, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
socks = []
t0 = time.monotonic()
try:
    if mode == "listen":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((addr, port))
        listener.listen(4096)
        print("listening", flush=True)
        while len(socks) < n:
            socks.append(listener.accept()[0])
            if len(socks) % 1000 == 0:
                print("%d accepted after %.2f s" % (len(socks), time.monotonic() - t0), flush=True)
        listener.close()
        print("accepted", flush=True)
    else:
        for i in range(n):
            socks.append(socket.create_connection((addr, port), timeout=10))
        print("held %d in %.2f s" % (n, time.monotonic() - t0), flush=True)
        print("held", flush=True)
except OSError as e:
    print("failed after %d connections: %s" % (len(socks), e), flush=True)
    sys.exit(1)
while True:
    signal.pause()
