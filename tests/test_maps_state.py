"""Hypothesis state machines: a real kernel hash map and array map next to a dict model.

Random keys (some past max_entries), values, update flags, deletes, full
maps, batch updates/deletes/lookups; after every step the kernel map and the
model hold the same contents, and every refused operation raised the error
the model predicts (with ``processed`` telling how much of a batch landed).
"""

from __future__ import annotations

import errno

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from pybpf import BpfError, KeyNotFoundError, Map, MapFullError, NotSupportedError
from pybpf.maps.map import IndexOutOfRangeError

CAPACITY = 6
KEYS = st.integers(0, 11)
VALUES = st.integers(0, 2**64 - 1)
FLAGS = st.sampled_from(["any", "noexist", "exist"])
SETTINGS = settings(max_examples=100, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _expect_error(exc: BaseException | None, expected: type[BaseException] | int | None) -> None:
    """``expected``: None (no error), an exception class, or an errno of a plain BpfError."""
    if expected is None:
        assert exc is None, f"unexpected {exc!r}"
    elif isinstance(expected, int):
        assert isinstance(exc, BpfError) and exc.errno == expected, f"expected errno {expected}, got {exc!r}"
    else:
        assert isinstance(exc, expected), f"expected {expected.__name__}, got {exc!r}"


def _run(fn, *args, **kwargs) -> BaseException | None:
    try:
        fn(*args, **kwargs)
    except (BpfError, ValueError, TypeError) as exc:
        return exc
    return None


class HashMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.map = Map.create("hash", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=CAPACITY,
                              name="hyp_hash")
        self.model: dict[int, int] = {}

    def teardown(self) -> None:
        self.map.close()

    def _model_update(self, key: int, value: int, flags: str) -> type[BaseException] | int | None:
        if key in self.model:
            if flags == "noexist":
                return errno.EEXIST
        else:
            if flags == "exist":
                return KeyNotFoundError
            if len(self.model) >= CAPACITY:
                return MapFullError
        self.model[key] = value
        return None

    @rule(key=KEYS, value=VALUES, flags=FLAGS)
    def update(self, key: int, value: int, flags: str) -> None:
        exc = _run(self.map.update, key, value, flags=flags)
        _expect_error(exc, self._model_update(key, value, flags))

    @rule(key=KEYS)
    def delete(self, key: int) -> None:
        expected = None if key in self.model else KeyNotFoundError
        self.model.pop(key, None)
        _expect_error(_run(self.map.__delitem__, key), expected)

    @rule(key=KEYS)
    def lookup(self, key: int) -> None:
        assert self.map.get(key) == self.model.get(key)
        assert (key in self.map) == (key in self.model)

    @rule(key=KEYS)
    def lookup_and_delete(self, key: int) -> None:
        if key in self.model:
            assert int(self.map.lookup_and_delete(key)) == self.model.pop(key)
        else:
            with pytest.raises(KeyNotFoundError):
                self.map.lookup_and_delete(key)

    @rule(pairs=st.lists(st.tuples(KEYS, VALUES), max_size=8), flags=FLAGS)
    def update_batch(self, pairs: list[tuple[int, int]], flags: str) -> None:
        keys = np.array([k for k, _ in pairs], dtype=np.uint32)
        values = np.array([v for _, v in pairs], dtype=np.uint64)
        exc = _run(self.map.update_batch, keys, values, flags=flags)
        for done, (key, value) in enumerate(pairs):
            expected = self._model_update(key, value, flags)
            if expected is not None:
                _expect_error(exc, expected)
                assert exc is not None and exc.processed == done  # type: ignore[attr-defined]
                return
        _expect_error(exc, None)

    @rule(keys=st.lists(KEYS, max_size=6))
    def delete_batch(self, keys: list[int]) -> None:
        exc = _run(self.map.delete_batch, keys)
        for done, key in enumerate(keys):
            if key not in self.model:
                _expect_error(exc, KeyNotFoundError)
                assert exc is not None and exc.processed == done  # type: ignore[attr-defined]
                return
            del self.model[key]
        _expect_error(exc, None)

    @rule(chunk=st.one_of(st.none(), st.integers(1, 8)))
    def lookup_batch(self, chunk: int | None) -> None:
        keys, values = self.map.lookup_batch(chunk=chunk)
        assert keys.dtype == np.uint32 and values.dtype == np.uint64
        assert dict(zip(keys.tolist(), values.tolist())) == self.model and len(keys) == len(self.model)

    @rule()
    def lookup_and_delete_batch(self) -> None:
        keys, values = self.map.lookup_and_delete_batch(chunk=2)
        assert dict(zip(keys.tolist(), values.tolist())) == self.model
        self.model.clear()

    @invariant()
    def agrees(self) -> None:
        assert len(self.map) == len(self.model)
        assert {int(k): int(v) for k, v in self.map.items()} == self.model
        assert sorted(int(k) for k in self.map) == sorted(self.model)


class ArrayMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.map = Map.create("array", key_dtype=np.uint32, value_dtype=np.uint64, max_entries=8,
                              flags="mmapable", name="hyp_array")
        self.model = [0] * 8
        self.view = self.map.view()

    def teardown(self) -> None:
        del self.view
        self.map.close()

    def _model_update(self, key: int, value: int, flags: str) -> type[BaseException] | int | None:
        if key >= 8:
            return IndexOutOfRangeError
        if flags == "noexist":
            return errno.EEXIST        # every index of an array always exists
        self.model[key] = value
        return None

    @rule(key=KEYS, value=VALUES, flags=FLAGS)
    def update(self, key: int, value: int, flags: str) -> None:
        exc = _run(self.map.update, key, value, flags=flags)
        _expect_error(exc, self._model_update(key, value, flags))

    @rule(key=KEYS)
    def lookup(self, key: int) -> None:
        if key < 8:
            assert int(self.map[key]) == self.model[key] and key in self.map
        else:
            with pytest.raises(IndexOutOfRangeError):
                self.map[key]
            assert key not in self.map

    @rule(key=KEYS)
    def delete(self, key: int) -> None:
        with pytest.raises(NotSupportedError):
            del self.map[key]

    @rule(index=st.integers(0, 7), value=VALUES)
    def write_view(self, index: int, value: int) -> None:
        self.view[index] = value
        self.model[index] = value

    @rule(pairs=st.lists(st.tuples(KEYS, VALUES), max_size=8), flags=FLAGS)
    def update_batch(self, pairs: list[tuple[int, int]], flags: str) -> None:
        exc = _run(self.map.update_batch, [k for k, _ in pairs], [v for _, v in pairs], flags=flags)
        if any(k >= 8 for k, _ in pairs):
            _expect_error(exc, IndexOutOfRangeError)   # checked up front: nothing written
            return
        for done, (key, value) in enumerate(pairs):
            expected = self._model_update(key, value, flags)
            if expected is not None:
                _expect_error(exc, expected)
                assert exc is not None and exc.processed == done  # type: ignore[attr-defined]
                return
        _expect_error(exc, None)

    @invariant()
    def agrees(self) -> None:
        keys, values = self.map.lookup_batch()
        assert keys.tolist() == list(range(8)) and values.tolist() == self.model
        assert self.view.tolist() == self.model and len(self.map) == 8


def test_hash_map_matches_a_dict_model(kernel):
    run_state_machine_as_test(HashMachine, settings=SETTINGS)


def test_array_map_matches_a_list_model(kernel):
    run_state_machine_as_test(ArrayMachine, settings=SETTINGS)
