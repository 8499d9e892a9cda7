"""pybpf.metrics over every map shape it reads, with contents written from user space so the
expected metrics are exact: a struct-keyed hash as labelled linear histograms, a per-CPU array
(summed over CPUs, read by batch), a plain array (skip_zero), byte-array key fields (inet)."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pybpf.metrics import Exporter, parse_config

pytestmark = pytest.mark.usefixtures("kernel")

CONFIG = """
[object]
path = "metrics_test"
programs = []

[[histogram]]
name = "t_latency_seconds"
map = "lat_by_cpu"
bucket_field = "slot"
buckets = { type = "linear", step = 10, scale = 1e-3 }
labels = [{ name = "cpu", field = "cpu" }]

[[gauge]]
name = "t_per_cpu_sum"
map = "pcpu"
labels = [{ name = "index" }]

[[counter]]
name = "t_plain_total"
map = "plain"
skip_zero = true
labels = [{ name = "slot" }]

[[counter]]
name = "t_flows_total"
map = "flows"
labels = [
  { name = "addr", field = "saddr", decoder = "inet" },
  { name = "errno", field = "errno_", decoder = "errno" },
]
"""


def test_every_map_shape() -> None:
    with Exporter([parse_config(CONFIG, "shapes.toml")]) as ex:
        maps = ex.objects[0].maps
        lat = maps["lat_by_cpu"]
        # cpu 0: slots 0, 2, 3 ; cpu 1: slot 1 -- linear slots of 10 units (ms)
        for (cpu, slot), count in {(0, 0): 5, (0, 2): 7, (0, 3): 1, (1, 1): 4}.items():
            lat[(cpu, slot)] = count
        pcpu = maps["pcpu"]
        ncpu = pcpu.n_cpus
        pcpu[2] = np.arange(1, ncpu + 1, dtype=np.uint64)               # cpu k holds k+1
        maps["plain"][5] = 42
        keys = np.zeros(2, dtype=maps["flows"].key_dtype)
        keys["saddr"][0, :4] = [10, 0, 0, 7]
        keys["family"][0] = 2
        keys["saddr"][1, 15] = 1                                           # ::1
        keys["errno_"] = [0, 111]
        maps["flows"].update_batch(keys, np.array([3, 9], dtype=np.uint64))
        paths = ex.collector.sources[0].read_paths()
        fams = {f.name: f for f in text_string_to_metric_families(ex.exposition().decode())}

    assert paths == {"t_latency_seconds": "batch lookup", "t_per_cpu_sum": "batch lookup",
                     "t_plain_total": "batch lookup", "t_flows_total": "batch lookup"}
    buckets: dict[str, dict[str, float]] = {}
    for s in fams["t_latency_seconds"].samples:
        if s.name.endswith("_bucket"):
            buckets.setdefault(s.labels["cpu"], {})[s.labels["le"]] = s.value
    # slot i of a linear histogram: [10i, 10i+9] ms -> le = (10(i+1) - 1) ms; the last slot is +Inf
    assert buckets["0"] == {"0.009": 5, "0.019": 5, "0.029": 12, "+Inf": 13}
    assert buckets["1"] == {"0.009": 0, "0.019": 4, "0.029": 4, "+Inf": 4}
    per_cpu = {s.labels["index"]: s.value for s in fams["t_per_cpu_sum"].samples}
    assert per_cpu == {"0": 0, "1": 0, "2": ncpu * (ncpu + 1) // 2, "3": 0}   # summed over CPUs
    assert [(s.labels, s.value) for s in fams["t_plain"].samples] == [({"slot": "5"}, 42)]
    flows = {(s.labels["addr"], s.labels["errno"]): s.value for s in fams["t_flows"].samples}
    assert flows == {("10.0.0.7", "OK"): 3, ("::1", "ECONNREFUSED"): 9}


LIMITED = """
[object]
path = "metrics_test"
programs = []

[[counter]]
name = "t_flows_total"
map = "flows"
max_series = 2
labels = [{ name = "errno", field = "errno_", decoder = "errno" }]

[[histogram]]
name = "t_latency_seconds"
map = "lat_by_cpu"
bucket_field = "slot"
max_series = 1
buckets = { type = "linear", step = 10, scale = 1e-3 }
labels = [{ name = "cpu", field = "cpu" }]
"""


def test_new_series_start_at_zero_and_max_series_folds_the_rest() -> None:
    """A label set first seen after the first scrape reads 0 once (so PromQL's increase() counts
    its first burst); past max_series label sets go to one 'other' series, and the count of
    folded label sets is exported."""
    def flows(text: str) -> dict[str, float]:
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        return {s.labels["errno"]: s.value for s in fams["t_flows"].samples if s.name == "t_flows_total"}

    def folded(text: str) -> dict[str, float]:
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        return {s.labels["metric"]: s.value for s in fams["pybpf_export_folded_series"].samples}

    def flow_key(m, errno: int) -> np.ndarray:  # noqa: ANN001
        key = np.zeros(1, dtype=m.key_dtype)
        key["family"] = 2
        key["errno_"] = errno
        return key

    with Exporter([parse_config(LIMITED, "limited.toml")]) as ex:
        m = ex.objects[0].maps["flows"]
        m.update_batch(flow_key(m, 0), np.array([3], dtype=np.uint64))
        assert flows(ex.exposition().decode()) == {"OK": 3}            # the first scrape: values as they are
        m.update_batch(flow_key(m, 2), np.array([5], dtype=np.uint64))
        assert flows(ex.exposition().decode()) == {"OK": 3, "ENOENT": 0}   # new: 0 on first sight
        assert flows(ex.exposition().decode()) == {"OK": 3, "ENOENT": 5}
        m.update_batch(np.concatenate([flow_key(m, 13), flow_key(m, 111)]), np.array([2, 4], dtype=np.uint64))
        text = ex.exposition().decode()
        assert flows(text) == {"OK": 3, "ENOENT": 5, "other": 0}         # two kept, the rest folded (new: 0)
        assert folded(text)["t_flows_total"] == 2
        text = ex.exposition().decode()
        assert flows(text) == {"OK": 3, "ENOENT": 5, "other": 6}
        lat = ex.objects[0].maps["lat_by_cpu"]
        for (cpu, slot), count in {(0, 0): 5, (1, 1): 4, (2, 1): 1}.items():
            lat[(cpu, slot)] = count
        ex.exposition()
        fams = {f.name: f for f in text_string_to_metric_families(ex.exposition().decode())}
        inf = {s.labels["cpu"]: s.value for s in fams["t_latency_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"}
        assert inf == {"0": 5, "other": 5}
        assert folded(ex.exposition().decode())["t_latency_seconds"] == 2
