"""``RingBuffer.drain(into=array)`` and ``RingBuffer.consume_n(n)`` against the real kernel.

Records come from ringbuf_events.bpf.o on getppid(2). Each read is checked on both readers
(the numpy/compiled one and libbpf's), and the whole script runs again in subprocesses with
the compiled helpers and without them (``PYBPF_NO_EXTENSION=1``): same records, same order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import pybpf
from pybpf._sys.libbpf import VERSION, has_symbol
from pybpf.events.ringbuf import RingBuffer

from .conftest import ROOT
from .test_fast_ext import extension_built  # noqa: F401  (a fixture: builds the helpers if absent)


@pytest.fixture
def events(kernel: None, bundled: Callable[[str], str]) -> Iterator[Callable[..., pybpf.Object]]:
    """``events(per_call=..., ...)``: ringbuf_events loaded for this process and attached."""
    opened: list[pybpf.Object] = []

    def load(**rodata: int) -> pybpf.Object:
        obj = pybpf.open(bundled("ringbuf_events"))
        opened.append(obj)
        obj.rodata["want_tgid"] = os.getpid()
        for name, value in rodata.items():
            obj.rodata[name] = value
        obj.load()
        obj.programs["emit_on_getppid"].attach()
        return obj

    yield load
    for obj in opened:
        obj.close()


def _expected(total: int, discard_every: int = 0) -> np.ndarray:
    seq = np.arange(total)
    return seq[seq % discard_every != 0] if discard_every else seq


@pytest.mark.parametrize("reader", ["numpy", "libbpf"])
@pytest.mark.parametrize("discard_every", [0, 3])
def test_drain_into_gives_every_record_once_in_order(events, reader, discard_every):
    obj = events(per_call=5000, discard_every=discard_every)  # a 256 KiB ring: wraps many times
    with RingBuffer(obj.maps["events"], dtype="event", reader=reader) as rb:
        into = np.empty(2000, rb.dtype)
        got = []
        for _ in range(20):
            os.getppid()
            while True:
                batch = rb.drain(into=into)
                assert batch.base is into or batch.base is into.base  # the caller's memory, no other
                assert len(batch) <= len(into)
                if not len(batch):
                    break
                got.append(batch.copy())
    records = np.concatenate(got)
    assert np.array_equal(records["seq"], _expected(100_000, discard_every))
    assert (records["tgid"] == os.getpid()).all()
    assert int(obj.bss["dropped"]) == 0


@pytest.mark.parametrize("reader", ["numpy", "libbpf"])
def test_drain_into_respects_max_records_and_leaves_the_rest(events, reader):
    obj = events(per_call=100)
    with RingBuffer(obj.maps["events"], dtype="event", reader=reader) as rb:
        os.getppid()
        into = np.zeros(64, rb.dtype)
        first = rb.drain(7, into=into)
        assert list(first["seq"]) == list(range(7))
        second = rb.drain(into=into)
        assert list(second["seq"]) == list(range(7, 71))  # as many as fit
        assert list(rb.drain()["seq"]) == list(range(71, 100))


def test_drain_into_refuses_arrays_it_cannot_fill(events):
    obj = events()
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        bad = {
            "list": [0] * 4,
            "other dtype": np.empty(4, np.uint64),
            "2-d": np.empty((2, 2), rb.dtype),
            "strided": np.empty(8, rb.dtype)[::2],
        }
        readonly = np.empty(4, rb.dtype)
        readonly.flags.writeable = False
        bad["read-only"] = readonly
        os.getppid()
        for what, into in bad.items():
            with pytest.raises(pybpf.InvalidArgumentError, match=r"drain\(into=\.\.\.\)"):
                rb.drain(into=into)
            assert rb.available_bytes > 0, what  # nothing was consumed
        assert list(rb.drain(into=np.empty(4, rb.dtype))["seq"]) == [0]


def test_drain_into_a_record_of_another_size_stays_in_the_ring(events):
    obj = events(emit_events=0, emit_varlen=1, per_call=3)
    with RingBuffer(obj.maps["varlen"], dtype=np.dtype([("x", "<u8")])) as rb:
        os.getppid()  # records of 1, 2, 3 bytes: none is 8
        before = rb.available_bytes
        with pytest.raises(pybpf.RecordFormatError, match="1-byte record does not match"):
            rb.drain(into=np.empty(4, rb.dtype))
        assert rb.available_bytes == before
        assert [len(r) for r in rb.drain_bytes()] == [1, 2, 3]


@pytest.mark.parametrize("reader", ["numpy", "libbpf"])
def test_consume_n_calls_back_at_most_n_and_loses_nothing(events, reader):
    obj = events(per_call=1000)
    seen: list[int] = []
    with RingBuffer(obj.maps["events"], dtype="event", callback=lambda r: seen.append(int(r["seq"])),
                    reader=reader) as rb:
        os.getppid()
        assert rb.consume_n(300) == 300
        assert seen == list(range(300))
        assert rb.consume_n(0) == 0
        assert rb.consume_n(300) == 300
        assert rb.consume_n(1) == 1
        assert rb.consume() == 399
        assert rb.consume_n(10) == 0
    assert seen == list(range(1000))


@pytest.mark.parametrize("reader", ["numpy", "libbpf"])
def test_consume_n_after_a_failing_callback(events, reader):
    obj = events(per_call=10)
    seen: list[int] = []

    def take(record: np.void) -> None:
        if int(record["seq"]) == 3:
            raise RuntimeError("from the callback")
        seen.append(int(record["seq"]))

    with RingBuffer(obj.maps["events"], dtype="event", callback=take, reader=reader) as rb:
        os.getppid()
        with pytest.raises(RuntimeError, match="from the callback"):
            rb.consume_n(5)
        assert seen == [0, 1, 2]  # the failing record is done, as with consume()
        assert rb.consume_n(2) == 2
        assert rb.consume_n(100) == 4
    assert seen == [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_consume_n_needs_a_callback_and_a_count(events):
    obj = events()
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        with pytest.raises(pybpf.BpfError, match="has no callback"):
            rb.consume_n(1)
        rb.on_event(lambda r: None)
        with pytest.raises(ValueError, match=">= 0"):
            rb.consume_n(-1)
    with pytest.raises(pybpf.ClosedError):
        rb.consume_n(1)


def test_libbpf_has_consume_n_from_1_5():
    """The detection the libbpf reader's consume_n relies on (LIBBPF_1.5.0 in libbpf.map)."""
    assert has_symbol("ring_buffer__consume_n") == (VERSION >= (1, 5))


