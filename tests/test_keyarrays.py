"""Key arrays (``m.lookup(keys)``, ``m.update(keys, values)``, ``m.delete(keys)``) and the
per-key fast path (``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m``) on real maps.

This file runs in-process with whichever C path this process has, and again
under ``PYBPF_NO_EXTENSION=1`` (ABI mode) from ``test_fast_ext.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import pybpf
from pybpf import KeyNotFoundError, Map, NotSupportedError
from pybpf.maps.map import IndexOutOfRangeError


@pytest.fixture
def hmap(kernel):
    with Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=256, name="ka_hash") as m:
        for k in range(0, 100, 3):
            m[k] = k * 10 + 1
        yield m


def test_lookup_keys_values_and_found(hmap):
    keys = np.array([0, 1, 3, 99, 98, 200], dtype=np.uint32)
    values, found = hmap.lookup(keys)
    assert found.dtype == np.bool_ and found.tolist() == [True, False, True, True, False, False]
    assert values.dtype == np.uint64 and values.tolist() == [1, 0, 31, 991, 0, 0]
    # other integer widths are converted; out of range refuses before any syscall
    values64, found64 = hmap.lookup(keys.astype(np.int64))
    assert values64.tolist() == values.tolist() and found64.tolist() == found.tolist()
    with pytest.raises(OverflowError):
        hmap.lookup(np.array([1, -1], dtype=np.int64))
    empty_values, empty_found = hmap.lookup(np.zeros(0, dtype=np.uint32))
    assert empty_values.shape == (0,) and empty_found.shape == (0,)


def test_update_and_delete_keys(hmap):
    keys = np.array([1, 2, 3], dtype=np.uint32)
    hmap.update(keys, np.array([7, 8, 9], dtype=np.uint64))
    assert [int(hmap[k]) for k in (1, 2, 3)] == [7, 8, 9]
    hmap.update(np.array([4, 4], dtype=np.uint32), [5, 6])  # in order: the later duplicate wins
    assert int(hmap[4]) == 6
    with pytest.raises(pybpf.BpfError) as err:
        hmap.update(np.array([250, 2], dtype=np.uint32), np.array([1, 1], dtype=np.uint64), "noexist")
    assert "keys[1]" in str(err.value) and err.value.processed == 1
    assert int(hmap[250]) == 1  # written before the failing key
    with pytest.raises(ValueError):
        hmap.update(keys, np.array([1, 2], dtype=np.uint64))
    deleted = hmap.delete(np.array([1, 5, 2, 1], dtype=np.uint32))
    assert deleted.tolist() == [True, False, True, False]
    assert 1 not in hmap and 2 not in hmap and 3 in hmap


def test_array_map_key_arrays(kernel):
    with Map.create("array", key_dtype=np.uint32, value_dtype=np.int32, max_entries=8) as m:
        m.update(np.arange(8, dtype=np.uint32), -np.arange(8, dtype=np.int32))
        values, found = m.lookup(np.array([7, 0, 8], dtype=np.uint32))
        assert values.tolist() == [-7, 0, 0] and found.tolist() == [True, True, False]  # 8: past the end
        with pytest.raises(NotSupportedError, match="cannot be deleted"):
            m.delete(np.array([1], dtype=np.uint32))


def test_struct_and_percpu_key_arrays(kernel):
    key = np.dtype([("a", "<u4"), ("b", "<u2"), ("pad", "<u2")])
    value = np.dtype([("x", "<u8"), ("y", "<i4"), ("z", "<i4")])
    with Map.create("hash", key_dtype=key, value_dtype=value, max_entries=16) as m:
        keys = np.array([(1, 2, 0), (3, 4, 0), (5, 6, 0)], dtype=key)
        vals = np.array([(10, -1, 1), (30, -3, 3), (50, -5, 5)], dtype=value)
        m.update(keys[:2], vals[:2])
        got, found = m.lookup(keys)
        assert found.tolist() == [True, True, False]
        assert got[:2].tolist() == vals[:2].tolist() and got[2].tolist() == (0, 0, 0)
        assert m[keys[1]] == vals[1]  # one record key (np.void) is still one key
    with Map.create("percpu_array", key_dtype=np.uint32, value_dtype=np.uint32, max_entries=4) as m:
        ncpus = m.n_cpus
        m[2] = 5  # one value: every CPU
        got, found = m.lookup(np.array([2, 3], dtype=np.uint32))
        assert got.shape == (2, ncpus) and got[0].tolist() == [5] * ncpus and got[1].tolist() == [0] * ncpus
        assert found.all()


def test_key_array_dispatch_keeps_single_array_keys(kernel):
    # a char[4]-like key: a (4,) array is ONE key; a (n, 4) array is n keys
    with Map.create("hash", key_dtype=np.dtype((np.uint8, (4,))), value_dtype=np.uint32, max_entries=8) as m:
        m[np.array([1, 2, 3, 4], dtype=np.uint8)] = 9
        assert int(m[np.array([1, 2, 3, 4], dtype=np.uint8)]) == 9
        values, found = m.lookup(np.array([[1, 2, 3, 4], [4, 3, 2, 1]], dtype=np.uint8))
        assert values.tolist() == [9, 0] and found.tolist() == [True, False]


def test_fast_path_key_kinds_and_errors(kernel):
    with Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=8) as m:
        m[np.uint32(3)] = np.uint64(2**64 - 1)      # numpy scalars in, both ways
        m[4] = 5
        assert int(m[3]) == 2**64 - 1 and isinstance(m[3], np.uint64)
        assert int(m[np.int64(4)]) == 5 and m.lookup(True if False else 4) == 5
        assert 3 in m and np.uint32(4) in m and 5 not in m and -1 not in m and 2**40 not in m
        with pytest.raises(KeyNotFoundError):
            m[5]
        with pytest.raises(OverflowError):
            m[-1] = 1
        with pytest.raises((OverflowError, ValueError)):
            m[1] = -1                                  # out of the value's range: the general path explains
        m[1] = 1.0 if False else 1
        del m[1]
        with pytest.raises(KeyNotFoundError):
            del m[1]
        m.update(6, 7, "noexist")
        with pytest.raises(pybpf.BpfError):
            m.update(6, 8, "noexist")
    with Map.create("array", key_dtype=np.uint32, value_dtype=np.float64, max_entries=4) as m:
        m[1] = 2.5
        m[2] = 3                                       # an int into a float value
        assert float(m[1]) == 2.5 and float(m[2]) == 3.0
        with pytest.raises(IndexOutOfRangeError):
            m[4]
        assert 3 in m and 4 not in m
    m.close()
    with pytest.raises(pybpf.ClosedError):
        m[1]


def test_cells_typed_memoryview(kernel):
    with Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=64,
                    flags="mmapable") as m:
        m.update(np.arange(64, dtype=np.uint32), np.arange(64, dtype=np.uint64) * 3)
        cells = m.cells()
        assert isinstance(cells, memoryview) and cells.format == "Q" and len(cells) == 64
        assert [cells[i] for i in (0, 5, 63)] == [0, 15, 189]
        m[5] = 77
        assert cells[5] == 77  # live: the same memory as the map
        cells[6] = 5
        assert int(m[6]) == 5
    with Map.create("array", key_dtype=np.uint32, value_dtype=np.uint32, max_entries=4, flags="mmapable") as m:
        with pytest.raises(NotSupportedError, match="8 bytes"):
            m.cells()  # 4-byte values sit 8 bytes apart in the mapping: no flat memoryview
