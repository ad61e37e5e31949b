#!/usr/bin/env python3
"""Session set-up time with a black-hole first upstream (issue 15's headline number).

A black hole on loopback is a listener whose accept queue is full (backlog 0, one
connection never accepted): the kernel drops further SYNs, so a connect hangs until its
timeout. sluice runs with ENVOY_ROUTES="allow upstream=BLACKHOLE,GOOD connect_timeout_ms=1000";
CONC clients each open SESSIONS sessions one after another (a ClientHello, then wait for the
upstream's first byte); set-up time is connect() to that first byte.

    python3 bench/blackhole.py BINARY [SESSIONS_PER_CLIENT] [CONC] [WARMUP]

WARMUP sessions (default 3) go first, one at a time, unmeasured: what follows is "after the
first ejection" (an old binary has no ejection: it changes nothing there).
"""
import os, socket, subprocess, sys, threading, time

binary = sys.argv[1]
per = int(sys.argv[2]) if len(sys.argv) > 2 else 10
conc = int(sys.argv[3]) if len(sys.argv) > 3 else 20
warmup = int(sys.argv[4]) if len(sys.argv) > 4 else 3
hello = open(os.path.join(os.path.dirname(__file__), "..", "fixtures", "client-curl-7.88.1-h2.bin"), "rb").read()

hole = socket.socket()
hole.bind(("127.0.0.1", 0))
hole.listen(0)
filler = socket.create_connection(hole.getsockname())

good = socket.socket()
good.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
good.bind(("127.0.0.1", 0))
good.listen(1024)

def serve():
    while True:
        c, _ = good.accept()
        try:
            c.sendall(b"G")
        except OSError:
            pass
        threading.Thread(target=lambda c=c: (c.recv(65536), c.close()), daemon=True).start()

threading.Thread(target=serve, daemon=True).start()

lst = socket.socket(); lst.bind(("127.0.0.1", 0)); port = lst.getsockname()[1]; lst.close()
h, g = hole.getsockname(), good.getsockname()
env = dict(os.environ, ENVOY_IP="127.0.0.1", ENVOY_PORT=str(port), ENVOY_WORKERS="1",
           ENVOY_LOG_LEVEL="warn", ENVOY_UPSTREAM=f"127.0.0.1:{g[1]}",
           ENVOY_ROUTES=f"allow upstream={h[0]}:{h[1]},{g[0]}:{g[1]} connect_timeout_ms=1000")
p = subprocess.Popen([binary, "run"], env=env, stderr=subprocess.DEVNULL)
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", port)).close(); break
    except OSError:
        time.sleep(0.05)
time.sleep(0.3)

times, failures = [], [0]
lock = threading.Lock()

def client():
    for _ in range(per):  # per is read at call time (the warm-up sets it to 1)
        t0 = time.monotonic()
        try:
            c = socket.create_connection(("127.0.0.1", port))
            c.settimeout(10)
            c.sendall(hello)
            if c.recv(1) != b"G":
                raise OSError("no tag")
            dt = time.monotonic() - t0
            with lock:
                times.append(dt)
            c.close()
        except OSError:
            with lock:
                failures[0] += 1

saved_per = per
per = 1
for _ in range(warmup):
    client()
per = saved_per
times.clear()
t0 = time.monotonic()
ts = [threading.Thread(target=client) for _ in range(conc)]
[t.start() for t in ts]
[t.join() for t in ts]
wall = time.monotonic() - t0
p.terminate(); p.wait()
times.sort()
q = lambda f: times[min(len(times) - 1, int(f * len(times)))] * 1000
print(f"{binary}: warmup={warmup} sessions={len(times)} failed={failures[0]} p50_ms={q(0.50):.1f} p99_ms={q(0.99):.1f} max_ms={times[-1]*1000:.1f} wall_s={wall:.1f}")
