"""What every attach kind shares: the ``Link`` base, libbpf's ``bpf_link``, attach errors.

A ``Link`` is one attachment of a program to a hook.  Most are libbpf ``struct bpf_link``
objects (``LibbpfLink``); tc filters (libbpf 1.1 has no tcx links), socket filters and
mode-specific XDP attachments are not, so their kind files define their own ``Link``
subclasses with the same verbs.  Every link has one owner: ``close()`` detaches and
releases; ``pin()`` makes the attachment outlive the process (close then only drops this
handle).

The attach kinds themselves live one per file beside this one and see the program through
the small ``AttachTarget`` protocol, never through ``Program``/``Object``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pybpf._sys.fd import FdRef
from pybpf._sys.forksafe import fresh_locks
from pybpf._sys.resource import Resource
from pybpf._sys import libbpf as _libbpf
from pybpf.kernel import fs
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import BpfError, ClosedError, NotSupportedError
from pybpf.kinds import AttachType, ProgType

if TYPE_CHECKING:  # kernel.info: imported by the first info read
    from pybpf.kernel.info import LinkInfo

__all__ = ["AttachKind", "AttachTarget", "BpfLink", "FdLink", "Link", "LibbpfLink", "attach_error", "fd_link",
           "libbpf_link"]


class AttachTarget(Protocol):
    """What an attach kind needs of a program (``pybpf.Program`` is one)."""

    name: str
    section: str

    @property
    def type(self) -> str:
        """libbpf's name of the program type."""

    @property
    def prog_type(self) -> ProgType:
        """The program's kind."""

    @property
    def expected_attach_type(self) -> str:
        """libbpf's name of the program's expected attach type."""

    @property
    def fd(self) -> int:
        """The loaded program's fd."""

    def libbpf_program(self) -> Any:
        """The libbpf ``struct bpf_program *`` of a loaded program."""


class Link(Resource):
    """An attachment. Use as a context manager or call ``close()`` to detach."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._closed = False
        self._on_close: list[Callable[[Link], None]] = []

    def __repr__(self) -> str:
        state = "closed" if self._closed else "attached"
        return f"<{type(self).__name__} {self.description} {state}>"

    @property
    def closed(self) -> bool:
        """True once the link is detached and released."""
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise ClosedError(f"link {self.description}")

    @abstractmethod
    def _detach(self) -> None:
        """Undo the attachment (each kind of link detaches its own way)."""

    def close(self) -> None:
        """Detach (unless pinned) and release. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._detach()
        finally:
            for callback in self._on_close:
                callback(self)
            self._on_close.clear()

    def pin(self, path: str) -> None:
        """Pin the attachment on bpffs (only bpf_link attachments can be pinned)."""
        raise BpfError(f"{type(self).__name__} cannot be pinned: only bpf_link attachments can")

    def update(self, program: Any, *, replace: Any = None) -> None:
        """Swap the attached program for ``program`` in place, atomically (BPF_LINK_UPDATE).

        Only bpf_links of the kinds whose kernel side can swap programs allow it
        (see the README); every other attachment raises ``NotSupportedError``
        naming its kind."""
        self._check()
        kind = _NOT_BPF_LINKS.get(type(self).__name__, type(self).__name__)
        raise NotSupportedError(f"{kind} {self.description} cannot be updated in place: it is not a bpf_link "
                                f"(only bpf_links take BPF_LINK_UPDATE); detach and attach again",
                                feature=f"link_update:{kind}")


