"""BTF-attached tracing: fentry, fexit, fmod_ret and tp_btf, on the target chosen at load."""

from __future__ import annotations

from pybpf._sys.libbpf import capture, lib
from pybpf.link import declared
from pybpf.link.base import AttachTarget, LibbpfLink, libbpf_link

__all__ = ["KIND", "attach"]


def attach(prog: AttachTarget) -> LibbpfLink:
    """Attach to the kernel function or BTF tracepoint named by ``SEC()`` (or by
    ``set_attach_target`` before load)."""
    with capture() as log:
        ptr = lib.bpf_program__attach_trace(prog.libbpf_program())
    return libbpf_link(prog, ptr, f"BTF target of SEC({prog.section})", log.text)


KIND = declared("trace")
