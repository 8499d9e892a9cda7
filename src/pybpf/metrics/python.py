"""The exporter's Python source: the top functions of each CPython process, sampled from BPF.

Owns what a ``[python]`` config (``pybpf export pyprofile``) serves: the CPython processes
found on the machine (every ``rescan`` seconds; those whose comm matches ``comm``, at most
``max_processes``) are sampled by the BPF frame walker of ``pyprofile``
(:class:`pybpf.tools._pystacks.PySampler`); each scrape drains the counted stacks (so the
map never fills) and adds up the samples of each process's innermost Python function.

Series are bounded: per process the first ``top`` functions seen get their own series and
the rest add up in ``function="other"`` (a function never moves between the two, so every
counter only grows); a process's series go when it exits. At most
``max_processes * (top + 1)`` function series.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pybpf.errors import BpfError
from pybpf.metrics.config import Config, PythonSpec
from pybpf.pyframes import UnreadablePythonError
from pybpf.tools._pystacks import NO_PYTHON, TRUNCATED, UNREADABLE, PySampler, process_alive

__all__ = ["PythonMetrics", "python_candidates"]

OTHER = "other"
_PYTHON_EXE = re.compile(r"^python3(\.\d+)?$")


def python_candidates() -> list[int]:
    """Processes that look like CPython: an executable named ``python3[.X]`` or a
    ``libpython3.X`` mapped (checked for real by :class:`~pybpf.pyframes.PythonProcess`)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            exe = os.path.basename(os.readlink(f"/proc/{name}/exe"))
        except OSError:
            continue
        if _PYTHON_EXE.match(exe.removesuffix(" (deleted)")):
            out.append(int(name))
            continue
        try:
            with open(f"/proc/{name}/maps", "rb") as f:
                if b"/libpython3." in f.read():
                    out.append(int(name))
        except OSError:
            continue
    return sorted(out)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().strip().decode("utf-8", "replace")
    except OSError:
        return ""


class PythonMetrics:
    """One ``[python]`` config's source: sampler, process discovery and the counters."""

    def __init__(self, cfg: Config) -> None:
        assert cfg.python is not None
        self.config = cfg
        self.spec: PythonSpec = cfg.python
        self._comm_re = re.compile(self.spec.comm) if self.spec.comm else None
        self._lock = threading.Lock()
        self._functions: dict[int, dict[str, int]] = {}
        self._other: dict[int, int] = {}
        self._samples: dict[int, int] = {}
        self._comms: dict[int, str] = {}
        self._refused: dict[int, str] = {}
        self._seen: set[tuple[str, ...]] = set()
        self._collections = 0
        self._last_scan = 0.0
        self.sampler = PySampler([], frequency=self.spec.frequency)
        try:
            self.scan()
        except BaseException:
            self.sampler.close()
            raise

    def close(self) -> None:
        """Stop sampling and close everything (idempotent)."""
        self.sampler.close()

    # ---- processes ---------------------------------------------------------------------
    def scan(self) -> None:
        """Forget processes that exited, start sampling new CPython processes."""
        self._last_scan = time.monotonic()
        for pid in list(self.sampler.procs):
            if not process_alive(pid):
                self.sampler.discard(pid)
                for table in (self._functions, self._other, self._samples, self._comms):
                    table.pop(pid, None)
        self._refused = {pid: why for pid, why in self._refused.items() if process_alive(pid)}
        me = os.getpid()
        for pid in python_candidates():
            if pid == me or pid in self.sampler.procs or pid in self._refused:
                continue
            if len(self.sampler.procs) >= self.spec.max_processes:
                break
            comm = _comm(pid)
            if self._comm_re is not None and not self._comm_re.search(comm):
                continue
            try:
                self.sampler.add(pid)
            except (UnreadablePythonError, BpfError, OSError) as exc:
                self._refused[pid] = str(exc)
                continue
            self._comms[pid] = comm

    def refused(self) -> dict[int, str]:
        """Processes that looked like CPython and were refused, with the reason."""
        return dict(self._refused)

    # ---- collection --------------------------------------------------------------------
    def _drain(self) -> None:
        for stack in self.sampler.stacks(drain=True):
            if stack.pid not in self.sampler.procs:
                continue
            names = [n for n in stack.frames if n not in (TRUNCATED, UNREADABLE)]
            leaf = names[-1] if names else NO_PYTHON
            pid = stack.pid
            self._samples[pid] = self._samples.get(pid, 0) + stack.count
            functions = self._functions.setdefault(pid, {})
            if leaf in functions:
                functions[leaf] += stack.count
            elif len(functions) < self.spec.top:
                functions[leaf] = stack.count
            else:
                self._other[pid] = self._other.get(pid, 0) + stack.count

    def _value(self, labels: tuple[str, ...], value: float, first: bool) -> float:
        if labels not in self._seen:
            self._seen.add(labels)
            if not first:
                return 0.0   # first sight after the first scrape: report 0 so increase() sees it all
        return value

    def collect(self) -> Iterator[Metric]:
        """The metric families, read now."""
        with self._lock:
            if time.monotonic() - self._last_scan >= self.spec.rescan:
                self.scan()
            self._drain()
            first, self._collections = self._collections == 0, self._collections + 1
            per_function = CounterMetricFamily(
                "pybpf_python_function_samples",
                "CPU samples with this Python function innermost (own time = samples / frequency); "
                "past the first `top` functions of a process, function=\"other\"",
                labels=["pid", "comm", "function"])
            per_process = CounterMetricFamily("pybpf_python_samples", "CPU samples of the process's Python threads",
                                              labels=["pid", "comm"])
            for pid in sorted(self._samples):
                comm = self._comms.get(pid, "")
                for function, count in self._functions.get(pid, {}).items():
                    labels = (str(pid), comm, function)
                    per_function.add_metric(list(labels), self._value(labels, count, first))
                if pid in self._other:
                    labels = (str(pid), comm, OTHER)
                    per_function.add_metric(list(labels), self._value(labels, self._other[pid], first))
                process = (str(pid), comm)
                per_process.add_metric(list(process), self._value(process, self._samples[pid], first))
            counters = self.sampler.counters()
        yield per_function
        yield per_process
        processes = GaugeMetricFamily("pybpf_python_processes", "CPython processes sampled now")
        processes.add_metric([], float(len(self.sampler.procs)))
        yield processes
        refused = GaugeMetricFamily("pybpf_python_refused_processes",
                                    "processes that looked like CPython but cannot be read (see the log)")
        refused.add_metric([], float(len(self._refused)))
        yield refused
        dropped = CounterMetricFamily("pybpf_python_dropped_samples", "samples lost to a full counts map")
        dropped.add_metric([], float(counters["dropped"]))
        yield dropped
        frequency = GaugeMetricFamily("pybpf_python_sampling_hertz", "samples per second per CPU")
        frequency.add_metric([], float(self.spec.frequency))
        yield frequency

    def read_paths(self) -> dict[str, str]:
        """How the metrics are read (for ``pybpf export --explain``-style reports)."""
        return {"pybpf_python_function_samples_total": "batch lookup and delete, every scrape"}

    def describe(self) -> dict[str, Any]:
        """What is sampled and what was refused."""
        return {"sampled": {pid: self._comms.get(pid, "") for pid in self.sampler.procs}, "refused": self.refused()}
