"""The one boundary between pybpf and C: libbpf (and a few libc calls).

Owns the cffi ``ffi``/``lib`` handles, the libbpf version gate, detection of
optional (newer than 1.1) symbols, libbpf's print callback (routed to the
``pybpf.libbpf`` logger and captured per call so errors can carry it), and
the translation of ``-errno`` / ``NULL`` + ``errno`` into typed pybpf errors.
No other module calls into C.
"""

from __future__ import annotations

import errno as _errno
import os
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pybpf import logs
from pybpf._sys.cdef import CDEF, LIBC_CDEF, OPTIONAL_CDEF, OPTIONAL_SYMBOLS
from pybpf.errors import (
    BpfError,
    BpfPermissionError,
    NotSupportedError,
    ObjectFormatError,
)

MIN_VERSION = (1, 1)

_LOGGER = "pybpf.libbpf"  # libbpf's lines, through pybpf.logs: no logging imported for them


def _compiled() -> Any:
    """``pybpf._sys._fast`` when it is built from this pybpf's cdef (and not disabled), else None."""
    if os.environ.get("PYBPF_NO_EXTENSION", "") in ("1", "true", "yes"):
        return None
    try:
        from pybpf._sys import _fast  # type: ignore[attr-defined]
    except ImportError:  # not built (no compiler at install), or libbpf.so.1 unusable
        return None
    built_from = getattr(_fast.lib, "pb_cdef_crc", None)
    wanted = zlib.crc32("\0".join((CDEF, OPTIONAL_CDEF, LIBC_CDEF)).encode())
    if built_from is None or built_from() != wanted:
        warnings.warn("pybpf._sys._fast was built from other declarations than this pybpf's cdef.py: "
                      "using the ABI-mode binding; rebuild it (make ext)", RuntimeWarning, stacklevel=2)
        return None
    return _fast


# The compiled module (API mode: its declarations parsed at build time, direct C calls) when
# it is there; else cffi's ABI mode, which parses the cdef now and calls through libffi.
_native: Any = _compiled()
if _native is not None:
    ffi: Any = _native.ffi
    lib: Any = _native.lib
    libc: Any = _native.lib  # the same module binds the few libc calls
else:
    from cffi import FFI

    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.cdef(OPTIONAL_CDEF)
    ffi.cdef(LIBC_CDEF)
    try:
        lib = ffi.dlopen("libbpf.so.1")
    except OSError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(
            "pybpf needs the system libbpf (libbpf.so.1, version >= 1.1); "
            "install it with `apt-get install libbpf1` (Debian/Ubuntu)"
        ) from exc
    libc = ffi.dlopen(None)

NATIVE: bool = _native is not None  # which binding runs: the compiled one, or ABI mode

VERSION: tuple[int, int] = (int(lib.libbpf_major_version()), int(lib.libbpf_minor_version()))
VERSION_STRING: str = ffi.string(lib.libbpf_version_string()).decode()
if VERSION < MIN_VERSION:  # pragma: no cover - depends on the machine
    raise ImportError(
        f"pybpf needs libbpf >= {MIN_VERSION[0]}.{MIN_VERSION[1]}, "
        f"but the system libbpf.so.1 is {VERSION_STRING}; upgrade libbpf1"
    )

_symbol_cache: dict[str, bool] = {}


def has_symbol(name: str) -> bool:
    """Whether the loaded libbpf exports ``name`` (newer symbols, in ``OPTIONAL_CDEF``, are optional).

    Only declared names can be present. The compiled binding references the optional ones
    weakly and asks the dynamic linker; ABI mode looks each up when first used."""
    found = _symbol_cache.get(name)
    if found is None:
        present = int(lib.pb_has_symbol(name.encode())) if _native is not None else -1
        if present >= 0:
            found = bool(present)
        else:
            try:
                getattr(lib, name)
                found = True
            except (AttributeError, NotImplementedError):
                found = False
        _symbol_cache[name] = found
    return found


def optional_symbols() -> dict[str, bool]:
    """Each symbol pybpf can use from libbpf newer than 1.1 -> whether the loaded libbpf has it."""
    return {name: has_symbol(name) for name in OPTIONAL_SYMBOLS}


