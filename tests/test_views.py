"""Zero-copy views of mmapable array maps against a live kernel.

A view, a syscall lookup and a batch lookup of one map agree while a program
counts into it; writes through a view reach a program; views outlive their
map and object; frozen and read-only maps give read-only views.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import pybpf
from pybpf import Map, NotSupportedError

from .conftest import ROOT

PKT = bytes(64)


@pytest.fixture
def counting(kernel, bundled):
    """maps_test loaded and attached, counting getppid() of this process."""
    with pybpf.open(bundled("maps_test")) as obj:
        obj.rodata["want_tgid"] = os.getpid()
        obj.load()
        with obj.programs["on_getppid"].attach():
            yield obj


def test_view_syscall_and_batch_agree_while_a_program_counts(counting):
    slots = counting.maps["slots"]
    view = slots.view()
    assert view.shape == (64,) and view.dtype == np.uint64
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            os.getppid()

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        readings = []
        for _ in range(200):
            a = int(view[0])
            b = int(slots[0])
            c = int(slots.lookup_batch()[1][0])
            d = int(view[0])
            readings.append((a, b, c, d))
    finally:
        stop.set()
        worker.join()
    for a, b, c, d in readings:       # each read happens after the one before it: counts only grow
        assert a <= b <= c <= d
    assert readings[-1][3] > readings[0][0] > 0  # it really was counting meanwhile
    final = int(view[0])
    assert final == int(slots[0]) == int(slots.lookup_batch()[1][0]) == int(counting.bss["seen"])
    records = counting.maps["stat_slots"].view()      # struct values: records, live
    assert int(records[0]["count"]) == final and int(records[0]["tgid"]) == os.getpid()


def test_writes_through_a_view_are_seen_by_a_program(kernel, bundled):
    with pybpf.open(bundled("maps_test")) as obj:
        obj.load()
        view = obj.maps["slots"].view()
        assert view.flags.writeable
        for value in (20, 2**40 + 1):
            view[1] = value
            assert obj.programs["echo_slot"].test_run(PKT).retval == 2
            assert int(view[2]) == int(obj.maps["slots"][2]) == value * 2 + 1


def test_view_stride_is_value_size_rounded_to_8(kernel):
    dtype = np.dtype([("a", "<u4"), ("b", "<u4"), ("c", "<u4")])  # 12 bytes: stride 16
    with Map.create("array", key_dtype=np.uint32, value_dtype=dtype, max_entries=100, flags="mmapable") as m:
        view = m.view()
        assert view.strides == (16,) and view.shape == (100,)
        m.update_batch(np.arange(100), [(i, i * 2, i * 3) for i in range(100)])
        assert view["c"].tolist() == [i * 3 for i in range(100)]
        view[50] = (7, 8, 9)
        assert m[50].tolist() == (7, 8, 9)
        assert m[51].tolist() == (51, 102, 153)  # the write did not spill into padding or a neighbour


def test_frozen_and_read_only_maps_give_read_only_views(kernel, bundled):
    with Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=4, flags="mmapable") as m:
        m[3] = 33
        m.freeze()
        view = m.view()
        assert not view.flags.writeable and int(view[3]) == 33
        with pytest.raises(ValueError):
            view[3] = 1
        with pytest.raises(pybpf.BpfPermissionError, match="frozen"):
            m[3] = 1
    with Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=4,
                    flags=["mmapable", "rdonly"]) as m:   # a read-only fd cannot be mmapped at all
        with pytest.raises(NotSupportedError, match="read-only"):
            m.view()
        assert int(m[0]) == 0                            # but it can be read
        with pytest.raises(pybpf.BpfPermissionError, match="read-only"):
            m[0] = 1
    with pybpf.open(bundled("maps_test")) as obj:
        obj.rodata["want_tgid"] = 1234
        obj.load()
        rodata = next(m for name, m in obj.maps.items() if name.endswith(".rodata"))
        view = rodata.view()
        assert not view.flags.writeable and int(view[0]["want_tgid"]) == 1234


def test_only_mmapable_arrays_have_views(kernel, bundled):
    with pybpf.open(bundled("maps_test")) as obj:
        obj.load()
        for name in ("stats", "pcpu_array", "recs_in", "fifo"):
            with pytest.raises(NotSupportedError, match="BPF_F_MMAPABLE"):
                obj.maps[name].view()


def test_views_outlive_close_of_map_and_object(kernel, bundled):
    script = textwrap.dedent(f"""
        import gc, os, numpy as np, pybpf
        from pybpf import Map
        obj = pybpf.open({bundled("maps_test")!r})
        obj.rodata["want_tgid"] = os.getpid()
        obj.load()
        link = obj.programs["on_getppid"].attach()
        view = obj.maps["slots"].view()
        records = obj.maps["stat_slots"].view()
        os.getppid()
        link.close()
        obj.close()
        gc.collect()
        assert int(view[0]) == 1 and int(records[0]["count"]) == 1
        view[5] = 55                      # still writable: the mapping keeps the map alive
        assert int(view[5]) == 55 and view.sum() == 56
        m = Map.create("array", key_dtype=np.uint32, value_dtype=np.uint32, max_entries=1024,
                       flags="mmapable")
        other = m.view()
        m[1000] = 7
        m.close()
        gc.collect()
        other[:] += 1
        assert int(other[1000]) == 8 and int(other.sum()) == 1024 + 7
        del view, records, other
        gc.collect()
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