# Both compiled and ABI-mode paths, in fresh interpreters: the same records come out.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import pybpf
    from pybpf._sys import fast
    out = {"mode": fast.MODE}
    with pybpf.open(sys.argv[1]) as obj:
        obj.rodata["want_tgid"] = os.getpid()
        obj.rodata["per_call"] = 3000
        obj.rodata["discard_every"] = 5
        obj.load()
        with obj.programs["emit_on_getppid"].attach():
            for reader in ("numpy", "libbpf"):
                with pybpf.RingBuffer(obj.maps["events"], dtype="event", reader=reader) as rb:
                    into, seqs = np.empty(1000, rb.dtype), []
                    for _ in range(10):
                        os.getppid()
                        while len(batch := rb.drain(into=into)):
                            seqs += batch["seq"].tolist()
                    out[reader] = seqs
                    seen = []
                    rb.on_event(lambda r: seen.append(int(r["seq"])))
                    os.getppid()
                    out[reader + "_counts"] = [rb.consume_n(1000) for _ in range(4)]
                    out[reader + "_seen"] = seen
    print(json.dumps(out))
""")


def _run(bundled_path: str, no_extension: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYBPF_NO_EXTENSION"}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    if no_extension:
        env["PYBPF_NO_EXTENSION"] = "1"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, bundled_path], env=env, capture_output=True,
                          text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_compiled_and_abi_paths_read_the_same(kernel, bundled, extension_built):  # noqa: F811
    compiled, abi = _run(bundled("ringbuf_events"), False), _run(bundled("ringbuf_events"), True)
    assert (compiled["mode"], abi["mode"]) == ("api", "abi")
    for result in (compiled, abi):
        base = 0
        for reader in ("numpy", "libbpf"):  # one object: the second reader's records come after
            assert result[reader] == [s for s in range(base, base + 30_000) if s % 5]
            assert result[reader + "_seen"] == [s for s in range(base + 30_000, base + 33_000) if s % 5]
            assert result[reader + "_counts"] == [1000, 1000, 400, 0]
            base += 33_000
