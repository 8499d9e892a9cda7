"""The per-key C type (``pybpf._sys._keyops``): ``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m`` on
array and hash maps give what the general path gives, value for value and error for error,
and never touch the fd once the map is closed."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf
from pybpf import Map
from pybpf._sys import fast

needs_keyops = pytest.mark.skipif(fast.KeyOps is None, reason="the compiled per-key type is not built here (make ext)")

KEYS = [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64]
VALUES = [np.uint8, np.uint32, np.uint64, np.int16, np.int64, np.float32, np.float64]


def _outcome(call, *args):
    try:
        result = call(*args)
    except Exception as exc:  # noqa: BLE001 - the outcome is the exception's type and message
        return ("raised", type(exc).__name__, str(exc))
    return ("returned", type(result).__name__, None if result is None else repr(result))


@needs_keyops
@pytest.mark.parametrize("kind", ["array", "hash", "lru_hash"])
def test_the_dunders_are_the_c_type(kernel, kind):
    with Map.create(kind, key_dtype=np.uint32, value_dtype=np.uint64, max_entries=8) as m:
        m[1] = 5
        for name in ("_getitem", "_setitem", "_delitem", "_contains", "lookup"):
            assert type(m.__dict__[name]).__name__ == "KeyOp", name
        value = m[1]
        assert type(value) is np.uint64 and value == 5 and 1 in m
        assert m.lookup(1) == 5


@needs_keyops
def test_other_map_types_keep_the_python_path(kernel):
    with Map.create("percpu_array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=4) as m:
        m[0]  # noqa: B018 - sets the layouts up
        assert "_getitem" not in m.__dict__


@needs_keyops
@pytest.mark.parametrize("key_type", KEYS)
@pytest.mark.parametrize("value_type", VALUES)
def test_every_key_and_value_type_round_trips(kernel, key_type, value_type):
    info = np.iinfo(key_type)
    keys = sorted({int(info.min), int(info.max), 0, 1, int(info.max) // 3})
    with Map.create("hash", key_dtype=key_type, value_dtype=value_type, max_entries=16) as m:
        for i, key in enumerate(keys):
            value = (1.5 * i - 2) if np.dtype(value_type).kind == "f" else (i * 7) % 100
            m[key] = value
            got = m[key]
            assert type(got) is value_type and got == value_type(value)
            assert key in m
            assert m._lookup_general(key) == got
        for key in keys:
            del m[key]
            assert key not in m


@needs_keyops
@pytest.mark.parametrize("kind", ["array", "hash"])
def test_refusals_are_the_general_paths(kernel, kind):
    """Whatever the C call cannot do goes to the general path, which says why."""
    class Index:
        def __index__(self) -> int:
            return 2

    with Map.create(kind, key_dtype=np.uint32, value_dtype=np.int16, max_entries=4) as m:
        m[2] = -3
        for key in (-1, 2**32, 4, 9, 1.0, "2", b"\x02\0\0\0", None, True, np.uint32(2), np.int64(2), Index()):
            c_get = _outcome(m.__getitem__, key)
            general = _outcome(m._lookup_general, key)
            assert c_get == general, key
            assert _outcome(m.__contains__, key) == _outcome(m._contains_general, key), key
        for value in (2**15, -2**15 - 1, 1.5, "x", None, np.int16(4), np.int64(4), True):
            assert _outcome(m.__setitem__, 1, value) == _outcome(m._update_general, 1, value, "any"), value
        if kind == "array":
            assert _outcome(m.__delitem__, 1) == _outcome(m._delete, 1)
            assert _outcome(m.__delitem__, 1)[1] == "NotSupportedError"
        else:
            assert _outcome(m.__delitem__, 3)[1] == "KeyNotFoundError"


@needs_keyops
def test_wrong_argument_counts_are_type_errors(kernel):
    with Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint32, max_entries=4) as m:
        m[1] = 1
        with pytest.raises(TypeError, match="getitem takes 1 positional argument"):
            m.lookup(1, 2)
        with pytest.raises(TypeError, match="setitem takes 2 positional arguments"):
            m.__setitem__(1)
        with pytest.raises(TypeError):
            m.lookup(key=1)


@needs_keyops
def test_a_closed_map_is_never_read_through_its_old_fd(kernel):
    m = Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=4)
    m[1] = 10
    getter, setter, contains = m.__getitem__, m.__setitem__, m.__contains__
    ops = m._fast.keyops
    m.close()
    assert ops.closed
    # the same fd number now names another map: the old callables must not use it
    with Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=4) as other:
        other[1] = 99
        for call, args in ((getter, (1,)), (setter, (1, 5)), (contains, (1,))):
            with pytest.raises(pybpf.ClosedError):
                call(*args)
        assert other[1] == 99


@needs_keyops
def test_a_key_whose_index_closes_the_map(kernel):
    """Python code run by the key's conversion (``__index__``) closes the map: the call then
    goes to the general path (ClosedError), not to the fd."""
    m = Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=4)

    class Closer:
        def __index__(self) -> int:
            m.close()
            return 1

    m[1] = 3
    with pytest.raises(pybpf.ClosedError):
        m[Closer()]


@needs_keyops
def test_threads_share_a_map(kernel):
    errors: list[BaseException] = []
    with Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=8192) as m:
        def work(base: int) -> None:
            try:
                for i in range(2000):
                    m[base + i] = 3 * (base + i)
                    assert m[base + i] == 3 * (base + i) and (base + i) in m
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k * 1_000_000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        items = dict(m.items())
        assert len(items) == 8000 and all(int(v) == 3 * int(k) for k, v in items.items())


@needs_keyops
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["set", "get", "del", "has"]),
                              st.integers(min_value=-3, max_value=20),
                              st.one_of(st.integers(min_value=-2**63, max_value=2**64), st.floats(allow_nan=False))),
                    max_size=40))
def test_c_and_general_paths_agree(kernel, ops):
    """Random calls on two identical maps, one through the C type and one through the general
    path: the same outcomes and the same contents."""
    with Map.create("hash", key_dtype=np.uint32, value_dtype=np.int64, max_entries=8) as a, \
            Map.create("hash", key_dtype=np.uint32, value_dtype=np.int64, max_entries=8) as b:
        a[0] = b[0] = 0  # both set up; only `a` has the C dunders in use below

        def same(c_call, general_call, *args):
            c, general = _outcome(c_call, *args), _outcome(general_call, *args)
            assert c[:2] == general[:2]
            assert (c[2] or "").replace(a.name, "M") == (general[2] or "").replace(b.name, "M")

        for op, key, value in ops:
            if op == "set":
                same(a.__setitem__, lambda k, v: b._update_general(k, v, "any"), key, value)
            elif op == "get":
                same(a.__getitem__, b._lookup_general, key)
            elif op == "del":
                same(a.__delitem__, b._delete, key)
            else:
                same(a.__contains__, b._contains_general, key)
        assert dict(a.items()) == dict(b.items())
