"""tcx: a tc program on an interface's ingress or egress through a bpf_link (kernel 6.6).

Unlike the netlink filters of :mod:`pybpf.link.tc`, a tcx attachment is a bpf_link: ``update()``
swaps its program atomically, ``pin()`` keeps it, closing it detaches it, and the programs on
one hook run in the order ``before=``/``after=`` gave them. libbpf 1.3 and later attach it
(``bpf_program__attach_tcx``); with an older libbpf (Debian 12's 1.1) pybpf makes the same
``BPF_LINK_CREATE`` itself, as it does for a plain ``SEC("tc")`` program on any release
(libbpf's ``attach_tcx`` takes the direction from the program's ``SEC("tcx/ingress")``).
"""

from __future__ import annotations

from typing import Any

from pybpf._sys import bpfsys
from pybpf._sys.libbpf import capture, has_symbol, lib, new_opts
from pybpf.kinds import AttachType
from pybpf.link import declared
from pybpf.link.base import AttachTarget, BpfLink, fd_link, libbpf_link
from pybpf.link.netdev import ifindex

__all__ = ["DIRECTIONS", "KIND", "attach", "uses_libbpf"]

DIRECTIONS = {"ingress": AttachType.TCX_INGRESS, "egress": AttachType.TCX_EGRESS}


def uses_libbpf() -> bool:
    """Whether the system libbpf attaches tcx links (1.3 and later) or pybpf's own bpf(2) does
    (libbpf attaches only programs whose SEC() names the direction: ``tcx/ingress``, ``tcx/egress``)."""
    return has_symbol("bpf_program__attach_tcx")


def _placement(before: Any, after: Any) -> tuple[int, int]:
    """(flags, relative fd) for ``before=``/``after=``: True is the head/tail of the hook, a
    link or a program (anything with ``fd``) is that attachment's place."""
    if before is not None and after is not None:
        raise ValueError("give before= or after=, not both")
    anchor = before if before is not None else after
    if anchor is None or anchor is False:
        return 0, 0
    flags = bpfsys.BPF_F_BEFORE if before is not None else bpfsys.BPF_F_AFTER
    if anchor is True:
        return flags, 0
    if isinstance(anchor, BpfLink):
        return flags | bpfsys.BPF_F_LINK, anchor.fd
    fd = getattr(anchor, "fd", None)
    if not isinstance(fd, int):
        raise TypeError(f"before=/after= takes True, a Link or a Program, not {type(anchor).__name__}")
    return flags, fd


def attach(prog: AttachTarget, interface: str | int, direction: str = "ingress", *, before: Any = None,
           after: Any = None, expected_revision: int = 0) -> BpfLink:
    """Attach to ``interface``'s ``direction`` (``ingress``/``egress``) as a bpf_link.

    ``before=``/``after=``: ``True`` (the head/tail of the hook), or the Link or Program to
    run before/after; by default the program goes last. ``expected_revision`` (non-zero)
    makes the kernel refuse (ESTALE) if the hook's programs changed since that revision."""
    if direction not in DIRECTIONS:
        raise ValueError(f"tcx direction must be 'ingress' or 'egress', not {direction!r}")
    flags, relative = _placement(before, after)
    index = ifindex(interface)
    what = f"tcx {direction} on {interface}"
    attach_type = DIRECTIONS[direction]
    if uses_libbpf() and prog.expected_attach_type == attach_type.c_name:
        # libbpf takes the direction from the program's SEC("tcx/ingress"|"tcx/egress"): a plain
        # SEC("tc") program, or one attached the other way, goes through pybpf's own call below
        opts = new_opts("struct bpf_tcx_opts", flags=flags, relative_fd=relative,
                        expected_revision=expected_revision)
        with capture() as log:
            ptr = lib.bpf_program__attach_tcx(prog.libbpf_program(), index, opts)
        return libbpf_link(prog, ptr, what, log.text)
    ret = bpfsys.link_create_tcx(prog.fd, index, attach_type, flags, relative, expected_revision)
    return fd_link(prog, ret, what)


KIND = declared("tcx")
