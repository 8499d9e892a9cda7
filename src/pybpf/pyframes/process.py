"""A running CPython seen from outside: its runtime, offsets checked against it, code objects named.

Owns :class:`PythonProcess`: find the interpreter a process runs (its executable or a
``libpython3.X.so`` it maps) and the addresses of ``_PyRuntime``, ``PyCode_Type`` and
``PyUnicode_Type`` in it; pick the offsets (``_Py_DebugOffsets`` on 3.13, the installed
headers' BTF on 3.11/3.12, or a file given by the user); verify them against the process
before anything samples it; and name code objects as ``qualname (file:line)``, once per
code object, reading ``/proc/PID/mem``. A process that cannot be read is refused with
:class:`~pybpf.pyframes.offsets.UnreadablePythonError` saying why.

Which threads: every thread state of every interpreter (``_PyRuntime.interpreters``),
each with the OS thread id it runs on (``native_thread_id``); CPython builds with the GIL
only (a free-threaded 3.13t is refused: its objects carry other headers).
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
from dataclasses import dataclass
from typing import Any

from pybpf.errors import ObjectFormatError
from pybpf.pyframes.headers import header_dirs, header_offsets
from pybpf.pyframes.offsets import PyOffsets, UnreadablePythonError, debug_offsets_size, offsets_from_debug

__all__ = ["CodeInfo", "PythonProcess", "ThreadInfo", "load_offsets_file"]

SUPPORTED = ((3, 11), (3, 12), (3, 13))
_MAX_INTERPRETERS = 64
_MAX_THREADS = 4096
_MAX_STR = 1024


@dataclass(frozen=True)
class CodeInfo:
    """What a code object says about itself."""

    qualname: str
    filename: str
    firstlineno: int

    def __str__(self) -> str:
        return f"{self.qualname} ({self.filename}:{self.firstlineno})"


@dataclass(frozen=True)
class ThreadInfo:
    """One thread state: its address, OS thread id and Python frames (innermost first)."""

    tstate: int
    tid: int
    frames: tuple[int, ...]   # code object addresses, innermost first


@dataclass(frozen=True)
class _Map:
    start: int
    end: int
    perms: str
    offset: int
    path: str


def _read_maps(pid: int) -> list[_Map]:
    out = []
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            for raw in f:
                parts = raw.split(None, 5)
                if len(parts) < 5:
                    continue
                start, _, end = parts[0].partition(b"-")
                path = parts[5].rstrip(b"\n").decode("utf-8", "surrogateescape") if len(parts) > 5 else ""
                out.append(_Map(int(start, 16), int(end, 16), parts[1].decode(), int(parts[2], 16), path))
    except FileNotFoundError:
        raise UnreadablePythonError(f"no process with pid {pid}", pid=pid) from None
    except PermissionError:
        raise UnreadablePythonError(f"cannot read /proc/{pid}/maps (permission denied: run as root)",
                                    pid=pid) from None
    return out


def load_offsets_file(path: str) -> PyOffsets:
    """Offsets from a JSON file (``PyOffsets.to_json``); ObjectFormatError naming what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise ObjectFormatError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ObjectFormatError(f"{path}: not JSON: {exc}") from None
    return PyOffsets.from_dict(doc, path)


_ELF_CACHE: dict[tuple[int, int, int, int], _Elf] = {}


def _elf(source: str, shown: str) -> _Elf:
    """:class:`_Elf` of ``source``, parsed once per file (dev, inode, size, mtime): every
    process of one interpreter shares it."""
    try:
        st = os.stat(source)
    except OSError as exc:
        raise UnreadablePythonError(f"cannot read the ELF file {shown}: {exc.strerror}") from None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    elf = _ELF_CACHE.get(key)
    if elf is None:
        if len(_ELF_CACHE) > 64:
            _ELF_CACHE.clear()
        elf = _ELF_CACHE[key] = _Elf(source, shown)
    return elf


