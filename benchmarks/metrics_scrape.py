"""Scrape cost of `pybpf export` at 10k series, against prometheus_client's own counters.

    sudo python benchmarks/metrics_scrape.py [--series 10000] [--repeat 30]

Loads the bundled opensnoop object without attaching it, fills its `open_counts`
hash map (key: char comm[16] + int errno) with N entries in one batch update, and
times, per scrape: the collector alone (one BPF_MAP_LOOKUP_BATCH, label decoding,
metric families) and the whole exposition (`generate_latest`, what /metrics
serves). Baseline in the same run: a prometheus_client Counter holding the same N
label sets in Python memory, exposed by the same `generate_latest`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, generate_latest

from pybpf.metrics import Exporter, parse_config

CONFIG = """
[object]
path = "opensnoop"
programs = []            # load only: the map is filled by this script
[[counter]]
name = "bench_opens_total"
map = "open_counts"
labels = [
  { name = "comm", field = "comm", decoder = "cstring" },
  { name = "errno", field = "errno_", decoder = "errno" },
]
"""


def timed(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    first = time.perf_counter()
    fn()
    first = time.perf_counter() - first
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return first * 1e3, statistics.median(runs) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    n = args.series
    with Exporter([parse_config(CONFIG, "bench.toml")]) as ex:
        m = ex.objects[0].maps["open_counts"]
        keys = np.zeros(n, dtype=m.key_dtype)
        keys["comm"] = [f"comm{i:06d}".encode() for i in range(n)]
        keys["errno_"] = np.arange(n) % 5
        m.update_batch(keys, np.arange(n, dtype=np.uint64))
        source = ex.collector.sources[0]
        collect_first, collect = timed(lambda: list(source.collect()), args.repeat)
        expo_first, expo = timed(ex.exposition, args.repeat)
        size = len(ex.exposition())

    disable_created_metrics()           # same lines as ours: no _created series
    reg = CollectorRegistry()
    c = Counter("bench_opens", "baseline", ["comm", "errno"], registry=reg)
    names = ["OK", "EPERM", "ENOENT", "ESRCH", "EINTR"]
    for i in range(n):
        c.labels(f"comm{i:06d}", names[i % 5]).inc(i)
    _f, base = timed(lambda: generate_latest(reg), args.repeat)

    print(f"series: {n}   exposition: {size / 1e6:.2f} MB")
    print(f"collector only (batch lookup + decode + families): {collect:7.2f} ms/scrape (first: {collect_first:.2f})")
    print(f"whole /metrics exposition (pybpf export):          {expo:7.2f} ms/scrape (first: {expo_first:.2f})")
    print(f"baseline: prometheus_client Counter, same series:  {base:7.2f} ms/scrape")
    print(f"ratio pybpf export / prometheus_client baseline:   {expo / base:7.2f}x")


if __name__ == "__main__":
    main()
