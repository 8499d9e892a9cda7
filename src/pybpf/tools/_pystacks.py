"""Python stacks sampled by BPF: the sampler shared by pyprofile, pycalls' sampling mode and the exporter.

Owns :class:`PySampler`: each process is opened as a
:class:`~pybpf.pyframes.PythonProcess` (offsets found and verified against it, or a
clear refusal), registered in the BPF object's ``procs`` map with its offsets, and
sampled on every CPU by ``bpf_src/pyprofile.bpf.c`` through :mod:`pybpf.perf`; the
stacks of code objects it counts are named ``qualname (file:line)`` once per code
object (new ones every :meth:`PySampler.refresh`, so that a code object freed before
the end keeps its name), and native frames (``--native``) by :mod:`pybpf.symbolize`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

import pybpf
from pybpf import perf
from pybpf.flame import Folded
from pybpf.pyframes import PyOffsets, PythonProcess
from pybpf.symbolize import Symbolizer

__all__ = ["FLAG_NO_TSTATE", "FLAG_READ_ERROR", "FLAG_TRUNCATED", "MAX_DEPTH", "FunctionStats", "PySampler", "PyStack",
           "function_stats", "process_alive"]

MAX_DEPTH = 512          # bpf_src/pyprofile.bpf.c MAX_DEPTH
FLAG_TRUNCATED, FLAG_NO_TSTATE, FLAG_READ_ERROR = 1, 2, 4
_ENTRY = 1 << 63
_ADDR = (1 << 48) - 1
TRUNCATED = "[truncated]"
UNREADABLE = "[unreadable]"
NO_PYTHON = "[no Python frame]"
FREED = "[code object freed]"
EXITED = "[process exited before naming]"


def key_dtype(depth: int) -> np.dtype:
    """The layout of one ``counts`` key (``struct sample_key`` cut at ``depth`` frames)."""
    return np.dtype([("pid", "<u4"), ("tid", "<u4"), ("depth", "<u4"), ("flags", "<u4"),
                     ("user_stack_id", "<i4"), ("kern_stack_id", "<i4"), ("frames", "<u8", (depth,))])


@dataclass(frozen=True)
class PyStack:
    """One counted stack: names outermost first (``[truncated]`` first when cut)."""

    pid: int
    tid: int
    frames: tuple[str, ...]
    count: int
    flags: int
    codes: tuple[int, ...]   # code object addresses, outermost first


class PySampler:
    """Sample the Python stacks of ``pids`` at ``frequency`` Hz (one perf event per CPU).

    ``max_depth`` frames per stack at most (deeper stacks keep their innermost frames
    and are marked truncated); ``native`` also takes each sample's user stack for
    :meth:`stacks` to put C frames on top of the Python ones. Use as a context manager.
    """

    def __init__(self, pids: Iterable[int], *, frequency: int = 99, max_depth: int = 128, native: bool = False,
                 offsets: PyOffsets | None = None, storage: int = 16384, cpus: list[int] | None = None) -> None:
        if not 1 <= max_depth <= MAX_DEPTH:
            raise pybpf.InvalidArgumentError(f"max_depth must be 1..{MAX_DEPTH}, not {max_depth}")
        self.max_depth = max_depth
        self.native = native
        self.frequency = frequency
        self.procs: dict[int, PythonProcess] = {}
        self.obj: pybpf.Object | None = None
        self.events: perf.PerfEvents | None = None
        self.symbolizer = Symbolizer() if native else None
        self._names: dict[int, str] = {}
        try:
            for pid in pids:
                self.procs[pid] = PythonProcess(pid, offsets=offsets)
            self.obj = pybpf.open(pybpf.bundled("pyprofile"))
            self.obj.rodata["max_depth"] = max_depth
            self.obj.rodata["user_stacks"] = native
            counts = self.obj.maps["counts"]
            counts.key_size = key_dtype(max_depth).itemsize
            counts.max_entries = storage
            self.obj.load()
            for pid, proc in self.procs.items():
                self._register(pid, proc)
                if self.symbolizer is not None:
                    self.symbolizer.remember(pid)
            self.events = perf.open_events("cpu-clock", frequency=frequency, cpus=cpus)
            self.events.attach(self.obj.programs["on_sample"])
        except BaseException:
            self.close()
            raise

    def add(self, pid: int, offsets: PyOffsets | None = None) -> PythonProcess:
        """Sample one more process (opened and verified now: UnreadablePythonError if it cannot be read)."""
        if pid in self.procs:
            return self.procs[pid]
        proc = PythonProcess(pid, offsets=offsets)
        try:
            self._register(pid, proc)
        except BaseException:
            proc.close()
            raise
        self.procs[pid] = proc
        if self.symbolizer is not None:
            self.symbolizer.remember(pid)
        return proc

    def discard(self, pid: int) -> None:
        """Stop sampling ``pid`` (its counted stacks stay until read)."""
        proc = self.procs.pop(pid, None)
        if proc is None:
            return
        assert self.obj is not None
        try:
            del self.obj.maps["procs"][pid]
        except KeyError:
            pass
        proc.close()

    def _register(self, pid: int, proc: PythonProcess) -> None:
        assert self.obj is not None
        o = proc.offsets
        procs = self.obj.maps["procs"]
        value = np.zeros((), procs.value_dtype)
        value["runtime"] = proc.runtime
        value["code_type"] = proc.code_type
        mine, theirs = os.stat("/proc/self/ns/pid"), os.stat(f"/proc/{pid}/ns/pid")
        if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
            value["pidns_dev"], value["pidns_ino"] = theirs.st_dev, theirs.st_ino
        for name in ("runtime_interpreters_head", "interp_next", "interp_threads_head", "tstate_next",
                     "tstate_native_thread_id", "tstate_frame", "cframe_current_frame", "frame_previous",
                     "frame_code", "frame_is_entry", "frame_owner", "code_firstlineno"):
            value[name] = getattr(o, name)
        value["owner_cstack"] = o.frame_owner_cstack
        value["object_type"] = o.object_type
        procs[pid] = value

    # ---- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Detach and close the events, the object and the processes (idempotent)."""
        if self.events is not None:
            self.events.close()
            self.events = None
        if self.obj is not None:
            self.obj.close()
            self.obj = None
        for proc in self.procs.values():
            proc.close()

    def __enter__(self) -> PySampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Stop sampling (the counts stay readable)."""
        if self.events is not None:
            self.events.disable()

    # ---- reading -----------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """The BPF side's totals: samples, no_tstate, truncated, read_errors, walks, dropped."""
        assert self.obj is not None
        return {name: int(self.obj.bss[name]) for name in
                ("samples", "no_tstate", "truncated", "read_errors", "walks", "dropped")}

    def raw(self, delete: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``counts`` map: keys (:func:`key_dtype`) and their counts (``delete``: emptied as read)."""
        assert self.obj is not None
        counts_map = self.obj.maps["counts"]
        keys, values = counts_map.lookup_and_delete_batch() if delete else counts_map.lookup_batch()
        dtype = key_dtype(self.max_depth)
        keys = np.frombuffer(np.ascontiguousarray(keys).tobytes(), dtype) if len(keys) else np.zeros(0, dtype)
        counts = np.frombuffer(np.ascontiguousarray(values).tobytes(), "<u8") if len(values) else np.zeros(0, "<u8")
        return keys, counts

    def refresh(self) -> int:
        """Name the code objects seen since the last call (while they are alive); how many."""
        keys, _ = self.raw()
        new = 0
        for key in keys:
            proc = self.procs.get(int(key["pid"]))
            if proc is None:
                continue
            for value in key["frames"][:int(key["depth"])].tolist():
                value &= ~_ENTRY
                if value not in self._names:
                    self._names[value] = self._name(proc, value)
                    new += 1
        return new

    def _name(self, proc: PythonProcess, value: int) -> str:
        addr, tag = value & _ADDR, (value >> 48) & 0x7FFF
        info = proc.code_info(addr)
        if info is None or (info.firstlineno & 0x7FFF) != tag:
            proc.forget_code(addr)
            return FREED if process_alive(proc.pid) else EXITED
        return str(info).replace(";", ":")

    def name_of(self, value: int, pid: int) -> str:
        """``qualname (file:line)`` of one frame value (cached)."""
        value &= ~_ENTRY
        name = self._names.get(value)
        if name is None:
            proc = self.procs.get(pid)
            name = self._names[value] = self._name(proc, value) if proc is not None else FREED
        return name

    def stacks(self, drain: bool = False) -> list[PyStack]:
        """Every counted stack, named (outermost frame first); ``drain`` empties the map as it
        reads (a long-running reader adds them up itself and the map never fills)."""
        keys, counts = self.raw(delete=drain)
        native: dict[int, list[str]] = {}
        if self.native and self.obj is not None and len(keys):
            native = self._native_frames(keys)
        out = []
        for key, count in zip(keys, counts.tolist()):
            pid, depth, flags = int(key["pid"]), int(key["depth"]), int(key["flags"])
            values = key["frames"][:depth].tolist()
            names = [self.name_of(v, pid) for v in reversed(values)]
            if flags & FLAG_TRUNCATED:
                names.insert(0, TRUNCATED)
            elif flags & FLAG_READ_ERROR:
                names.insert(0, UNREADABLE)
            if not values and not flags & (FLAG_TRUNCATED | FLAG_READ_ERROR):
                names.append(NO_PYTHON)
            names.extend(native.get(int(key["user_stack_id"]), []))
            out.append(PyStack(pid, int(key["tid"]), tuple(names), count, flags,
                               tuple(v & _ADDR for v in reversed(values))))
        return out

    def _native_frames(self, keys: np.ndarray) -> dict[int, list[str]]:
        """C frames on top of the Python ones, per user stack id: from the sampled instruction
        outwards, up to the interpreter's evaluation loop (where the Python frames take over).
        Without frame pointers (Debian's CPython), only the first frames are right: the rest
        of the walk stops at the first address no symbol covers."""
        assert self.obj is not None and self.symbolizer is not None
        ids = np.unique(keys["user_stack_id"][keys["user_stack_id"] >= 0])
        if not len(ids):
            return {}
        table = self.obj.maps["stackmap"].stacks(ids.astype(np.uint32))
        pid_of = {int(k["user_stack_id"]): int(k["pid"]) for k in keys}
        out: dict[int, list[str]] = {}
        for sid in table.ids.tolist():
            addrs = table.get(sid)
            frames = self.symbolizer.user(pid_of[sid], addrs)
            names: list[str] = []
            for i in range(len(frames)):
                name = str(frames.names[i])
                module = os.path.basename(str(frames.modules[i]))
                if name.startswith("_PyEval_EvalFrame"):
                    break
                if name == "[unknown]":
                    if i == 0 and module:   # the sampled instruction is exact: at least its library
                        names.append(f"[{module}]")
                    break
                names.append(f"{name} [{module}]" if module else name)
            out[sid] = list(reversed(names))
        return out

    def folded(self, stacks: list[PyStack] | None = None, *, threads: bool = False) -> Folded:
        """The stacks as a :class:`~pybpf.flame.Folded` (``threads``: a ``tid N`` root per thread)."""
        result = Folded()
        for s in self.stacks() if stacks is None else stacks:
            frames = s.frames if not threads else (f"tid {s.tid}",) + s.frames
            result.add(frames, s.count)
        return result


@dataclass
class FunctionStats:
    """Samples of one function: ``own`` with it innermost, ``total`` with it anywhere on the stack."""

    name: str
    own: int = 0
    total: int = 0

    def to_dict(self, samples: int, frequency: int | None = None) -> dict[str, object]:
        """JSON form; with ``frequency``, also the estimated CPU seconds (samples / frequency)."""
        doc: dict[str, object] = {"function": self.name, "own": self.own, "total": self.total,
                                  "own_pct": round(100 * self.own / max(samples, 1), 3),
                                  "total_pct": round(100 * self.total / max(samples, 1), 3)}
        if frequency:
            doc["own_seconds"] = self.own / frequency
            doc["total_seconds"] = self.total / frequency
        return doc


_MARKERS = (TRUNCATED, UNREADABLE, NO_PYTHON)


def function_stats(stacks: Iterable[PyStack]) -> list[FunctionStats]:
    """Per function: own and total samples (a recursive function counts once per stack),
    most own samples first. Marker frames (``[truncated]`` ...) are left out."""
    stats: dict[str, FunctionStats] = {}
    for s in stacks:
        names = [n for n in s.frames if n not in _MARKERS]
        if not names:
            continue
        for name in set(names):
            stats.setdefault(name, FunctionStats(name)).total += s.count
        stats.setdefault(names[-1], FunctionStats(names[-1])).own += s.count
    return sorted(stats.values(), key=lambda f: (-f.own, -f.total, f.name))


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return False