class _Elf:
    """The few data symbols of the interpreter's ELF file that a reader needs."""

    def __init__(self, source: str, shown: str) -> None:
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile
        self.shown = shown
        self.symbols: dict[str, int] = {}
        self.first_load: tuple[int, int] | None = None   # (file offset, vaddr) of the first PT_LOAD
        try:
            with open(source, "rb") as f:
                elf = ELFFile(f)
                for seg in elf.iter_segments():
                    if seg["p_type"] == "PT_LOAD":
                        self.first_load = (seg["p_offset"], seg["p_vaddr"])
                        break
                for name in (".dynsym", ".symtab"):
                    sec = elf.get_section_by_name(name)
                    if sec is None or not hasattr(sec, "get_symbol_by_name"):
                        continue
                    for want in ("_PyRuntime", "PyCode_Type", "PyUnicode_Type", "Py_Version"):
                        if want in self.symbols:
                            continue
                        found = sec.get_symbol_by_name(want)
                        if found and found[0]["st_shndx"] != "SHN_UNDEF":
                            self.symbols[want] = int(found[0]["st_value"])
        except (OSError, ELFError, ValueError, struct.error) as exc:
            raise UnreadablePythonError(f"cannot read the ELF file {shown}: {exc}") from None


class PythonProcess:
    """A CPython process to read from outside (root: ``/proc/PID/mem``).

    ``offsets`` overrides how they are found (a :class:`PyOffsets`, e.g. from
    ``--offsets FILE``); they are verified against the process all the same.
    """

    def __init__(self, pid: int, *, offsets: PyOffsets | None = None, verify: bool = True) -> None:
        self.pid = pid
        self._mem: int | None = None
        self._code: dict[int, CodeInfo | None] = {}
        self.comm = self._comm()
        maps = _read_maps(pid)
        self.interpreter, elf, self.bias = self._find_interpreter(maps)
        self.runtime = elf.symbols["_PyRuntime"] + self.bias
        self.code_type = elf.symbols.get("PyCode_Type", 0) + self.bias
        self.str_type = elf.symbols.get("PyUnicode_Type", 0) + self.bias
        try:
            self._mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise UnreadablePythonError(f"no process with pid {pid}", pid=pid) from None
        except PermissionError:
            raise UnreadablePythonError(f"cannot open /proc/{pid}/mem (permission denied: run as root)",
                                        pid=pid) from None
        try:
            self.version = self._version(elf)
            self.offsets = offsets if offsets is not None else self._offsets(maps)
            if self.offsets.free_threaded:
                raise UnreadablePythonError(
                    f"pid {pid} runs a free-threaded CPython {self._vtext()} (3.13t, no GIL): pybpf reads "
                    "only CPython builds with the GIL", pid=pid)
            if offsets is not None and offsets.version != self.version[:2]:
                raise UnreadablePythonError(
                    f"the offsets given are for CPython {offsets.version[0]}.{offsets.version[1]}, pid {pid} runs "
                    f"{self._vtext()}", pid=pid)
            if verify:
                self.verify()
        except BaseException:
            self.close()
            raise

    # ---- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Close ``/proc/PID/mem`` (idempotent)."""
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None

    def __enter__(self) -> PythonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_mem", None) is not None:
            self.close()

    def __repr__(self) -> str:
        return f"PythonProcess(pid={self.pid}, CPython {self._vtext()}, {self.interpreter})"

    # ---- finding the interpreter -------------------------------------------------------
    def _comm(self) -> str:
        try:
            with open(f"/proc/{self.pid}/comm", "rb") as f:
                return f.read().strip().decode("utf-8", "replace")
        except FileNotFoundError:
            raise UnreadablePythonError(f"no process with pid {self.pid}", pid=self.pid) from None

    def _find_interpreter(self, maps: list[_Map]) -> tuple[str, _Elf, int]:
        from pybpf.spec.usdt import process_files
        try:
            files = process_files(self.pid)
        except OSError as exc:
            raise UnreadablePythonError(str(exc), pid=self.pid) from None
        names = [shown for shown, _ in files]
        if any("libpypy" in os.path.basename(n) or os.path.basename(n).startswith("pypy") for n in names):
            raise UnreadablePythonError(f"pid {self.pid} ({self.comm}) runs PyPy, not CPython: pybpf reads "
                                        "CPython frames only", pid=self.pid)
        candidates = [(s, src) for s, src in files
                      if s == names[0] or re.match(r"libpython3\.\d+", os.path.basename(s))]
        for shown, source in candidates:
            elf = _elf(source, shown)
            if "_PyRuntime" not in elf.symbols:
                continue
            if elf.first_load is None:
                raise UnreadablePythonError(f"{shown} has no PT_LOAD segment", pid=self.pid)
            off, vaddr = elf.first_load
            base = [m for m in maps if m.path.removesuffix(" (deleted)") == shown and m.offset == off & ~0xFFF]
            if not base:
                raise UnreadablePythonError(f"pid {self.pid}: {shown} is not mapped at its first segment",
                                            pid=self.pid)
            return shown, elf, base[0].start - (vaddr & ~0xFFF)
        what = names[0] if names else "?"
        raise UnreadablePythonError(
            f"pid {self.pid} ({self.comm}, {what}) is not a CPython pybpf can read: no _PyRuntime symbol in its "
            "executable or a libpython3.X it maps (not CPython, older than 3.7, or stripped of .dynsym)",
            pid=self.pid)

    def _version(self, elf: _Elf) -> tuple[int, int, int, int]:
        if "Py_Version" in elf.symbols:
            (hexversion,) = struct.unpack("<Q", self.read(elf.symbols["Py_Version"] + self.bias, 8))
            hexversion &= 0xFFFFFFFF
        else:
            m = re.search(r"python(\d+)\.(\d+)", os.path.basename(self.interpreter))
            if m is None:
                raise UnreadablePythonError(f"pid {self.pid}: cannot tell the CPython version of {self.interpreter} "
                                            "(no Py_Version symbol)", pid=self.pid)
            hexversion = (int(m[1]) << 24) | (int(m[2]) << 16)
        version = (hexversion >> 24 & 0xFF, hexversion >> 16 & 0xFF, hexversion >> 8 & 0xFF, hexversion & 0xFF)
        if version[:2] not in SUPPORTED:
            raise UnreadablePythonError(
                f"pid {self.pid} runs CPython {version[0]}.{version[1]}.{version[2]} ({self.interpreter}): pybpf "
                f"reads the frames of CPython {', '.join(f'{a}.{b}' for a, b in SUPPORTED)}", pid=self.pid)
        return version

    def _vtext(self) -> str:
        return ".".join(str(v) for v in self.version[:3]) if hasattr(self, "version") else "?"

    def _offsets(self, maps: list[_Map]) -> PyOffsets:
        version = self.version[:2]
        if version >= (3, 13):
            try:
                return offsets_from_debug(self.read(self.runtime, debug_offsets_size()))
            except ObjectFormatError as exc:
                raise UnreadablePythonError(f"pid {self.pid} (CPython {self._vtext()}): {exc}", pid=self.pid) from None
        prefix = os.path.dirname(os.path.dirname(self.interpreter))
        root = f"/proc/{self.pid}/root"
        errors = []
        for directory in header_dirs(version, (root + prefix, prefix)):
            if not os.path.isdir(directory):
                continue
            try:
                return header_offsets(directory, version)
            except UnreadablePythonError as exc:
                errors.append(str(exc))
        why = "; ".join(errors) if errors else (
            f"no headers of CPython {version[0]}.{version[1]} found (apt-get install python{version[0]}.{version[1]}-dev"
            f", or give --offsets FILE)")
        raise UnreadablePythonError(f"pid {self.pid} runs CPython {self._vtext()}: its offsets come from its "
                                    f"headers: {why}", pid=self.pid)

    # ---- memory ------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes at ``addr`` in the process (UnreadablePythonError when unmapped)."""
        if self._mem is None:
            from pybpf.errors import ClosedError
            raise ClosedError(f"PythonProcess({self.pid}) is closed")
        if addr <= 0 or addr >= 1 << 47:
            raise UnreadablePythonError(f"pid {self.pid}: address {addr:#x} is not a user address", pid=self.pid)
        try:
            data = os.pread(self._mem, size, addr)
        except OSError as exc:
            raise UnreadablePythonError(f"pid {self.pid}: cannot read {size} bytes at {addr:#x} "
                                        f"({exc.strerror})", pid=self.pid) from None
        if len(data) != size:
            raise UnreadablePythonError(f"pid {self.pid}: short read at {addr:#x}", pid=self.pid)
        return data

    def u64(self, addr: int) -> int:
        """The 8-byte word at ``addr``."""
        return int.from_bytes(self.read(addr, 8), "little")

    def _i32(self, addr: int) -> int:
        return struct.unpack("<i", self.read(addr, 4))[0]

    # ---- walking -----------------------------------------------------------------------
    def current_frame(self, tstate: int) -> int:
        """The innermost ``_PyInterpreterFrame`` of thread state ``tstate`` (0: none)."""
        o = self.offsets
        ptr = self.u64(tstate + o.tstate_frame)
        if o.cframe_current_frame >= 0:
            ptr = self.u64(ptr + o.cframe_current_frame) if ptr else 0
        return ptr

    def frame_codes(self, frame: int, limit: int = 64) -> tuple[int, ...]:
        """Code objects of the frames from ``frame`` outwards (shim frames skipped)."""
        o = self.offsets
        out = []
        for _ in range(limit):
            if not frame:
                break
            code = self.u64(frame + o.frame_code)
            if code and self.u64(code + o.object_type) == self.code_type:
                out.append(code)
            frame = self.u64(frame + o.frame_previous)
        return tuple(out)

    def thread_states(self) -> list[int]:
        """Every thread state of every interpreter, as addresses."""
        o = self.offsets
        out: list[int] = []
        interp = self.u64(self.runtime + o.runtime_interpreters_head)
        for _ in range(_MAX_INTERPRETERS):
            if not interp:
                break
            tstate = self.u64(interp + o.interp_threads_head)
            while tstate and len(out) < _MAX_THREADS:
                out.append(tstate)
                tstate = self.u64(tstate + o.tstate_next)
            interp = self.u64(interp + o.interp_next)
        return out

    def threads(self, limit: int = 64) -> list[ThreadInfo]:
        """Each thread state with its OS thread id and code objects (innermost first)."""
        o = self.offsets
        return [ThreadInfo(t, self.u64(t + o.tstate_native_thread_id), self.frame_codes(self.current_frame(t), limit))
                for t in self.thread_states()]

    def _tids(self) -> set[int]:
        try:
            return {int(t) for t in os.listdir(f"/proc/{self.pid}/task")}
        except OSError:
            return set()

    def _ns_tids(self) -> set[int]:
        """Thread ids as the process's own pid namespace numbers them (what CPython records)."""
        out = set()
        for tid in self._tids():
            try:
                with open(f"/proc/{self.pid}/task/{tid}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"NSpid:"):
                            out.add(int(line.split()[-1]))
            except (OSError, ValueError):
                continue
        return out

    def verify(self) -> None:
        """Check the offsets against what the process holds; UnreadablePythonError saying which
        check failed. Checked: the interpreter list, every thread state's back-pointer to its
        interpreter and OS thread id (one of the process's threads), and every frame of every
        thread: its code object's type is ``PyCode_Type`` and its file name a ``str``."""
        o = self.offsets
        where = f"pid {self.pid} (CPython {self._vtext()}, offsets from {o.source})"

        def bad(what: str) -> UnreadablePythonError:
            return UnreadablePythonError(f"{where}: the offsets do not match this process: {what}", pid=self.pid)

        if not self.code_type or not self.str_type:
            raise bad("PyCode_Type or PyUnicode_Type is not exported by the interpreter")
        tids = self._ns_tids() | self._tids()
        try:
            interp = self.u64(self.runtime + o.runtime_interpreters_head)
            if not interp:
                raise bad("_PyRuntime.interpreters.head is NULL (not initialized yet, or the wrong field)")
            states = 0
            frames = others = 0
            for _ in range(_MAX_INTERPRETERS):
                if not interp:
                    break
                tstate = self.u64(interp + o.interp_threads_head)
                while tstate and states < _MAX_THREADS:
                    states += 1
                    back = self.u64(tstate + o.tstate_interp)
                    if back != interp:
                        raise bad(f"thread state {tstate:#x} points to interpreter {back:#x}, not {interp:#x}")
                    tid = self.u64(tstate + o.tstate_native_thread_id)
                    if tid not in tids:
                        raise bad(f"thread state {tstate:#x} names OS thread {tid}, not one of the process's "
                                  f"threads {sorted(tids)[:8]}")
                    frame = self.current_frame(tstate)
                    for _depth in range(256):
                        if not frame:
                            break
                        code = self.u64(frame + o.frame_code)
                        kind = self.u64(code + o.object_type) if code else 0
                        if kind == self.code_type:
                            frames += 1
                            name = self.u64(code + o.code_filename)
                            if not name or self.u64(name + o.object_type) != self.str_type:
                                raise bad(f"code object {code:#x}: co_filename is not a str")
                        else:
                            others += 1
                            if o.frame_is_entry >= 0:   # 3.11 has no shim frames: every frame runs code
                                raise bad(f"frame {frame:#x}: its code {code:#x} is not a code object")
                        frame = self.u64(frame + o.frame_previous)
                    tstate = self.u64(tstate + o.tstate_next)
                interp = self.u64(interp + o.interp_next)
            if not states:
                raise bad("the interpreter has no thread state")
            if others > frames:   # shim frames (3.12+) are one per C entry, never most frames
                raise bad(f"{others} of {others + frames} frames hold no code object")
        except UnreadablePythonError as exc:
            if "do not match" in str(exc):
                raise
            raise bad(f"reading the runtime failed: {exc}") from None
        self.verified_threads = states
        self.verified_frames = frames

    # ---- naming code objects -------------------------------------------------------------
    def read_str(self, addr: int) -> str | None:
        """A compact ``str`` object's text (None when ``addr`` is not a str)."""
        o = self.offsets
        if not addr or self.u64(addr + o.object_type) != self.str_type:
            return None
        length = self.u64(addr + o.str_length)
        state = struct.unpack("<I", self.read(addr + o.str_state, 4))[0]
        kind = (state >> o.str_kind_shift) & 7
        compact, ascii_ = (state >> o.str_compact_bit) & 1, (state >> o.str_ascii_bit) & 1
        if not compact or kind not in (1, 2, 4) or length > 1 << 20:
            return None
        start = addr + (o.str_ascii_data if ascii_ else o.str_compact_data)
        count = min(length, _MAX_STR)
        raw = self.read(start, count * kind)
        codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
        text = raw.decode(codec, "replace")
        return text if count == length else text + "..."

    def code_info(self, code: int) -> CodeInfo | None:
        """``qualname``, ``co_filename`` and ``co_firstlineno`` of the code object at ``code``,
        read once and cached (None when it is not, or no longer, a code object)."""
        if code in self._code:
            return self._code[code]
        info = None
        o = self.offsets
        try:
            if self.u64(code + o.object_type) == self.code_type:
                qualname = self.read_str(self.u64(code + o.code_qualname))
                if qualname is None:
                    qualname = self.read_str(self.u64(code + o.code_name))
                filename = self.read_str(self.u64(code + o.code_filename))
                line = self._i32(code + o.code_firstlineno)
                if qualname is not None and filename is not None:
                    info = CodeInfo(qualname, filename, line)
        except UnreadablePythonError:
            info = None
        if info is not None:   # a failed read may be a race with the process: try again next time
            self._code[code] = info
        return info

    def forget_code(self, code: int) -> None:
        """Drop the cached name of ``code`` (its address now holds another object)."""
        self._code.pop(code, None)

    def describe(self) -> dict[str, Any]:
        """What was found, for ``--verbose``/JSON: version, interpreter, runtime, offsets source."""
        return {"pid": self.pid, "comm": self.comm, "version": self._vtext(), "interpreter": self.interpreter,
                "runtime": f"{self.runtime:#x}", "offsets": self.offsets.source}


if __name__ == "__main__":  # pragma: no cover - a quick look: python -m pybpf.pyframes.process PID
    with PythonProcess(int(sys.argv[1])) as proc:
        print(proc)
        for t in proc.threads():
            print(t.tid, [str(proc.code_info(c)) for c in t.frames])
