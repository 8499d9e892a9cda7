"""Plumbing of the Python USDT tools (pyaudit, pygc, pycalls): target, attach, wait, decode.

Owns what the three tools share: which interpreter to attach to (a ``--pid``, whose
binary and libraries are searched for the ``python`` provider, or a ``--binary`` for
every process running it), loading a bundled object and attaching its programs to
USDT probes, a wait that ends on an interval, a duration, Ctrl-C/SIGTERM, or the
traced process exiting (a pidfd), and decoding small CPython 3.11/3.12 objects that
the BPF side copied out of the traced process (ints, bools, floats, str, bytes, None),
in the layouts of CPython 3.11 (Debian 12) and 3.12+ (Debian 13's 3.13).
"""

from __future__ import annotations

import os
import re
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pybpf
from pybpf.distro import usdt_python
from pybpf.errors import BpfError

__all__ = ["Stop", "Target", "attached", "cpu_seconds", "decode_object", "default_binary", "python_version",
           "ready"]


def _binary_help() -> str:
    try:
        where = usdt_python()
    except FileNotFoundError:
        where = "not installed here"
    return f"(default without --pid: Debian's /usr/bin/python3 under its real name: {where})"


BINARY_HELP = _binary_help()


def default_binary() -> str:
    """The interpreter traced without ``--pid``/``--binary``: Debian's USDT-probed CPython."""
    try:
        return usdt_python()
    except FileNotFoundError as exc:
        raise BpfError(f"{exc}; or give --pid PID or --binary PATH", 2) from None


class Stop:
    """Set by SIGINT/SIGTERM, a duration running out, or the traced process exiting."""

    def __init__(self, duration: float | None = None, pid: int | None = None) -> None:
        self.event = threading.Event()
        self.deadline = None if not duration else time.monotonic() + duration
        self.exited = False
        self._old: dict[int, Any] = {}
        self._pidfd: int | None = None
        if pid is not None:
            try:
                self._pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                raise BpfError(f"no process with pid {pid}", 3) from None

    def __enter__(self) -> Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, lambda *_: self.event.set())
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    @property
    def stopped(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.event.set()
        return self.event.is_set()

    def wait(self, seconds: float, fds: tuple[int, ...] = ()) -> list[int]:
        """Sleep up to ``seconds`` in steps, waking early for a stop or a readable fd in ``fds``
        (returned). The traced process exiting stops the wait and sets ``exited``."""
        end = time.monotonic() + seconds
        if self.deadline is not None:
            end = min(end, self.deadline)
        watch = list(fds) + ([self._pidfd] if self._pidfd is not None else [])
        while not self.stopped:
            left = end - time.monotonic()
            if left <= 0:
                break
            readable, _, _ = select.select(watch, [], [], min(left, 0.1))
            if self._pidfd is not None and self._pidfd in readable:
                self.exited = True
                self.event.set()
            ready_fds = [fd for fd in readable if fd != self._pidfd]
            if ready_fds:
                return ready_fds
        return []


class Target:
    """What to trace: one process (``pid``) or every process running ``binary``."""

    def __init__(self, pid: int | None, binary: str | None) -> None:
        if pid is not None and binary is not None:
            raise ValueError("give --pid or --binary, not both")
        self.pid = pid
        self.binary = binary if binary is not None else (None if pid is not None else default_binary())

    @property
    def where(self) -> str | int:
        return self.pid if self.pid is not None else str(self.binary)

    def describe(self) -> str:
        return f"pid {self.pid}" if self.pid is not None else f"every process running {self.binary}"


@contextmanager
def attached(name: str, target: Target, probes: Mapping[str, str],
             rodata: Mapping[str, Any] | None = None) -> Iterator[pybpf.Object]:
    """Load bundled object ``name`` (``targ_tgid`` set to the pid) and attach each
    program of ``probes`` ({program: USDT name of provider ``python``})."""
    obj = pybpf.open(pybpf.bundled(name))
    try:
        if target.pid is not None:
            obj.rodata["targ_tgid"] = target.pid
        for key, value in (rodata or {}).items():
            obj.rodata[key] = value
        obj.load()
        for program, probe in probes.items():
            obj.programs[program].attach_usdt(target.where, "python", probe)
        yield obj
    finally:
        obj.close()


def ready(text: str) -> None:
    """The 'Tracing ... Ctrl-C to end.' line, on stderr so that stdout stays data."""
    print(text, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float | None:
    """User+system CPU time of a process so far (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def python_version(pid: int | None, binary: str | None) -> tuple[int, int]:
    """The CPython version of the traced interpreter, from its file names (3.11 if unknown)."""
    names = []
    if binary:
        names.append(os.path.realpath(binary))
    if pid is not None:
        try:
            names.append(os.path.realpath(f"/proc/{pid}/exe"))
            with open(f"/proc/{pid}/maps") as maps:
                names.extend(line.split()[-1] for line in maps if "libpython3" in line)
        except OSError:
            pass
    for path in names:
        match = re.search(r"python3\.(\d+)", os.path.basename(path))
        if match:
            return 3, int(match[1])
    return 3, 11


def _int_digits(raw: bytes, ndigits: int, offset: int) -> int:
    value = 0
    for i in range(ndigits):
        (digit,) = struct.unpack_from("<I", raw, offset + 4 * i)
        value |= (digit & 0x3FFFFFFF) << (30 * i)
    return value


def decode_object(type_name: str, raw: bytes, version: tuple[int, int] = (3, 11)) -> Any:
    """A Python value from the first bytes of a CPython object (None when not decodable).

    Knows int/bool, float, str, bytes and None in the 3.11 and 3.12 layouts; a value
    longer than ``raw`` holds is cut (a str or bytes ends with ``...``)."""
    if type_name == "NoneType":
        return None
    if len(raw) < 24:
        return None
    if type_name in ("int", "bool"):
        if version >= (3, 12):
            (tag,) = struct.unpack_from("<Q", raw, 16)
            ndigits, sign = tag >> 3, 1 - (tag & 3)
        else:
            (size,) = struct.unpack_from("<q", raw, 16)
            ndigits, sign = abs(size), (1 if size > 0 else -1 if size < 0 else 0)
        if 24 + 4 * ndigits > len(raw):
            return None
        value = sign * _int_digits(raw, ndigits, 24)
        return bool(value) if type_name == "bool" else value
    if type_name == "float":
        return struct.unpack_from("<d", raw, 16)[0]
    if type_name == "bytes":
        (size,) = struct.unpack_from("<q", raw, 16)
        data = raw[32:32 + max(size, 0)]
        return data if len(data) == size else data + b"..."
    if type_name == "str":
        (length,) = struct.unpack_from("<q", raw, 16)
        (state,) = struct.unpack_from("<I", raw, 32)
        kind, compact, ascii_ = (state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1
        if not compact or kind not in (1, 2, 4):
            return None
        # PyASCIIObject, then for non-ASCII compact strings PyCompactUnicodeObject's utf8_length
        # and utf8 (3.11 also has wstr and wstr_length: 48 + 24; 3.12+ has no wstr: 40 + 16)
        header = 40 if version >= (3, 12) else 48
        start = header if ascii_ else header + (16 if version >= (3, 12) else 24)
        data = raw[start:start + length * kind]
        codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
        text = data[:len(data) - len(data) % kind].decode(codec, "replace")
        return text if len(text) == length else text + "..."
    return None
