"""Tracepoints (``SEC("tracepoint/CATEGORY/NAME")``), attached through tracefs by libbpf."""

from __future__ import annotations

from pybpf._sys.libbpf import capture, lib
from pybpf.kernel import fs
from pybpf.link import declared
from pybpf.link.base import AttachTarget, LibbpfLink, libbpf_link

__all__ = ["KIND", "attach"]


def attach(prog: AttachTarget, category: str, name: str) -> LibbpfLink:
    """Attach to the tracepoint ``category:name`` (for example ``syscalls:sys_enter_getppid``)."""
    fs.ensure_tracefs()
    with capture() as log:
        ptr = lib.bpf_program__attach_tracepoint(prog.libbpf_program(), category.encode(), name.encode())
    return libbpf_link(prog, ptr, f"tracepoint {category}:{name}", log.text)


KIND = declared("tracepoint")
