"""`pybpf export` against the real kernel and a real Prometheus server (Debian's `prometheus`).

The exposition must parse with prometheus_client's own parser and follow Prometheus naming;
counters must move by exactly what a known workload does; the server, started here on
127.0.0.1 with a temporary data directory, must scrape us and answer /api/v1/query."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pybpf.metrics import ConfigError, Exporter, parse_config
from pybpf.tools import config_names
from tests.conftest import needs_kernel
from tests.procs import Proc, pybpf_cmd, unique_binary

pytestmark = pytest.mark.usefixtures("kernel")

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_exposition_parses_and_follows_naming_rules() -> None:
    with Exporter(config_names()) as ex:
        subprocess.run(["/bin/true"], check=True)
        os.getppid()
        text = ex.exposition().decode()
        paths = {k: v for src in ex.collector.sources for k, v in src.read_paths().items()}
    fams = _families(text)
    assert len(fams) >= 10
    for fam in fams.values():
        assert NAME.match(fam.name) and fam.name.startswith("pybpf_")
        assert fam.documentation
        for s in fam.samples:
            assert all(re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", k) for k in s.labels)
            if fam.type == "counter":
                assert s.name == fam.name + "_total"          # the parser strips _total off the family
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds")              # base unit in the name
            les = [float(s.labels["le"]) for s in fam.samples if s.name.endswith("_bucket")]
            counts = [s.value for s in fam.samples if s.name.endswith("_bucket")]
            assert les == sorted(les) and les[-1] == math.inf
            assert counts == sorted(counts)                   # cumulative
    assert fams["pybpf_syscall_duration_seconds"].type == "counter"
    # the fastest read path each map has
    assert paths["pybpf_runqueue_latency_seconds"] == "mmap view"
    assert paths["pybpf_syscalls_total"] == "batch lookup"
    assert paths["pybpf_execsnoop_calls_total"] == "global (mmap view)"


SYSCOUNT_MINE = """
[object]
path = "syscount_lat"
[object.rodata]
filter_pid = {pid}
measure_latency = true
[[counter]]
name = "t_syscalls_total"
map = "data"
value_field = "count"
labels = [{{ name = "syscall", decoder = "syscall" }}]
[[counter]]
name = "t_syscall_duration_seconds_total"
map = "data"
value_field = "total_ns"
scale = 1e-9
labels = [{{ name = "syscall", decoder = "syscall" }}]
"""


def _value(fams: dict[str, object], family: str, **labels: str) -> float:
    for s in fams[family].samples:  # type: ignore[attr-defined]
        if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith("_created"):
            return float(s.value)
    return 0.0


def test_per_cpu_values_are_summed_and_counters_move_by_the_workload(tmp_path: Path) -> None:
    cfg = parse_config(SYSCOUNT_MINE.format(pid=os.getpid()), "mine.toml")
    prog = unique_binary(tmp_path, "/bin/true", "pbe")
    with Exporter([cfg, "execsnoop"]) as ex:
        before = _families(ex.exposition().decode())
        n = 1000
        for _ in range(n):
            os.getppid()
        for _ in range(7):
            subprocess.run([str(prog)], check=True)
        after = _families(ex.exposition().decode())
        seen = _value(after, "pybpf_execsnoop_execs", comm=prog.name, errno="OK")
        assert any(x.labels.get("comm") == prog.name for x in after["pybpf_execsnoop_execs"].samples)  # type: ignore[attr-defined]
        after = _families(ex.exposition().decode())
    assert _value(after, "t_syscalls", syscall="getppid") - _value(before, "t_syscalls", syscall="getppid") == n
    assert _value(after, "t_syscall_duration_seconds", syscall="getppid") > 0
    assert _value(before, "pybpf_execsnoop_execs", comm=prog.name) == 0
    assert seen == 0   # a new label set reads 0 the first time, so increase() counts its first burst
    assert _value(after, "pybpf_execsnoop_execs", comm=prog.name, errno="OK") == 7


@pytest.mark.parametrize("text, line, phrase", [
    ('[object]\npath = "execsnoop"\n[[counter]]\nname = "a_total"\nmap = "nope"\n', 5, "no map 'nope'"),
    ('[object]\npath = "execsnoop"\n[[counter]]\nname = "a_total"\nglobal = "nope"\n', 5, "no global variable"),
    ('[object]\npath = "execsnoop"\n[[counter]]\nname = "a_total"\nmap = "exec_counts"\n'
     'labels = [{ name = "c", field = "cmd" }]\n', 6, "has no field 'cmd' (fields: comm, errno_)"),
    ('[object]\npath = "execsnoop"\n[[counter]]\nname = "a_total"\nmap = "events"\n', 5, "is a ringbuf"),
    ('[object]\npath = "execsnoop"\nprograms = ["on_execve_enter", "nope"]\n[[counter]]\nname = "a_total"\n'
     'global = "execs_total"\n', 3, "no program 'nope'"),
    ('[object]\npath = "execsnoop"\n[object.rodata]\nmax_argz = 3\n[[counter]]\nname = "a_total"\n'
     'global = "execs_total"\n', 4, "no .rodata variable 'max_argz'"),
    ('[object]\npath = "nope"\n[[counter]]\nname = "a_total"\nglobal = "x"\n', 2, "no bundled BPF object"),
])
def test_errors_that_need_the_object_name_file_and_line(tmp_path: Path, text: str, line: int,
                                                        phrase: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Exporter([str(path)])
    assert str(info.value).startswith(f"{path}:{line}: "), str(info.value)
    assert phrase in str(info.value)
    # the CLI says the same in one line, exit 1
    cli = subprocess.run(pybpf_cmd("export", str(path), "--once"), capture_output=True, text=True)
    assert cli.returncode == 1 and f"{path}:{line}:" in cli.stderr and "Traceback" not in cli.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_export(*configs: str) -> tuple[Proc, int]:
    proc = Proc(pybpf_cmd("export", *configs, "--addr", "127.0.0.1", "--port", "0"))
    proc.wait_for(lambda: any("serving http://" in l for l in proc.err), what="the exporter to listen")
    port = int(re.search(r"127\.0\.0\.1:(\d+)/metrics", "\n".join(proc.err)).group(1))  # type: ignore[union-attr]
    return proc, port


def test_sigterm_stops_the_exporter_cleanly() -> None:
    proc, port = _start_export("runqlat")
    body = _HTTP.open(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert "pybpf_runqueue_latency_seconds_bucket" in body
    assert proc.stop(signal.SIGTERM) == 0
    assert proc.err[-1] == "stopped"
    with pytest.raises(OSError):
        _HTTP.open(f"http://127.0.0.1:{port}/metrics", timeout=2)


def _ready(base: str) -> bool:
    try:
        return _HTTP.open(f"{base}/-/ready", timeout=2).status == 200
    except OSError:
        return False


def _query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    doc = json.loads(_HTTP.open(url, timeout=10).read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def _wait_query(base: str, expr: str, pred, timeout: float = 30.0) -> list[dict]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    result: list[dict] = []
    while time.monotonic() < deadline:
        result = _query(base, expr)
        if pred(result):
            return result
        time.sleep(0.3)
    pytest.fail(f"Prometheus query {expr!r} never matched; last result {result}")


def test_a_real_prometheus_server_scrapes_the_exporter(tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        needs_kernel("needs Debian's prometheus package (make setup installs it)")
    prog = unique_binary(tmp_path, "/bin/true", "pbp")
    exporter, port = _start_export("execsnoop", "runqlat")
    data = Path(tempfile.mkdtemp(prefix="pybpf-prom-"))
    server = None
    try:
        web = _free_port()
        (data / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 500ms\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: pybpf\n    scrape_interval: 500ms\n    scrape_timeout: 400ms\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
        server = Proc([prometheus, f"--config.file={data / 'prometheus.yml'}", f"--storage.tsdb.path={data / 'tsdb'}",
                       f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"])
        base = f"http://127.0.0.1:{web}"
        server.wait_for(lambda: _ready(base), timeout=60, what="Prometheus /-/ready")
        _wait_query(base, 'up{job="pybpf"}', lambda r: r and r[0]["value"][1] == "1", timeout=60)
        n = 25
        for i in range(n):
            subprocess.run([str(prog), str(i)], check=True)
        series = f'pybpf_execsnoop_execs_total{{comm="{prog.name}",errno="OK"}}'
        got = _wait_query(base, series, lambda r: r and float(r[0]["value"][1]) >= n)
        assert float(got[0]["value"][1]) == n                 # N execs raise the counter by exactly N
        # a new label set starts at 0: increase() over its first burst counts the burst
        burst = _query(base, f"increase({series}[1m])")
        assert burst and float(burst[0]["value"][1]) >= n, burst
        # the histogram: buckets with le bounds Prometheus understands, count = +Inf bucket
        inf = _wait_query(base, 'pybpf_runqueue_latency_seconds_bucket{le="+Inf"}',
                          lambda r: r and float(r[0]["value"][1]) > 0)
        count = _query(base, "pybpf_runqueue_latency_seconds_count")
        assert float(count[0]["value"][1]) > 0 and float(inf[0]["value"][1]) > 0
        q = _query(base, "histogram_quantile(0.5, sum by (le) (pybpf_runqueue_latency_seconds_bucket))")
        median = float(q[0]["value"][1])
        assert 0 < median < 1.0                              # seconds: a run queue wait well under 1 s
        les = {r["metric"]["le"] for r in _query(base, "pybpf_runqueue_latency_seconds_bucket")}
        assert {"1e-06", "3e-06", "7e-06", "+Inf"} <= les
    finally:
        if server is not None:
            server.stop(signal.SIGTERM)
        exporter.stop(signal.SIGTERM)
        shutil.rmtree(data, ignore_errors=True)
    assert not data.exists()


def test_the_readme_config_example_loads_and_serves() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("### Config format", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = parse_config(block, "README.md")
    assert {s.kind for s in cfg.metrics} == {"counter", "gauge", "histogram"}
    with Exporter([cfg]) as ex:
        time.sleep(0.2)
        fams = _families(ex.exposition().decode())
    assert fams["pybpf_runqueue_latency_seconds"].type == "histogram"
    assert _value(fams, "pybpf_runqueue_wait_seconds") > 0
    slots = [s for s in fams["pybpf_runqueue_latency_slot_events"].samples]
    assert slots and all(s.value > 0 and s.labels["slot"].isdigit() for s in slots)
    total = sum(s.value for s in slots)
    count = _value(fams, "pybpf_runqueue_latency_seconds", le="+Inf")
    assert count == total   # one read of `hist` per scrape serves both metrics: the same snapshot
