"""BPF map contents as Prometheus metrics (``pybpf export``).

A ``prometheus_client`` collector reads, at scrape time, the maps and globals a
config names, by the fastest path pybpf has (mmap views for mmapable arrays,
batch lookups for hash maps, per-CPU values summed), and turns them into
counters, gauges and histograms with labels decoded from BTF-named key fields.

    from pybpf.metrics import Exporter
    with Exporter(["execsnoop"]) as ex:      # a shipped tool's config, or a path
        port = ex.serve("127.0.0.1", 9435)
        ...

The config format is in the README ("Metrics") and :mod:`pybpf.metrics.config`.
"""

from __future__ import annotations

from pybpf.metrics.collector import BpfCollector, ObjectMetrics, bucket_bounds
from pybpf.metrics.config import Config, ConfigError, load_config, parse_config
from pybpf.metrics.decoders import DECODERS, decoder_names
from pybpf.metrics.exporter import Exporter

__all__ = ["DECODERS", "BpfCollector", "Config", "ConfigError", "Exporter", "ObjectMetrics",
           "bucket_bounds", "decoder_names", "load_config", "parse_config"]
