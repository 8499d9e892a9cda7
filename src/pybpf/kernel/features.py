"""What this kernel and this libbpf can do, detected once and cached.

Tests and error messages ask here ("does this kernel attach kprobes?",
"does this process have CAP_BPF?") instead of guessing from versions.
"""

from __future__ import annotations

import errno
import functools
import os
import platform
import re
import struct
from dataclasses import dataclass

from pybpf.btf.model import KERNEL_BTF_PATH
from pybpf._sys import libbpf as _libbpf
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import NotSupportedError
from pybpf.kinds import MapType, ProgType

__all__ = [
    "CAPABILITIES",
    "Features",
    "capabilities",
    "detect",
    "has_capability",
    "kprobes_available",
    "Libbpf",
    "libbpf",
    "libbpf_version",
    "prog_type_supported",
    "map_type_supported",
    "probe_helper",
    "probe_map_type",
    "probe_prog_type",
]

# Linux capability numbers (include/uapi/linux/capability.h)
CAPABILITIES = {
    "CAP_NET_ADMIN": 12,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_RESOURCE": 24,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}

KERNEL_BTF = KERNEL_BTF_PATH


def _effective_mask() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def capabilities() -> frozenset[str]:
    """Names of the BPF-relevant capabilities this process holds now (not cached:
    they can change, e.g. in a child that dropped them)."""
    mask = _effective_mask()
    return frozenset(name for name, bit in CAPABILITIES.items() if mask >> bit & 1)


def has_capability(name: str) -> bool:
    """Whether this process has the capability ``name`` (``CAP_BPF``)."""
    return name in capabilities()


def libbpf_version() -> tuple[int, int]:
    """The system libbpf's (major, minor) version."""
    return _libbpf.VERSION


@functools.cache
def prog_type_supported(prog_type: int) -> bool:
    """libbpf's probe: can this kernel load a trivial program of this type?"""
    return lib.libbpf_probe_bpf_prog_type(prog_type, ffi.NULL) == 1


@functools.cache
def map_type_supported(map_type: int) -> bool:
    """Whether this kernel creates maps of type ``map_type``."""
    return lib.libbpf_probe_bpf_map_type(map_type, ffi.NULL) == 1


def _type_number(kind: str, value: str | int) -> int:
    """A prog/map type by libbpf's name (``"xdp"``, ``"ringbuf"``) or number."""
    return int((ProgType if kind == "prog" else MapType).parse(value))


_HELPER_ENUM = "bpf_func_id"


@functools.cache
def _helper_ids() -> dict[str, int]:
    """Helper names (``map_lookup_elem``) -> ids, from ``enum bpf_func_id`` in the kernel's BTF."""
    from pybpf.btf.types import Btf  # parsing the kernel BTF only when a helper is named

    btf = Btf.from_file(KERNEL_BTF)
    try:
        enum = btf[btf.find(_HELPER_ENUM, "enum")]
    except (KeyError, LookupError):
        return {}
    return {name.removeprefix("BPF_FUNC_"): int(value) for name, value in enum.values}


def _probe_result(ret: int, what: str) -> bool:
    if ret == 1:
        return True
    if ret == 0:
        return False
    raise _libbpf.make_error(-ret, what)


def probe_prog_type(prog_type: str | int) -> bool:
    """Whether this kernel loads programs of ``prog_type`` (``"xdp"``, ``"tracepoint"``...): libbpf's
    ``libbpf_probe_bpf_prog_type``, which loads a trivial program of that type."""
    number = _type_number("prog", prog_type)
    return _probe_result(lib.libbpf_probe_bpf_prog_type(number, ffi.NULL), f"probing program type {prog_type}")


def probe_map_type(map_type: str | int) -> bool:
    """Whether this kernel creates maps of ``map_type`` (``"ringbuf"``, ``"bloom_filter"``...):
    ``libbpf_probe_bpf_map_type``."""
    number = _type_number("map", map_type)
    return _probe_result(lib.libbpf_probe_bpf_map_type(number, ffi.NULL), f"probing map type {map_type}")


def probe_helper(prog_type: str | int, helper: str | int) -> bool:
    """Whether programs of ``prog_type`` may call ``helper`` here (``libbpf_probe_bpf_helper``).

    ``helper`` is a number or a name with or without ``bpf_`` (``"ringbuf_output"``,
    ``"bpf_get_current_task_btf"``); a name this kernel's ``enum bpf_func_id`` lacks is not
    supported. libbpf cannot probe helpers for tracing, ext, lsm and struct_ops programs
    (NotSupportedError)."""
    number = _type_number("prog", prog_type)
    if isinstance(helper, str):
        ids = _helper_ids()
        name = helper.removeprefix("bpf_")
        if name not in ids:
            return False
        helper = ids[name]
    what = f"probing helper {helper} for {prog_type} programs"
    ret = lib.libbpf_probe_bpf_helper(number, int(helper), ffi.NULL)
    if ret == -errno.EOPNOTSUPP:
        raise NotSupportedError(f"{what}: libbpf cannot probe helpers for {ProgType.name_of(number)} "
                                f"programs (it probes by loading a trivial program, which these types cannot be)",
                                None, feature="probe_helper")
    if ret == 1 and _helper_refused(number, int(helper)):
        return False
    return _probe_result(ret, what)


# What the verifier says when a program type may not call a helper. libbpf 1.1 knows only the first
# two; newer kernels say the third, which libbpf 1.1 takes for "supported".
_REFUSED_HELPER = (b"invalid func ", b"unknown func ", b"program of this type cannot use helper ")


def _helper_refused(prog_type: int, helper: int) -> bool:
    """Load ``call helper; exit`` ourselves and read the verifier's words (libbpf's probe hides them)."""
    insns = struct.pack("<BBhiBBhi", 0x85, 0, 0, helper, 0x95, 0, 0, 0)  # BPF_CALL helper; BPF_EXIT
    log = ffi.new("char[]", 4096)
    opts = _libbpf.new_opts("struct bpf_prog_load_opts", log_level=1, log_size=4096, log_buf=log)
    fd = lib.bpf_prog_load(prog_type, ffi.NULL, b"GPL", insns, 2, opts)
    if fd >= 0:
        _libbpf.close_fd(fd)
        return False
    text = ffi.string(log)
    return any(phrase in text for phrase in _REFUSED_HELPER)


@functools.cache
def kprobes_available() -> bool:
    """Kprobes need the kprobe PMU or tracefs kprobe_events (CONFIG_KPROBES)."""
    return (os.path.exists("/sys/bus/event_source/devices/kprobe")
            or os.path.exists("/sys/kernel/tracing/kprobe_events")
            or os.path.exists("/sys/kernel/debug/tracing/kprobe_events"))


@dataclass(frozen=True)
class Features:
    """A snapshot of what this machine offers, for reports and skip decisions."""

    kernel: str
    libbpf: str
    kernel_btf: bool
    capabilities: frozenset[str]
    kprobes: bool
    ring_buffer_consume_n: bool
    bpf_prog_get_info_by_fd: bool

    @property
    def privileged(self) -> bool:
        """Enough capabilities to load and attach programs and create maps."""
        return {"CAP_BPF", "CAP_PERFMON"} <= self.capabilities or "CAP_SYS_ADMIN" in self.capabilities


@dataclass(frozen=True)
class Libbpf:
    """The system libbpf pybpf runs on: its version, its file, and the APIs newer than 1.1 it has.

    pybpf needs libbpf >= 1.1 and uses newer symbols only when they are there (found at load
    time, never required): ``optional`` says which are, ``since`` which release added each."""

    version: str
    major: int
    minor: int
    path: str
    optional: dict[str, bool]
    since: dict[str, str]

    def to_dict(self) -> dict[str, object]:
        """The JSON form (``pybpf features -j``)."""
        return {"version": self.version, "major": self.major, "minor": self.minor, "path": self.path,
                "optional": [{"symbol": name, "since": self.since[name], "present": present}
                             for name, present in self.optional.items()]}


@functools.cache
def libbpf() -> Libbpf:
    """The loaded libbpf's version and optional APIs (``pybpf features`` prints them).

    The version is libbpf's own ``libbpf_version_string()`` (major.minor), with the patch
    level of the file name when it agrees (``libbpf.so.1.1.2`` -> ``1.1.2``)."""
    path = _libbpf.library_path()
    version = _libbpf.VERSION_STRING.removeprefix("v")
    match = re.search(r"\.so\.(\d+)\.(\d+)\.(\d+)$", path)
    if match and (int(match[1]), int(match[2])) == _libbpf.VERSION:
        version = ".".join(match.groups())
    return Libbpf(version=version, major=_libbpf.VERSION[0], minor=_libbpf.VERSION[1], path=path,
                  optional=_libbpf.optional_symbols(),
                  since={name: f"{v[0]}.{v[1]}" for name, v in _libbpf.OPTIONAL_SYMBOLS.items()})


def detect() -> Features:
    """What this kernel and libbpf can do, detected once per process."""
    return Features(
        kernel=platform.release(),
        libbpf=_libbpf.VERSION_STRING,
        kernel_btf=os.path.exists(KERNEL_BTF),
        capabilities=capabilities(),
        kprobes=kprobes_available(),
        ring_buffer_consume_n=_libbpf.has_symbol("ring_buffer__consume_n"),
        bpf_prog_get_info_by_fd=_libbpf.has_symbol("bpf_prog_get_info_by_fd"),
    )