def library_path() -> str:
    """The file of the libbpf this process loaded (``/usr/lib/.../libbpf.so.1.1.2``), from its maps."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").split(None, 5)[-1]
                if os.path.basename(path).startswith("libbpf.so"):
                    return path
    except OSError:
        pass
    return ""


# --------------------------------------------------------------------------
# libbpf's print callback -> logging + per-call capture
# --------------------------------------------------------------------------

_LEVELS = {0: logs.WARNING, 1: logs.INFO, 2: logs.DEBUG}
_tls = threading.local()
_VA_LIST_SIZE = 24  # sizeof(__va_list_tag) on x86-64


def _vformat(fmt: Any, args: Any) -> str:
    # vsnprintf consumes the va_list, so each pass works on its own copy.
    copy = ffi.new("char[]", _VA_LIST_SIZE)
    ffi.memmove(copy, args, _VA_LIST_SIZE)
    buf = ffi.new("char[]", 512)
    needed = libc.vsnprintf(buf, 512, fmt, copy)
    if needed < 0:
        return ""
    if needed >= 512:
        buf = ffi.new("char[]", needed + 1)
        ffi.memmove(copy, args, _VA_LIST_SIZE)
        libc.vsnprintf(buf, needed + 1, fmt, copy)
    return ffi.string(buf).decode("utf-8", "replace")


class LogCapture:
    """Lines libbpf printed while a ``capture()`` block was active."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.chunks: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def _print_callback(level: int, fmt: Any, args: Any) -> int:
    saved_errno = ffi.errno  # formatting makes C calls; keep the caller's errno intact
    try:
        py_level = _LEVELS.get(level, logs.DEBUG)
        captures: list[LogCapture] = getattr(_tls, "captures", [])
        wanted = [c for c in captures if py_level >= c.level]
        logger = logs.active(_LOGGER)
        if wanted or (logger is not None and logger.isEnabledFor(py_level)):
            text = _vformat(fmt, args)
            for cap in wanted:
                cap.chunks.append(text)
            if logger is not None and logger.isEnabledFor(py_level):
                logger.log(py_level, "%s", text.rstrip("\n"))
    except BaseException:  # never let an exception unwind into C
        pass
    finally:
        ffi.errno = saved_errno
    return 0


# With the compiled module (pybpf._sys._fast) libbpf's lines are formatted in C, kept in a
# per-thread C buffer while a capture() is active, and cross into Python only when the
# pybpf.libbpf logger wants their level (checked when a capture starts; warnings always).

_C_LEVELS = {logs.DEBUG: 2, logs.INFO: 1}  # logging level -> libbpf's (0 warn, 1 info, 2 debug)


def _c_level(level: int) -> int:
    return 2 if level <= logs.DEBUG else 1 if level <= logs.INFO else 0


def _forward_level() -> int:
    """The highest libbpf level the pybpf.libbpf logger wants (0: warnings only)."""
    logger = logs.active(_LOGGER)
    if logger is None:  # logging never imported: nothing configured would show a line
        return 0
    for py_level, level in _C_LEVELS.items():
        if logger.isEnabledFor(py_level):
            return level
    return 0


if _native is not None:
    @_native.ffi.def_extern()  # type: ignore[misc]
    def pb_forward(level: int, text: Any) -> None:
        try:
            py_level = _LEVELS.get(level, logs.DEBUG)
            logger = logs.active(_LOGGER)
            if logger is not None and logger.isEnabledFor(py_level):
                logger.log(py_level, "%s", _native.ffi.string(text).decode("utf-8", "replace").rstrip("\n"))
        except BaseException:  # never let an exception unwind into C
            pass

    _native.lib.pb_set_forward_level(_forward_level())
    _native.lib.pb_install_print()
else:
    _print_cb = ffi.callback("int(enum libbpf_print_level, const char *, void *)", _print_callback)
    lib.libbpf_set_print(_print_cb)


def _native_lines(start: int, level: int) -> list[str]:
    """This thread's captured lines from C buffer offset ``start``, at libbpf level <= ``level``."""
    n = _native.lib.pb_capture_length() - start
    if n <= 0:
        return []
    buf = _native.ffi.new("char[]", n)
    got = _native.lib.pb_capture_copy(start, buf, n)
    lines = []
    for record in bytes(_native.ffi.buffer(buf, got)).split(b"\0"):
        if record and record[0] - 48 <= level:
            lines.append(record[1:].decode("utf-8", "replace"))
    return lines


@contextmanager
def capture(level: int = logs.INFO) -> Iterator[LogCapture]:
    """Collect what libbpf prints (at ``level`` and above) in this thread."""
    cap = LogCapture(level)
    stack: list[LogCapture] = getattr(_tls, "captures", None) or []
    _tls.captures = stack + [cap]
    if _native is None:
        try:
            yield cap
        finally:
            _tls.captures = stack
        return
    c_level = _c_level(level)
    outer = max((_c_level(c.level) for c in stack), default=-1)
    _native.lib.pb_set_forward_level(_forward_level())
    start = _native.lib.pb_capture_begin(c_level)
    try:
        yield cap
    finally:
        cap.chunks.extend(_native_lines(start, c_level))
        _tls.captures = stack
        # the outermost capture empties the buffer; an inner one leaves its lines to the outer ones
        _native.lib.pb_capture_end(outer, 0 if not stack else _native.lib.pb_capture_length())


