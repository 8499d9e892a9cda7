"""tc filters on an interface's clsact qdisc (``bpf_tc_attach``; libbpf 1.1 has no tcx)."""

from __future__ import annotations

import errno
from typing import Any

from pybpf._sys.libbpf import capture, lib, make_error, new_opts
from pybpf.link import declared
from pybpf.link.base import AttachTarget, Link, attach_error
from pybpf.link.netdev import ifindex

__all__ = ["KIND", "TcLink", "attach"]

_TC_POINTS = {"ingress": 1, "egress": 2}


class TcLink(Link):
    """A tc filter added with ``bpf_tc_attach``; close removes this filter only.

    The clsact qdisc stays, as with libbpf and tc itself: other filters (other
    links, other tools) may hang off it, and an empty clsact qdisc costs nothing."""

    def __init__(self, hook: Any, opts: Any, description: str) -> None:
        super().__init__(description)
        self._hook, self._opts = hook, opts

    @property
    def handle(self) -> int:
        """The filter's handle (chosen by the kernel when 0 was asked)."""
        return int(self._opts.handle)

    @property
    def priority(self) -> int:
        """The filter's priority (chosen by the kernel when 0 was asked)."""
        return int(self._opts.priority)

    def _detach(self) -> None:
        # bpf_tc_detach wants handle/priority only: prog_fd, flags and prog_id must be zero.
        detach_opts = new_opts("struct bpf_tc_opts", handle=self._opts.handle, priority=self._opts.priority)
        ret = lib.bpf_tc_detach(self._hook, detach_opts)
        # ENOENT/ENODEV: the filter, interface or namespace is gone; EINVAL: so is the qdisc
        if ret < 0 and -ret not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
            raise make_error(-ret, f"detaching tc filter {self.description}", capability="CAP_NET_ADMIN")


def attach(prog: AttachTarget, interface: str | int, direction: str = "ingress", *, priority: int = 0,
           handle: int = 0) -> TcLink:
    """Add a tc filter on the interface's clsact qdisc (created if absent)."""
    if direction not in _TC_POINTS:
        raise ValueError(f"tc direction must be 'ingress' or 'egress', not {direction!r}")
    index = ifindex(interface)
    hook = new_opts("struct bpf_tc_hook", ifindex=index, attach_point=_TC_POINTS[direction])
    fd = prog.fd
    with capture() as log:
        ret = lib.bpf_tc_hook_create(hook)
    if ret < 0 and ret != -errno.EEXIST:
        raise attach_error(prog, -ret, f"tc {direction} hook on {interface}", log.text)
    created = ret == 0
    opts = new_opts("struct bpf_tc_opts", prog_fd=fd, handle=handle, priority=priority)
    with capture() as log:
        ret = lib.bpf_tc_attach(hook, opts)
    if ret < 0:
        if created:
            lib.bpf_tc_hook_destroy(hook)
        raise attach_error(prog, -ret, f"tc {direction} on {interface}", log.text)
    return TcLink(hook, opts, f"{prog.name} -> tc {direction} on {interface}")


KIND = declared("tc")
