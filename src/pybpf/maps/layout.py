"""How one map key or value sits in the buffers the kernel reads and writes.

A ``Layout`` turns Python input into those bytes and the bytes back into
typed numpy values, for one element (into a buffer reused on every call, so
the per-key path allocates no C memory) or for a whole batch (one contiguous
numpy array the kernel writes into directly).

Per-CPU maps: the kernel exchanges one slot per *possible* CPU, each slot
the value size rounded up to 8 bytes; a per-CPU value reads back as an array
of shape ``(n_cpus,)`` (``(n, n_cpus)`` in a batch), a strided view that
skips the padding. Writing takes one value (copied to every CPU) or exactly
``n_cpus`` values, as a list or an array whose first axis is the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pybpf.maps.codec import describe, to_array

__all__ = ["Layout"]


def _raw(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def _round8(size: int) -> int:
    return (size + 7) & ~7


class Layout:
    """The byte layout of a map's keys or values (``ncpus`` > 0: per-CPU values)."""

    def __init__(self, dtype: np.dtype, size: int, what: str, ncpus: int = 0) -> None:
        self.dtype = dtype
        self.size = size
        self.what = what
        self.ncpus = ncpus
        self.slot = _round8(size) if ncpus else size          # bytes per CPU slot
        self.elem_size = self.slot * ncpus if ncpus else size  # bytes per element in a kernel buffer
        # The reusable one-element buffer: numpy owns it, C gets a pointer to it.
        self.buf = np.zeros(max(self.elem_size, 1), dtype=np.uint8)
        self.one = self._typed(self.buf, 1)  # shape (1, ...): element 0 is the value in ``buf``
        self.ptr: Any = None  # a C pointer to ``buf``, set by the owner
        self.cptr: Any = None  # for plain integers: a typed C pointer to ``buf`` (faster than numpy)
        self.scalar_type = dtype.type
        self.is_int = dtype.kind in "iu" and not dtype.shape
        if self.is_int:
            info = np.iinfo(dtype)
            self.lo, self.hi = int(info.min), int(info.max)
        self.plain_scalar = not ncpus and dtype.kind in "iufb" and not dtype.shape

    def __repr__(self) -> str:
        return f"<Layout {describe(self.dtype)} x{self.ncpus or 1}>"

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one element as returned (``(ncpus,)`` for per-CPU values)."""
        return (self.ncpus,) if self.ncpus else ()

    def _typed(self, storage: np.ndarray, count: int) -> np.ndarray:
        """A typed view of ``count`` elements over raw ``storage`` (per-CPU: skipping padding)."""
        if self.size == 0:
            return np.zeros((count,) + self.shape, dtype=self.dtype)
        if self.ncpus:
            return np.ndarray((count, self.ncpus), dtype=self.dtype, buffer=storage,
                              strides=(self.elem_size, self.slot))
        return np.ndarray((count,), dtype=self.dtype, buffer=storage, strides=(self.elem_size,))

    # ---- one element ---------------------------------------------------

    def encode(self, value: Any) -> None:
        """Write ``value`` into ``self.buf`` (raises TypeError/ValueError/OverflowError naming the type)."""
        if self.is_int and type(value) is int and not self.ncpus:
            if not self.lo <= value <= self.hi:
                raise OverflowError(f"{self.what}: {value} is out of range for {describe(self.dtype)} "
                                    f"[{self.lo}, {self.hi}]")
            if self.cptr is not None:
                self.cptr[0] = value
            else:
                self.one[0] = value
            return
        if self.ncpus:
            self._encode_percpu(value, self.one[0])
            return
        self.buf[: self.size] = _raw(self._one(value, self.what))

    def _one(self, value: Any, what: str) -> np.ndarray:
        if isinstance(value, (bytes, bytearray, memoryview)) and self.dtype.kind != "S" and self.dtype.shape:
            raw = bytes(value)  # raw bytes for an array-typed value
            if len(raw) != self.size:
                raise ValueError(f"{what}: expected {self.size} bytes for {describe(self.dtype)}, "
                                 f"got {len(raw)}")
            return np.frombuffer(raw, dtype=self.dtype.base).reshape(self.dtype.shape)
        return to_array(value, self.dtype, what)

    def _encode_percpu(self, value: Any, target: np.ndarray) -> None:
        """Fill ``target`` (shape ``(ncpus,)``) from one value or one value per CPU."""
        per_cpu = self.per_cpu_values(value)
        if per_cpu is None:
            one = self._one(value, self.what)
            for cpu in range(self.ncpus):
                target[cpu] = one
            return
        for cpu, item in enumerate(per_cpu):
            target[cpu] = self._one(item, f"{self.what}[cpu {cpu}]")

    def per_cpu_values(self, value: Any) -> Any:
        """``value`` as a sequence of ncpus items if it is per-CPU, None if it is one value."""
        sub = self.dtype.shape
        if isinstance(value, np.ndarray) and value.dtype.names is None and self.dtype.names is None:
            if value.shape == (self.ncpus,) + sub:
                return value
            if value.shape == sub:
                return None
            raise ValueError(f"{self.what}: per-CPU value of shape {value.shape}; expected one value of "
                             f"shape {sub} or {self.ncpus} values (shape {(self.ncpus,) + sub}), one "
                             f"per possible CPU")
        if isinstance(value, np.ndarray) and value.ndim >= 1:
            if value.shape[0] != self.ncpus:
                raise ValueError(f"{self.what}: per-CPU value of shape {value.shape}; expected "
                                 f"{self.ncpus} values, one per possible CPU")
            return value
        if isinstance(value, list):
            if len(value) != self.ncpus:
                raise ValueError(f"{self.what}: per-CPU value list of {len(value)} items; expected one "
                                 f"value, or a list of exactly {self.ncpus} (one per possible CPU)")
            return value
        return None

    def decode(self) -> Any:
        """A copy of the value in ``self.buf``: numpy scalar, record, or array."""
        if self.cptr is not None:
            return self.scalar_type(self.cptr[0])
        if self.plain_scalar:
            return self.one[0]  # a numpy scalar is already a copy
        return self.one.copy()[0]  # a record or array that owns its memory

    # ---- many elements -------------------------------------------------

    def empty(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(raw uint8 storage of ``count`` elements, typed view over it)."""
        storage = np.empty(max(count * self.elem_size, 1), dtype=np.uint8)
        return storage, self._typed(storage, count)

    def encode_many(self, items: Any, count: int | None = None) -> np.ndarray:
        """Raw contiguous storage (uint8) holding every item, in order."""
        if isinstance(items, np.ndarray) and not self.ncpus and items.ndim >= 1:
            n = items.shape[0]
            if items.dtype == self.dtype and items.shape[1:] == () and not self.dtype.shape:
                return np.ascontiguousarray(items).view(np.uint8).reshape(-1)
            if self.is_int and items.dtype.kind in "iu" and items.ndim == 1:
                if n and (int(items.min()) < self.lo or int(items.max()) > self.hi):
                    bad = items[(items < self.lo) | (items > self.hi)][0]
                    raise OverflowError(f"{self.what}: {int(bad)} is out of range for "
                                        f"{describe(self.dtype)} [{self.lo}, {self.hi}]")
                return np.ascontiguousarray(items.astype(self.dtype)).view(np.uint8).reshape(-1)
        if isinstance(items, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"{self.what}: expected a sequence or array of {describe(self.dtype)} items, "
                            f"got {type(items).__name__}")
        seq = list(items)
        n = len(seq)
        if count is not None and n != count:
            raise ValueError(f"{self.what}: {n} items for {count} keys")
        storage, typed = self.empty(n)
        for index, item in enumerate(seq):
            if self.ncpus:
                self._encode_percpu(item, typed[index])
            else:
                raw = _raw(self._one(item, f"{self.what}[{index}]"))
                storage[index * self.elem_size:(index + 1) * self.elem_size] = raw
        return storage