# --------------------------------------------------------------------------
# errors at the boundary
# --------------------------------------------------------------------------

ENOTSUPP = 524  # kernel-internal, but bpf() returns it
_LIBBPF_ERRNO_BASE = 4000
_FORMAT_ERRNOS = {4000, 4001, 4002, 4003, 4004, 4006}  # LIBELF, FORMAT, KVERSION, ENDIAN, INTERNAL, RELOC


def strerror(err: int) -> str:
    buf = ffi.new("char[]", 256)
    lib.libbpf_strerror(err, buf, 256)
    return ffi.string(buf).decode("utf-8", "replace")


ErrorFactory = Callable[[str, int, str], BpfError]


def make_error(err: int, what: str, *, log: str = "", capability: str = "CAP_BPF",
               overrides: dict[int, ErrorFactory] | None = None) -> BpfError:
    """Build the typed error for a positive errno ``err`` from operation ``what``."""
    err = abs(err)
    if overrides and err in overrides:
        return overrides[err](what, err, log)
    if err in (_errno.EPERM, _errno.EACCES):
        return BpfPermissionError(
            f"{what}: permission denied; this needs {capability} (run as root or grant it)",
            err, capability=capability, log=log)
    if err in (_errno.EOPNOTSUPP, ENOTSUPP):
        return NotSupportedError(f"{what}: not supported by this kernel", err, feature=what, log=log)
    if err >= _LIBBPF_ERRNO_BASE:
        message = f"{what}: {strerror(err)}"
        if err in _FORMAT_ERRNOS:
            return ObjectFormatError(message, _errno.EINVAL, log=log)
        return BpfError(message, _errno.EINVAL, log=log)
    return BpfError(what, err, log=log)


def check(ret: int, what: str, **kwargs: Any) -> int:
    """Raise the typed error for an int-returning libbpf call that failed (< 0)."""
    if ret < 0:
        raise make_error(-ret, what, **kwargs)
    return ret


def check_ptr(ptr: Any, what: str, **kwargs: Any) -> Any:
    """Raise the typed error for a pointer-returning libbpf call that gave NULL."""
    if ptr == ffi.NULL:
        raise make_error(ffi.errno or _errno.EINVAL, what, **kwargs)
    return ptr


def c_str(value: str | bytes | None) -> Any:
    """A C string kept alive by the returned cdata (NULL for None)."""
    if value is None:
        return ffi.NULL
    if isinstance(value, str):
        value = os.fsencode(value)  # paths from os.listdir may hold undecodable bytes
    return ffi.new("char[]", value)


def string_or_none(ptr: Any) -> str | None:
    return None if ptr == ffi.NULL else ffi.string(ptr).decode("utf-8", "replace")


def close_fd(fd: int) -> None:
    if fd >= 0:
        libc.close(fd)


def new_opts(ctype: str, **fields: Any) -> Any:
    """A zeroed ``*_opts`` struct with ``sz`` set, as libbpf requires."""
    opts = ffi.new(f"{ctype} *")
    opts.sz = ffi.sizeof(ctype)
    for name, value in fields.items():
        setattr(opts, name, value)
    return opts


def if_nametoindex(name: str) -> int:
    return int(libc.if_nametoindex(name.encode()))


NR_PERF_EVENT_OPEN = 298  # x86-64


def perf_event_open(attr: bytes, pid: int, cpu: int, group_fd: int = -1, flags: int = 0) -> int:
    """perf_event_open(2); ``attr`` is a packed ``struct perf_event_attr``."""
    buf = ffi.new("char[]", attr)
    fd = libc.syscall(ffi.cast("long", NR_PERF_EVENT_OPEN), ffi.cast("void *", buf),
                      ffi.cast("int", pid), ffi.cast("int", cpu), ffi.cast("int", group_fd),
                      ffi.cast("unsigned long", flags))
    if fd < 0:
        raise make_error(ffi.errno, "perf_event_open", capability="CAP_PERFMON")
    return int(fd)


def fs_magic(path: str) -> int | None:
    """statfs(2) f_type of ``path``, or None when it cannot be read."""
    buf = ffi.new("struct statfs *")
    if libc.statfs(path.encode(), buf) != 0:
        return None
    return int(buf.f_type) & 0xFFFFFFFF


def mount(source: str, target: str, fstype: str) -> None:
    if libc.mount(source.encode(), target.encode(), fstype.encode(), 0, ffi.NULL) != 0:
        raise make_error(ffi.errno, f"mounting {fstype} on {target}", capability="CAP_SYS_ADMIN")


def umount(target: str) -> None:
    if libc.umount2(target.encode(), 0) != 0:
        raise make_error(ffi.errno, f"unmounting {target}", capability="CAP_SYS_ADMIN")


def num_possible_cpus() -> int:
    return check(lib.libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")
