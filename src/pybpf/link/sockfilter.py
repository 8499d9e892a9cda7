"""Socket filters set with ``SO_ATTACH_BPF`` on one socket."""

from __future__ import annotations

import errno
import os
import socket

from pybpf.link import declared
from pybpf.link.base import AttachTarget, Link, attach_error

__all__ = ["KIND", "SocketLink", "attach"]

SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27  # == SO_DETACH_FILTER


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


def attach(prog: AttachTarget, sock: socket.socket | int) -> SocketLink:
    """Set the program as a socket filter (SO_ATTACH_BPF) on ``sock``."""
    fd = prog.fd
    fileno = sock.fileno() if isinstance(sock, socket.socket) else int(sock)
    try:
        with socket.socket(fileno=os.dup(fileno)) as dup:
            dup.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, fd)
    except OSError as exc:
        raise attach_error(prog, exc.errno or errno.EINVAL, f"socket fd {fileno}") from None
    return SocketLink(sock, f"{prog.name} -> socket fd {fileno}")


KIND = declared("sockfilter")
