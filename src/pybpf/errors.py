"""The pybpf exception hierarchy.

Every failure that crosses the libbpf boundary is turned into one of these
classes in ``_libbpf.py``; no caller ever sees a bare ``-errno``.  The classes
are also builtins where that helps: ``BpfError`` is an ``OSError`` (so
``errno`` works), ``KeyNotFoundError`` is a ``KeyError``, ``ClosedError`` is a
``ValueError`` like file operations on a closed file.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "BpfError",
    "BpfPermissionError",
    "BufferFullError",
    "BuildError",
    "ClosedError",
    "CompilerNotFoundError",
    "CoreRelocationError",
    "IndexOutOfRangeError",
    "InvalidArgumentError",
    "KeyNotFoundError",
    "MapFullError",
    "MapMemoryError",
    "ManifestError",
    "MapMismatchError",
    "NotSupportedError",
    "ObjectFormatError",
    "RecordFormatError",
    "VerifierError",
    "WrongMapTypeError",
]


ENOTSUPP = 524  # the kernel's internal "not supported", which bpf() returns for some calls


class BpfError(OSError):
    """Root of every pybpf error raised for a failed BPF operation.

    ``errno`` is set only when the failure came from the kernel or libbpf (errors from pybpf's
    own checks have ``errno`` None, so they never claim a reason the kernel did not give);
    ``log`` holds what libbpf printed during the failing call, if anything.
    """

    def __init__(self, message: str, errno: int | None = None, *, log: str = "") -> None:
        if errno is not None:
            super().__init__(errno, message)
        else:
            super().__init__(message)
        self.message = message
        self.log = log

    def __str__(self) -> str:
        if self.errno == ENOTSUPP:  # kernel-internal, but bpf() returns it; strerror() knows no name
            return f"{self.message} [ENOTSUPP: operation not supported]"
        if self.errno is not None and self.errno < 4000:  # libbpf's own codes have no strerror
            name = _errno.errorcode.get(self.errno, str(self.errno))
            return f"{self.message} [{name}: {os.strerror(self.errno)}]"
        return self.message

    def __reduce__(self):  # keep pickling (multiprocessing, pytest-xdist) working
        return (_rebuild, (type(self), self.message, self.errno, self.log, dict(self.__dict__)))


def _rebuild(cls, message, errno, log, state):  # type: ignore[no-untyped-def]
    obj = cls.__new__(cls)
    BpfError.__init__(obj, message, errno, log=log)
    obj.__dict__.update(state)
    return obj


class BpfPermissionError(BpfError, PermissionError):
    """The caller lacks a capability; ``capability`` names the one needed."""

    def __init__(self, message: str, errno: int | None = _errno.EPERM, *, capability: str = "",
                 log: str = "") -> None:
        super().__init__(message, errno, log=log)
        self.capability = capability


class NotSupportedError(BpfError):
    """This kernel or this libbpf cannot do what was asked; ``feature`` says what."""

    def __init__(self, message: str, errno: int | None = _errno.EOPNOTSUPP, *, feature: str = "",
                 log: str = "") -> None:
        super().__init__(message, errno, log=log)
        self.feature = feature


class VerifierError(BpfError):
    """The kernel verifier rejected a program.

    ``program`` is the program's name, ``log`` the full verifier log and
    ``source_line`` the C source line the verifier stopped at (when the object
    carries BTF line info), else ``None``.
    """

    def __init__(self, message: str, errno: int | None = None, *, program: str = "",
                 log: str = "", source_line: str | None = None) -> None:
        super().__init__(message, errno, log=log)
        self.program = program
        self.source_line = source_line


class CoreRelocationError(BpfError):
    """A CO-RE relocation failed on the target kernel (libbpf 1.1 poisons the instruction,
    and the verifier reports ``invalid func unknown#195896080``, or the load stops).

    ``program`` and ``insn`` (within the program) locate it, ``access`` is libbpf's spec
    (``0:1:2``), ``path`` the C access (``task_struct.real_parent``), ``kind`` libbpf's
    relocation kind and ``missing`` what the target lacks, as the offline engine
    (:func:`pybpf.check`) finds it; ``target`` names the BTF relocated against.
    """

    def __init__(self, message: str, errno: int | None = None, *, program: str = "", insn: int = -1,
                 access: str = "", path: str = "", kind: str = "", missing: str = "", target: str = "",
                 log: str = "") -> None:
        super().__init__(message, errno, log=log)
        self.program = program
        self.insn = insn
        self.access = access
        self.path = path
        self.kind = kind
        self.missing = missing
        self.target = target


class ObjectFormatError(BpfError, ValueError):
    """The input is not a usable BPF object (not ELF, wrong machine, bad BTF...)."""

    def __init__(self, message: str, errno: int | None = None, *, path: str | None = None,
                 log: str = "") -> None:
        super().__init__(message, errno, log=log)
        self.path = path


class ClosedError(BpfError, ValueError):
    """The object, map, program, link or buffer was already closed."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is closed")


