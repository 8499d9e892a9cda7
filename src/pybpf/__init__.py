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

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from pybpf import logs as _logs

from pybpf.errors import (
    BpfError,
    BpfPermissionError,
    BufferFullError,
    BuildError,
    ClosedError,
    CompilerNotFoundError,
    CoreRelocationError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    KeyNotFoundError,
    MapFullError,
    MapMemoryError,
    ManifestError,
    MapMismatchError,
    NotSupportedError,
    ObjectFormatError,
    RecordFormatError,
    VerifierError,
    WrongMapTypeError,
)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load on first use (__getattr__)
    from pybpf._sys.libbpf import VERSION_STRING as LIBBPF_VERSION
    from pybpf.btf.cstring import cstring, cstrings
    from pybpf.kernel import features
    from pybpf.events.perfbuf import PerfBuffer
    from pybpf.events.ringbuf import RingBuffer, RingBufferSet
    from pybpf.events.userringbuf import UserRingBuffer
    from pybpf.kernel.info import MapInfo, ProgramInfo, StatsHandle, enable_stats
    from pybpf.link.base import BpfLink, Link
    from pybpf.maps.map import Map
    from pybpf.object import Object, open
    from pybpf.program import Program, TestRunResult
    from pybpf.section import Section
    from pybpf.spec.check import check
    from pybpf.toolchain import build, include_dir
    from pybpf.upgrade.core import Deployment, deploy, upgrade

__version__ = "0.1.0"

# Public name -> (module, attribute). `import pybpf` loads only the errors: libbpf (cffi),
# numpy and the rest load when a name that needs them is first used (PEP 562).
_LAZY: dict[str, tuple[str, str]] = {
    "LIBBPF_VERSION": ("pybpf._sys.libbpf", "VERSION_STRING"),
    "Link": ("pybpf.link.base", "Link"),
    "BpfLink": ("pybpf.link.base", "BpfLink"),
    "Map": ("pybpf.maps.map", "Map"),
    "MapInfo": ("pybpf.kernel.info", "MapInfo"),
    "Object": ("pybpf.object", "Object"),
    "PerfBuffer": ("pybpf.events.perfbuf", "PerfBuffer"),
    "Program": ("pybpf.program", "Program"),
    "ProgramInfo": ("pybpf.kernel.info", "ProgramInfo"),
    "RingBuffer": ("pybpf.events.ringbuf", "RingBuffer"),
    "RingBufferSet": ("pybpf.events.ringbuf", "RingBufferSet"),
    "Section": ("pybpf.section", "Section"),
    "StatsHandle": ("pybpf.kernel.info", "StatsHandle"),
    "TestRunResult": ("pybpf.program", "TestRunResult"),
    "UserRingBuffer": ("pybpf.events.userringbuf", "UserRingBuffer"),
    "Deployment": ("pybpf.upgrade.core", "Deployment"),
    "build": ("pybpf.toolchain", "build"),
    "check": ("pybpf.spec.check", "check"),
    "deploy": ("pybpf.upgrade.core", "deploy"),
    "cstring": ("pybpf.btf.cstring", "cstring"),
    "cstrings": ("pybpf.btf.cstring", "cstrings"),
    "enable_stats": ("pybpf.kernel.info", "enable_stats"),
    "features": ("pybpf.kernel.features", ""),  # the module itself
    "include_dir": ("pybpf.toolchain", "include_dir"),
    "open": ("pybpf.object", "open"),
    "upgrade": ("pybpf.upgrade", "_package"),  # a callable package: pybpf.upgrade(old, new)
}

__all__ = [
    "BpfError",
    "BpfLink",
    "BpfPermissionError",
    "BufferFullError",
    "BuildError",
    "ClosedError",
    "CompilerNotFoundError",
    "CoreRelocationError",
    "Deployment",
    "IndexOutOfRangeError",
    "InvalidArgumentError",
    "KeyNotFoundError",
    "LIBBPF_VERSION",
    "Link",
    "Map",
    "MapFullError",
    "MapInfo",
    "MapMemoryError",
    "ManifestError",
    "MapMismatchError",
    "NotSupportedError",
    "Object",
    "ObjectFormatError",
    "PerfBuffer",
    "Program",
    "ProgramInfo",
    "RecordFormatError",
    "RingBuffer",
    "RingBufferSet",
    "Section",
    "StatsHandle",
    "TestRunResult",
    "UserRingBuffer",
    "VerifierError",
    "WrongMapTypeError",
    "build",
    "bundled",
    "bundled_names",
    "check",
    "deploy",
    "cstring",
    "cstrings",
    "enable_stats",
    "features",
    "include_dir",
    "open",
    "upgrade",
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pybpf' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    if name == "Map":
        importlib.import_module("pybpf.events")  # Map.ring_buffer() and friends register there
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if "logging" in sys.modules:  # else pybpf.logs adds it with the first pybpf logger
    _logs.logger("pybpf")

_BUNDLED_DIR = os.path.join(os.path.dirname(__file__), "bpf")  # os.path: pathlib costs a tool's start


def bundled(name: str) -> str:
    """Path of a BPF object shipped with pybpf (``"counters"`` or ``"counters.bpf.o"``)."""
    stem = name.removesuffix(".bpf.o")
    path = os.path.join(_BUNDLED_DIR, f"{stem}.bpf.o")
    if not os.path.exists(path):
        available = ", ".join(bundled_names()) or "none (build them: cmake -S . -B build && cmake --build build)"
        raise FileNotFoundError(f"no bundled BPF object {stem!r}; available: {available}")
    return path


def bundled_names() -> list[str]:
    """Names of the BPF objects shipped with pybpf (for :func:`bundled`)."""
    try:
        names = os.listdir(_BUNDLED_DIR)
    except OSError:
        return []
    return sorted(n.removesuffix(".bpf.o") for n in names if n.endswith(".bpf.o"))
