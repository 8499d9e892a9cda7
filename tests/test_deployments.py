"""Deployments an operator can see and manage, exported from their pins, run by an agent.

- `pybpf deployment list|show|remove`; dispatchers carry the tool's name in `bpftool prog list`.
- `pybpf export CONFIG --deployment DIR` scraped by a real Prometheus (Debian's `prometheus`, on
  127.0.0.1, one server for this module) while `pybpf upgrade DIR` runs from another process:
  PromQL `increase()` over the upgrade equals the calls made, and no counter resets.
- `pybpf agent`: two tools, one upgraded by replacing its object file, the agent restarted once:
  the counters Prometheus sees never reset and end equal to the calls.
"""

from __future__ import annotations

import json
import os
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

import pybpf
from pybpf.kernel.info import open_prog_by_id, prog_info
from tests.conftest import ROOT, needs_kernel
from tests.procs import Proc, env, pybpf_cmd
from tests.test_upgrade_exact import Caller

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

METRICS = """
[object]
path = "upgrade_exact_v1"

[[counter]]
name = "pybpf_test_calls_total"
help = "getppid calls of the workload (stats map, migrated on each upgrade)"
map = "stats"
value_field = "calls"
labels = [{ name = "tgid" }]

[[counter]]
name = "pybpf_test_bss_calls_total"
help = "getppid calls of the workload (a .bss counter)"
global = "bss_calls"
"""


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pybpf_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env(), cwd=ROOT,
                          check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- list / show / remove --------------------------------------------------------------------------

def test_list_show_remove_and_named_dispatchers(bundled, kernel, bpffs):
    directory = os.path.join(bpffs, "tools", "getppid")
    loaded = _cli("load", bundled("upgrade_count_a"), "--set", f"want_tgid={os.getpid()}", "--pin", directory,
                  "--duration", "0")
    assert loaded.returncode == 0, loaded.stderr
    with pybpf.enable_stats():  # run counts (the kernel counts while any process holds stats on)
        for _ in range(50):
            os.getppid()
        shown = json.loads(_cli("deployment", "show", directory, "--json").stdout)
    # the program runs by the dispatcher's tail call, which the kernel's stats do not count: its runs are
    # the dispatcher's (every getppid() on the machine: the tool filters the tgid itself)
    program = shown["programs"][0]
    assert program["run_cnt"] >= 50 and program["run_time_ns"] > 0, program
    assert program["counted_by"].startswith("dispatcher upgrade_count_ (id "), program
    assert shown["attachments"][0]["hook_program"]["run_cnt"] == program["run_cnt"]
    listed = json.loads(_cli("deployment", "list", bpffs, "--json").stdout)
    assert [d["directory"] for d in listed] == [directory]
    assert listed[0]["object"] == "upgrade_count_a" and listed[0]["version"] == 1 and listed[0]["state"] == "running"
    assert listed[0]["hooks"] == ["tracepoint syscalls:sys_enter_getppid (dispatch)"]
    assert abs(listed[0]["pinned_at"] - time.time()) < 300
    counts = next(m for m in shown["maps"] if m["name"] == "counts")
    assert counts["type"] == "array" and counts["entries"] == 1  # slot 0 holds the 50 calls
    program = shown["programs"][0]
    assert program["name"] == "count_getppid" and program["type"] == "tracepoint"
    assert shown["attachments"][0]["program_id"] == program["id"]
    # the dispatcher on the hook carries the tool's name (what bpftool prog list shows)
    from pybpf.link.base import BpfLink

    with BpfLink.from_pin(os.path.join(directory, "count_getppid_link")) as link:
        dispatcher_id = link.info().prog_id
        fd = open_prog_by_id(dispatcher_id)
    try:
        assert prog_info(fd).name == "upgrade_count_"  # the tool's name, in the kernel's 15 bytes (14 kept)
        assert shown["attachments"][0]["hook_program"]["id"] == dispatcher_id
    finally:
        os.close(fd)
    # bpftool's view of this very program (other suites' deployments carry the same name)
    bpftool = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(dispatcher_id)], capture_output=True,
                             text=True, check=True)
    shown_by_bpftool = json.loads(bpftool.stdout)
    assert shown_by_bpftool["name"] == "upgrade_count_" and shown_by_bpftool["type"] == "tracepoint"
    with pybpf.Map.from_pin(os.path.join(directory, "counts")) as counts_map:
        view = counts_map.view()
        removed = _cli("deployment", "remove", directory, "--json")
        assert removed.returncode == 0, removed.stderr
        before = int(view[0])
        for _ in range(20):
            os.getppid()
        assert int(view[0]) == before  # detached: nothing counts any more
    assert not os.path.exists(directory)
    assert json.loads(_cli("deployment", "list", bpffs, "--json").stdout) == []


