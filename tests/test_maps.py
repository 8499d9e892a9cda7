"""Map API against the real kernel: typed element access, every map kind, batches, bad input.

Maps come from the bundled ``maps_test`` object (typed from its BTF) or from
``Map.create``; programs are run with BPF_PROG_TEST_RUN or triggered with
getppid(2), and what they wrote is read back.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

import pybpf
from pybpf import ClosedError, KeyNotFoundError, Map, MapFullError, NotSupportedError
from pybpf.maps.map import IndexOutOfRangeError

from .conftest import new_fds, open_fds

PKT = bytes(64)  # any frame: the XDP programs here ignore the packet
NCPUS = None


@pytest.fixture
def maps_obj(kernel, bundled):
    with pybpf.open(bundled("maps_test")) as obj:
        obj.rodata["want_tgid"] = os.getpid()
        obj.load()
        yield obj


def ncpus() -> int:
    from pybpf._sys import libbpf as _libbpf
    return _libbpf.num_possible_cpus()


# ---- typed element access --------------------------------------------------


def test_hash_struct_value_typed_from_btf(maps_obj):
    stats = maps_obj.maps["stats"]
    assert stats.key_dtype == np.uint32
    assert stats.value_dtype.names == ("count", "tgid", "cpu_hint", "flags")
    stats[7] = {"count": 2**40 + 3, "tgid": 99, "flags": 5}
    value = stats[7]
    assert isinstance(value, np.void)
    assert (int(value["count"]), int(value["tgid"]), int(value["cpu_hint"]), int(value["flags"])) == \
        (2**40 + 3, 99, 0, 5)
    stats[8] = (1, 2, 3, 4)                    # tuple in field order
    stats[np.uint32(9)] = value                # a numpy record
    stats[10] = bytes(value.tobytes())         # raw bytes of the right size
    assert stats[8].tolist() == (1, 2, 3, 4)
    assert stats[9] == value and stats[10] == value
    assert 9 in stats and 11 not in stats
    assert stats.get(11, "missing") == "missing"
    del stats[9]
    assert 9 not in stats
    with pytest.raises(KeyNotFoundError):
        stats[9]
    with pytest.raises(KeyError):              # KeyNotFoundError is a KeyError
        del stats[9]


def test_returned_record_is_a_copy(maps_obj):
    stats = maps_obj.maps["stats"]
    stats[1] = (5, 0, 0, 0)
    first = stats[1]
    stats[2] = (6, 0, 0, 0)   # reuses the Map's value buffer
    assert int(first["count"]) == 5


def test_update_flags(maps_obj):
    lru = maps_obj.maps["lru"]
    lru.update(1, 10, flags="noexist")
    with pytest.raises(pybpf.BpfError) as exc:
        lru.update(1, 11, flags="noexist")
    assert "already exists" in str(exc.value)
    with pytest.raises(KeyNotFoundError):
        lru.update(2, 20, flags="exist")
    lru.update(1, 12, flags="exist")
    assert lru[1] == 12
    with pytest.raises(ValueError, match="update flags"):
        lru.update(1, 1, flags="sometimes")


def test_lookup_and_delete(maps_obj):
    stats = maps_obj.maps["stats"]
    stats[3] = (33, 0, 0, 0)
    assert int(stats.lookup_and_delete(3)["count"]) == 33
    assert 3 not in stats
    with pytest.raises(KeyNotFoundError):
        stats.lookup_and_delete(3)


def test_iteration_len_and_items(maps_obj):
    stats = maps_obj.maps["stats"]
    for key in range(20):
        stats[key] = (key * 10, key, 0, 0)
    assert len(stats) == 20
    assert sorted(int(k) for k in stats) == list(range(20))
    items = {int(k): int(v["count"]) for k, v in stats.items()}
    assert items == {k: k * 10 for k in range(20)}
    assert sorted(int(v["tgid"]) for v in stats.values()) == list(range(20))
    for key in stats:                 # deleting while iterating: the keys are a snapshot
        del stats[key]
    assert len(stats) == 0
    slots = maps_obj.maps["slots"]
    assert len(slots) == slots.max_entries == 64


def test_info(maps_obj):
    info = maps_obj.maps["slots"].info
    assert (info.type, info.name, info.key_size, info.value_size, info.max_entries) == \
        ("array", "slots", 4, 8, 64)
    assert "MMAPABLE" in info.flag_names and info.id > 0


# ---- array maps ----------------------------------------------------------------


def test_array_index_out_of_range(maps_obj):
    slots = maps_obj.maps["slots"]
    with pytest.raises(IndexOutOfRangeError, match="max_entries 64") as exc:
        slots[64]
    assert isinstance(exc.value, IndexError) and isinstance(exc.value, KeyError)
    with pytest.raises(IndexOutOfRangeError):
        slots[64] = 1            # the kernel would say E2BIG, which is not "full"
    with pytest.raises(IndexOutOfRangeError):
        slots.update_batch([1, 64], [1, 2])
    assert slots[1] == 0         # nothing of the refused batch was written
    assert 64 not in slots and slots.get(64) is None
    with pytest.raises(OverflowError, match="uint32"):
        slots[-1]


def test_array_elements_cannot_be_deleted(maps_obj):
    slots = maps_obj.maps["slots"]
    with pytest.raises(NotSupportedError, match="cannot be deleted"):
        del slots[0]
    with pytest.raises(NotSupportedError):
        slots.delete_batch([0])
    with pytest.raises(NotSupportedError):
        slots.lookup_and_delete_batch()


# ---- per-CPU -------------------------------------------------------------------


def test_percpu_values_have_one_slot_per_cpu(maps_obj):
    n = ncpus()
    pcpu = maps_obj.maps["pcpu_hash"]          # 4-byte values, padded to 8 per CPU in the kernel
    assert pcpu.n_cpus == n
    pcpu[1] = 7                                 # broadcast
    assert pcpu[1].shape == (n,) and pcpu[1].tolist() == [7] * n
    pcpu[2] = list(range(100, 100 + n))         # one per CPU
    assert pcpu[2].tolist() == list(range(100, 100 + n))
    pcpu[3] = np.arange(n, dtype=np.uint32) + 5
    keys, values = pcpu.lookup_batch()
    assert values.shape == (3, n) and values.dtype == np.uint32
    got = {int(k): v.tolist() for k, v in zip(keys, values)}
    assert got == {1: [7] * n, 2: list(range(100, 100 + n)), 3: list(range(5, 5 + n))}
    with pytest.raises(ValueError, match=f"exactly {n}"):
        pcpu[4] = list(range(n + 1))
    with pytest.raises(ValueError, match="per possible CPU"):
        pcpu[4] = np.zeros(n + 3, dtype=np.uint32)
    assert 4 not in pcpu


def test_percpu_counts_from_a_program(maps_obj):
    with maps_obj.programs["on_getppid"].attach():
        for _ in range(25):
            os.getppid()
    per_cpu = maps_obj.maps["pcpu_array"][0]
    assert per_cpu.shape == (ncpus(),) and int(per_cpu.sum()) == 25
    assert int(maps_obj.maps["pcpu_hash"][os.getpid()].sum()) == 25
    _keys, values = maps_obj.maps["pcpu_array"].lookup_batch()
    assert values.shape == (4, ncpus()) and int(values[0].sum()) == 25


def test_percpu_update_batch_broadcast_and_per_cpu():
    n = ncpus()
    with Map.create("percpu_array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=4) as m:
        m.update_batch([0, 1], [3, list(range(n))])
        _keys, values = m.lookup_batch()
        assert values[0].tolist() == [3] * n and values[1].tolist() == list(range(n))
        assert values[2:].sum() == 0


# ---- LPM trie, queue, stack ------------------------------------------------------------


def test_lpm_trie_longest_prefix(maps_obj):
    routes = maps_obj.maps["routes"]
    assert routes.key_dtype.names == ("prefixlen", "addr")
    routes[(8, [10, 0, 0, 0])] = 1
    routes[{"prefixlen": 24, "addr": [10, 1, 2, 0]}] = 2
    assert routes[(32, [10, 1, 2, 77])] == 2
    assert routes[(32, [10, 9, 9, 9])] == 1
    assert (32, [11, 0, 0, 0]) not in routes
    keys, values = routes.lookup_batch()
    assert sorted((int(k["prefixlen"]), int(v)) for k, v in zip(keys, values)) == [(8, 1), (24, 2)]


def test_queue_and_stack(maps_obj):
    fifo, lifo = maps_obj.maps["fifo"], maps_obj.maps["lifo"]
    for value in (1, 2, 3, 4):
        fifo.push(value)
        lifo.push(value * 10)
    with pytest.raises(MapFullError):
        fifo.push(5)
    fifo.push(5, overwrite=True)               # drops the oldest (1)
    assert fifo.peek() == 2
    assert [int(fifo.pop()) for _ in range(4)] == [2, 3, 4, 5]
    assert [int(lifo.pop()) for _ in range(4)] == [40, 30, 20, 10]
    with pytest.raises(KeyNotFoundError, match="empty"):
        fifo.pop()
    with pytest.raises(NotSupportedError, match="push/pop/peek"):
        fifo[0]
    with pytest.raises(TypeError, match="len"):
        len(fifo)
    with pytest.raises(NotSupportedError, match="queue and stack"):
        maps_obj.maps["stats"].push(1)


# ---- map-in-map -----------------------------------------------------------------------


def test_map_in_map_switches_what_the_program_sees(maps_obj):
    outer, inner_a, inner_b = (maps_obj.maps[n] for n in ("outer", "inner_a", "inner_b"))
    bump = maps_obj.programs["bump_inner"]
    assert outer.inner_id(0) == inner_a.id
    bump.test_run(PKT)
    outer.set_inner(0, inner_b)                 # by Map
    bump.test_run(PKT)
    bump.test_run(PKT)
    assert (int(inner_a[0]), int(inner_b[0])) == (1, 2)
    outer.set_inner(0, inner_a.fd)              # by fd
    bump.test_run(PKT)
    assert int(inner_a[0]) == 2
    with outer.inner(0, value_dtype=np.uint64) as handle:   # by id
        assert handle.id == inner_a.id and int(handle[0]) == 2
    outer.update_batch([1], [inner_b])
    assert outer.inner_id(1) == inner_b.id
    with pytest.raises(NotSupportedError, match="array_of_maps"):
        inner_a.set_inner(0, inner_b)


# ---- struct values through a program ------------------------------------------------------


def test_struct_values_written_from_python_are_read_by_a_program(maps_obj):
    recs_in, recs_out = maps_obj.maps["recs_in"], maps_obj.maps["recs_out"]
    rng = np.random.default_rng(7)
    written = []
    for key in range(4):
        rec = {"tag": int(rng.integers(0, 256)), "big": int(rng.integers(0, 2**63)),
               "small": int(rng.integers(-2**15, 2**15)), "name": bytes(rng.integers(1, 127, 5).astype(np.uint8)),
               "arr": [int(x) for x in rng.integers(0, 2**32, 3)],
               "inner": {"lo": int(rng.integers(0, 2**16)), "hi": int(rng.integers(0, 2**16))}}
        written.append(rec)
    recs_in.update_batch(range(4), written)
    assert maps_obj.programs["copy_records"].test_run(PKT).retval == 2  # XDP_PASS
    for key, rec in enumerate(written):
        out = recs_out[key]
        assert int(out["big"]) == rec["big"] and int(out["small"]) == rec["small"]
        assert out["arr"].tolist() == rec["arr"] and int(out["tag"]) == rec["tag"]
        assert (int(out["lo"]), int(out["hi"])) == (rec["inner"]["lo"], rec["inner"]["hi"])
        assert bytes(out["name"]).ljust(5, b"\0") == rec["name"]


# ---- batches ---------------------------------------------------------------------------------


def test_batch_round_trip_hash(kernel):
    with Map.create("hash", key_dtype=np.uint64, value_dtype=np.int32, max_entries=5000) as m:
        keys = np.arange(4321, dtype=np.uint64) * 7919
        values = np.arange(4321, dtype=np.int32) - 2000
        m.update_batch(keys, values)
        assert m.batch_supported
        for chunk in (None, 1, 100, 10000):
            got_k, got_v = m.lookup_batch(chunk=chunk)
            order = np.argsort(got_k)
            assert np.array_equal(got_k[order], keys) and np.array_equal(got_v[order], values)
        assert len(m) == 4321
        m.delete_batch(keys[:321])
        assert len(m) == 4000
        got_k, got_v = m.lookup_and_delete_batch(chunk=64)
        assert sorted(got_k.tolist()) == keys[321:].tolist() and len(m) == 0
        empty_k, empty_v = m.lookup_batch()
        assert empty_k.shape == (0,) and empty_v.shape == (0,)


def test_batch_partial_failure_reports_processed(kernel):
    with Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint32, max_entries=4) as m:
        with pytest.raises(MapFullError) as exc:
            m.update_batch([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6])
        assert exc.value.processed == 4 and len(m) == 4
        with pytest.raises(KeyNotFoundError) as missing:
            m.delete_batch([1, 2, 99, 3])
        assert missing.value.processed == 2
        assert sorted(int(k) for k in m) == [3, 4]
        with pytest.raises(ValueError, match="3 items for 2 keys"):
            m.update_batch([1, 2], [1, 2, 3])


def test_types_without_kernel_batch_fall_back_per_key(kernel, caplog):
    # devmap_hash has no batch ops in the kernel; values are ifindexes (lo = 1).
    with Map.create("devmap_hash", key_dtype=np.uint32, value_dtype=np.uint32, max_entries=8) as m:
        with caplog.at_level(logging.DEBUG, logger="pybpf.maps.map"):
            assert not m.batch_supported
        assert any("no batch lookup" in r.getMessage() for r in caplog.records)
        m.update_batch([5, 7], [1, 1])
        keys, values = m.lookup_batch()
        assert sorted(keys.tolist()) == [5, 7] and values.tolist() == [1, 1]
        assert sorted((int(k), int(v)) for k, v in m.items()) == [(5, 1), (7, 1)]
        m.delete_batch([5])
        assert [int(k) for k in m] == [7] and len(m) == 1


# ---- create, pin, share ----------------------------------------------------------------------


def test_create_validates_arguments(kernel):
    with pytest.raises(ValueError, match="unknown map type"):
        Map.create("hashh", key_size=4, value_size=4, max_entries=1)
    with pytest.raises(ValueError, match="15 characters"):
        Map.create("hash", key_size=4, value_size=4, max_entries=1, name="a-much-too-long-name")
    with pytest.raises(ValueError, match="unknown map flag"):
        Map.create("hash", key_size=4, value_size=4, max_entries=1, flags="fast")
    with pytest.raises(ValueError, match="does not match"):
        Map.create("hash", key_dtype=np.uint32, key_size=8, value_size=4, max_entries=1)
    with pytest.raises(pybpf.BpfError) as exc:   # the kernel refuses a zero-size key for a hash
        Map.create("hash", key_size=0, value_size=4, max_entries=1)
    assert exc.value.errno is not None and "creating hash map" in str(exc.value)


def test_pin_from_pin_from_id_from_fd(kernel, bpffs):
    path = os.path.join(bpffs, "shared")
    with Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=8, name="shared") as m:
        m[1] = 11
        m.pin(path)
        with Map.from_pin(path, key_dtype=np.uint32, value_dtype=np.uint64) as pinned:
            assert pinned.id == m.id and pinned[1] == 11 and pinned.name == "shared"
            pinned[2] = 22
        with Map.from_id(m.id, key_dtype=np.uint32, value_dtype=np.uint64) as by_id:
            assert by_id[2] == 22
        with Map.from_fd(m.fd, key_dtype=np.uint32, value_dtype=np.uint64) as by_fd:
            assert by_fd[1] == 11
        assert m.fd >= 0  # from_fd duplicated the fd
        m.unpin(path)
    assert not os.path.exists(path)
    with pytest.raises(pybpf.BpfError, match="no such pin"):
        Map.from_pin(path)


def test_state_survives_a_reload_through_reuse(kernel, bundled, bpffs):
    path = os.path.join(bpffs, "stats")
    with pybpf.open(bundled("maps_test")) as first:
        first.load()
        first.maps["stats"][42] = (4242, 0, 0, 0)
        first.maps["stats"].pin(path)
    with Map.from_pin(path) as pinned, pybpf.open(bundled("maps_test")) as second:
        second.maps["stats"].reuse(pinned)
        second.load()
        assert second.maps["stats"].id == pinned.id
        assert int(second.maps["stats"][42]["count"]) == 4242
    with pybpf.open(bundled("maps_test")) as third:     # or by pin path (LIBBPF_PIN_BY_NAME style)
        third.maps["stats"].set_pin_path(path)
        third.load()
        assert int(third.maps["stats"][42]["count"]) == 4242


# ---- bad input, closed, leaks ------------------------------------------------------------------


def test_bad_keys_and_values_name_the_expected_type(maps_obj):
    stats = maps_obj.maps["stats"]
    with pytest.raises(TypeError, match="uint32"):
        stats["seven"]
    with pytest.raises(ValueError, match="expected 4 bytes"):
        stats[b"\x01\x02"]
    with pytest.raises(OverflowError, match=r"uint32 \[0, 4294967295\]"):
        stats[2**32]
    with pytest.raises(KeyError, match="no field 'counter'"):
        stats[1] = {"counter": 1}
    with pytest.raises(ValueError, match="expected 16 bytes"):
        stats[1] = b"short"
    with pytest.raises(TypeError, match="struct of 16 bytes"):
        stats[1] = 5
    with pytest.raises(ValueError, match="5 values for a struct with 4 fields"):
        stats[1] = (1, 2, 3, 4, 5)
    assert 1 not in stats   # nothing half-written


def test_view_of_a_hash_map_names_mmapable(maps_obj):
    with pytest.raises(NotSupportedError, match="BPF_F_MMAPABLE"):
        maps_obj.maps["stats"].view()


def test_operations_after_close_raise_closed_error(kernel, bundled):
    obj = pybpf.open(bundled("maps_test"))
    obj.load()
    stats = obj.maps["stats"]
    stats[1] = (1, 0, 0, 0)
    obj.close()
    for op in (lambda: stats[1], lambda: stats.update(1, (1, 0, 0, 0)), lambda: stats.lookup_batch(),
               lambda: len(stats), lambda: list(stats), lambda: stats.fd, lambda: stats.view()):
        with pytest.raises(ClosedError):
            op()
    own = Map.create("array", key_dtype=np.uint32, value_dtype=np.uint32, max_entries=2)
    own.close()
    own.close()  # idempotent
    with pytest.raises(ClosedError, match="is closed"):
        own[0]
    with pytest.raises(ClosedError):
        own.update_batch([0], [1])


def test_no_fd_leak_over_many_maps(kernel):
    before = open_fds()
    for i in range(200):
        with Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=4) as m:
            m[i] = i
            m.lookup_batch()
        a = Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=4, flags="mmapable")
        view = a.view()
        a.close()
        del view
        with pytest.raises(ValueError):
            Map.create("hash", key_size=4, value_size=4, max_entries=1, name="bad name!")
    assert not new_fds(before)
