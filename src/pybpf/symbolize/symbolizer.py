"""Addresses -> frames, in bulk: the kernel's and any process's, including exited ones.

Owns the caches that make symbolization cheap when it is done again and again, as a
profiler does: one kallsyms table, one :class:`ElfSymbols` per distinct file (libc is
read once for all processes), and one :class:`ProcessMaps` snapshot per process, kept
after the process exits. Lookups take numpy arrays: each distinct address is resolved
once, by ``searchsorted`` over sorted tables, and names are decoded only for the symbols
that are hit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from pybpf.errors import InvalidArgumentError
from pybpf.symbolize.elf import ElfSymbols
from pybpf.symbolize.kallsyms import KALLSYMS, KernelSymbols
from pybpf.symbolize.process import ProcessMaps

__all__ = ["UNKNOWN", "Frame", "Frames", "Symbolizer"]

UNKNOWN = "[unknown]"
_KALLSYMS_MIN_AGE = 1.0   # seconds between two automatic re-reads of kallsyms
_MAPS_MIN_AGE = 1.0       # seconds between two automatic snapshots of one process's mappings
_MISS_TTL = 5.0           # seconds a pid found gone (or unreadable) is not looked for again


@dataclass(frozen=True)
class Frame:
    """One resolved address."""

    addr: int
    name: str            # function name, or "[unknown]"
    offset: int          # addr - the symbol's start (0 when unknown)
    module: str          # [kernel.kallsyms], [MODULE], [bpf], a file path, [vdso], [perf-map]...
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f" ({self.file}:{self.line})" if self.file else ""
        if self.name == UNKNOWN:
            return f"0x{self.addr:x} {UNKNOWN} [{self.module}]{where}"
        return f"{self.name}+0x{self.offset:x}{where}"


@dataclass
class Frames:
    """The frames of an array of addresses: one entry per address, in order."""

    addrs: np.ndarray        # uint64
    names: np.ndarray        # object (str)
    offsets: np.ndarray      # uint64
    modules: np.ndarray      # object (str)
    lines: list[tuple[str, int] | None] | None = None
    # where each address is in its module: the ELF virtual address in the mapped file (what perf
    # and libbpf-tools print as the DSO offset), the address itself in the kernel, 0 where unmapped
    file_addrs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.addrs)

    def __getitem__(self, i: int) -> Frame:
        fl = self.lines[i] if self.lines is not None else None
        return Frame(int(self.addrs[i]), str(self.names[i]), int(self.offsets[i]), str(self.modules[i]),
                     fl[0] if fl else None, fl[1] if fl else None)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (self[i] for i in range(len(self)))

    @property
    def resolved(self) -> np.ndarray:
        """True where a name was found."""
        return self.names != UNKNOWN

    def take(self, index: np.ndarray) -> Frames:
        """The frames at ``index`` (how the resolution of unique addresses is spread back)."""
        return Frames(self.addrs[index], self.names[index], self.offsets[index], self.modules[index],
                      None if self.lines is None else [self.lines[i] for i in index.tolist()],
                      None if self.file_addrs is None else self.file_addrs[index])


def _as_addrs(addrs: Iterable[int] | np.ndarray) -> np.ndarray:
    a = np.asarray(addrs if isinstance(addrs, np.ndarray) else list(addrs))
    if a.ndim != 1:
        raise InvalidArgumentError(f"addresses must be a 1-d array, not shape {a.shape}")
    if a.size and a.dtype.kind not in "iu":
        raise InvalidArgumentError(f"addresses must be integers, not {a.dtype}")
    if a.dtype.kind == "i" and a.size and int(a.min()) < 0:
        raise InvalidArgumentError("addresses must not be negative")
    return a.astype(np.uint64)


def _empty(n: int, module: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    names = np.full(n, UNKNOWN, dtype=object)
    modules = np.full(n, module, dtype=object)
    return names, np.zeros(n, np.uint64), modules


class Symbolizer:
    """Resolve kernel and user addresses to function names (and ``file:line`` on request).

    ``lines=True`` adds ``file:line`` from DWARF where the file (or its debug file)
    carries ``.debug_line``. ``perf_maps`` reads ``/tmp/perf-PID.map`` for JIT code.
    Thread-safe; nothing to close (without ``lines`` it holds no fd: files are read and let go;
    with ``lines`` the files that carry DWARF stay mapped until the symbolizer is collected).
    """

    def __init__(self, *, lines: bool = False, perf_maps: bool = True,
                 debug_dirs: tuple[str, ...] = ("/usr/lib/debug",), kallsyms: str = KALLSYMS) -> None:
        self.lines = lines
        self.perf_maps = perf_maps
        self.debug_dirs = debug_dirs
        self._kallsyms_path = kallsyms
        self._kernel: KernelSymbols | None = None
        self._elves: dict[tuple[object, ...], ElfSymbols] = {}
        self._procs: dict[int, ProcessMaps] = {}
        self._missed: dict[int, float] = {}   # pid -> when it was found gone or unreadable
        self._lock = threading.RLock()

    # ---- caches ------------------------------------------------------------------------

    def _load_elf(self, key: tuple[object, ...], make: Callable[[], ElfSymbols]) -> ElfSymbols:
        with self._lock:
            elf = self._elves.get(key)
            if elf is None:
                elf = make()   # its mmap keeps the file's bytes, even once it is deleted
                self._elves[key] = elf
            return elf

    def kernel_symbols(self) -> KernelSymbols:
        """The kallsyms table, read on first use."""
        with self._lock:
            if self._kernel is None:
                self._kernel = KernelSymbols(self._kallsyms_path)
            return self._kernel

    def refresh_kernel(self) -> None:
        """Read kallsyms again now (BPF programs and modules loaded since)."""
        with self._lock:
            self.kernel_symbols().reload()

    def remember(self, pid: int) -> ProcessMaps | None:
        """Snapshot ``pid``'s mappings and load their symbols now, so that its addresses still
        resolve after it exits. None when it is already gone, or when its mappings may not be
        read here (another user namespace's process: its frames read ``[unknown]``, as perf
        shows them). A snapshot is taken once, and again when the pid has exec'd another program
        since (a fork's child seen before its exec); :meth:`forget` drops it."""
        with self._lock:
            maps = self._procs.get(pid)
            if maps is not None:
                # a fork's child snapshotted before its exec holds its parent's mappings: take it again
                return (self._snapshot(pid) or maps) if maps.replaced else maps
            missed = self._missed.get(pid)
            if missed is not None and time.monotonic() - missed < _MISS_TTL:
                return None   # each stack of a gone process must not try /proc again
            return self._snapshot(pid)

    def _snapshot(self, pid: int) -> ProcessMaps | None:
        """A new snapshot of ``pid`` kept in place of the old one; None (and the old one kept)
        when the process is gone or unreadable."""
        with self._lock:
            try:
                maps = ProcessMaps(pid, self._load_elf, debug_dirs=self.debug_dirs, perf_maps=self.perf_maps,
                                   lines=self.lines)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                if len(self._missed) >= 65536:
                    self._missed.clear()
                self._missed[pid] = time.monotonic()
                return None
            self._missed.pop(pid, None)
            self._procs[pid] = maps
            return maps

    def forget(self, pid: int) -> None:
        """Drop the snapshot of ``pid`` (a new process may reuse the number)."""
        with self._lock:
            self._procs.pop(pid, None)
            self._missed.pop(pid, None)

    def forget_exited(self) -> list[int]:
        """Drop the snapshots of processes that have exited (a long-running consumer, as the
        exporter, would otherwise keep every process it ever saw); returns their pids."""
        with self._lock:
            gone = [pid for pid, maps in self._procs.items() if not maps.alive]
            for pid in gone:
                del self._procs[pid]
            return gone

    @property
    def processes(self) -> list[int]:
        """The pids with a snapshot."""
        return sorted(self._procs)

    # ---- lookups -----------------------------------------------------------------------

    def kernel(self, addrs: Iterable[int] | np.ndarray) -> Frames:
        """Kernel frames for ``addrs`` (one each, in order)."""
        a = _as_addrs(addrs)
        uniq, inverse = np.unique(a, return_inverse=True)
        frames = self._kernel_unique(uniq)
        return frames.take(inverse.reshape(-1))

    def _kernel_unique(self, uniq: np.ndarray) -> Frames:
        ks = self.kernel_symbols()
        idx = ks.index(uniq)
        # an address past the last symbol or far into one may be a BPF program loaded since
        if len(uniq) and (np.any(idx < 0) or np.any(uniq - ks.addresses[np.maximum(idx, 0)] > (1 << 20))) \
                and time.monotonic() - ks.loaded_at > _KALLSYMS_MIN_AGE:
            with self._lock:
                ks.reload()
            idx = ks.index(uniq)
        names, offsets, modules = _empty(len(uniq), "[kernel.kallsyms]")
        hit = idx >= 0
        offsets[hit] = uniq[hit] - ks.addresses[idx[hit]]
        for pos, i in zip(np.flatnonzero(hit).tolist(), idx[hit].tolist()):
            names[pos] = ks.name(i)
            modules[pos] = ks.module(i)
        return Frames(uniq, names, offsets, modules, None, uniq.copy())

    def user(self, pid: int, addrs: Iterable[int] | np.ndarray) -> Frames:
        """Frames of process ``pid`` for ``addrs``; a pid already gone resolves from its
        snapshot (:meth:`remember`), or to ``[unknown]`` without one."""
        a = _as_addrs(addrs)
        uniq, inverse = np.unique(a, return_inverse=True)
        maps = self.remember(pid)
        if maps is None:
            names, offsets, modules = _empty(len(uniq), UNKNOWN)
            frames = Frames(uniq, names, offsets, modules, [None] * len(uniq) if self.lines else None,
                            np.zeros(len(uniq), np.uint64))
        else:
            where = maps.mapping_index(uniq)
            if np.any(where < 0) and maps.perf_map is None and time.monotonic() - maps.taken_at > _MAPS_MIN_AGE \
                    and maps.alive:
                # mapped since the snapshot (dlopen, a JIT): take it again (at most once a second: an
                # address no mapping holds, a stack walked into garbage, must not cost a snapshot each time)
                maps = self._snapshot(pid) or maps
            frames = self._user_unique(maps, uniq)
        return frames.take(inverse.reshape(-1))

    def _user_unique(self, maps: ProcessMaps, uniq: np.ndarray) -> Frames:
        names, offsets, modules = _empty(len(uniq), UNKNOWN)
        lines: list[tuple[str, int] | None] | None = [None] * len(uniq) if self.lines else None
        file_addrs = np.zeros(len(uniq), np.uint64)
        where = maps.mapping_index(uniq)
        for m in np.unique(where[where >= 0]).tolist():
            sel = np.flatnonzero(where == m)
            mapping, elf, syms = maps.mappings[m], maps.elves[m], maps.symbols[m]
            modules[sel] = mapping.path or "[anon]"
            file_addrs[sel] = uniq[sel] - maps.starts[m] + maps.offsets[m]   # a file offset, unless an ELF says
            if elf is None or syms is None:
                continue
            vaddrs = elf.file_to_vaddr(uniq[sel] - maps.starts[m] + maps.offsets[m])
            file_addrs[sel] = vaddrs
            idx = syms.index(vaddrs)
            hit = idx >= 0
            offsets[sel[hit]] = vaddrs[hit] - syms.values[idx[hit]]
            for pos, i in zip(sel[hit].tolist(), idx[hit].tolist()):
                names[pos] = syms.symbol_name(i)
            if lines is not None:
                for pos, fl in zip(sel.tolist(), syms.file_lines(vaddrs)):
                    lines[pos] = fl
        pm = maps.perf_map
        if pm is not None:
            todo = np.flatnonzero(names == UNKNOWN)
            if len(todo):
                pm.refresh()
                idx = pm.index(uniq[todo])
                for pos, i in zip(todo[idx >= 0].tolist(), idx[idx >= 0].tolist()):
                    names[pos] = pm.names[i]
                    offsets[pos] = int(uniq[pos]) - int(pm.starts[i])
                    modules[pos] = "[perf-map]"
                    file_addrs[pos] = uniq[pos]
        return Frames(uniq, names, offsets, modules, lines, file_addrs)
