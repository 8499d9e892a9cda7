"""``startup`` rows of ``pybpf bench``: whole processes, pybpf next to C, interleaved.

* ``first_event`` (execsnoop, opensnoop): from starting ``pybpf tool NAME`` (python) or
  Debian's libbpf-tools twin (c: ``NAME`` on Debian 12, ``NAME-libbpf`` on 13, run through
  ``stdbuf -oL`` so its lines are not held in a pipe buffer) until it prints the first event
  of a trigger this process makes every 20 ms (``/bin/true`` executed; a file of a unique
  name opened). The tool's peak RSS (``VmHWM``, read while it runs, after that event) is
  its ``peak_rss`` row, in KiB.
* ``prog_show``: ``pybpf prog show`` against ``bpftool prog show``, start to exit.

Samples are nanoseconds (KiB for ``peak_rss``), one per run; runs alternate python and C.
A tool whose C twin is not installed gets python rows only (no ratio).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pybpf.bench.rows import Result
from pybpf.distro import libbpf_tool

__all__ = ["TOOLS", "startup_cases"]

TOOLS = ("execsnoop", "opensnoop")
TRIGGER_PERIOD = 0.02   # seconds between two triggers
FIRST_EVENT_TIMEOUT = 60.0


def _pybpf_command() -> list[str]:
    script = Path(sys.executable).parent / "pybpf"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pybpf.cli"]


class _Trigger:
    """Makes the tool's event every ``TRIGGER_PERIOD`` in a thread until stopped."""

    def __init__(self, tool: str, workdir: str) -> None:
        self.tool = tool
        self.marker = f"pybpf-bench-{uuid.uuid4().hex[:12]}"
        self.path = os.path.join(workdir, self.marker)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def wanted(self, line: str) -> bool:
        """Whether the tool's output line is one of our events."""
        return (" true " in f" {line} " or line.rstrip().endswith("true")) if self.tool == "execsnoop" \
            else self.marker in line

    def _run(self) -> None:
        while not self._stop.wait(TRIGGER_PERIOD):
            if self.tool == "execsnoop":
                subprocess.run(["/bin/true"], check=False)
            else:
                with open(self.path, "w"):
                    pass

    def __enter__(self) -> _Trigger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _first_event(argv: list[str], tool: str, workdir: str) -> tuple[float, int]:
    """(ns from start to the first event line, peak RSS KiB) of one run of ``argv``."""
    with _Trigger(tool, workdir) as trigger:
        start = time.perf_counter_ns()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        assert proc.stdout is not None
        found, buffered = 0, b""
        deadline = time.monotonic() + FIRST_EVENT_TIMEOUT
        try:
            while not found and time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 0.5)
                if not ready:
                    if proc.poll() is not None:
                        break
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                if any(trigger.wanted(x.decode(errors="replace")) for x in lines):
                    found = time.perf_counter_ns() - start
            peak = _vm_hwm_kib(proc.pid) if found else 0
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stdout.close()
    if not found:
        raise RuntimeError(f"{' '.join(argv)} printed no event of its trigger within {FIRST_EVENT_TIMEOUT:.0f} s")
    return float(found), peak


def _whole_run(argv: list[str]) -> float:
    start = time.perf_counter_ns()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode})")
    return float(time.perf_counter_ns() - start)


def _interleave(results: list[Result], runs: int, impls: list[tuple[Result, Callable[[], None]]],
                extra: tuple[Result, ...] = ()) -> None:
    rows = [r for r, _ in impls] + list(extra)
    for i in range(runs + 1):  # the first round warms the page cache: not kept
        for _, run in (impls if i % 2 == 0 else impls[::-1]):
            run()
        if i == 0:
            for row in rows:
                row.samples.clear()
    for row in rows:
        row.checksum = 1 if len(row.samples) == runs and min(row.samples) > 0 else 0
    results.extend(rows)


def startup_cases(runner) -> None:  # type: ignore[no-untyped-def]
    """The ``startup`` rows (``runner.config.startup_runs`` runs each) into ``runner.results``."""
    runs = runner.config.startup_runs
    pybpf = _pybpf_command()
    with tempfile.TemporaryDirectory(prefix="pybpf-bench-") as workdir:
        for tool in TOOLS:
            c_tool = libbpf_tool(tool)
            stdbuf = shutil.which("stdbuf")
            commands = {"python": [*pybpf, "tool", tool]}
            if c_tool is not None and stdbuf is not None:
                commands["c"] = [stdbuf, "-oL", c_tool]
            impls: list[tuple[Result, Callable[[], None]]] = []
            peaks: list[Result] = []
            for impl, argv in commands.items():
                first = Result("startup", impl, tool, 1, 0, elems_per_pass=1, expected=1)
                rss = Result("peak_rss", impl, tool, 1, 0, elems_per_pass=1, expected=1)

                def run(argv: list[str] = argv, first: Result = first, rss: Result = rss) -> None:
                    ns, kib = _first_event(argv, tool, workdir)
                    first.samples.append(ns)
                    rss.samples.append(float(kib))

                impls.append((first, run))
                peaks.append(rss)
            _interleave(runner.results, runs, impls, tuple(peaks))
    shows = {"python": [*pybpf, "prog", "show"]}
    bpftool = shutil.which("bpftool")
    if bpftool is not None:
        shows["c"] = [bpftool, "prog", "show"]
    impls = []
    for impl, argv in shows.items():
        row = Result("startup", impl, "prog_show", 1, 0, elems_per_pass=1, expected=1)

        def whole(argv: list[str] = argv, row: Result = row) -> None:
            row.samples.append(_whole_run(argv))

        impls.append((row, whole))
    _interleave(runner.results, runs, impls)
