"""Raw tracepoints (``SEC("raw_tp/NAME")``): the tracepoint's raw arguments, no tracefs."""

from __future__ import annotations

from pybpf._sys.libbpf import capture, lib
from pybpf.link import declared
from pybpf.link.base import AttachTarget, LibbpfLink, libbpf_link

__all__ = ["KIND", "attach"]


def attach(prog: AttachTarget, name: str) -> LibbpfLink:
    """Attach to the raw tracepoint ``name`` (for example ``sys_enter``)."""
    with capture() as log:
        ptr = lib.bpf_program__attach_raw_tracepoint(prog.libbpf_program(), name.encode())
    return libbpf_link(prog, ptr, f"raw tracepoint {name}", log.text)


KIND = declared("raw_tracepoint")
