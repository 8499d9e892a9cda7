"""Edge cases found in review: concurrent churn while iterating, freeze after a view,
write-only maps, fds that are not maps."""

from __future__ import annotations

import gc
import threading

import pytest

import pybpf


def test_keys_are_unique_while_another_thread_churns(kernel):
    with pybpf.Map.create("hash", key_dtype="u4", value_dtype="u8", max_entries=4096) as m:
        m.update_batch(list(range(2000)), list(range(2000)))
        stop = threading.Event()

        def churn() -> None:
            i = 0
            while not stop.is_set():
                key = i % 2000
                m.delete(key)
                m[key] = key
                i += 7

        thread = threading.Thread(target=churn)
        thread.start()
        try:
            snapshots = [list(m.keys()) for _ in range(5)]
        finally:
            stop.set()
            thread.join()
        for keys in snapshots:
            assert len(keys) == len({int(k) for k in keys}) <= 2000


def test_freeze_after_a_dropped_view_and_with_a_live_one(kernel):
    with pybpf.Map.create("array", key_dtype="u4", value_dtype="u8", max_entries=4, flags=["mmapable"]) as m:
        view = m.view()
        view[1] = 3
        with pytest.raises(pybpf.BpfError, match="writable view or mmap of it is still alive"):
            m.freeze()
        del view
        gc.collect()
        m.freeze()
        assert int(m[1]) == 3
        assert not m.view().flags.writeable
        with pytest.raises(pybpf.BpfPermissionError, match="frozen"):
            m[1] = 4


def test_write_only_map_lookup_names_the_flag(kernel):
    with pybpf.Map.create("array", key_dtype="u4", value_dtype="u8", max_entries=4, flags=["wronly"]) as m:
        m[0] = 1
        with pytest.raises(pybpf.BpfPermissionError, match="BPF_F_WRONLY"):
            m[0]


def test_from_fd_refuses_what_is_not_a_map(kernel, bundled, tmp_path):
    with pybpf.open(bundled("counters")) as obj:
        obj.load()
        with pytest.raises(pybpf.WrongMapTypeError, match="is a BPF program, not a BPF map"):
            pybpf.Map.from_fd(obj.programs["on_getppid"].fd)
    with open(tmp_path / "plain", "w") as plain:
        with pytest.raises(pybpf.WrongMapTypeError, match="not a BPF map"):
            pybpf.Map.from_fd(plain.fileno())


def test_out_of_range_keys_are_not_in_an_array_map(kernel):
    with pybpf.Map.create("array", key_dtype="i4", value_dtype="u8", max_entries=4) as m:
        assert -1 not in m and 4 not in m and 2**40 not in m and 3 in m
        with pytest.raises(pybpf.IndexOutOfRangeError, match="valid 0..3"):
            m[-1]
        with pytest.raises(IndexError):
            m[-1] = 5


def test_attach_perf_event_to_a_closed_fd(kernel, bundled):
    with pybpf.open(bundled("probes")) as obj:
        obj.load()
        with pytest.raises(pybpf.BpfError, match="perf event fd 99999 is not open"):
            obj.programs["on_perf_event"].attach_perf_event(99999)


def test_bloom_filter_push_and_membership(kernel):
    with pybpf.Map.create("bloom_filter", key_size=0, value_dtype="u8", max_entries=1000) as bloom:
        for value in range(0, 200, 2):
            bloom.push(value)
        assert all(bloom.might_contain(v) for v in range(0, 200, 2))  # no false negatives
        false_positives = sum(v in bloom for v in range(1, 2001, 2))
        assert false_positives < 100  # 1000 odd values never pushed: a bloom filter is mostly right
        with pytest.raises(pybpf.NotSupportedError, match="bloom_filter"):
            bloom.pop()


def test_messages_for_maps_without_btf_and_streams(kernel, bundled):
    with pybpf.Map.create("hash", key_size=4, value_size=8, max_entries=4) as raw:
        with pytest.raises(TypeError, match="no BTF description.*key_dtype="):
            raw[1] = 2
        raw[b"\x01\0\0\0"] = b"\x02" + b"\0" * 7
        assert bytes(raw[b"\x01\0\0\0"]) == b"\x02" + b"\0" * 7
    with pybpf.open(bundled("ringbuf_events")) as obj:
        obj.load()
        with pytest.raises(TypeError, match="no elements to count: read it with pybpf.RingBuffer"):
            len(obj.maps["events"])
