"""Network-namespace programs (sk_lookup, flow_dissector): a bpf_link on one namespace."""

from __future__ import annotations

import os

from pybpf._sys.libbpf import capture, lib
from pybpf.errors import BpfError
from pybpf.link import declared
from pybpf.link.base import AttachTarget, LibbpfLink, libbpf_link

__all__ = ["KIND", "attach"]


def attach(prog: AttachTarget, netns: str | int) -> LibbpfLink:
    """Attach to a network namespace: a path (``/run/netns/NAME``, ``/proc/PID/ns/net``) or
    an open namespace fd (the caller keeps it)."""
    if isinstance(netns, int):
        fd, opened = netns, False
    else:
        try:
            fd, opened = os.open(netns, os.O_RDONLY | os.O_CLOEXEC), True
        except OSError as exc:
            raise BpfError(f"cannot open network namespace {netns}: {exc.strerror}", exc.errno) from None
    try:
        with capture() as log:
            ptr = lib.bpf_program__attach_netns(prog.libbpf_program(), fd)
    finally:
        if opened:
            os.close(fd)  # the link holds its own reference to the namespace
    return libbpf_link(prog, ptr, f"netns {netns}", log.text)


KIND = declared("netns")
