"""BPF LSM programs (``SEC("lsm/HOOK")``)."""

from __future__ import annotations

from pybpf._sys.libbpf import capture, lib
from pybpf.link import declared
from pybpf.link.base import AttachTarget, LibbpfLink, libbpf_link

__all__ = ["KIND", "attach"]


def attach(prog: AttachTarget) -> LibbpfLink:
    """Attach to the LSM hook named by ``SEC()``."""
    with capture() as log:
        ptr = lib.bpf_program__attach_lsm(prog.libbpf_program())
    return libbpf_link(prog, ptr, f"LSM hook of SEC({prog.section})", log.text)


KIND = declared("lsm")
