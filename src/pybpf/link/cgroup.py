"""cgroup programs (skb, sock, sock_addr, sysctl, device, sockopt) on a cgroup v2 directory."""

from __future__ import annotations

import os

from pybpf._sys.libbpf import capture, lib
from pybpf.errors import BpfError
from pybpf.link import declared
from pybpf.link.base import AttachTarget, LibbpfLink, libbpf_link

__all__ = ["KIND", "attach"]


def attach(prog: AttachTarget, path: str) -> LibbpfLink:
    """Attach to the cgroup v2 directory ``path`` (a bpf_link: detached when closed)."""
    try:
        cgroup_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise BpfError(f"cannot open cgroup {path}: {exc.strerror}", exc.errno) from None
    try:
        with capture() as log:
            ptr = lib.bpf_program__attach_cgroup(prog.libbpf_program(), cgroup_fd)
    finally:
        os.close(cgroup_fd)  # the link holds its own reference to the cgroup
    return libbpf_link(prog, ptr, f"cgroup {path}", log.text)


KIND = declared("cgroup")