class KeyNotFoundError(BpfError, KeyError):
    """A map lookup or delete found no such key."""

    def __init__(self, message: str = "key not found", errno: int | None = _errno.ENOENT) -> None:
        super().__init__(message, errno)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return BpfError.__str__(self)


class MapFullError(BpfError):
    """An update needed a new element but the map is at max_entries (E2BIG)."""


class MapMemoryError(BpfError, MemoryError):
    """A load's maps would need more memory than the machine has (checked before the kernel
    is asked); ``needed`` and ``available`` are bytes. Override: ``load(allow_large_maps=True)``."""

    def __init__(self, message: str, errno: int | None = _errno.ENOMEM, *, needed: int = 0,
                 available: int = 0) -> None:
        super().__init__(message, errno)
        self.needed = needed
        self.available = available


class InvalidArgumentError(BpfError, ValueError):
    """An argument pybpf refuses before any syscall: out of the kernel's range, or of the wrong kind."""

    def __init__(self, message: str) -> None:
        super().__init__(message, _errno.EINVAL)


class RecordFormatError(BpfError, ValueError):
    """Event records do not match the dtype (wrong size), or no usable record type was given."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class WrongMapTypeError(BpfError, TypeError):
    """The map given is not of the type this reader or writer needs."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class BufferFullError(BpfError):
    """No room in a user ring buffer for the record."""

    def __init__(self, message: str) -> None:
        super().__init__(message, _errno.ENOSPC)


class IndexOutOfRangeError(KeyNotFoundError, IndexError):
    """An array map index at or past max_entries (also a KeyError and an IndexError)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, None)



class BuildError(Exception):
    """Compiling BPF C into an object failed (:func:`pybpf.build`).

    ``command`` is the command that failed and ``stderr`` what it printed
    (clang's diagnostics).
    """

    def __init__(self, message: str, *, command: list[str] | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.command = list(command or [])
        self.stderr = stderr


class CompilerNotFoundError(BuildError, FileNotFoundError):
    """clang (or llvm-strip) is not installed: ``tool`` names the one missing."""

    def __init__(self, message: str, *, tool: str) -> None:
        BuildError.__init__(self, message)
        self.tool = tool

    def __str__(self) -> str:
        return self.message


class MapMismatchError(BpfError, ValueError):
    """An upgrade cannot carry a map into the new version; ``map_name`` and ``difference`` say why.

    Raised before anything of the new version is attached: the old version keeps running."""

    def __init__(self, map_name: str, difference: str) -> None:
        super().__init__(f"map {map_name!r} cannot be carried into the new version: {difference}", _errno.EINVAL)
        self.map_name = map_name
        self.difference = difference


class ManifestError(BpfError, ValueError):
    """A pinned deployment's manifest (``DIR/pybpf_manifest``) is damaged or names something unsafe;
    ``path`` is the manifest and ``reason`` what is wrong with it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: damaged deployment manifest: {reason}")
        self.path = path
        self.reason = reason
