"""Network interfaces by name or index, for the attach kinds that hook them (XDP, tc)."""

from __future__ import annotations

import errno

from pybpf._sys.libbpf import if_nametoindex
from pybpf.errors import BpfError

__all__ = ["ifindex"]


def ifindex(interface: str | int) -> int:
    """The index of ``interface`` in this thread's network namespace."""
    if isinstance(interface, int):
        return interface
    index = if_nametoindex(interface)
    if index == 0:
        raise BpfError(f"no network interface named {interface!r} in this network namespace", errno.ENODEV)
    return index
