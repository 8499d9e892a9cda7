"""What a process has mapped, as a snapshot that outlives the process.

Owns reading ``/proc/PID/maps`` (the executable mappings: start, end, file offset,
path), opening each mapped ELF file through ``/proc/PID/root`` (so a container's files
resolve from the host) or ``/proc/PID/map_files`` (a file deleted since it was mapped),
copying the vDSO out of ``/proc/PID/mem``, finding separate debug files by build-id, and
reading the JIT symbol file ``/tmp/perf-PID.map`` (as perf does: Python 3.12's
``-X perf``, node's ``--perf-basic-prof``, Java agents).

A :class:`ProcessMaps` keeps its :class:`~pybpf.symbolize.elf.ElfSymbols` loaded, so a
process that has exited (or whose container is gone) still resolves.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pybpf.errors import ObjectFormatError
from pybpf.symbolize.elf import ElfSymbols

__all__ = ["Mapping", "PerfMap", "ProcessMaps", "exec_identity", "read_maps"]

_VDSO = "[vdso]"
_MAX_PERF_MAP = 256 << 20


@dataclass(frozen=True)
class Mapping:
    """One executable mapping of ``/proc/PID/maps``."""

    start: int
    end: int
    offset: int
    dev: str
    inode: int
    path: str    # as the process sees it ("" for anonymous memory)


def read_maps(pid: int) -> list[Mapping]:
    """The executable mappings of ``pid`` (``FileNotFoundError`` once it is gone)."""
    out = []
    with open(f"/proc/{pid}/maps", "rb") as f:
        for raw in f:
            parts = raw.split(None, 5)
            if len(parts) < 5 or b"x" not in parts[1]:
                continue
            start, _, end = parts[0].partition(b"-")
            path = parts[5].rstrip(b"\n").decode("utf-8", "surrogateescape") if len(parts) > 5 else ""
            out.append(Mapping(int(start, 16), int(end, 16), int(parts[2], 16), parts[3].decode(),
                               int(parts[4]), path))
    return out


def exec_identity(pid: int) -> tuple[int, int, int] | None:
    """What tells one program ``pid`` runs from the next it execs: where its code and its stack
    start (``startcode``, ``endcode``, ``startstack`` of ``/proc/PID/stat``: an exec maps new
    code, at a new random base for a PIE, and always a new stack at a random base, so that even
    a non-PIE program exec'ing itself differs). None when the process is gone, has no memory
    (a kernel thread), is in the middle of an exec (its new code not mapped yet: all 0), or hides
    them from us (startcode and endcode read 1 without ptrace access)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()   # after "(comm)": fields[0] is field 3 (state)
        identity = (int(fields[23]), int(fields[24]), int(fields[25]))   # fields 26, 27, 28 of proc(5)
    except (OSError, ValueError, IndexError):
        return None
    return identity if identity[0] > 1 else None


def ns_pid(pid: int) -> int:
    """``pid`` as its own pid namespace numbers it (the last NSpid of /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return pid


class PerfMap:
    """``/tmp/perf-PID.map``: ``START SIZE NAME`` lines (hex) that JITs write for their code."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[int, int] | None = None
        self.starts = np.zeros(0, np.uint64)
        self.ends = np.zeros(0, np.uint64)
        self.names: list[str] = []
        self.refresh()

    def refresh(self) -> bool:
        """Read the file again if it changed (JITs append to it); False when it is not there."""
        try:
            st = os.stat(self.path)
        except OSError:
            return self.stamp is not None
        stamp = (st.st_size, st.st_mtime_ns)
        if stamp == self.stamp:
            return True
        starts, sizes, names = [], [], []
        with open(self.path, "rb") as f:
            data = f.read(_MAX_PERF_MAP)
        for line in data.splitlines():
            parts = line.split(None, 2)
            if len(parts) < 3:
                continue
            try:
                start, size = int(parts[0], 16), int(parts[1], 16)
            except ValueError:
                continue
            if not 0 <= start < 1 << 64 or not 0 < size < 1 << 48:
                continue
            starts.append(start)
            sizes.append(size)
            names.append(parts[2].decode("utf-8", "replace"))
        order = np.argsort(np.array(starts, np.uint64), kind="stable")
        self.starts = np.array(starts, np.uint64)[order]
        self.ends = self.starts + np.array(sizes, np.uint64)[order]
        self.names = [names[i] for i in order.tolist()]
        self.stamp = stamp
        return True

    def index(self, addrs: np.ndarray) -> np.ndarray:
        """Index of the entry holding each address, -1 where none does (later entries win)."""
        if len(self.starts) == 0:
            return np.full(len(addrs), -1, np.int64)
        i = np.searchsorted(self.starts, addrs, side="right").astype(np.int64) - 1
        j = np.where(i >= 0, i, 0)
        return np.where((i >= 0) & (addrs < self.ends[j]), i, -1)


ElfLoader = Callable[[tuple[object, ...], Callable[[], ElfSymbols]], ElfSymbols]


def _file_key(st: os.stat_result) -> tuple[object, ...]:
    return ("file", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ProcessMaps:
    """A snapshot of one process's executable mappings, with their symbol tables loaded.

    ``load_elf(key, make)`` is the symbolizer's cache: files shared by many processes (libc,
    the vDSO) are read once.
    """

    def __init__(self, pid: int, load_elf: ElfLoader, *, debug_dirs: tuple[str, ...] = ("/usr/lib/debug",),
                 perf_maps: bool = True, lines: bool = False) -> None:
        self.pid = pid
        self._lines = lines
        self.taken_at = time.monotonic()
        self.root = f"/proc/{pid}/root"
        self.identity = exec_identity(pid)
        self.mappings = read_maps(pid)
        self.starts = np.array([m.start for m in self.mappings], np.uint64)
        self.ends = np.array([m.end for m in self.mappings], np.uint64)
        self.offsets = np.array([m.offset for m in self.mappings], np.uint64)
        order = np.argsort(self.starts)
        self.mappings = [self.mappings[i] for i in order.tolist()]
        self.starts, self.ends, self.offsets = self.starts[order], self.ends[order], self.offsets[order]
        self._load_elf = load_elf
        self._debug_dirs = debug_dirs
        # the mapped file (its segments place addresses) and where its symbols come from (the
        # file itself, or its separate debug file: the debug file's segment offsets are void)
        self.elves: list[ElfSymbols | None] = [self._open(m) for m in self.mappings]
        self.symbols: list[ElfSymbols | None] = [self._with_debug(e) if e is not None else None
                                                 for e in self.elves]
        self.perf_map: PerfMap | None = None
        if perf_maps:
            path = f"{self.root}/tmp/perf-{ns_pid(pid)}.map"
            if os.path.exists(path):
                self.perf_map = PerfMap(path)

    def __repr__(self) -> str:
        return f"<ProcessMaps pid {self.pid}: {len(self.mappings)} executable mappings>"

    @property
    def alive(self) -> bool:
        """True while the process still exists."""
        return os.path.exists(f"/proc/{self.pid}/maps")

    @property
    def replaced(self) -> bool:
        """True when the pid now runs another program (it exec'd since the snapshot), or when the
        snapshot was taken in the middle of an exec (no identity then) and the program is now mapped."""
        now = exec_identity(self.pid)
        return now is not None and now != self.identity

    def _open(self, m: Mapping) -> ElfSymbols | None:
        if m.path == _VDSO:
            return self._vdso(m)
        if not m.path.startswith("/"):
            return None   # anonymous memory, [stack], [heap]: a perf map may name it
        path = m.path.removesuffix(" (deleted)")
        for candidate in (f"{self.root}{path}", f"/proc/{self.pid}/map_files/{m.start:x}-{m.end:x}"):
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if st.st_ino != m.inode and not candidate.startswith(f"/proc/{self.pid}/map_files"):
                continue   # replaced since it was mapped: only map_files has the mapped one
            try:
                return self._load_elf(_file_key(st), functools.partial(ElfSymbols, candidate, name=path, lines=self._lines))
            except (ObjectFormatError, OSError):
                return None
        return None

    def _with_debug(self, elf: ElfSymbols) -> ElfSymbols:
        """The separate debug file (by build-id, in the process's root or the host's) when the file
        itself carries no debug info: its .symtab names static functions too."""
        if elf.build_id is None or elf.has_debug_info:
            return elf
        bid = elf.build_id
        for base in (self.root, ""):
            for d in self._debug_dirs:
                candidate = f"{base}{d}/.build-id/{bid[:2]}/{bid[2:]}.debug"
                try:
                    st = os.stat(candidate)
                    debug = self._load_elf(_file_key(st), functools.partial(ElfSymbols, candidate, name=elf.name,
                                                                         lines=self._lines))
                except (ObjectFormatError, OSError):
                    continue
                if debug.build_id == bid and len(debug.values) >= len(elf.values):
                    return debug
        return elf

    def _vdso(self, m: Mapping) -> ElfSymbols | None:
        try:
            with open(f"/proc/{self.pid}/mem", "rb", buffering=0) as f:
                f.seek(m.start)
                data = f.read(m.end - m.start)
        except (OSError, OverflowError):
            return None
        try:
            return self._load_elf(("vdso", hashlib.sha1(data).hexdigest()), lambda: ElfSymbols(_VDSO, data=data))
        except ObjectFormatError:
            return None

    def mapping_index(self, addrs: np.ndarray) -> np.ndarray:
        """Index of the mapping holding each address, -1 where none does."""
        if len(self.starts) == 0:
            return np.full(len(addrs), -1, np.int64)
        i = np.searchsorted(self.starts, addrs, side="right").astype(np.int64) - 1
        j = np.where(i >= 0, i, 0)
        return np.where((i >= 0) & (addrs < self.ends[j]), i, -1)