class BpfLink(Link):
    """A kernel ``bpf_link`` (held by its fd): it can be pinned, inspected and updated in place.

    libbpf's links (:class:`LibbpfLink`) and the links pybpf makes with its own bpf(2) calls
    where the system libbpf lacks the attach kind (:class:`FdLink`) are both."""

    @property
    @abstractmethod
    def fd(self) -> int:
        """The link's fd (owned by the link; do not close it)."""

    @property
    @abstractmethod
    def pin_path(self) -> str | None:
        """Where the link is pinned, if it is."""

    @abstractmethod
    def unpin(self) -> None:
        """Remove the pin (the attachment then ends with this handle)."""

    @classmethod
    def from_pin(cls, path: str) -> BpfLink:
        """Open the link pinned at ``path`` (closing the handle leaves the pinned link attached)."""
        return LibbpfLink.from_pin(path)

    def info(self) -> LinkInfo:
        """The kernel's view: link id, link type, id of the program it runs."""
        from pybpf.kernel.info import link_info

        return link_info(self.fd)

    def update(self, program: Any, *, replace: Any = None) -> None:
        """Make the link run ``program`` (a loaded Program or a program fd) instead, atomically.

        BPF_LINK_UPDATE: every event runs either the old program or the new one.
        With ``replace`` (a Program or fd) the kernel swaps only if the link still
        runs that program (BPF_F_REPLACE). Link kinds whose kernel side cannot
        swap programs raise ``NotSupportedError`` naming the kind."""
        new_fd = _prog_fd(program)
        opts = _libbpf.new_opts("struct bpf_link_update_opts")
        if replace is not None:
            opts.flags = _BPF_F_REPLACE
            opts.old_prog_fd = _prog_fd(replace)
        ret = lib.bpf_link_update(self.fd, new_fd, opts)
        if ret < 0:
            raise self._update_error(-ret, new_fd)

    def _update_error(self, err: int, new_fd: int) -> BpfError:
        from pybpf.kernel.info import open_prog_by_id, prog_info

        info = self.info()
        what = f"updating {info.type} link {self.description}"
        if err == errno.EPERM:
            return BpfError(f"{what}: the link no longer runs the program given as replace=", err)
        new_type = prog_info(new_fd).type
        old_fd = open_prog_by_id(info.prog_id)
        try:
            old_type = prog_info(old_fd).type
        finally:
            os.close(old_fd)
        if err == errno.EINVAL and new_type != old_type:
            return BpfError(f"{what}: a {new_type} program cannot replace the {old_type} program it runs", err)
        if err in (errno.EINVAL, errno.EOPNOTSUPP, _libbpf.ENOTSUPP):
            # the kernel answers EINVAL for a link kind without update_prog
            return NotSupportedError(f"{what}: this kernel cannot update {info.type} links in place "
                                     f"(BPF_LINK_UPDATE refused it); use the dispatcher switch of "
                                     f"pybpf.upgrade for this hook", err, feature=f"link_update:{info.type}")
        return _libbpf.make_error(err, what)


class LibbpfLink(BpfLink):
    """A libbpf ``struct bpf_link`` (tracepoints, probes, XDP, cgroup, iter, ...)."""

    def __init__(self, ptr: Any, description: str) -> None:
        super().__init__(description)
        self._ptr = ptr
        # every use of libbpf's link (and of its fd) and the close() that frees it: one at a time
        self._ptr_lock: threading.Lock
        fresh_locks(self, _ptr_lock=threading.Lock)

    @contextlib.contextmanager
    def held(self) -> Iterator[Any]:
        """libbpf's ``struct bpf_link *``, not freed (nor its fd closed) until the block ends."""
        with self._ptr_lock:
            self._check()
            yield self._ptr

    @property
    def fd(self) -> int:
        """The link's fd (owned by the link; do not close it)."""
        with self.held() as ptr:
            return int(lib.bpf_link__fd(ptr))

    @property
    def pin_path(self) -> str | None:
        """Where the link is pinned, if it is."""
        with self.held() as ptr:
            return _libbpf.string_or_none(lib.bpf_link__pin_path(ptr))

    def pin(self, path: str) -> None:
        """Pin on bpffs: the attachment then stays after this process closes the link."""
        with self.held() as ptr:
            fs.check_pin(lib.bpf_link__pin(ptr, os.fsencode(path)),
                         f"pinning link {self.description} at {path}", path)

    def unpin(self) -> None:
        """Remove the pin (the attachment then ends with this handle)."""
        with self.held() as ptr:
            _libbpf.check(lib.bpf_link__unpin(ptr), f"unpinning link {self.description}")

    @classmethod
    def from_pin(cls, path: str) -> LibbpfLink:
        """Open the link pinned at ``path`` (closing the handle leaves the pinned link attached)."""
        with _libbpf.capture() as log:
            ptr = lib.bpf_link__open(os.fsencode(path))
        if ptr == ffi.NULL:
            err = ffi.errno or errno.ENOENT
            if err in (errno.EACCES, errno.EPERM, errno.ENOENT):
                raise fs.pin_open_error(path, err, f"opening pinned link {path}")
            raise _libbpf.make_error(err, f"opening pinned link {path}", log=log.text)
        return cls(ptr, f"pinned link {path}")

    def _detach(self) -> None:
        # For fd-based links this closes the link fd: a pinned link lives on in bpffs.
        with self._ptr_lock:
            ptr, self._ptr = self._ptr, ffi.NULL
            lib.bpf_link__destroy(ptr)


