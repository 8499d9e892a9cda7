"""Issue 20 items 6 and 9: the exporter's labels and its HTTP side under hostile local users.

Item 6: any local user names an executable; exec counts per command must stay exact, so two
names never share a label set (``metrics.decoders.label_text``: lossless). Item 9: any local
client can scrape; concurrent scrapes share one collection, and the listen backlog holds a
fleet's connections (``metrics.server``). The exporter serves inside a network namespace the
test makes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from pybpf.metrics import Exporter
from pybpf.metrics.decoders import label_text
from tests.conftest import enter_netns


def _samples(text: str, family: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for f in text_string_to_metric_families(text) if f.name == family
            for s in f.samples if not s.name.endswith("_created")]


def test_label_text_is_lossless():
    names = [b"dup\xff\xfe", b"dup\xfe\xff", "dup\ufffd\ufffd".encode(), b"dup\\xff\\xfe", b"dup\\\\xff", b"dup"]
    labels = [label_text(n) for n in names]
    assert len(set(labels)) == len(labels)
    assert labels[0] == "dup\\xff\\xfe" and labels[2] == "dup\ufffd\ufffd" and labels[3] == "dup\\\\xff\\\\xfe"
    for plain in (b"bash", "café".encode(), "日本".encode()):
        assert label_text(plain) == plain.decode()
    assert label_text(b"sh\0stale bytes") == "sh"


def test_exec_names_differing_in_invalid_bytes_keep_their_own_counts(kernel, tmp_path: Path):
    tag = uuid.uuid4().hex[:4].encode()
    names = [b"dup" + tag + b"\xff\xfe", b"dup" + tag + b"\xfe\xff", b"dup" + tag + "\ufffd\ufffd".encode(),
             b"dup" + tag + b"\\xff\\xfe"]
    paths = []
    for name in names:
        path = os.fsencode(tmp_path) + b"/" + name
        shutil.copy("/bin/true", path)
        os.chmod(path, 0o755)
        paths.append(path)
    with Exporter(["execsnoop"]) as ex:
        for k, path in enumerate(paths, start=1):
            for _ in range(k):
                subprocess.run([path], check=True)
        ex.exposition()  # a new series reads 0 once (so increase() counts its first burst)
        text = ex.exposition().decode()
    mine = {labels["comm"]: value for labels, value in _samples(text, "pybpf_execsnoop_execs")
            if labels["comm"].startswith("dup" + tag.decode()) and labels["errno"] == "OK"}
    expected = {label_text(name): float(k) for k, name in enumerate(names, start=1)}
    assert mine == expected
    assert len(text.splitlines()) == len(set(text.splitlines()))  # no two identical samples


class _SlowCollector(Collector):
    """A collector that takes a while (as 1M series do) and counts how often it is asked."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self._lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            self.calls += 1
            call = self.calls
        time.sleep(self.seconds)
        family = GaugeMetricFamily("slow_collection", "which collection this is")
        family.add_metric([], call)
        yield family


def _get(url: str, netns: str, out: list[bytes], headers: dict[str, str] | None = None) -> None:
    with enter_netns(netns):
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as r:
            out.append(r.read())


def test_concurrent_scrapes_share_one_collection(kernel, netns: str):
    slow = _SlowCollector(0.5)
    with Exporter(["execsnoop"]) as ex:
        ex.registry.register(slow)
        with enter_netns(netns):
            port = ex.serve("127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}/metrics"
        bodies: list[bytes] = []
        zipped: list[bytes] = []
        threads = [threading.Thread(target=_get, args=(url, netns, bodies)) for _ in range(40)]
        threads += [threading.Thread(target=_get, args=(url, netns, zipped, {"Accept-Encoding": "gzip"}))
                    for _ in range(10)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        seconds = time.monotonic() - started
    assert len(bodies) == 40 and len(zipped) == 10
    # 50 requests in flight together: one collection answers them all (two if the first had
    # already begun when the last arrived), not fifty side by side
    assert slow.calls <= 2, slow.calls
    assert len(set(bodies)) <= 2 and all(b"pybpf_execsnoop_calls_total" in b for b in bodies)
    assert seconds < 10, seconds
    import gzip
    assert {gzip.decompress(z) for z in zipped} <= set(bodies)


def test_listen_backlog_holds_a_fleet(kernel, netns: str):
    with Exporter(["execsnoop"]) as ex:
        with enter_netns(netns):
            port = ex.serve("127.0.0.1", 0)
        listing = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hltn", f"sport = :{port}"],
                                 capture_output=True, text=True, check=True).stdout.split()
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert listing[0] == "LISTEN" and int(listing[2]) == min(somaxconn, 4096) >= 1024, listing  # Send-Q: backlog
