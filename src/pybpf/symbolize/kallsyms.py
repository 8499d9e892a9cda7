"""Kernel addresses -> names from ``/proc/kallsyms``, read once and searched in bulk.

Owns the kernel half of symbolization: the whole ``/proc/kallsyms`` parsed with numpy
(no Python loop over its ~100k lines), kept as sorted address and name-offset arrays,
and searched for a whole array of addresses at once (``np.searchsorted``). Names are
decoded only for the symbols that a lookup hits. Module symbols carry their module
(``[ext4]``); JIT-compiled BPF programs are in kallsyms as ``bpf_prog_<tag>_<name>
[bpf]`` while ``net.core.bpf_jit_kallsyms`` is 1 (the default for root-only JIT).
"""

from __future__ import annotations

import time

import numpy as np

from pybpf.errors import BpfPermissionError, ObjectFormatError

__all__ = ["KALLSYMS", "KernelSymbols"]

KALLSYMS = "/proc/kallsyms"
_HEX = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint8)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint8)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)
_SKIP_TYPES = np.frombuffer(b"aAUvVwW", np.uint8)  # absolute, undefined and weak-undefined symbols


def _parse(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(addresses, name starts, name ends) of the text/data symbols in kallsyms text."""
    if not data:
        return (np.empty(0, np.uint64),) * 3  # type: ignore[return-value]
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == 0x0A)
    if len(ends) == 0 or ends[-1] != len(buf) - 1:
        ends = np.append(ends, len(buf))
    starts = np.concatenate(([0], ends[:-1] + 1))
    keep = ends - starts >= 4  # blank lines out
    starts, ends = starts[keep], ends[keep]
    # "ADDR T NAME[\t[module]]": ADDR is fixed width (16 hex digits on 64-bit kernels)
    width = int(np.flatnonzero(buf[:ends[0]] == 0x20)[0]) if len(starts) else 0
    if not 1 <= width <= 16 or np.any(ends - starts < width + 3) or np.any(buf[starts + width] != 0x20):
        raise ObjectFormatError(f"{where}: not kallsyms text (lines must read 'ADDRESS TYPE NAME')")
    digits = _HEX[buf[starts[:, None] + np.arange(width)]]
    if np.any(digits == 255):
        raise ObjectFormatError(f"{where}: not kallsyms text (a symbol address is not hexadecimal)")
    if width < 16:  # left-pad to 16 digits
        digits = np.concatenate((np.zeros((len(digits), 16 - width), np.uint8), digits), axis=1)
    # two hex digits -> one byte; 8 bytes -> one big-endian u64
    pairs = np.ascontiguousarray((digits[:, 0::2] << 4) | digits[:, 1::2])
    addrs = pairs.view(">u8").ravel().astype(np.uint64)
    types = buf[starts + width + 1]
    keep = ~np.isin(types, _SKIP_TYPES) & (addrs != 0)
    return addrs[keep], (starts + width + 3)[keep], ends[keep]


def _read(path: str) -> bytes:
    # /proc/kallsyms is generated as it is read: 1 MiB reads are the quickest here
    parts = []
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            parts.append(chunk)
    return b"".join(parts)


class KernelSymbols:
    """The kernel's symbol table (``/proc/kallsyms``), sorted, for bulk address lookups."""

    def __init__(self, path: str = KALLSYMS, *, data: bytes | None = None) -> None:
        self.path = path
        self._data = b""
        self._addrs = np.empty(0, np.uint64)
        self._name_start = np.empty(0, np.int64)
        self._name_end = np.empty(0, np.int64)
        self._names: dict[int, tuple[str, str]] = {}
        self.loaded_at = 0.0
        self.reload(data)

    def reload(self, data: bytes | None = None) -> None:
        """Read kallsyms again (BPF programs and modules come and go)."""
        where = self.path if data is None else "kallsyms text"
        if data is None:
            data = _read(self.path)
        addrs, name_start, name_end = _parse(data, where)
        if data and len(addrs) == 0:
            raise BpfPermissionError(
                f"{where}: every address reads as 0 (kernel.kptr_restrict hides them from this "
                f"user); kernel stacks need root with CAP_SYSLOG, or kptr_restrict=0", capability="CAP_SYSLOG")
        order = np.argsort(addrs, kind="stable")
        self._data = data
        self._addrs = addrs[order]
        self._name_start = name_start[order].astype(np.int64)
        self._name_end = name_end[order].astype(np.int64)
        self._names = {}
        self.loaded_at = time.monotonic()

    def __len__(self) -> int:
        return len(self._addrs)

    @property
    def addresses(self) -> np.ndarray:
        """Symbol start addresses, sorted (uint64)."""
        return self._addrs

    def _entry(self, i: int) -> tuple[str, str]:
        hit = self._names.get(i)
        if hit is None:
            raw = self._data[int(self._name_start[i]):int(self._name_end[i])]
            name, _, module = raw.partition(b"\t")
            hit = (name.decode("utf-8", "replace"),
                   module.strip().decode("utf-8", "replace") if module else "[kernel.kallsyms]")
            self._names[i] = hit
        return hit

    def index(self, addrs: np.ndarray) -> np.ndarray:
        """Index of the symbol holding each address (-1 below the first symbol)."""
        a = np.asarray(addrs, np.uint64)
        return np.searchsorted(self._addrs, a, side="right").astype(np.int64) - 1

    def name(self, i: int) -> str:
        """The name of symbol ``i``."""
        return self._entry(i)[0]

    def module(self, i: int) -> str:
        """``[kernel.kallsyms]``, ``[MODULE]`` or ``[bpf]`` for symbol ``i``."""
        return self._entry(i)[1]

    def lookup(self, addr: int) -> tuple[str, int, str] | None:
        """(name, offset, module) of one address, or None."""
        i = int(self.index(np.array([addr], np.uint64))[0])
        if i < 0:
            return None
        name, module = self._entry(i)
        return name, int(addr) - int(self._addrs[i]), module

    def address(self, name: str) -> int | None:
        """The address of the first symbol called ``name`` (a linear scan: for tests and tools)."""
        needle = name.encode()
        pos = self._data.find(b" " + needle + b"\n")
        if pos < 0:
            pos = self._data.find(b" " + needle + b"\t")
        if pos < 0:
            return None
        line_start = self._data.rfind(b"\n", 0, pos) + 1
        return int(self._data[line_start:self._data.index(b" ", line_start)], 16)
