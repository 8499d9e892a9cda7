"""Links: one attachment of a program to a hook, detached by ``close()``.

Most attachments are libbpf ``struct bpf_link`` objects.  tc filters (libbpf
1.1 has no tcx links), socket filters and mode-specific XDP attachments are
not, so they get their own ``Link`` subclasses with the same verbs.  Every
link has one owner: ``close()`` detaches and releases; ``pin()`` makes the
attachment outlive the process (close then only drops this handle).
"""

from __future__ import annotations

import errno
import os
import socket
from abc import ABC, abstractmethod
import warnings
from typing import Any, Callable

from pybpf._sys import libbpf as _libbpf
from pybpf.kernel import fs
from pybpf._sys.libbpf import ffi, lib
from pybpf.errors import BpfError, ClosedError

__all__ = ["Link", "LibbpfLink", "IterLink", "TcLink", "XdpLink", "SocketLink"]

SO_DETACH_BPF = 27  # == SO_DETACH_FILTER


class Link(ABC):
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
        raise BpfError(f"{type(self).__name__} cannot be pinned: only bpf_link attachments can")

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"{self!r} was never closed; detaching it now", ResourceWarning, stacklevel=2)
            try:
                self.close()
            except Exception:
                pass


class LibbpfLink(Link):
    """A libbpf ``struct bpf_link`` (tracepoints, probes, XDP, cgroup, iter, ...)."""

    def __init__(self, ptr: Any, description: str) -> None:
        super().__init__(description)
        self._ptr = ptr

    @property
    def fd(self) -> int:
        self._check()
        return int(lib.bpf_link__fd(self._ptr))

    @property
    def pin_path(self) -> str | None:
        self._check()
        return _libbpf.string_or_none(lib.bpf_link__pin_path(self._ptr))

    def pin(self, path: str) -> None:
        """Pin on bpffs: the attachment then stays after this process closes the link."""
        self._check()
        fs.check_pin(lib.bpf_link__pin(self._ptr, path.encode()),
                     f"pinning link {self.description} at {path}", path)

    def unpin(self) -> None:
        self._check()
        _libbpf.check(lib.bpf_link__unpin(self._ptr), f"unpinning link {self.description}")

    def _detach(self) -> None:
        # For fd-based links this closes the link fd: a pinned link lives on in bpffs.
        ptr, self._ptr = self._ptr, ffi.NULL
        lib.bpf_link__destroy(ptr)


class IterLink(LibbpfLink):
    """A BPF iterator link; each ``read()`` runs the iterator once."""

    def read(self) -> bytes:
        """Run the iterator and return everything it wrote."""
        fd = _libbpf.check(lib.bpf_iter_create(self.fd), f"creating iterator for {self.description}")
        chunks = []
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def read_text(self) -> str:
        return self.read().decode("utf-8", "replace")


class TcLink(Link):
    """A tc filter added with ``bpf_tc_attach``; close removes this filter only.

    The clsact qdisc stays, as with libbpf and tc itself: other filters (other
    links, other tools) may hang off it, and an empty clsact qdisc costs nothing."""

    def __init__(self, hook: Any, opts: Any, description: str) -> None:
        super().__init__(description)
        self._hook, self._opts = hook, opts

    @property
    def handle(self) -> int:
        return int(self._opts.handle)

    @property
    def priority(self) -> int:
        return int(self._opts.priority)

    def _detach(self) -> None:
        # bpf_tc_detach wants handle/priority only: prog_fd, flags and prog_id must be zero.
        detach_opts = _libbpf.new_opts("struct bpf_tc_opts", handle=self._opts.handle,
                                       priority=self._opts.priority)
        ret = lib.bpf_tc_detach(self._hook, detach_opts)
        # ENOENT/ENODEV: the filter, interface or namespace is gone; EINVAL: so is the qdisc
        if ret < 0 and -ret not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
            raise _libbpf.make_error(-ret, f"detaching tc filter {self.description}",
                                     capability="CAP_NET_ADMIN")


class XdpLink(Link):
    """An XDP program attached in an explicit mode through netlink."""

    def __init__(self, ifindex: int, prog_fd: int, flags: int, description: str) -> None:
        super().__init__(description)
        self.ifindex, self._prog_fd, self._flags = ifindex, prog_fd, flags

    def _detach(self) -> None:
        opts = _libbpf.new_opts("struct bpf_xdp_attach_opts", old_prog_fd=self._prog_fd)
        ret = lib.bpf_xdp_detach(self.ifindex, self._flags, opts)
        if ret < 0 and ret not in (-19, -2):  # ENODEV/ENOENT: interface gone
            raise _libbpf.make_error(-ret, f"detaching XDP {self.description}", capability="CAP_NET_ADMIN")


class SocketLink(Link):
    """A socket filter set with SO_ATTACH_BPF; close detaches it from the socket."""

    def __init__(self, sock: socket.socket | int, description: str) -> None:
        super().__init__(description)
        self._sock = sock

    def _detach(self) -> None:
        sock = self._sock
        if isinstance(sock, socket.socket):
            if sock.fileno() < 0:
                return  # socket already closed: nothing left to detach
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_BPF, 0)
            except OSError:
                pass
        else:
            try:
                with socket.socket(fileno=os.dup(sock)) as dup:
                    dup.setsockopt(socket.SOL_SOCKET, SO_DETACH_BPF, 0)
            except OSError:
                pass
