"""XDP: a bpf_link the kernel detaches on close, or an explicit mode set through netlink."""

from __future__ import annotations

import errno

from pybpf._sys.libbpf import capture, ffi, lib, make_error, new_opts
from pybpf.link import declared
from pybpf.link.base import AttachTarget, Link, attach_error, libbpf_link
from pybpf.link.netdev import ifindex

__all__ = ["KIND", "XDP_MODES", "XdpLink", "attach"]

XDP_MODES = {"skb": 1 << 1, "generic": 1 << 1, "drv": 1 << 2, "native": 1 << 2, "hw": 1 << 3}
_XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0


class XdpLink(Link):
    """An XDP program attached in an explicit mode through netlink."""

    def __init__(self, index: int, prog_fd: int, flags: int, description: str) -> None:
        super().__init__(description)
        self.ifindex, self._prog_fd, self._flags = index, prog_fd, flags

    def _detach(self) -> None:
        opts = new_opts("struct bpf_xdp_attach_opts", old_prog_fd=self._prog_fd)
        ret = lib.bpf_xdp_detach(self.ifindex, self._flags, opts)
        if ret < 0 and -ret not in (errno.ENODEV, errno.ENOENT):  # interface gone
            raise make_error(-ret, f"detaching XDP {self.description}", capability="CAP_NET_ADMIN")


def attach(prog: AttachTarget, interface: str | int, mode: str | None = None) -> Link:
    """Attach to an interface; ``mode`` None lets the kernel choose (a bpf_link), or one of
    ``skb``/``generic``, ``drv``/``native``, ``hw`` (netlink)."""
    index = ifindex(interface)
    if mode is None:
        with capture() as log:
            ptr = lib.bpf_program__attach_xdp(prog.libbpf_program(), index)
        return libbpf_link(prog, ptr, f"XDP on {interface}", log.text)
    try:
        flags = XDP_MODES[mode] | _XDP_FLAGS_UPDATE_IF_NOEXIST
    except KeyError:
        raise ValueError(f"XDP mode must be one of {sorted(XDP_MODES)}, not {mode!r}") from None
    fd = prog.fd
    with capture() as log:
        ret = lib.bpf_xdp_attach(index, fd, flags, ffi.NULL)
    if ret < 0:
        raise attach_error(prog, -ret, f"XDP ({mode} mode) on {interface}", log.text)
    return XdpLink(index, fd, flags, f"{prog.name} -> XDP {mode} on {interface}")


KIND = declared("xdp")
