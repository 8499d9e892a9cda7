"""Checks of map-operation arguments, and what each errno of an element operation means.

Map types and flags themselves are kinds in :mod:`pybpf.kinds` (``MapType`` with its
traits, ``MapFlag``); this module turns user arguments into their numbers (``flags=``,
update flags, names, sizes) and maps the kernel's errnos to typed errors.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from pybpf._sys.libbpf import ENOTSUPP, ErrorFactory
from pybpf.errors import (BpfError, BpfPermissionError, IndexOutOfRangeError, InvalidArgumentError, KeyNotFoundError,
                          MapFullError)
from pybpf.kinds import MapFlag, UpdateFlag

__all__ = [
    "LOOKUP_ERRORS",
    "UNSUPPORTED",
    "UPDATE_ERRORS",
    "IndexOutOfRangeError",
    "check_map_name",
    "element_size",
    "parse_flags",
    "update_flag",
]

_UPDATE_NAMES = ["any", "noexist", "exist"]
_NAME = re.compile(r"[A-Za-z0-9_.]{0,15}")


def parse_flags(flags: int | str | Iterable[str]) -> int:
    """``flags=`` as an int, a name (``"mmapable"``, ``"BPF_F_MMAPABLE"``) or several names."""
    return MapFlag.parse(flags)


def update_flag(flags: str | int) -> int:
    """``"any"``/``"noexist"``/``"exist"`` (or the BPF_* number) for an update."""
    if isinstance(flags, (int, np.integer)) and not isinstance(flags, bool):
        if not 0 <= int(flags) < 1 << 64:
            raise InvalidArgumentError(f"update flags must be one of {_UPDATE_NAMES} or a BPF_* "
                                       f"number in 0..2**64-1 (the kernel's u64), got {int(flags)}")
        return int(flags)
    if isinstance(flags, str) and flags in _UPDATE_NAMES:
        return int(UpdateFlag[flags.upper()])
    raise InvalidArgumentError(f"update flags must be one of {_UPDATE_NAMES}, got {flags!r}")


def check_map_name(name: str) -> None:
    """The kernel takes at most 15 characters of [A-Za-z0-9_.] (else EINVAL without a word)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"map name {name!r} is invalid: the kernel allows at most 15 characters "
                         f"from A-Z a-z 0-9 _ .")


def element_size(dtype: Any, size: int | None, what: str) -> int:
    """The key/value size from a dtype or an explicit size (which must agree if both are given)."""
    if dtype is not None:
        itemsize = np.dtype(dtype).itemsize
        if size is not None and size != itemsize:
            raise ValueError(f"{what}_size {size} does not match {what}_dtype {np.dtype(dtype)} "
                             f"({itemsize} bytes)")
        return itemsize
    if size is None:
        raise ValueError(f"give {what}_dtype or {what}_size")
    if size < 0:
        raise ValueError(f"{what}_size must be >= 0, got {size}")
    return int(size)


UNSUPPORTED = (ENOTSUPP, errno.EOPNOTSUPP)


def _not_found(what: str, err: int, log: str) -> BpfError:
    return KeyNotFoundError(f"{what}: no such key", err)


def _full(what: str, err: int, log: str) -> BpfError:
    return MapFullError(f"{what}: the map is full (max_entries reached)", err)


def _exists(what: str, err: int, log: str) -> BpfError:
    return BpfError(f"{what}: the key already exists (flags='noexist')", err)


def _refused(what: str, err: int, log: str) -> BpfError:
    return BpfPermissionError(f"{what}: refused: the map is frozen or read-only to user space "
                              f"(BPF_F_RDONLY), or this process lacks CAP_BPF", err, capability="CAP_BPF")


# make_error overrides for element operations
UPDATE_ERRORS: dict[int, ErrorFactory] = {errno.E2BIG: _full, errno.ENOENT: _not_found, errno.EEXIST: _exists,
                                          errno.EPERM: _refused}
def _unreadable(what: str, err: int, log: str) -> BpfError:
    return BpfPermissionError(f"{what}: refused: the map is write-only to user space (BPF_F_WRONLY), "
                              f"or this process lacks CAP_BPF", err, capability="CAP_BPF")


LOOKUP_ERRORS: dict[int, ErrorFactory] = {errno.ENOENT: _not_found, errno.EPERM: _unreadable}
