"""Concurrent scrapes of `pybpf export`, next to prometheus_client's own HTTP server in the same run.

    sudo python benchmarks/metrics_concurrent.py [--series 200000] [--clients 8] [--burst 1000]

Fills the bundled opensnoop object's `open_counts` hash map (resized to N entries, loaded but
not attached) with N series, registers the exporter's collector once, and serves the same
registry twice: with prometheus_client's `start_http_server` (what `pybpf export` used before
issue 20: one collection per request, listen backlog 5) and with `pybpf.metrics.server` (one
collection shared by the requests that arrive while it runs, backlog SOMAXCONN). For each it
reports the wall time of `--clients` simultaneous scrapes, how many collections they caused,
and the process's peak RSS above its idle RSS; then `--burst` small scrapes (a registry with
one series) 200 at a time: median and worst latency. Runs in a network namespace of its own
(unshare), on 127.0.0.1 there.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from prometheus_client import CollectorRegistry, Counter, start_http_server

import pybpf
from pybpf.metrics import parse_config
from pybpf.metrics.collector import BpfCollector, ObjectMetrics
from pybpf.metrics.server import MetricsApp, start_server

CONFIG = """
[object]
path = "opensnoop"
programs = []
[[counter]]
name = "bench_opens_total"
map = "open_counts"
labels = [
  { name = "comm", field = "comm", decoder = "cstring" },
  { name = "errno", field = "errno_", decoder = "errno" },
]
"""


class Counting(BpfCollector):
    """The exporter's collector, counting its collections."""

    calls = 0

    def collect(self):  # type: ignore[no-untyped-def]
        Counting.calls += 1
        yield from super().collect()


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


class Peak:
    def __init__(self) -> None:
        self.base = rss_mib()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mib())

    def __enter__(self) -> Peak:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=300) as r:
        return len(r.read())


def concurrent(url: str, clients: int) -> tuple[float, int, float, int]:
    import gc
    gc.collect()
    Counting.calls = 0
    with Peak() as peak, ThreadPoolExecutor(clients) as pool:
        t = time.perf_counter()
        sizes = list(pool.map(get, [url] * clients))
        seconds = time.perf_counter() - t
    return seconds, Counting.calls, peak.peak - peak.base, sizes[0]


def burst(url: str, n: int, width: int = 200) -> tuple[float, float]:
    def timed(_: int) -> float:
        t = time.perf_counter()
        get(url)
        return time.perf_counter() - t
    with ThreadPoolExecutor(width) as pool:
        times = list(pool.map(timed, range(n)))
    return statistics.median(times) * 1e3, max(times) * 1e3


def own_netns() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=200_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--burst", type=int, default=1000)
    args = ap.parse_args()
    own_netns()
    n = args.series
    cfg = parse_config(CONFIG, "bench.toml")
    with pybpf.open(pybpf.bundled("opensnoop")) as obj:
        obj.maps["open_counts"].max_entries = n
        obj.load()
        m = obj.maps["open_counts"]
        keys = np.zeros(n, dtype=m.key_dtype)
        keys["comm"] = [f"comm{i:07d}".encode() for i in range(n)]
        keys["errno_"] = np.arange(n) % 5
        m.update_batch(keys, np.arange(n, dtype=np.uint64))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Counting([ObjectMetrics(cfg, obj)]))
        theirs, theirs_thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        ours, ours_thread = start_server(MetricsApp(registry), "127.0.0.1", 0)
        small = CollectorRegistry()
        Counter("bench_small", "one series", registry=small).inc()
        small_theirs, _ = start_http_server(0, addr="127.0.0.1", registry=small)
        small_ours, _ = start_server(MetricsApp(small), "127.0.0.1", 0)
        try:
            get(f"http://127.0.0.1:{ours.server_port}/metrics")  # warm both paths once
            print(f"series: {n}, {args.clients} simultaneous scrapes, same registry, same run")
            for label, server in (("prometheus_client server", theirs), ("pybpf.metrics.server  ", ours)):
                s, calls, mib, size = concurrent(f"http://127.0.0.1:{server.server_port}/metrics", args.clients)
                print(f"  {label}: {s:6.2f} s, {calls} collection(s), peak RSS +{mib:6.0f} MiB, "
                      f"{size / 1e6:.1f} MB each")
            print(f"{args.burst} scrapes of a 1-series registry, 200 at a time:")
            for label, server in (("prometheus_client server", small_theirs), ("pybpf.metrics.server  ", small_ours)):
                median, worst = burst(f"http://127.0.0.1:{server.server_port}/metrics", args.burst)
                print(f"  {label}: median {median:7.1f} ms, worst {worst:8.1f} ms")
        finally:
            for server in (theirs, ours, small_theirs, small_ours):
                server.shutdown()
                server.server_close()


if __name__ == "__main__":
    main()
