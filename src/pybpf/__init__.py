"""pybpf: CO-RE eBPF from Python.

BPF C programs compiled once by clang into BTF-relocatable ``.bpf.o`` files
are loaded through the system libbpf, which relocates them against the
running kernel; maps and global variables are read as numpy arrays over
mmapped memory, with no syscall per read.

    import pybpf
    with pybpf.open(pybpf.bundled("counters")) as obj:
        obj.load()
        with obj.programs["on_getppid"].attach():
            ...
        print(int(obj.bss["hits"]))
"""

from __future__ import annotations

import logging
from pathlib import Path

from pybpf._sys.libbpf import VERSION_STRING as LIBBPF_VERSION
from pybpf.errors import (
    BpfError,
    BpfPermissionError,
    BufferFullError,
    ClosedError,
    IndexOutOfRangeError,
    KeyNotFoundError,
    MapFullError,
    NotSupportedError,
    ObjectFormatError,
    RecordFormatError,
    VerifierError,
    WrongMapTypeError,
)
from pybpf.kernel.info import MapInfo, ProgramInfo, StatsHandle, enable_stats
from pybpf.link.base import Link
from pybpf.maps.map import Map
from pybpf.object import Object, open
from pybpf.program import Program, TestRunResult
from pybpf.events.perfbuf import PerfBuffer
from pybpf.events.ringbuf import RingBuffer, RingBufferSet
from pybpf.events.userringbuf import UserRingBuffer
from pybpf.section import Section

__version__ = "0.1.0"

__all__ = [
    "BpfError",
    "BpfPermissionError",
    "BufferFullError",
    "ClosedError",
    "IndexOutOfRangeError",
    "KeyNotFoundError",
    "LIBBPF_VERSION",
    "Link",
    "Map",
    "MapFullError",
    "MapInfo",
    "NotSupportedError",
    "Object",
    "ObjectFormatError",
    "Program",
    "ProgramInfo",
    "RecordFormatError",
    "Section",
    "StatsHandle",
    "TestRunResult",
    "VerifierError",
    "WrongMapTypeError",
    "bundled",
    "bundled_names",
    "enable_stats",
    "open",
]

logging.getLogger("pybpf").addHandler(logging.NullHandler())

_BUNDLED_DIR = Path(__file__).parent / "bpf"


def bundled(name: str) -> str:
    """Path of a BPF object shipped with pybpf (``"counters"`` or ``"counters.bpf.o"``)."""
    stem = name.removesuffix(".bpf.o")
    path = _BUNDLED_DIR / f"{stem}.bpf.o"
    if not path.exists():
        available = ", ".join(bundled_names()) or "none (build them: cmake -S . -B build && cmake --build build)"
        raise FileNotFoundError(f"no bundled BPF object {stem!r}; available: {available}")
    return str(path)


def bundled_names() -> list[str]:
    return sorted(p.name.removesuffix(".bpf.o") for p in _BUNDLED_DIR.glob("*.bpf.o"))
