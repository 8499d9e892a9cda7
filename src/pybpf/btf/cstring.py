"""C strings out of ``char[N]`` fields: text ends at the first NUL, in one numpy pass.

A BTF ``char[N]`` becomes numpy ``S<N>``, which drops only *trailing* NULs.
BPF programs rarely zero what they fill: ``bpf_ringbuf_reserve`` hands out
ring memory that still holds older records, and ``bpf_get_current_comm`` /
``bpf_probe_read_*_str`` write the string and its NUL and leave the rest.
After the ring wraps, a ``char filename[64]`` then reads
``b'/bin/true\\x00_to_f\\x00h...'``: the string, its NUL, then bytes of an
older record.  :func:`cstrings` clears every byte after the first NUL of
each char field (vectorised: one ``logical_or.accumulate`` per field over
all records, no Python loop per record), so ``S<N>`` then holds exactly the
C string.  :func:`cstring` does the same for one bytes value.

Pure: numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["cstring", "cstrings", "char_fields"]


def cstring(raw: bytes | bytearray | memoryview | np.bytes_) -> bytes:
    """The C string in ``raw``: the bytes before the first NUL (all of them if there is none)."""
    return bytes(raw).split(b"\0", 1)[0]


def char_fields(dtype: np.dtype) -> list[tuple[int, tuple[int, ...], int]]:
    """Every ``S<N>`` leaf of ``dtype`` as (byte offset, subarray shape, N), nested structs included."""
    found: list[tuple[int, tuple[int, ...], int]] = []
    _collect(np.dtype(dtype), 0, found)
    return found


def _collect(dtype: np.dtype, base: int, found: list[tuple[int, tuple[int, ...], int]]) -> None:
    if dtype.names:
        for name in dtype.names:
            field_dtype, offset = dtype.fields[name][:2]  # type: ignore[index]
            _collect(field_dtype, base + offset, found)
        return
    shape: tuple[int, ...] = ()
    if dtype.subdtype is not None:
        dtype, shape = dtype.subdtype
    if dtype.kind == "S" and dtype.itemsize:
        found.append((base, shape, dtype.itemsize))
    elif dtype.names and shape:  # an array of structs: each element's char fields
        for index in np.ndindex(*shape):
            _collect(dtype, base + int(np.ravel_multi_index(index, shape)) * dtype.itemsize, found)


def cstrings(array: Any, *, copy: bool = True) -> np.ndarray:
    """``array`` with every char field cut at its first NUL (the bytes after it zeroed).

    ``array`` is an ``S<N>`` array (e.g. ``batch["comm"]``) or a record array
    whose char fields, nested ones included, are all cleaned (e.g. a whole
    ``RingBuffer.drain()`` batch). Returns a new array (``copy=False`` cleans a
    writable array in place and returns it). Afterwards numpy's ``S<N>``
    shows the C string: ``cstrings(batch["comm"])[i] == b"bash"``;
    ``.astype(str)`` gives text when the strings are ASCII.
    """
    a = np.array(array, copy=True) if copy else np.asarray(array)
    if not copy and not a.flags.writeable:
        raise ValueError("cstrings(copy=False) needs a writable array (a borrowed ring view is read-only)")
    leaves = char_fields(a.dtype)
    if not leaves:
        raise TypeError(f"cstrings() wants char arrays (numpy S<N>) or records with char fields, "
                        f"not dtype {a.dtype}")
    for offset, shape, size in leaves:
        # typed Any: numpy 1.x's and 2.x's stubs each refuse another inferred type of this dict
        spec: Any = {"names": ["s"], "formats": [(np.uint8, shape + (size,))], "offsets": [offset],
                     "itemsize": a.dtype.itemsize}
        single = np.dtype(spec)
        chars = a.view(single)["s"]
        after_nul = np.logical_or.accumulate(chars == 0, axis=-1)
        chars[after_nul] = 0
    return a
