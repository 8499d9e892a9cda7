"""pybpf.perf: perf events opened per CPU or per process, a program attached to all of them.

Real events on this kernel: a software CPU clock per online CPU and per thread of a
process the test starts, a counting task clock, and the refusals (hardware events on a
machine without a PMU, frequencies above the kernel's limit, a process that is gone).
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pybpf
from pybpf import perf
from pybpf.perf.attr import ATTR_SIZE, EventAttr
from tests.stackprogs import finish, hotcold_path, start


@pytest.fixture
def hotcold():
    return hotcold_path()


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# ---- the attr, pure --------------------------------------------------------------------------

def test_attr_layout():
    raw = EventAttr(perf.Software.CPU_CLOCK, frequency=99, inherit=True, exclude_kernel=True).pack()
    assert len(raw) == ATTR_SIZE
    type_, size, config, freq, sample_type, read_format, flags = struct.unpack_from("<IIQQQQQ", raw)
    assert (type_, size, config, freq, sample_type, read_format) == (1, ATTR_SIZE, 0, 99, 0, 0)
    assert flags == (1 << 10) | (1 << 1) | (1 << 5)      # freq, inherit, exclude_kernel
    raw = EventAttr(perf.Hardware.INSTRUCTIONS, period=1000).pack()
    assert struct.unpack_from("<IIQQ", raw) == (0, ATTR_SIZE, 1, 1000)
    assert struct.unpack_from("<Q", raw, 40)[0] == 0      # a period: no freq bit


def test_event_names():
    assert perf.event_by_name("cpu-clock") is perf.Software.CPU_CLOCK
    assert perf.event_by_name("cycles") is perf.Hardware.CPU_CYCLES
    assert perf.event_by_name("cs") is perf.Software.CONTEXT_SWITCHES
    assert perf.event_by_name("PAGE_FAULTS") is perf.Software.PAGE_FAULTS
    for member in (*perf.Software, *perf.Hardware):
        assert perf.event_by_name(member.perf_name) is member
    with pytest.raises(pybpf.InvalidArgumentError, match="no perf event named 'bogus'.*cpu-clock"):
        perf.event_by_name("bogus")


@given(freq=st.one_of(st.integers(-5, 0), st.integers(2**64, 2**65), st.booleans(), st.floats()))
@settings(max_examples=30, deadline=None)
def test_bad_sampling_values(freq):
    with pytest.raises(pybpf.InvalidArgumentError, match="positive integer"):
        EventAttr(perf.Software.CPU_CLOCK, frequency=freq)


def test_attr_refusals():
    with pytest.raises(pybpf.InvalidArgumentError, match="not both"):
        EventAttr(perf.Software.CPU_CLOCK, frequency=99, period=100)
    with pytest.raises(pybpf.InvalidArgumentError, match="leaves nothing"):
        EventAttr(perf.Software.CPU_CLOCK, frequency=99, exclude_user=True, exclude_kernel=True)
    with pytest.raises(pybpf.InvalidArgumentError, match="Hardware or Software"):
        EventAttr(0, frequency=99)  # type: ignore[arg-type]


# ---- real events -----------------------------------------------------------------------------

def _burn(seconds: float = 0.3) -> None:
    import time
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        sum(range(1000))


def test_per_cpu_clock_runs_program(bundled, kernel):
    before = _fds()
    with pybpf.open(bundled("probes")) as obj:
        obj.load()
        with perf.open_events("cpu-clock", frequency=499) as events:
            assert [cpu for _, cpu in events.targets] == perf.online_cpus()
            assert all(pid == -1 for pid, _ in events.targets)
            assert len(events.fds) == len(perf.online_cpus())
            link = events.attach(obj.programs["on_perf_event"])
            assert "on_perf_event" in link.description and len(link.links) == len(events)
            _burn()
            assert int(obj.bss["perf_hits"]) > 20      # 0.3 s of this thread alone at 499 Hz ~ 150
            events.disable()
            frozen = int(obj.bss["perf_hits"])
            _burn(0.1)
            # per-CPU clock events of other CPUs may fire once more while disabling
            assert int(obj.bss["perf_hits"]) - frozen <= len(events)
        assert link.closed and events.closed
        with pytest.raises(pybpf.ClosedError):
            events.attach(obj.programs["on_perf_event"])
    assert _fds() <= before   # (the GC may close fds of earlier tests meanwhile)


def test_per_process_events_follow_its_threads(bundled, kernel, hotcold):
    with pybpf.open(bundled("profile")) as obj:
        obj.rodata["kernel_stacks_only"] = True
        obj.load()
        p = start(hotcold, 1.5)
        try:
            with perf.open_events(perf.Software.CPU_CLOCK, frequency=499, pid=p.pid) as events:
                assert events.attr.inherit and [t for t, _ in events.targets] == [p.pid]
                with events.attach(obj.programs["do_perf_event"]):
                    finish(p)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        keys, values = obj.maps["counts"].lookup_batch()
        pids = set(keys["pid"].tolist())
        assert pids == {p.pid}, f"samples of other processes: {pids}"
        assert int(values.sum()) > 100        # ~1.5 s at 499 Hz, on a busy machine


def test_counting_event(kernel):
    with perf.open_events("task-clock", pid=os.getpid(), inherit=False) as events:
        first = events.counts()
        _burn(0.05)
        second = events.counts()
        assert first.dtype == np.uint64 and len(first) == len(os.listdir("/proc/self/task"))
        assert int(second.sum() - first.sum()) >= 10_000_000  # ns of task clock: >= 10 ms of 50
        with pybpf.open(pybpf.bundled("probes")) as obj:
            obj.load()
            with pytest.raises(pybpf.InvalidArgumentError, match="counts without sampling"):
                events.attach(obj.programs["on_perf_event"])


def test_hardware_event_or_its_reason(kernel):
    try:
        events = perf.open_events("instructions", pid=os.getpid(), inherit=False)
    except pybpf.NotSupportedError as exc:
        assert "no PMU for hardware event 'instructions'" in str(exc) and exc.feature == "perf:instructions"
        return
    with events:
        before = events.counts().sum()
        _burn(0.02)
        assert events.counts().sum() > before


def test_refusals(kernel):
    with open("/proc/sys/kernel/perf_event_max_sample_rate") as f:
        limit = int(f.read())
    with pytest.raises(pybpf.InvalidArgumentError, match="perf_event_max_sample_rate"):
        perf.open_events("cpu-clock", frequency=limit + 1000)
    with pytest.raises(pybpf.InvalidArgumentError, match="no process"):
        perf.open_events("cpu-clock", frequency=99, pid=2**22 + 7)
    with pytest.raises(pybpf.InvalidArgumentError, match="CPU 4096 does not exist"):
        perf.open_events("cpu-clock", frequency=99, cpus=[4096])
    with pytest.raises(pybpf.InvalidArgumentError, match="positive integer"):
        perf.open_events("cpu-clock", frequency=99, pid=0)
    with pytest.raises(pybpf.InvalidArgumentError, match="no perf event named"):
        perf.open_events("cpu-clocks", frequency=99)
