"""PerfBuffer against the real kernel: copies of ringbuf_events' records sent with bpf_perf_event_output."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import pybpf
from pybpf.events.perfbuf import PerfBuffer
from pybpf.events.ringbuf import WrongMapTypeError
from tests.conftest import new_fds, open_fds


def _load(bundled, **rodata: int) -> pybpf.Object:
    obj = pybpf.open(bundled("ringbuf_events"))
    obj.rodata["want_tgid"] = os.getpid()
    obj.rodata["emit_perf"] = 1
    for name, value in rodata.items():
        obj.rodata[name] = value
    obj.load()
    obj.programs["emit_on_getppid"].attach()
    return obj


def test_samples_arrive_typed_with_their_cpu(kernel, bundled):
    with _load(bundled, per_call=200) as obj, PerfBuffer(obj.maps["perf_events"], dtype="event") as pb:
        os.getppid()
        batches = [pb.read(5)]
        while sum(map(len, batches)) < 200:
            batches.append(pb.read(1))
            assert len(batches[-1]), "samples missing"
        records = np.concatenate(batches)
        assert np.array_equal(records["seq"], np.arange(200))
        assert (records["tgid"] == os.getpid()).all()
        assert (records["pid"] == threading.get_native_id()).all()
        assert len(pb.cpus) == len(batches[-1]) and ((pb.cpus >= 0) & (pb.cpus < os.cpu_count())).all()
        assert pb.lost_total == 0 and int(obj.bss["perf_failed"]) == 0


def _drain_all(pb: PerfBuffer) -> int:
    received = len(pb.read(5))
    while len(batch := pb.read(0.2)):
        received += len(batch)
    return received


@pytest.fixture
def one_cpu():
    """Keep this thread on one CPU: the kernel reports a CPU's losses with that CPU's next sample."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    yield
    os.sched_setaffinity(0, before)


def test_lost_samples_are_counted_per_cpu(kernel, bundled, one_cpu):
    with _load(bundled, per_call=3000) as obj, PerfBuffer(obj.maps["perf_events"], dtype="event", pages=1) as pb:
        os.getppid()
        received = _drain_all(pb)
        failed = int(obj.bss["perf_failed"])
        assert failed > 0 and received + failed == 3000
        # The kernel reports a CPU's losses with its next sample: make one more round.
        os.getppid()
        _drain_all(pb)
        assert pb.lost_total == failed
        assert np.count_nonzero(pb.lost) == 1  # one getppid runs on one CPU


def test_callback_mode(kernel, bundled):
    seen: list[tuple[int, int]] = []
    with _load(bundled, per_call=50) as obj, \
            PerfBuffer(obj.maps["perf_events"], dtype="event", callback=lambda cpu, r: seen.append((cpu, int(r["seq"])))) as pb:
        os.getppid()
        count = pb.poll(5)
        while len(seen) < 50:
            count += pb.poll(1)
        assert count == 50
    assert [s for _, s in seen] == list(range(50))


def test_bad_input_and_close(kernel, bundled):
    with _load(bundled) as obj:
        obj.maps["perf_events"].fd  # the Map's own fd lives as long as the Map
        before = open_fds()
        with pytest.raises(WrongMapTypeError, match="needs a perf_event_array map"):
            PerfBuffer(obj.maps["events"])
        with pytest.raises(ValueError, match="power of two"):
            PerfBuffer(obj.maps["perf_events"], pages=3)
        pb = PerfBuffer(obj.maps["perf_events"], dtype="event")
        waiter = threading.Thread(target=pb.poll)
        waiter.start()
        pb.close()
        waiter.join(10)
        assert not waiter.is_alive()
        with pytest.raises(pybpf.ClosedError, match="perf buffer perf_events is closed"):
            pb.poll(0)
        assert not new_fds(before)