class FdLink(BpfLink):
    """A bpf_link pybpf made with its own bpf(2) call (an attach kind the system libbpf lacks).

    It owns the link fd: ``close()`` closes it, which detaches unless the link is pinned."""

    def __init__(self, fd: int, description: str) -> None:
        super().__init__(description)
        self._ref = FdRef(fd, f"link {description}")
        self._pin_path: str | None = None

    @property
    def fd(self) -> int:
        """The link's fd (owned by the link; do not close it)."""
        self._check()
        return self._ref.fd

    @property
    def pin_path(self) -> str | None:
        """Where the link is pinned, if it is."""
        return self._pin_path

    def pin(self, path: str) -> None:
        """Pin on bpffs: the attachment then stays after this process closes the link."""
        with self._ref as fd:
            fs.check_pin(lib.bpf_obj_pin(fd, os.fsencode(path)), f"pinning link {self.description} at {path}",
                         path)
        self._pin_path = path

    def unpin(self) -> None:
        """Remove the pin (the attachment then ends with this handle)."""
        self._check()
        if self._pin_path is not None:
            try:
                os.unlink(self._pin_path)
            except OSError as exc:
                raise BpfError(f"unpinning link {self.description}: {exc.strerror}", exc.errno) from None
            self._pin_path = None

    def _detach(self) -> None:
        self._ref.close()


_BPF_F_REPLACE = 1 << 2
_NOT_BPF_LINKS = {"TcLink": "tc filter (netlink)", "XdpLink": "XDP attachment (netlink, explicit mode)",
                  "SocketLink": "socket filter (SO_ATTACH_BPF)"}


def _prog_fd(program: Any) -> int:
    """A program fd from a Program (anything with ``fd``) or an int."""
    return int(program) if isinstance(program, int) else int(program.fd)


def attach_error(prog: AttachTarget, err: int, what: str, log: str = "") -> BpfError:
    """The typed error for a failed attach of ``prog`` to ``what``, with libbpf's reason."""
    from pybpf.kernel.features import kprobes_available  # feature probes: only to explain a failure

    message = f"attaching {prog.type} program {prog.name!r} to {what}"
    if prog.prog_type is ProgType.KPROBE and prog.section.startswith(("kprobe", "kretprobe")) \
            and not kprobes_available():
        return NotSupportedError(
            f"{message}: kprobes are not available in this kernel (no kprobe PMU and no "
            f"kprobe_events in tracefs: the kernel was built without CONFIG_KPROBES)",
            err, feature="kprobe", log=log)
    capability = "CAP_NET_ADMIN" if prog.prog_type.networking else "CAP_PERFMON"
    lines = [line.removeprefix("libbpf: ").strip() for line in log.strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else ""  # libbpf's own words: the message carries them, whatever the errno
    if reason and err not in (errno.EPERM, errno.EACCES):
        return _libbpf.make_error(err, f"{message}: {reason}", capability=capability, log=log)
    return _libbpf.make_error(err, message + (f" ({reason})" if reason else ""), capability=capability, log=log)


def libbpf_link(prog: AttachTarget, ptr: Any, what: str, log: str = "",
                cls: type[LibbpfLink] | None = None) -> LibbpfLink:
    """Wrap what a ``bpf_program__attach_*`` call returned, or raise its error."""
    if ptr == ffi.NULL:
        raise attach_error(prog, ffi.errno or errno.EINVAL, what, log)
    return (cls or LibbpfLink)(ptr, f"{prog.name} -> {what}")


def fd_link(prog: AttachTarget, ret: int, what: str) -> FdLink:
    """Own the link fd a pybpf bpf(2) ``BPF_LINK_CREATE`` returned, or raise its error."""
    if ret < 0:
        raise attach_error(prog, -ret, what)
    return FdLink(ret, f"{prog.name} -> {what}")


@dataclass(frozen=True)
class AttachKind:
    """One attach kind, as the registry (:mod:`pybpf.link`) declares it: the ``Program`` verb that attaches it, and
    when a program's ``SEC()`` alone does not say where to attach (then ``attach()`` names
    ``usage`` instead of guessing)."""

    verb: str
    usage: str
    prog_types: frozenset[ProgType] = frozenset()  # programs of these types always need the verb
    bare_sections: frozenset[str] = frozenset()    # SEC() prefixes that name a target after "/"
    names_target: Callable[[str], bool] = bool     # is what follows the "/" a whole target?
    # SEC() names newer than libbpf 1.1 (prefix -> program type, expected attach type): libbpf 1.1
    # leaves such programs without a type, and pybpf sets these before load
    sections: tuple[tuple[str, ProgType, AttachType], ...] = ()
    module: str = ""  # the file under pybpf/link/ that attaches it (imported on the verb's first call)

    def needs_verb(self, prog_type: ProgType, section: str) -> bool:
        """Whether a program of this type and section must be attached with ``verb``."""
        if prog_type in self.prog_types:
            return True
        prefix, _, target = section.partition("/")
        return ((prefix in self.bare_sections or prefix.split(".", 1)[0] in self.bare_sections)
                and not self.names_target(target))


def section_matches(prefix: str, section: str) -> bool:
    """libbpf's rule for a ``prefix+`` section: the prefix alone, or followed by ``/``."""
    return section == prefix or section.startswith(prefix + "/")
