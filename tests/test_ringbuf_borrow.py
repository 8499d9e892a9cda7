"""RingBuffer.borrow() against the real kernel: zero-copy record views over the mmapped ring.

The producer is ringbuf_events.bpf.o (records of 32 bytes, 40 with the header,
in a 256 KiB ring: 6553 slots), emitting ``per_call`` records per getppid(2).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import pybpf
from pybpf.events.ringbuf import BorrowActiveError, RecordFormatError, RingBuffer
from tests.conftest import new_fds, open_fds
from tests.test_ringbuf import STRIDE, _comm, events  # noqa: F401  (events is a fixture)

SLOTS = 262_144 // STRIDE


def _borrow_all(rb: RingBuffer, **kw: int) -> list[np.ndarray]:
    """Copies of every batch borrow() gives until it gives an empty one."""
    out = []
    while True:
        with rb.borrow(**kw) as batch:
            if not len(batch):
                return out
            assert not batch.flags.writeable and not batch.flags.owndata  # a view, not a copy
            out.append(batch.copy())
            del batch
        assert rb.pinned_bytes == 0  # nothing escaped: the block gave the space back


def test_records_complete_in_order_across_wrap_around(events):
    obj = events(per_call=5000)
    size = obj.maps["events"].max_entries
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        batches = []
        for _ in range(40):
            os.getppid()
            batches += _borrow_all(rb)
    records = np.concatenate(batches)
    seq = records["seq"]
    assert np.array_equal(seq, np.arange(200_000))  # each once, in order, nothing dropped
    assert int(obj.bss["dropped"]) == 0
    assert (records["tgid"] == os.getpid()).all() and (records["comm"] == _comm()).all()
    # Some batches ran past the end of the data area: one view over the double mapping.
    wrapped = [b for b in batches if int(b["seq"][0]) * STRIDE % size + len(b) * STRIDE > size]
    assert len(wrapped) >= 5
    assert all(np.array_equal(b["seq"], np.arange(b["seq"][0], b["seq"][0] + len(b))) for b in wrapped)


def test_max_records_and_drain_inside_the_block(events):
    obj = events(per_call=1000)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        os.getppid()
        with rb.borrow(max_records=100) as head:
            assert np.array_equal(head["seq"], np.arange(100))
            rest = rb.drain()  # reads after the borrowed batch, never the batch again
            assert np.array_equal(rest["seq"], np.arange(100, 1000))
            assert rb.pinned_bytes == 1000 * STRIDE  # the batch still holds back all of it
            del head
        assert rb.pinned_bytes == 0 and rb.available_bytes == 0


@pytest.mark.parametrize("escape", ["batch", "slice", "field", "record", "asarray"])
def test_escaped_view_pins_the_ring(events, escape):
    obj = events(per_call=20_000)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        os.getppid()  # fills the ring: SLOTS records, the rest dropped
        assert int(obj.bss["produced"]) == SLOTS
        with rb.borrow() as batch:
            views = {"batch": batch, "slice": batch[10:20], "field": batch["seq"], "record": batch[10],
                     "asarray": np.asarray(batch)[5:]}
            kept = views.pop(escape)
            del batch, views
        before = np.asarray(kept).tobytes()  # (np.array(void, copy=True) would be one more view)
        assert rb.pinned_bytes == SLOTS * STRIDE  # the block ended, but a view lives on
        dropped = int(obj.bss["dropped"])

        os.getppid()  # the producer finds no room: the kept memory is not reused
        assert int(obj.bss["dropped"]) == dropped + 20_000
        assert int(obj.bss["produced"]) == SLOTS
        assert len(rb.drain()) == 0 and rb.pinned_bytes == SLOTS * STRIDE
        assert np.asarray(kept).tobytes() == before
        assert rb.release_pending() == SLOTS * STRIDE

        del kept  # the last view dies: the next call gives the space back
        assert len(rb.drain()) == 0 and rb.pinned_bytes == 0
        os.getppid()
        with rb.borrow() as fresh:
            assert np.array_equal(fresh["seq"], np.arange(40_000, 40_000 + SLOTS))
            del fresh
    assert int(obj.bss["produced"]) == 2 * SLOTS


def test_views_are_read_only(events):
    obj = events(per_call=10)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        os.getppid()
        with rb.borrow() as batch:
            with pytest.raises(ValueError, match="read-only"):
                batch["seq"][0] = 99
            with pytest.raises(ValueError, match="read-only"):
                batch[1:][0] = batch[0]
            with pytest.raises(ValueError):
                batch.flags.writeable = True
            assert np.array_equal(batch["seq"], np.arange(10))
            del batch


def test_discards_end_a_batch_and_are_skipped(events):
    obj = events(per_call=3000, discard_every=3)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        os.getppid()
        with rb.borrow() as first:  # record 0 is discarded: skipped; record 3 ends the batch
            assert list(first["seq"]) == [1, 2]
            del first
        records = np.concatenate(_borrow_all(rb))
    expected = np.arange(3, 3000)
    assert np.array_equal(records["seq"], expected[expected % 3 != 0])


def test_wrong_itemsize_is_a_clear_error_and_consumes_nothing(events):
    obj = events(per_call=10)
    os.getppid()
    with RingBuffer(obj.maps["events"], dtype=np.dtype("24u1")) as rb:
        with pytest.raises(RecordFormatError, match="32-byte record does not match"):
            with rb.borrow():
                pass
        assert rb.available_bytes == 10 * STRIDE and rb.pinned_bytes == 0
    with RingBuffer(obj.maps["events"]) as rb, pytest.raises(RecordFormatError, match="without a dtype"):
        rb.borrow()


def test_nested_borrow_is_refused(events):
    obj = events(per_call=10)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        os.getppid()
        with rb.borrow(max_records=4) as outer:
            with pytest.raises(BorrowActiveError, match="already has an open borrow"):
                with rb.borrow():
                    pass
            assert isinstance(BorrowActiveError("x"), pybpf.BpfError)
            assert np.array_equal(outer["seq"], np.arange(4))
            del outer
        with rb.borrow() as again:  # refused only while the other block is open
            assert np.array_equal(again["seq"], np.arange(4, 10))
            del again


def test_borrow_after_close(events):
    obj = events(per_call=5)
    obj.maps["events"].fd  # the Map's own fd lives as long as the Map
    before = open_fds()
    rb = RingBuffer(obj.maps["events"], dtype="event")
    os.getppid()
    pending = rb.borrow()
    with rb.borrow() as batch:
        kept = batch
    rb.close()
    with pytest.raises(pybpf.ClosedError, match="ring buffer events is closed"):
        rb.borrow()
    with pytest.raises(pybpf.ClosedError):
        with pending:
            pass
    with pytest.raises(pybpf.ClosedError):
        rb.release_pending()
    assert np.array_equal(kept["seq"], np.arange(5))  # the view keeps the ring's memory mapped
    del kept, batch  # (the `as` name is a view too) ...and with them the mmap's own fd
    assert not new_fds(before)


def test_poll_with_a_pinned_ring_waits_then_gets_new_records(events):
    obj = events(per_call=3)
    with RingBuffer(obj.maps["events"], dtype="event") as rb:
        os.getppid()
        with rb.borrow() as kept:
            pass
        # The ring fd stays readable while `kept` pins it: poll must still wait the timeout...
        start = time.monotonic()
        assert len(rb.read(0.3)) == 0
        assert time.monotonic() - start >= 0.29
        # ...and still see new records, although the kernel no longer wakes a lagging consumer.
        timer = threading.Timer(0.05, os.getppid)
        timer.start()
        batch = rb.read(10)
        timer.join()
        assert list(batch["seq"]) == [3, 4, 5]
        # Everything from the kept view on is held back, the copied records after it too.
        assert np.array_equal(kept["seq"], [0, 1, 2]) and rb.pinned_bytes == 6 * STRIDE
        del kept
        assert rb.release_pending() == 0


def test_libbpf_reader_borrow_gives_a_read_only_copy(events):
    obj = events(per_call=50)
    with RingBuffer(obj.maps["events"], dtype="event", reader="libbpf") as rb:
        os.getppid()
        with rb.borrow() as batch:
            kept = batch
        assert not kept.flags.writeable
        assert np.array_equal(kept["seq"], np.arange(50))
        assert rb.pinned_bytes == 0 and rb.available_bytes == 0
