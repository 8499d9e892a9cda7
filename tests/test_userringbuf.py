"""UserRingBuffer against the real kernel: ringbuf_user.bpf.o drains what Python submits."""

from __future__ import annotations

import os

import numpy as np
import pytest

import pybpf
from pybpf.events.ringbuf import BufferFullError, RecordFormatError, WrongMapTypeError
from pybpf.events.userringbuf import UserRingBuffer
from tests.conftest import new_fds, open_fds


@pytest.fixture
def consumer(kernel, bundled):
    with pybpf.open(bundled("ringbuf_user")) as obj:
        obj.rodata["want_tgid"] = os.getpid()
        obj.load()
        obj.programs["drain_requests"].attach()
        yield obj


def test_submitted_records_reach_the_program(consumer):
    with UserRingBuffer(consumer.maps["requests"], dtype="user_request") as urb:
        urb.submit({"value": 5, "tag": 1, "pad": 0})
        values = np.zeros(100, urb.dtype)
        values["value"] = np.arange(100)
        values["tag"] = 7
        assert urb.submit_many(values) == 100
        os.getppid()
    assert int(consumer.bss["count"]) == 101
    assert int(consumer.bss["sum"]) == 5 + sum(range(100))
    assert int(consumer.bss["last_tag"]) == 7
    assert int(consumer.bss["bad_size"]) == 0


def test_full_ring_is_a_clear_error(consumer):
    with UserRingBuffer(consumer.maps["requests"], dtype="user_request") as urb:
        sent = 0
        with pytest.raises(BufferFullError, match="no room"):
            while True:
                urb.submit({"value": 1, "tag": 0, "pad": 0})
                sent += 1
        assert sent > 1000
        with pytest.raises(BufferFullError):
            urb.submit({"value": 1, "tag": 0, "pad": 0}, timeout=0.05)
        os.getppid()
        assert int(consumer.bss["count"]) == sent  # nothing lost, nothing doubled
        urb.submit({"value": 1, "tag": 0, "pad": 0})  # room again


def test_bad_input(consumer, bundled):
    consumer.maps["requests"].fd  # the Map's own fd lives as long as the Map
    before = open_fds()
    with UserRingBuffer(consumer.maps["requests"], dtype="user_request") as urb:
        with pytest.raises(RecordFormatError, match="one record"):
            urb.submit(np.zeros(2, urb.dtype))
    with UserRingBuffer(consumer.maps["requests"]) as raw:
        with pytest.raises(TypeError, match="submit bytes"):
            raw.submit(12)
        with pytest.raises(RecordFormatError, match="empty"):
            raw.submit(b"")
        raw.submit(b"\x01" * 16)
    raw.close()
    with pytest.raises(pybpf.ClosedError, match="user ring buffer requests is closed"):
        raw.submit(b"\x01" * 16)
    with pybpf.open(bundled("ringbuf_events")) as other:
        other.load()
        with pytest.raises(WrongMapTypeError, match="needs a user_ringbuf map"):
            UserRingBuffer(other.maps["events"])
    assert not new_fds(before)
