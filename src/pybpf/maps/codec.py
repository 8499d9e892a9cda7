"""Turning Python values into the exact bytes of a BTF-typed C value, and back.

Accepted: ints/bools/floats (range-checked against the C type), numpy scalars
and records, tuples and dicts for structs, sequences for arrays, ``bytes``
for ``char[N]`` and raw ``bytes`` of exactly the type's size for anything.
Every refusal names what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["describe", "to_array", "to_bytes"]


def describe(dtype: np.dtype) -> str:
    """A dtype as error messages name it."""
    if dtype.names:
        return f"struct of {dtype.itemsize} bytes with fields {list(dtype.names)}"
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return f"array {shape} of {describe(base)}"
    if dtype.kind == "S":
        return f"char[{dtype.itemsize}] (bytes)"
    if dtype.kind == "V":
        return f"{dtype.itemsize} raw bytes"
    return f"{dtype.name}"


def _fill(target: np.ndarray, value: Any, what: str) -> None:
    """Assign ``value`` into the 0-d or n-d array ``target`` with range checks."""
    dtype = target.dtype
    if isinstance(value, np.ndarray) and value.dtype == dtype and value.shape == target.shape:
        target[...] = value
        return
    if isinstance(value, np.void) and value.dtype == dtype:
        target[...] = value
        return
    if isinstance(value, (bytes, bytearray, memoryview)) and dtype.kind != "S" and target.shape == ():
        raw = bytes(value)
        if len(raw) != dtype.itemsize:
            raise ValueError(f"{what}: expected {dtype.itemsize} bytes for {describe(dtype)}, got {len(raw)}")
        target.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, np.uint8)  # 0-d arrays cannot change itemsize
        return
    if target.shape != ():
        items = list(value) if isinstance(value, (Sequence, np.ndarray)) else None
        if items is None or (not isinstance(value, (bytes, str)) and len(items) != target.shape[0]):
            raise ValueError(f"{what}: expected a sequence of {target.shape[0]} items for an array "
                             f"of shape {target.shape}, got {value!r:.80}")
        for index, item in enumerate(items):
            _fill(target[index, ...], item, f"{what}[{index}]")
        return
    if dtype.names:
        if isinstance(value, Mapping):
            unknown = set(value) - set(dtype.names)
            if unknown:
                raise KeyError(f"{what}: no field {min(unknown)!r}; fields are {list(dtype.names)}")
            pairs = list(value.items())
        elif isinstance(value, (tuple, list)):
            if len(value) > len(dtype.names):
                raise ValueError(f"{what}: {len(value)} values for a struct with {len(dtype.names)} fields")
            pairs = list(zip(dtype.names, value))
        else:
            raise TypeError(f"{what}: expected {describe(dtype)} as a dict, tuple, numpy record "
                            f"or {dtype.itemsize} bytes, got {type(value).__name__}")
        for name, item in pairs:
            _fill(target[name], item, f"{what}.{name}")
        return
    target[()] = _scalar(value, dtype, what)


def _scalar(value: Any, dtype: np.dtype, what: str) -> Any:
    kind = dtype.kind
    if kind == "S":
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, (bytes, bytearray, np.bytes_)):
            raise TypeError(f"{what}: expected bytes for {describe(dtype)}, got {type(value).__name__}")
        if len(value) > dtype.itemsize:
            raise ValueError(f"{what}: {len(value)} bytes do not fit in {describe(dtype)}")
        return bytes(value)
    if kind in "iub":
        if isinstance(value, (float, np.floating, str, bytes)):
            raise TypeError(f"{what}: expected an integer for {describe(dtype)}, got {type(value).__name__}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise TypeError(f"{what}: expected an integer for {describe(dtype)}, "
                            f"got {type(value).__name__}") from None
        if kind == "b":
            if number not in (0, 1):  # a C bool holds 0 or 1; 2 or -1 is a mistake, not True
                raise OverflowError(f"{what}: {number} is out of range for bool (give True/False or 0/1)")
            return bool(number)
        info = np.iinfo(dtype)
        if not info.min <= number <= info.max:
            raise OverflowError(f"{what}: {number} is out of range for {describe(dtype)} "
                                f"[{info.min}, {info.max}]")
        return number
    if kind == "f":
        if isinstance(value, (str, bytes)):
            raise TypeError(f"{what}: expected a number for {describe(dtype)}, got {type(value).__name__}")
        return float(value)
    raise TypeError(f"{what}: the type has no BTF description, so give {dtype.itemsize} raw bytes, or say "
                    f"what it is (e.g. Map.from_id(..., key_dtype='u4', value_dtype='u8'))")


def to_array(value: Any, dtype: np.dtype, what: str = "value") -> np.ndarray:
    """An array of ``dtype`` (0-d, or the subarray's shape) holding ``value``, range-checked."""
    out = np.zeros((), dtype=dtype)  # a subarray dtype expands to its n-d shape here
    _fill(out, value, what)
    return out


def to_bytes(value: Any, dtype: np.dtype, what: str = "value") -> bytes:
    """The exact C bytes of ``value`` as ``dtype``."""
    return to_array(value, dtype, what).tobytes()
