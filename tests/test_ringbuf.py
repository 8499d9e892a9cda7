"""RingBuffer against the real kernel: records from ringbuf_events.bpf.o, emitted on getppid(2)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import pybpf
from pybpf.events.ringbuf import RecordFormatError, RingBuffer, RingBufferSet, WrongMapTypeError
from tests.conftest import new_fds, open_fds

STRIDE = 40  # 8-byte header + 32-byte struct event


def _comm() -> bytes:
    with open(f"/proc/self/task/{threading.get_native_id()}/comm", "rb") as f:
        return f.read().strip()


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


def test_records_complete_in_order_with_btf_fields(events):
    obj = events(per_call=1000)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        assert rb.dtype.names == ("seq", "tgid", "pid", "comm")
        batches = []
        for _ in range(300):
            os.getppid()
            batches.append(rb.drain())
        records = np.concatenate(batches)
    assert len(records) == 300_000
    assert np.array_equal(records["seq"], np.arange(300_000))  # each once, in order
    assert (records["tgid"] == os.getpid()).all()
    assert (records["pid"] == threading.get_native_id()).all()
    assert (records["comm"] == _comm()).all()
    assert int(obj.bss["dropped"]) == 0
    assert int(obj.bss["produced"]) == 300_000


def test_full_ring_drops_add_up(events):
    obj = events(per_call=20_000)  # a 256 KiB ring holds 6553 records of 40 bytes
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        os.getppid()
        records = rb.drain()
        assert len(rb.drain()) == 0
    dropped = int(obj.bss["dropped"])
    assert dropped > 0
    assert len(records) == int(obj.bss["produced"]) == 262_144 // STRIDE
    assert len(records) + dropped == int(obj.bss["next_seq"]) == 20_000
    assert np.array_equal(records["seq"], np.arange(len(records)))  # the first ones, unbroken


def test_records_straddling_the_end_come_out_whole(events):
    obj = events(per_call=5000)
    size = obj.maps["events"].max_entries
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        records = np.concatenate([rb.drain() for _ in range(40) if os.getppid() or True])
    seq = records["seq"]
    assert np.array_equal(seq, np.arange(200_000))
    starts = seq * STRIDE % size
    straddling = seq[starts + STRIDE > size]
    assert len(straddling) > 10  # the ring wrapped many times mid-record
    assert (records["tgid"][straddling] == os.getpid()).all()
    assert (records["comm"][straddling] == _comm()).all()


def test_discarded_records_are_skipped(events):
    obj = events(per_call=3000, discard_every=3)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        records = np.concatenate([rb.drain() for _ in range(20) if os.getppid() or True])
    expected = np.arange(60_000)
    assert np.array_equal(records["seq"], expected[expected % 3 != 0])
    assert int(obj.bss["discarded"]) == 20_000


def test_discards_with_a_partial_batch(events):
    obj = events(per_call=1000, discard_every=7)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        os.getppid()
        first = rb.drain(max_records=100)
        rest = rb.drain()
    seq = np.concatenate([first["seq"], rest["seq"]])
    assert len(first) == 100
    expected = np.arange(1000)
    assert np.array_equal(seq, expected[expected % 7 != 0])


def test_variable_size_records_byte_exact(events):
    obj = events(per_call=500, emit_events=0, emit_varlen=1)
    with RingBuffer(obj.maps["varlen"]) as rb:
        got: list[bytes] = []
        for _ in range(10):
            os.getppid()
            got += rb.drain_bytes()
        assert rb.read(0) == [] and rb.poll(0) == 0
    assert int(obj.bss["var_dropped"]) == 0
    assert len(got) == 5000
    for seq, record in enumerate(got):
        assert record == bytes((seq + j) & 0xFF for j in range(seq % 61 + 1)), seq


def test_max_records_leaves_the_rest(events):
    obj = events(per_call=1000)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        os.getppid()
        head = rb.drain(max_records=10)
        assert rb.available_bytes == 990 * STRIDE
        assert len(rb.drain(max_records=0)) == 0
        tail = rb.drain()
    assert np.array_equal(head["seq"], np.arange(10))
    assert np.array_equal(tail["seq"], np.arange(10, 1000))


def test_poll_times_out_with_no_data(events):
    obj = events()
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        start = time.monotonic()
        batch = rb.read(0.2)
        elapsed = time.monotonic() - start
    assert len(batch) == 0 and batch.dtype.names == ("seq", "tgid", "pid", "comm")
    assert elapsed >= 0.19


def test_poll_wakes_up_for_data(events):
    obj = events(per_call=3)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        timer = threading.Timer(0.05, os.getppid)
        timer.start()
        batch = rb.read(30)
        timer.join()
    assert list(batch["seq"]) == [0, 1, 2]


def test_close_while_poll_waits_ends_it(events):
    obj = events()
    obj.maps["events"].fd  # the Map's own fd lives as long as the Map: not the ring buffer's
    before = open_fds()
    rb = RingBuffer(obj.maps["events"], dtype="event")
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(rb.read(None)))
    waiter.start()
    time.sleep(0.1)
    assert waiter.is_alive()
    rb.close()
    waiter.join(10)
    assert not waiter.is_alive()
    assert len(result) == 1 and len(result[0]) == 0  # type: ignore[arg-type]
    assert not new_fds(before)
    with pytest.raises(pybpf.ClosedError):
        rb.poll(0)


def test_asyncio_iteration_receives_batches(events):
    obj = events(per_call=100)

    async def main() -> list[np.ndarray]:
        rb = RingBuffer(obj.maps["events"], dtype="event")
        loop = asyncio.get_running_loop()
        for delay in (0.02, 0.1, 0.2):
            loop.call_later(delay, os.getppid)
        batches = []
        async for batch in rb:
            batches.append(batch)
            if sum(map(len, batches)) == 300:
                loop.call_soon(rb.close)   # closing ends the iteration
        return batches

    batches = asyncio.run(asyncio.wait_for(main(), 30))
    assert np.array_equal(np.concatenate(batches)["seq"], np.arange(300))


@pytest.mark.parametrize("reader", ["numpy", "libbpf"])
def test_callback_mode_once_per_record(events, reader):
    obj = events(per_call=500)
    seen: list[int] = []
    with RingBuffer(obj.maps["events"], dtype="event", callback=lambda r: seen.append(int(r["seq"])),
                    reader=reader) as rb:
        os.getppid()
        assert rb.poll(5) == 500
        assert rb.consume() == 0
        rb.on_event(None)
        os.getppid()
        assert len(rb.drain()) == 500
    assert seen == list(range(500))


@pytest.mark.parametrize("reader", ["numpy", "libbpf"])
def test_callback_error_propagates(events, reader):
    obj = events(per_call=5)

    def boom(record: object) -> None:
        raise RuntimeError("from the callback")

    with RingBuffer(obj.maps["events"], dtype="event", callback=boom, reader=reader) as rb:
        os.getppid()
        with pytest.raises(RuntimeError, match="from the callback"):
            rb.consume()
        seen: list[int] = []
        rb.on_event(lambda r: seen.append(int(r["seq"])))
        assert rb.consume() == 4  # libbpf consumed the failing record; the rest wait
    assert seen == [1, 2, 3, 4]


def test_libbpf_reader_gives_the_same_records(events):
    obj = events(per_call=2000)
    with RingBuffer(obj.maps["events"], dtype="event", reader="libbpf") as rb:
        os.getppid()
        head = rb.drain(max_records=500)
        tail = rb.drain()
    assert np.array_equal(np.concatenate([head, tail])["seq"], np.arange(2000))
    assert (tail["comm"] == _comm()).all()


def test_several_ring_buffers_polled_together(events):
    obj = events(per_call=50, emit_varlen=1)
    with RingBuffer(obj.maps["events"], dtype="event") as fixed, RingBuffer(obj.maps["varlen"]) as var, \
            RingBufferSet(fixed, var) as both:
        assert both.read(0.05) == []
        os.getppid()
        got = dict(both.read(5))
        if len(got) < 2:
            got.update(both.read(5))
    assert np.array_equal(got[fixed]["seq"], np.arange(50))
    assert [len(r) for r in got[var]] == [seq % 61 + 1 for seq in range(50)]


def test_wrong_itemsize_is_a_clear_error_and_consumes_nothing(events):
    obj = events(per_call=10)
    os.getppid()
    for wrong in (np.dtype("24u1"), np.dtype([("seq", "<u8"), ("pad", "V40")])):
        with RingBuffer(obj.maps["events"], dtype=wrong) as rb:
            with pytest.raises(RecordFormatError, match="32-byte record does not match") as info:
                rb.drain()
            assert isinstance(info.value, pybpf.BpfError) and isinstance(info.value, ValueError)
            assert rb.available_bytes == 10 * STRIDE
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        assert np.array_equal(rb.drain()["seq"], np.arange(10))


def test_not_a_ring_buffer(events):
    obj = events()
    before = open_fds()
    with pytest.raises(WrongMapTypeError, match="needs a ringbuf map, but map 'perf_events' is a perf_event_array"):
        RingBuffer(obj.maps["perf_events"], dtype="event")
    with pytest.raises(TypeError):
        RingBuffer("events")  # type: ignore[arg-type]
    assert not new_fds(before)


def test_bad_record_types(events):
    obj = events()
    with pytest.raises(RecordFormatError, match="no struct 'no_such_struct'"):
        RingBuffer(obj.maps["events"], dtype="no_such_struct")
    with pytest.raises(RecordFormatError, match="cannot hold a record"):
        RingBuffer(obj.maps["events"], dtype=object)
    with pytest.raises(RecordFormatError, match="cannot fit"):
        RingBuffer(obj.maps["events"], dtype=np.dtype((np.uint8, 300_000)))
    with RingBuffer(obj.maps["events"]) as rb, pytest.raises(RecordFormatError, match="drain_bytes"):
        rb.drain()


def test_use_after_close(events):
    obj = events()
    rb = RingBuffer(obj.maps["events"], dtype="event")
    rb.close()
    rb.close()  # idempotent
    for call in (rb.drain, rb.drain_bytes, rb.fileno, lambda: rb.poll(0), lambda: rb.available_bytes):
        with pytest.raises(pybpf.ClosedError, match="ring buffer events is closed"):
            call()


def test_outlives_its_object_and_leaks_nothing(events, bundled):
    before = open_fds()
    obj = pybpf.open(bundled("ringbuf_events"))
    obj.rodata["want_tgid"] = os.getpid()
    obj.rodata["per_call"] = 7
    obj.load()
    obj.programs["emit_on_getppid"].attach()
    rb = RingBuffer(obj.maps["events"], dtype="event")
    os.getppid()
    obj.close()
    assert np.array_equal(rb.drain()["seq"], np.arange(7))
    rb.close()
    assert not new_fds(before)


def test_exec_events_of_the_bundled_example(kernel, bundled):
    import subprocess

    with pybpf.open(bundled("events_exec")) as obj:
        obj.load()
        obj.programs["on_exec"].attach()
        with RingBuffer(obj.maps["execs"], dtype="exec_event") as rb:
            child = subprocess.run(["/bin/true"], check=True)
            assert child.returncode == 0
            found = []
            deadline = time.monotonic() + 10
            while not found and time.monotonic() < deadline:
                batch = rb.read(1)
                found = [e for e in batch if e["filename"] == b"/bin/true" and e["ppid"] == os.getpid()]
    assert len(found) == 1
    assert found[0]["comm"] == b"true" and found[0]["uid"] == os.getuid()


def test_map_ring_buffer_shortcut(events):
    obj = events(per_call=5)
    with obj.maps["events"].ring_buffer("event") as rb:
        assert isinstance(rb, RingBuffer)
        os.getppid()
        records = rb.read(5)
        assert list(records["seq"]) == [0, 1, 2, 3, 4]


def test_consume_after_close_is_closed_error(events):
    obj = events()
    rb = RingBuffer(obj.maps["events"], dtype="event")
    rb.close()
    with pytest.raises(pybpf.ClosedError):
        rb.consume()


def test_drain_limit_holds_for_records_a_failed_callback_left(events):
    obj = events(per_call=5)

    def boom(record: object) -> None:
        raise RuntimeError("from the callback")

    with RingBuffer(obj.maps["events"], dtype="event", callback=boom) as rb:
        os.getppid()
        with pytest.raises(RuntimeError):
            rb.consume()
        rb.on_event(None)
        assert list(rb.drain(max_records=1)["seq"]) == [1]
        assert list(rb.drain(max_records=2)["seq"]) == [2, 3]
        assert list(rb.drain()["seq"]) == [4]


def test_poll_has_libbpfs_meaning_and_loses_nothing(events):
    """``poll()`` waits, queues what came (or calls the callback) and returns the count;
    the libbpf-style ``rb.poll(t); rb.drain()`` sees every record, queued ones first."""
    obj = events(per_call=5)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        timer = threading.Timer(0.05, os.getppid)
        timer.start()
        assert rb.poll(30) == 5                      # waited for the records, queued them
        timer.join()
        assert rb.poll(0.05) == 0                    # queued records do not end a wait
        os.getppid()
        assert rb.poll(5) == 5                       # a second burst: queued behind the first
        os.getppid()                                 # a third, still in the ring
        assert list(rb.drain(max_records=7)["seq"]) == list(range(7))
        assert list(rb.drain()["seq"]) == [7, 8, 9]            # the rest of the queue
        assert list(rb.drain()["seq"]) == list(range(10, 15))  # then the ring
        assert len(rb.drain()) == 0
        os.getppid()
        assert rb.poll(5) == 5
        assert list(rb.read(0)["seq"]) == list(range(15, 20))   # read() takes the queue first too
        seen: list[int] = []
        rb.on_event(lambda r: seen.append(int(r["seq"])))
        os.getppid()
        assert rb.poll(5) == 5 and seen == list(range(20, 25))    # callback mode: delivered to it
    with RingBuffer(obj.maps["events"]) as raw:
        os.getppid()
        assert raw.poll(5) == 5 and len(raw.drain_bytes()) == 5


def test_unclosed_ring_buffer_at_interpreter_exit_is_quiet(bundled, tmp_path):
    """A RingBuffer still open when the interpreter exits: its finaliser runs after the import
    system is gone (sys.meta_path is None) and must neither raise nor print a traceback."""
    import subprocess
    import sys
    code = ("import pybpf, os\n"
            f"obj = pybpf.open({bundled('ringbuf_events')!r}); obj.load()\n"
            "rb = pybpf.RingBuffer(obj.maps['events'], dtype='event')\n"
            "keep = [rb, obj]\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "Error" not in run.stderr, run.stderr