def test_bad_directories_get_one_line(bpffs, tmp_path):
    """A directory that is missing, not on a bpffs, or holds no manifest: one line naming it, exit 1."""
    missing = os.path.join(bpffs, "no-such-tool")
    not_bpffs = str(tmp_path)
    empty = os.path.join(bpffs, "empty")
    os.mkdir(empty, 0o700)
    for verb in ("show", "remove"):
        for directory, says in ((missing, "no such deployment directory"), (not_bpffs, "is not on a bpffs"),
                                (empty, "manifest")):
            done = _cli("deployment", verb, directory)
            assert done.returncode == 1, (verb, directory, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr and says in done.stderr, (verb, directory, done.stderr)
            assert directory in done.stderr.replace("\n", ""), done.stderr
    assert os.path.isdir(empty)  # remove refused it and touched nothing


# ---- a real Prometheus ---------------------------------------------------------------------------------

class Prometheus:
    """Debian's prometheus on 127.0.0.1, scraping the targets written to a file_sd file every 200 ms."""

    def __init__(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            needs_kernel("needs Debian's prometheus package (make setup installs it)")
        self.data = Path(tempfile.mkdtemp(prefix="pybpf-prom-"))
        self.targets = self.data / "targets.json"
        self.set_targets([])
        (self.data / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 200ms\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: pybpf\n    scrape_interval: 200ms\n    scrape_timeout: 180ms\n"
            f"    file_sd_configs:\n      - files: ['{self.targets}']\n        refresh_interval: 1s\n")
        web = _free_port()
        self.base = f"http://127.0.0.1:{web}"
        self.proc = Proc([str(binary), f"--config.file={self.data / 'prometheus.yml'}",
                          f"--storage.tsdb.path={self.data / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}",
                          "--log.level=warn"])
        self.proc.wait_for(self._ready, timeout=60, what="Prometheus /-/ready")

    def _ready(self) -> bool:
        try:
            return _HTTP.open(f"{self.base}/-/ready", timeout=2).status == 200
        except OSError:
            return False

    def set_targets(self, ports: list[int]) -> None:
        tmp = self.targets.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{p}" for p in ports]}]))
        tmp.rename(self.targets)

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        doc = json.loads(_HTTP.open(f"{self.base}/api/v1/query?" + urllib.parse.urlencode(params), timeout=10).read())
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def samples(self, series: str, seconds: int = 600) -> list[tuple[float, float]]:
        """The raw samples of one series: (timestamp, value)."""
        result = self.query(f"{series}[{seconds}s]")
        assert len(result) == 1, result
        return [(float(t), float(v)) for t, v in result[0]["values"]]

    def wait(self, pred, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.2)
        pytest.fail(f"Prometheus: timed out waiting for {what}")

    def close(self) -> None:
        self.proc.stop(signal.SIGTERM)
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(scope="module")
def prometheus():  # type: ignore[no-untyped-def]
    server = Prometheus()
    try:
        yield server
    finally:
        server.close()


def _flat_then(prom: Prometheus, series: str, value: float) -> float:
    """Wait until ``series`` has been scraped at ``value`` twice; returns the time of the last such sample."""
    def settled() -> bool:
        try:
            s = prom.samples(series, 60)
        except AssertionError:
            return False
        return len(s) >= 2 and s[-1][1] == value and s[-2][1] == value
    prom.wait(settled, f"{series} at {value}")
    return prom.samples(series, 60)[-1][0]


def _exact_increase(prom: Prometheus, series: str, start: float, end: float) -> float:
    """increase() over [start, end], both being sample timestamps: no extrapolation, the exact difference."""
    ms = round((end - start) * 1000)
    result = prom.query(f"increase({series}[{ms}ms] @ {end:.3f})")
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def _scraped_after(prom: Prometheus, series: str, since: float, what: str, scrapes: int = 3) -> None:
    """Wait until ``series`` has ``scrapes`` samples after ``since`` (a wall-clock time), rising:
    the exporter reads the maps of the version running now while the workload counts."""
    def seen() -> bool:
        after = [v for t, v in prom.samples(series, 60) if t > since]
        return len(after) >= scrapes and after[-1] > after[0]
    prom.wait(seen, what)


def _resets(prom: Prometheus, series: str, end: float) -> int:
    result = prom.query(f"resets({series}[10m] @ {end:.3f})")
    return int(float(result[0]["value"][1])) if result else 0


def test_export_deployment_follows_an_upgrade_from_another_process(bundled, kernel, bpffs, prometheus, tmp_path):
    directory = os.path.join(bpffs, "exact")
    config = tmp_path / "exact.toml"
    config.write_text(METRICS)
    caller = Caller()
    exporter = None
    try:
        obj = pybpf.open(bundled("upgrade_exact_v1"))
        obj.rodata["want_tgid"] = caller.pid
        with pybpf.deploy(obj) as deployment:
            os.makedirs(directory, mode=0o700)
            deployment.pin(directory)
        port = _free_port()
        exporter = Proc(pybpf_cmd("export", str(config), "--deployment", directory, "--port", str(port)))
        exporter.wait_for(lambda: any("serving" in line for line in exporter.err), timeout=60, what="serving")
        prometheus.set_targets([port])
        stats = f'pybpf_test_calls_total{{tgid="{caller.pid}"}}'
        bss = "pybpf_test_bss_calls_total"
        start = _flat_then(prometheus, bss, 0.0)  # scraped before the first call
        caller.go()
        prometheus.wait(lambda: bool(prometheus.query(f"{bss} > 1000")), "calls counted")
        upgraded = _cli("upgrade", directory, bundled("upgrade_exact_v2"), "--last-value", "stats:last_ns")
        assert upgraded.returncode == 0, upgraded.stderr
        _scraped_after(prometheus, bss, time.time(), "scrapes of v2's maps while the calls go on")
        calls = caller.stop()
        end = _flat_then(prometheus, bss, float(calls))
        assert _flat_then(prometheus, stats, float(calls)) >= end - 1
        assert _exact_increase(prometheus, bss, start, end) == calls
        assert _resets(prometheus, bss, end) == 0 and _resets(prometheus, stats, end) == 0
        # the exporter restarted: it reads the same pinned maps, nothing resets
        exporter.stop(signal.SIGTERM)
        exporter = Proc(pybpf_cmd("export", str(config), "--deployment", directory, "--port", str(port)))
        exporter.wait_for(lambda: any("serving" in line for line in exporter.err), timeout=60, what="serving")
        restarted = time.time()
        prometheus.wait(lambda: prometheus.samples(bss, 60)[-1][0] > restarted + 0.3, "scrapes of the new exporter")
        later, value = prometheus.samples(bss, 60)[-1]
        assert value == calls and _resets(prometheus, bss, later) == 0
        print(f"\nexport --deployment: increase() over an upgrade from another process = {calls} calls, 0 resets")
    finally:
        prometheus.set_targets([])
        if exporter is not None:
            exporter.stop(signal.SIGTERM)
        caller.kill()


def test_agent_two_tools_an_upgrade_and_a_restart(bundled, kernel, bpffs, prometheus, tmp_path):
    caller = Caller()
    port = _free_port()
    tool_a = tmp_path / "exact.bpf.o"
    shutil.copy(bundled("upgrade_exact_v1"), tool_a)
    (tmp_path / "exact.toml").write_text(METRICS)
    (tmp_path / "count.toml").write_text(
        '[object]\npath = "upgrade_count_a"\n\n[[counter]]\nname = "pybpf_test_count_total"\n'
        'help = "getppid calls counted by the second tool"\nglobal = "seen_by_this_version"\n')
    agent_dir = os.path.join(bpffs, "agent")
    (tmp_path / "agent.toml").write_text(
        f'[agent]\ndirectory = "{agent_dir}"\nport = {port}\npoll = 0.2\n\n'
        f'[[tool]]\nname = "exact"\nobject = "exact.bpf.o"\nmetrics = "exact.toml"\n'
        f'rodata = {{ want_tgid = {caller.pid} }}\nlast_value = ["stats:last_ns"]\n\n'
        f'[[tool]]\nname = "count"\nobject = "{bundled("upgrade_count_a")}"\nmetrics = "count.toml"\n'
        f'rodata = {{ want_tgid = {caller.pid} }}\n')
    agent = None
    try:
        agent = Proc(pybpf_cmd("agent", str(tmp_path / "agent.toml")))
        agent.wait_for(lambda: any("serving" in line for line in agent.err), timeout=90, what="agent serving")
        prometheus.set_targets([port])
        exact, count = "pybpf_test_bss_calls_total", "pybpf_test_count_total"
        start = _flat_then(prometheus, exact, 0.0)
        caller.go()
        prometheus.wait(lambda: bool(prometheus.query(f"{exact} > 1000")), "calls counted")
        shutil.copy(bundled("upgrade_exact_v2"), tool_a.with_suffix(".tmp"))
        os.replace(tool_a.with_suffix(".tmp"), tool_a)  # a new version of tool "exact"
        agent.wait_for(lambda: any("exact: upgraded" in line for line in agent.err), timeout=60, what="upgrade")
        assert agent.stop(signal.SIGTERM) == 0
        assert agent.err[-1] == "stopped (the deployments keep running)"
        time.sleep(0.5)  # the tools count with no agent at all
        agent = Proc(pybpf_cmd("agent", str(tmp_path / "agent.toml")))
        agent.wait_for(lambda: any("serving" in line for line in agent.err), timeout=90, what="agent serving")
        assert any("exact: adopted" in line for line in agent.err) and any("count: adopted" in line for line in agent.err)
        _scraped_after(prometheus, exact, time.time(), "scrapes of the restarted agent while the calls go on")
        calls = caller.stop()
        end = _flat_then(prometheus, exact, float(calls))
        _flat_then(prometheus, count, float(calls))
        assert _exact_increase(prometheus, exact, start, end) == calls
        assert _resets(prometheus, exact, end) == 0 and _resets(prometheus, count, end) == 0
        assert agent.stop(signal.SIGTERM) == 0
        removed = _cli("agent", str(tmp_path / "agent.toml"), "--remove")
        assert removed.returncode == 0, removed.stderr
        assert not os.path.exists(os.path.join(agent_dir, "exact")) and not os.path.exists(os.path.join(agent_dir, "count"))
        print(f"\nagent: 2 tools, 1 upgrade, 1 restart: {calls} calls, 0 resets")
    finally:
        prometheus.set_targets([])
        if agent is not None:
            agent.stop(signal.SIGTERM)
        caller.kill()
